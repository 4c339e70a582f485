import type { CommandModule } from "yargs";
import { resolve } from "node:path";
import { selectBackend } from "../backend.js";
import { loadConfigFile } from "../../model/config.js";
import { buildGPT, type GPTModel } from "../../model/gpt.js";
import { loadModelDir, saveModelDir } from "../../model/model-dir.js";
import { fetchDataset, isDatasetName } from "../../data/datasets.js";
import { UsageError } from "../../errors.js";
import { resolveTrainSettings, type TrainSettings } from "../../train/settings.js";
import { readTrainerState } from "../../train/checkpoint.js";
import { Trainer, namedParameters, LOG_FILE, PLOT_FILE, type TrainEvent } from "../../train/trainer.js";
import { epochSample, languageModelLoss, makePretrainLoaders, readPretrainTokens } from "../../train/pretrain.js";
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

interface PretrainArgs extends GlobalOptions {
  config?: string;
  data?: string[];
  out?: string;
  resume?: string;
  epochs?: number;
  "batch-size"?: number;
  lr?: number;
  "max-steps"?: number;
  "max-length"?: number;
  stride?: number;
  "eval-freq"?: number;
  "eval-iter"?: number;
  "checkpoint-every"?: number;
  "grad-accum"?: number;
  "grad-clip"?: number;
  "warmup-steps"?: number;
  "weight-decay"?: number;
}

/** Command-line flags that override train settings. */
function overridesFrom(a: PretrainArgs): Partial<TrainSettings> {
  return {
    epochs: a.epochs,
    batch_size: a["batch-size"],
    lr: a.lr,
    max_steps: a["max-steps"],
    max_length: a["max-length"],
    stride: a.stride,
    eval_freq: a["eval-freq"],
    eval_iter: a["eval-iter"],
    checkpoint_every: a["checkpoint-every"],
    grad_accum: a["grad-accum"],
    grad_clip: a["grad-clip"],
    warmup_steps: a["warmup-steps"],
    weight_decay: a["weight-decay"],
    seed: a.seed,
  };
}

/** --data files, or the config's `train.data` (a dataset name such as "the-verdict", or paths). */
async function dataFiles(a: PretrainArgs, s: TrainSettings): Promise<string[]> {
  if (a.data && a.data.length > 0) return a.data.map((f) => resolve(f));
  const d = s.data;
  if (d === null)
    throw new UsageError("no training data", 'pass --data FILE, or set train.data in the config (e.g. "the-verdict")');
  const list = Array.isArray(d) ? d : [d];
  const files: string[] = [];
  for (const item of list) {
    if (isDatasetName(item)) {
      const spin = spinner(`fetching dataset ${item}`);
      try {
        files.push(await fetchDataset(item, { onNote: (m) => verbose(a, m) }));
      } finally {
        spin.stop();
      }
    } else files.push(resolve(item));
  }
  return files;
}

function bookLine(epoch: number, step: number, train: number, val: number | null): string {
  // the book's "Ep 1 (Step 000000): Train loss 9.817, Val loss 9.924"
  const v = val === null ? "" : `, Val loss ${val.toFixed(3)}`;
  return `Ep ${epoch + 1} (Step ${String(step - 1).padStart(6, "0")}): Train loss ${train.toFixed(3)}${v}`;
}

export const pretrainCommand: CommandModule<GlobalOptions, PretrainArgs> = {
  command: "pretrain",
  describe: "pretrain a GPT from scratch on text",
  builder: (y) =>
    y
      .option("config", {
        alias: "c",
        type: "string",
        describe: "config file or bundled name (gpt2-tiny, gpt2-124m-ch05, …)",
      })
      .option("data", {
        alias: "d",
        type: "string",
        array: true,
        describe: "text or token files (default: the config's train.data)",
      })
      .option("out", { alias: "o", type: "string", describe: "run directory: model, checkpoints, log.jsonl, loss.svg" })
      .option("resume", { type: "string", describe: "continue the run saved in this directory" })
      .option("epochs", { type: "number", describe: "passes over the training data" })
      .option("batch-size", { type: "number", describe: "sequences per batch" })
      .option("lr", { type: "number", describe: "peak learning rate" })
      .option("max-steps", { type: "number", describe: "stop after this many updates" })
      .option("max-length", { type: "number", describe: "tokens per training window (default: the context length)" })
      .option("stride", { type: "number", describe: "tokens between window starts (default: max-length)" })
      .option("eval-freq", { type: "number", describe: "evaluate every N updates" })
      .option("eval-iter", { type: "number", describe: "batches per evaluation" })
      .option("checkpoint-every", { type: "number", describe: "checkpoint every N updates (0: only at the end)" })
      .option("grad-accum", { type: "number", describe: "micro-batches per update" })
      .option("grad-clip", { type: "number", describe: "clip gradients to this global norm" })
      .option("warmup-steps", { type: "number", describe: "linear warmup updates" })
      .option("weight-decay", { type: "number", describe: "AdamW weight decay" })
      .example(
        "$0 pretrain --config gpt2-tiny --out runs/tiny",
        "train the small model on the-verdict (minutes on 2 cores)",
      )
      .example("$0 pretrain --config gpt2-124m-ch05 --out runs/ch05", "the book's ch05 recipe (124M, 10 epochs)")
      .example(
        "$0 pretrain --config gpt2-tiny --data corpus.bin --epochs 1 --out runs/corpus",
        "train on a token file from `llmctl tokenize --out`",
      )
      .example("$0 pretrain --resume runs/ch05", "continue an interrupted run exactly where it stopped")
      .check((a) => {
        if (a.resume === undefined && a.config === undefined)
          throw new UsageError(
            "give --config (or --resume DIR)",
            "e.g. llmctl pretrain --config gpt2-tiny --out runs/tiny",
          );
        if (a.resume === undefined && a.out === undefined)
          throw new UsageError("give --out DIR for the run directory", "e.g. --out runs/tiny");
        if (a.resume !== undefined && a.out !== undefined && resolve(a.out) !== resolve(a.resume)) {
          throw new UsageError(
            "--resume continues in its own directory; --out must be omitted or the same",
            `drop --out or use --out ${a.resume}`,
          );
        }
        return true;
      }),
  handler: async (a) => {
    await selectBackend(a);
    const overrides = overridesFrom(a);
    let gpt: GPTModel;
    let settings: TrainSettings;
    let runDir: string;
    if (a.resume !== undefined) {
      runDir = a.resume;
      const state = await readTrainerState(runDir);
      settings = resolveTrainSettings(state.settings, overrides, `${runDir}/trainer-state.json`);
      if (a.data && a.data.length > 0) settings.data = a.data.map((f) => resolve(f));
      gpt = (await loadModelDir(runDir)).gpt;
      if (state.finished)
        note(
          `${runDir}: the run finished at step ${state.step}; it continues only as far as --epochs / --max-steps now allow`,
        );
    } else {
      runDir = a.out!;
      const cfg = loadConfigFile(a.config!);
      settings = resolveTrainSettings(cfg.train, overrides, a.config);
      gpt = buildGPT(cfg.model, { seed: settings.seed });
    }
    try {
      const files = await dataFiles(a, settings);
      // record what was trained on, so --resume reads the same data
      if (a.data && a.data.length > 0) settings.data = files;
      const data = makePretrainLoaders(
        readPretrainTokens(files, settings.train_ratio),
        settings,
        gpt.config.context_length,
      );
      verbose(
        a,
        `data: ${data.trainTokens} training tokens (${data.train.numBatches} batches), ${data.validationTokens} validation tokens (${data.validation.numBatches} batches)`,
      );

      const interrupt = interruptOnCtrlC(
        "\ninterrupted: saving a checkpoint at the end of this step (Ctrl-C again to quit without saving)",
      );
      const spin = spinner("starting");
      const render = (e: TrainEvent) => {
        if (e.kind === "step") {
          const p = e.progress;
          spin.text = stepLine(p, [`lr ${p.lr.toExponential(1)}`, `${p.tokensPerSecond.toFixed(0)} tok/s`]);
          // without a terminal the spinner is silent; --verbose then logs every step instead
          if (!process.stderr.isTTY) verbose(a, spin.text);
        } else if (e.kind === "eval") {
          const line = bookLine(e.record.epoch, e.record.step, e.record.train_loss, e.record.val_loss);
          if (spin.isSpinning) spin.clear();
          note(line);
        } else if (e.kind === "epoch" && typeof e.record.sample === "string") {
          if (spin.isSpinning) spin.clear();
          note(e.record.sample);
        } else if (e.kind === "checkpoint") {
          verbose(a, `checkpoint at step ${e.step} in ${e.dir}`);
        }
      };
      const trainer = new Trainer({
        params: namedParameters(gpt),
        loss: languageModelLoss(gpt),
        train: data.train,
        validation: data.validation,
        batchTokens: (b) => b.batchSize * b.seqLen,
        settings,
        runDir,
        saveModel: async (dir) => {
          await saveModelDir(dir, gpt, { source: "llmctl pretrain" });
        },
        afterEpoch: async () =>
          settings.sample_tokens > 0
            ? { sample: await epochSample(gpt, settings.sample_prompt, settings.sample_tokens) }
            : {},
        onEvent: render,
        signal: interrupt.signal,
        resume: a.resume !== undefined,
      });
      let result;
      try {
        result = await trainer.run();
      } finally {
        spin.stop();
        interrupt.release();
      }
      const summary = {
        out: runDir,
        steps: result.step,
        epochs: settings.epochs,
        tokens_seen: result.tokensSeen,
        train_loss: result.trainLoss,
        val_loss: result.valLoss,
        seconds: Math.round(result.seconds * 10) / 10,
        tokens_per_second: Math.round(result.tokensPerSecond * 10) / 10,
        log: `${runDir}/${LOG_FILE}`,
        plot: `${runDir}/${PLOT_FILE}`,
      };
      if (a.json) printJson(summary);
      else {
        printLine(
          `trained ${result.step} steps in ${formatDuration(result.seconds)} (${result.tokensPerSecond.toFixed(0)} tokens/s): ` +
            `train loss ${result.trainLoss?.toFixed(3)}, val loss ${result.valLoss?.toFixed(3) ?? "n/a"}`,
        );
        printLine(`model, checkpoint and log in ${runDir} (loss plot: ${runDir}/${PLOT_FILE})`);
        printLine(`try: llmctl generate --model ${runDir} --prompt "${settings.sample_prompt}"`);
      }
    } finally {
      gpt.dispose();
    }
  },
};
