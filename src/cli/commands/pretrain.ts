import type { CommandModule } from "yargs";
import { notYet } from "./not-yet.js";

export const pretrainCommand: CommandModule = {
  command: "pretrain",
  describe: "pretrain a GPT from scratch on text",
  handler: () => notYet("pretrain", 3),
};
