import type { CommandModule } from "yargs";
import { notYet } from "./not-yet.js";

export const classifyCommand: CommandModule = {
  command: "classify",
  describe: "classify texts as spam / not spam with a finetuned model",
  handler: () => notYet("classify", 7),
};
