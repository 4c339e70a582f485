import type { CommandModule } from "yargs";
import { notYet } from "./not-yet.js";

export const benchCommand: CommandModule = {
  command: "bench",
  describe: "measure training and generation speed",
  handler: () => notYet("bench", 3),
};
