import type { CommandModule } from "yargs";
import { UsageError } from "../../errors.js";
import { LOG_FILE, PLOT_FILE } from "../../train/run-dir.js";
import {
  ACCURACY_FILE,
  ACCURACY_PLOT_FILE,
  SPAM_DEFAULTS,
  SPAM_TRAIN_DEFAULTS,
  TRAINABLE_SCOPES,
  type TrainableScope,
} from "../../finetune/recipes.js";
import { POOLINGS, type Pooling } from "../../model/model-meta.js";
import type { SplitAccuracy } from "../../finetune/spam.js";
import { note, printJson, printLine, type GlobalOptions } from "../output.js";
import {
  loraSettings,
  withLoraFlags,
  runTrainingJob,
  trainSummary,
  trainedLine,
  withTrainingFlags,
  type LoraArgs,
  type TrainingArgs,
} from "../training.js";

interface FinetuneSpamArgs extends TrainingArgs, LoraArgs {
  model?: string;
  data?: string;
  "split-dir"?: string;
  trainable?: TrainableScope;
  pool?: Pooling;
  "drop-rate"?: number;
  "max-scored"?: number;
}

const pct = (x: number) => `${(100 * x).toFixed(2)}%`;

function accuracyTable(a: SplitAccuracy): string {
  return [
    "split        accuracy",
    `training     ${pct(a.train).padStart(8)}`,
    `validation   ${pct(a.validation).padStart(8)}`,
    `test         ${pct(a.test).padStart(8)}`,
  ].join("\n");
}

export const finetuneSpamCommand: CommandModule<GlobalOptions, FinetuneSpamArgs> = {
  command: "spam",
  describe: "finetune a spam classifier (book chapter 6)",
  builder: (y) =>
    withTrainingFlags(
      withLoraFlags(y)
        .option("model", {
          alias: "m",
          type: "string",
          describe: "model directory to start from (the book: GPT-2 124M from `llmctl load-gpt2`)",
        })
        .option("out", {
          alias: "o",
          type: "string",
          describe: "output directory: the classifier, checkpoints, split CSVs, log, plots, accuracy.json",
        })
        .option("data", {
          alias: "d",
          type: "string",
          describe: "the UCI SMSSpamCollection file, or a dataset name [default: sms-spam]",
        })
        .option("split-dir", {
          type: "string",
          describe: "reuse train.csv / validation.csv / test.csv from this directory (e.g. an earlier --out)",
        })
        .option("trainable", {
          choices: TRAINABLE_SCOPES,
          describe: `what to train; the rest stays frozen [default: ${SPAM_DEFAULTS.trainable}]`,
        })
        .option("pool", {
          choices: POOLINGS,
          describe: `which position classifies a text [default: ${SPAM_DEFAULTS.pool}]`,
        })
        .option("drop-rate", {
          type: "number",
          describe: `dropout of the model a new head goes on [default: ${SPAM_DEFAULTS.dropRate}, as the book]`,
        })
        .option("max-scored", {
          type: "number",
          describe: "after training, score at most N examples of each set [default: all, as the book]",
        })
        .check((a) => {
          if (a["max-scored"] !== undefined && !(Number.isInteger(a["max-scored"]) && a["max-scored"] >= 1))
            throw new UsageError(`--max-scored must be a positive integer, got ${a["max-scored"]}`);
          if (a["drop-rate"] !== undefined && !(a["drop-rate"] >= 0 && a["drop-rate"] < 1))
            throw new UsageError(`--drop-rate must be in [0, 1), got ${a["drop-rate"]}`);
          return true;
        }),
      SPAM_TRAIN_DEFAULTS,
      "give --model and --out (or --resume DIR)",
    )
      .example("$0 load-gpt2 --size 124M --out models/gpt2-124m", "once: the book's base model")
      .example(
        "$0 finetune spam --model models/gpt2-124m --out models/spam",
        "the book's chapter 6 run (97.21 / 97.32 / 95.67% train / val / test)",
      )
      .example(
        "$0 finetune spam -m models/gpt2-124m -o models/spam-nonpad --pool last-nonpad --split-dir models/spam",
        "same split, classify from the last real token",
      )
      .example(
        "$0 finetune spam -m models/tiny --out models/spam-tiny --trainable all --lr 5e-4",
        "a small model pretrained here: train every weight",
      )
      .example(
        "$0 finetune spam -m models/gpt2-124m -o models/spam-lora --lora 16 --lora-alpha 16",
        "appendix E: 2,666,528 LoRA parameters train, the base stays frozen and is not copied",
      )
      .example("$0 finetune spam --resume models/spam", "continue after Ctrl-C")
      .example('$0 classify --model models/spam "You are a winner! Claim your prize now"', "then use it"),
  handler: async (a) => {
    const r = await runTrainingJob(a, async (job) => {
      const { finetuneSpam } = await import("../../finetune/spam.js");
      return finetuneSpam({
        ...job,
        modelDir: a.model,
        data: a.data,
        splitDir: a["split-dir"],
        trainable: a.trainable,
        lora: loraSettings(a),
        pool: a.pool,
        maxScored: a["max-scored"],
        dropRate: a["drop-rate"],
      });
    });
    note(trainedLine(r));
    note(`classifier, ${LOG_FILE}, ${PLOT_FILE}, ${ACCURACY_PLOT_FILE} and ${ACCURACY_FILE} in ${r.outDir}`);
    if (a.json) {
      printJson({
        ...trainSummary(r),
        train_accuracy: r.accuracy.train,
        val_accuracy: r.accuracy.validation,
        test_accuracy: r.accuracy.test,
        max_length: r.maxLength,
        epochs: r.epochs,
      });
    } else printLine(accuracyTable(r.accuracy));
  },
};
