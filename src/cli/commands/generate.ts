import type { CommandModule } from "yargs";
import { notYet } from "./not-yet.js";

export const generateCommand: CommandModule = {
  command: "generate",
  describe: "generate text from a model",
  handler: () => notYet("generate", 3),
};
