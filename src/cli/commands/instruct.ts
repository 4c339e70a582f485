import type { CommandModule } from "yargs";
import { notYet } from "./not-yet.js";

export const instructCommand: CommandModule = {
  command: "instruct",
  describe: "answer an instruction with an instruction-finetuned model",
  handler: () => notYet("instruct", 8),
};
