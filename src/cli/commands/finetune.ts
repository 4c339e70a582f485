import type { CommandModule } from "yargs";
import { notYet } from "./not-yet.js";

export const finetuneCommand: CommandModule = {
  command: "finetune <task>",
  describe: "finetune a model: a spam classifier (ch06) or an instruction follower (ch07)",
  builder: (y) =>
    y
      .command({ command: "spam", describe: "finetune a spam classifier (book chapter 6)", handler: () => notYet("finetune spam", 7) })
      .command({ command: "instruct", describe: "finetune an instruction follower (book chapter 7)", handler: () => notYet("finetune instruct", 8) })
      .demandCommand(1),
  handler: () => undefined,
};
