import type { CommandModule } from "yargs";
import { existsSync } from "node:fs";
import { join, resolve } from "node:path";
import { selectBackend } from "../backend.js";
import { resolveDataPath } from "../../data/datasets.js";
import { UsageError } from "../../errors.js";
import { TRAINER_STATE_FILE } from "../../train/checkpoint.js";
import { LOG_FILE, PLOT_FILE, type TrainEvent } from "../../train/trainer.js";
import { POOLINGS, TRAINABLE_SCOPES, checkPooling, checkScope } from "../../finetune/classifier.js";
import {
  ACCURACY_FILE,
  ACCURACY_PLOT_FILE,
  SPAM_DEFAULTS,
  finetuneSpam,
  type SplitAccuracy,
} from "../../finetune/spam.js";
import {
  formatDuration,
  interruptOnCtrlC,
  note,
  printJson,
  printLine,
  spinner,
  stepLine,
  verbose,
  type GlobalOptions,
} from "../output.js";

interface FinetuneSpamArgs extends GlobalOptions {
  model?: string;
  out?: string;
  data?: string;
  "split-dir"?: string;
  epochs?: number;
  "batch-size"?: number;
  lr?: number;
  "weight-decay"?: number;
  trainable?: string;
  pool?: string;
  "drop-rate"?: number;
  "eval-freq"?: number;
  "eval-iter"?: number;
  "max-steps"?: number;
  "checkpoint-every"?: number;
  resume?: string;
}

/** The book's progress line: "Ep 1 (Step 000000): Train loss 2.153, Val loss 2.392". */
function evalLine(e: Extract<TrainEvent, { kind: "eval" }>["record"]): string {
  const val = e.val_loss === null ? "" : `, Val loss ${e.val_loss.toFixed(3)}`;
  return `Ep ${e.epoch + 1} (Step ${String(e.step - 1).padStart(6, "0")}): Train loss ${e.train_loss.toFixed(3)}${val}`;
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

function positiveInt(name: string, v: number | undefined): void {
  if (v !== undefined && (!Number.isInteger(v) || v < 1))
    throw new UsageError(`--${name} must be a positive integer, got ${v}`);
}

export const finetuneSpamCommand: CommandModule<GlobalOptions, FinetuneSpamArgs> = {
  command: "spam",
  describe: "finetune a spam classifier (book chapter 6)",
  builder: (y) =>
    y
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
      .option("epochs", {
        type: "number",
        describe: `passes over the training data [default: ${SPAM_DEFAULTS.epochs}]`,
      })
      .option("batch-size", {
        alias: "b",
        type: "number",
        describe: `examples per batch [default: ${SPAM_DEFAULTS.batchSize}]`,
      })
      .option("lr", { type: "number", describe: `AdamW learning rate [default: ${SPAM_DEFAULTS.lr}]` })
      .option("weight-decay", {
        type: "number",
        describe: `AdamW weight decay [default: ${SPAM_DEFAULTS.weightDecay}]`,
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
        describe: `dropout while finetuning [default: ${SPAM_DEFAULTS.dropRate}, as the book]`,
      })
      .option("eval-freq", {
        type: "number",
        describe: `evaluate the losses every N steps [default: ${SPAM_DEFAULTS.evalFreq}]`,
      })
      .option("eval-iter", {
        type: "number",
        describe: `batches per evaluation and per-epoch accuracy [default: ${SPAM_DEFAULTS.evalIter}]`,
      })
      .option("max-steps", { type: "number", describe: "stop after this many optimizer steps" })
      .option("checkpoint-every", {
        type: "number",
        describe: "save a resumable checkpoint every N steps [default: at the end and on Ctrl-C]",
      })
      .option("resume", { type: "string", describe: "continue the interrupted run in this directory (or in --out)" })
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
      .example("$0 finetune spam --resume models/spam", "continue after Ctrl-C")
      .example('$0 classify --model models/spam "You are a winner! Claim your prize now"', "then use it")
      .check((a) => {
        const resume = a.resume !== undefined;
        if (!resume && (a.model === undefined || a.out === undefined)) {
          throw new UsageError("give --model and --out (or --resume DIR)", "see `llmctl finetune spam --help`");
        }
        if (resume && a.resume === "" && a.out === undefined)
          throw new UsageError("--resume needs the run directory", "pass --resume DIR (the earlier --out)");
        const fixed = [
          "model",
          "data",
          "split-dir",
          "batch-size",
          "lr",
          "weight-decay",
          "trainable",
          "pool",
          "drop-rate",
          "eval-freq",
          "eval-iter",
        ] as const;
        const given = fixed.filter((k) => a[k] !== undefined);
        if (resume && given.length > 0) {
          throw new UsageError(
            `--resume continues a run as it was set up; drop ${given.map((k) => `--${k}`).join(", ")}`,
            "or start a new run with another --out",
          );
        }
        if (a.data !== undefined && a["split-dir"] !== undefined)
          throw new UsageError("give --data or --split-dir, not both");
        for (const k of ["epochs", "batch-size", "eval-freq", "eval-iter", "max-steps"] as const) positiveInt(k, a[k]);
        if (
          a["checkpoint-every"] !== undefined &&
          !(Number.isInteger(a["checkpoint-every"]) && a["checkpoint-every"] >= 0)
        ) {
          throw new UsageError(`--checkpoint-every must be a non-negative integer, got ${a["checkpoint-every"]}`);
        }
        if (a.lr !== undefined && !(a.lr > 0)) throw new UsageError(`--lr must be positive, got ${a.lr}`);
        if (a["weight-decay"] !== undefined && !(a["weight-decay"] >= 0))
          throw new UsageError(`--weight-decay must be ≥ 0, got ${a["weight-decay"]}`);
        if (a["drop-rate"] !== undefined && !(a["drop-rate"] >= 0 && a["drop-rate"] < 1))
          throw new UsageError(`--drop-rate must be in [0, 1), got ${a["drop-rate"]}`);
        return true;
      }),
  handler: async (args) => {
    await selectBackend(args);
    const resume = args.resume !== undefined;
    const outDir = resolve(args.resume || args.out!);
    if (!resume && existsSync(join(outDir, TRAINER_STATE_FILE))) {
      throw new UsageError(
        `${outDir} already holds a training run`,
        `continue it with --resume ${args.out}, or choose another --out`,
      );
    }
    let dataPath: string | undefined;
    if (!resume && args["split-dir"] === undefined) {
      const spin = spinner("fetching the SMS Spam Collection");
      try {
        dataPath = await resolveDataPath(args.data ?? "sms-spam", {
          onNote: (m) => verbose(args, m),
          onProgress: (got, total) =>
            (spin.text = `fetching the SMS Spam Collection: ${total ? `${Math.round((100 * got) / total)}%` : `${got} bytes`}`),
        });
      } finally {
        spin.stop();
      }
    }

    const interrupt = interruptOnCtrlC("\nstopping at the next step boundary (Ctrl-C again to quit at once)…");
    const progress = spinner(resume ? `loading ${outDir}` : `loading ${args.model}`);
    const started = performance.now();
    try {
      const result = await finetuneSpam({
        modelDir: resume ? outDir : resolve(args.model!),
        outDir,
        dataPath,
        splitDir: args["split-dir"],
        epochs: args.epochs,
        batchSize: args["batch-size"],
        lr: args.lr,
        weightDecay: args["weight-decay"],
        evalFreq: args["eval-freq"],
        evalIter: args["eval-iter"],
        trainable: args.trainable === undefined ? undefined : checkScope(args.trainable),
        pool: args.pool === undefined ? undefined : checkPooling(args.pool),
        dropRate: args["drop-rate"],
        seed: args.seed,
        maxSteps: args["max-steps"],
        checkpointEvery: args["checkpoint-every"],
        resume,
        signal: interrupt.signal,
        onEvent: (ev) => {
          if (ev.kind === "data") {
            progress.clear();
            note(
              `data: train ${ev.train}, validation ${ev.validation}, test ${ev.test} (from ${ev.source}); padded to ${ev.maxLength} tokens`,
            );
            if (ev.truncated > 0)
              note(`note: ${ev.truncated} texts are longer than ${ev.maxLength} tokens and were truncated`);
          } else if (ev.kind === "model") {
            progress.clear();
            const what = ev.resumed ? "resuming" : ev.converted ? "new 2-class head;" : "continuing a classifier;";
            note(
              `${what} training ${ev.trainableParameters.toLocaleString("en-US")} of ${ev.totalParameters.toLocaleString("en-US")} parameters`,
            );
          } else if (ev.kind === "train") {
            const e = ev.event;
            if (e.kind === "step") {
              const p = e.progress;
              progress.text = stepLine(p, ev.runningAccuracy === null ? [] : [`acc ${pct(ev.runningAccuracy)}`]);
            } else if (e.kind === "eval") {
              progress.clear();
              note(evalLine(e.record));
            } else if (e.kind === "epoch") {
              progress.clear();
              note(
                `Training accuracy: ${pct(e.record.train_accuracy as number)} | Validation accuracy: ${pct(e.record.val_accuracy as number)}`,
              );
            } else if (e.kind === "checkpoint") {
              verbose(args, `checkpoint at step ${e.step} → ${e.dir}`);
            }
          } else if (ev.kind === "final-eval") {
            progress.text = `measuring ${ev.split} accuracy: batch ${ev.batch}/${ev.batches}`;
          }
        },
      });
      progress.stop();
      const seconds = (performance.now() - started) / 1000;
      note(
        `finetuned in ${formatDuration(result.train.seconds)}; total ${formatDuration(seconds)}. Classifier, ${LOG_FILE}, ${PLOT_FILE}, ${ACCURACY_PLOT_FILE} and ${ACCURACY_FILE} in ${outDir}`,
      );
      if (args.json) {
        printJson({
          out: outDir,
          train_accuracy: result.accuracy.train,
          val_accuracy: result.accuracy.validation,
          test_accuracy: result.accuracy.test,
          steps: result.train.step,
          max_length: result.maxLength,
          train_loss: result.train.trainLoss,
          val_loss: result.train.valLoss,
          epochs: result.epochs,
          seconds: Math.round(seconds * 10) / 10,
        });
      } else {
        printLine(accuracyTable(result.accuracy));
      }
    } finally {
      progress.stop();
      interrupt.release();
    }
  },
};
