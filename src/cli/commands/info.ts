import type { CommandModule } from "yargs";
import { notYet } from "./not-yet.js";

export const infoCommand: CommandModule = {
  command: "info",
  describe: "show a model's layers, parameter count and size",
  handler: () => notYet("info", 3),
};
