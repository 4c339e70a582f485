import type { CommandModule } from "yargs";
import { UsageError } from "../../errors.js";
import { PLOT_FILE, LOG_FILE } from "../../train/run-dir.js";
import { printJson, printLine, type GlobalOptions } from "../output.js";
import { runTrainingJob, trainSummary, trainedLine, withTrainingFlags, type TrainingArgs } from "../training.js";

interface PretrainArgs extends TrainingArgs {
  config?: string;
  data?: string[];
  "max-length"?: number;
  stride?: number;
  tokenizer?: string;
}

export const pretrainCommand: CommandModule<GlobalOptions, PretrainArgs> = {
  command: "pretrain",
  describe: "pretrain a GPT from scratch on text",
  builder: (y) =>
    withTrainingFlags(
      y
        .option("config", {
          alias: "c",
          type: "string",
          describe: "config file or bundled name (gpt2-tiny, gpt2-124m-ch05, …); its train section sets the defaults",
        })
        .check((a) => {
          if (a.resume === undefined && a.config === undefined)
            throw new UsageError(
              "give --config (or --resume DIR)",
              "e.g. llmctl pretrain --config gpt2-tiny --out runs/tiny",
            );
          return true;
        })
        .option("data", {
          alias: "d",
          type: "string",
          array: true,
          describe: "text or token files, or dataset names (default: the config's train.data)",
        })
        .option("out", {
          alias: "o",
          type: "string",
          describe: "run directory: model, checkpoints, log.jsonl, loss.svg",
        })
        .option("max-length", { type: "number", describe: "tokens per training window (default: the context length)" })
        .option("stride", { type: "number", describe: "tokens between window starts (default: max-length)" })
        .option("tokenizer", {
          type: "string",
          describe: "a tokenizer directory (`llmctl tokenizer train --out`) instead of GPT-2's; vocab_size follows it",
        }),
      null,
      "give --out DIR for the run directory",
    )
      .example(
        "$0 pretrain --config gpt2-tiny --out runs/tiny",
        "train the small model on the-verdict (minutes on 2 cores)",
      )
      .example("$0 pretrain --config gpt2-124m-ch05 --out runs/ch05", "the book's ch05 recipe (124M, 10 epochs)")
      .example(
        "$0 pretrain --config gpt2-tiny --data corpus.bin --epochs 1 --out runs/corpus",
        "train on a token file from `llmctl tokenize --out`",
      )
      .example(
        "$0 pretrain --config gpt2-tiny --tokenizer tok/verdict --out runs/verdict",
        "with your own BPE: the model's vocab_size is the tokenizer's, and the model keeps its tokenizer.json",
      )
      .example("$0 pretrain --resume runs/ch05", "continue an interrupted run exactly where it stopped"),
  handler: async (a) => {
    const r = await runTrainingJob(a, async (job) => {
      const { pretrain } = await import("../../train/pretrain.js");
      const train = { ...job.train, max_length: a["max-length"], stride: a.stride };
      return pretrain({ ...job, config: a.config, data: a.data, tokenizer: a.tokenizer, train });
    });
    if (a.json) {
      printJson({
        ...trainSummary(r),
        epochs: r.settings.epochs,
        tokens_seen: r.train.tokensSeen,
        log: `${r.outDir}/${LOG_FILE}`,
        plot: `${r.outDir}/${PLOT_FILE}`,
      });
      return;
    }
    printLine(trainedLine(r));
    printLine(`model, checkpoint and log in ${r.outDir} (loss plot: ${r.outDir}/${PLOT_FILE})`);
    printLine(`try: llmctl generate --model ${r.outDir} --prompt "${r.settings.sample_prompt}"`);
  },
};
