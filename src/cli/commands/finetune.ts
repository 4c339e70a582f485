import type { CommandModule } from "yargs";
import { finetuneSpamCommand } from "./finetune-spam.js";
import { finetuneInstructCommand } from "./finetune-instruct.js";
import type { GlobalOptions } from "../output.js";

export const finetuneCommand: CommandModule<GlobalOptions, GlobalOptions> = {
  command: "finetune <task>",
  describe: "finetune a model: a spam classifier (ch06) or an instruction follower (ch07)",
  builder: (y) =>
    y
      // eslint-disable-next-line @typescript-eslint/no-explicit-any
      .command(finetuneSpamCommand as CommandModule<any, any>)
      // eslint-disable-next-line @typescript-eslint/no-explicit-any
      .command(finetuneInstructCommand as CommandModule<any, any>)
      .demandCommand(1, "name a task: spam or instruct")
      .example("$0 finetune spam --model models/gpt2-124m --out models/spam", "the book's chapter 6 classifier")
      .example(
        "$0 finetune instruct --model models/gpt2-355m --out models/instruct",
        "the book's chapter 7 instruction follower",
      ),
  handler: () => undefined,
};
