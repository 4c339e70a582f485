/**
 * What the three training commands (pretrain, finetune spam, finetune instruct) share: the training flags, the
 * run directory from --out / --resume, and one renderer for a job's events. Light on imports, so building the
 * commands' options does not load TF.js.
 */
import type { Argv } from "yargs";
import { resolve } from "node:path";
import { UsageError } from "../errors.js";
import { DEFAULT_TRAIN_SETTINGS, type TrainSettings } from "../train/settings.js";
import type { JobEvent, JobResult } from "../train/run.js";
import type { EvalRecord, TrainProgress } from "../train/events.js";
import { selectBackend } from "./backend.js";
import { formatDuration, interruptOnSignals, note, spinner, verbose, type GlobalOptions } from "./output.js";

export interface TrainingArgs extends GlobalOptions {
  out?: string;
  resume?: string;
  force?: boolean;
  epochs?: number;
  "batch-size"?: number;
  lr?: number;
  "weight-decay"?: number;
  "max-steps"?: number;
  "eval-freq"?: number;
  "eval-iter"?: number;
  "checkpoint-every"?: number;
  "grad-accum"?: number;
  "grad-clip"?: number;
  "warmup-steps"?: number;
}

/** flag → train key, for the flags every training command takes */
const FLAGS = {
  epochs: ["epochs", "passes over the training data"],
  "batch-size": ["batch_size", "examples (windows) per batch"],
  lr: ["lr", "peak AdamW learning rate"],
  "weight-decay": ["weight_decay", "AdamW weight decay"],
  "max-steps": ["max_steps", "stop after this many optimizer steps"],
  "eval-freq": ["eval_freq", "evaluate the losses every N steps"],
  "eval-iter": ["eval_iter", "batches per evaluation"],
  "checkpoint-every": ["checkpoint_every", "save a resumable checkpoint every N steps (0: at the end and on Ctrl-C)"],
  "grad-accum": ["grad_accum", "micro-batches per optimizer step"],
  "grad-clip": ["grad_clip", "clip gradients to this global norm"],
  "warmup-steps": ["warmup_steps", "linear learning-rate warmup steps"],
} as const satisfies Record<string, readonly [keyof TrainSettings, string]>;

/**
 * Add the training flags, with `recipe`'s values (over the defaults) in their help, and --resume; check that
 * --out and --resume name one run directory. `needOut` is the message when neither is given.
 */
export function withTrainingFlags<T>(
  y: Argv<T>,
  recipe: Partial<TrainSettings> | null,
  needOut: string,
): Argv<T & TrainingArgs> {
  let out = y;
  for (const [flag, [key, describe]] of Object.entries(FLAGS)) {
    const value = recipe && (recipe[key] ?? DEFAULT_TRAIN_SETTINGS[key]);
    const shown = value === null || value === undefined ? "" : ` [default: ${value}]`;
    out = out.option(flag, {
      type: "number",
      describe: describe + shown,
      ...(flag === "batch-size" && { alias: "b" }),
    });
  }
  return out
    .option("resume", { type: "string", describe: "continue the run saved in this directory (or in --out)" })
    .option("force", {
      type: "boolean",
      describe:
        "start a new run in an --out that holds other files (a run there is not resumed; its files are replaced)",
    })
    .check((argv) => {
      const a = argv as unknown as TrainingArgs;
      if (a.resume === undefined && a.out === undefined) throw new UsageError(needOut);
      if (a.resume !== undefined && !a.resume && a.out === undefined)
        throw new UsageError("--resume needs the run directory", "pass --resume DIR (the earlier --out)");
      if (a.resume && a.out !== undefined && resolve(a.out) !== resolve(a.resume)) {
        throw new UsageError(
          "--resume continues in its own directory; --out must be omitted or the same",
          `drop --out or use --out ${a.resume}`,
        );
      }
      return true;
    }) as Argv<T & TrainingArgs>;
}

export interface LoraArgs {
  lora?: number;
  "lora-alpha"?: number;
}

/** --lora RANK and --lora-alpha ALPHA (appendix E), for both finetunes. */
export function withLoraFlags<T>(y: Argv<T>): Argv<T & LoraArgs> {
  return y
    .option("lora", {
      type: "number",
      describe: "train LoRA adapters of this rank beside every frozen projection and the head (appendix E)",
    })
    .option("lora-alpha", { type: "number", describe: "scale the adapters by alpha/rank [default: the rank]" })
    .check((argv) => {
      const a = argv as unknown as LoraArgs;
      if (a.lora !== undefined && !(Number.isInteger(a.lora) && a.lora > 0))
        throw new UsageError(`--lora must be a positive integer (the rank), got ${a.lora}`);
      if (a["lora-alpha"] !== undefined && !(a["lora-alpha"] > 0 && Number.isFinite(a["lora-alpha"])))
        throw new UsageError(`--lora-alpha must be a positive number, got ${a["lora-alpha"]}`);
      if (a["lora-alpha"] !== undefined && a.lora === undefined)
        throw new UsageError("--lora-alpha scales LoRA adapters", "give --lora RANK too");
      return true;
    }) as Argv<T & LoraArgs>;
}

/** The LoRA settings the flags ask for (alpha defaults to the rank: a scale of 1). */
export function loraSettings(a: LoraArgs): { rank: number; alpha: number } | undefined {
  return a.lora === undefined ? undefined : { rank: a.lora, alpha: a["lora-alpha"] ?? a.lora };
}

/** The train settings the flags (and --seed) ask for. */
function trainOverrides(a: TrainingArgs): Partial<TrainSettings> {
  const out: Partial<Record<keyof TrainSettings, unknown>> = { seed: a.seed };
  for (const [flag, [key]] of Object.entries(FLAGS)) out[key] = a[flag as keyof typeof FLAGS];
  return out as Partial<TrainSettings>;
}

/** The run directory and whether the run is resumed: `--resume DIR`, `--out DIR --resume`, or `--out DIR`. */
function runDirectory(a: TrainingArgs): { outDir: string; resume: boolean; force: boolean } {
  return { outDir: resolve(a.resume || a.out!), resume: a.resume !== undefined, force: a.force === true };
}

/** The book's progress line: "Ep 1 (Step 000000): Train loss 9.817, Val loss 9.924". */
function bookEvalLine(e: EvalRecord): string {
  const val = e.val_loss === null ? "" : `, Val loss ${e.val_loss.toFixed(3)}`;
  return `Ep ${e.epoch + 1} (Step ${String(e.step - 1).padStart(6, "0")}): Train loss ${e.train_loss.toFixed(3)}${val}`;
}

const pct = (x: number) => `${(100 * x).toFixed(2)}%`;

/** A training step for the spinner, as llm.c prints one: where, loss, (accuracy), lr, ms and tok/s, ETA. */
function stepLine(p: TrainProgress): string {
  return [
    `step ${p.step}/${p.totalSteps}`,
    `epoch ${p.epoch + 1}/${p.epochs}`,
    `loss ${p.loss.toFixed(3)}`,
    ...(p.accuracy === undefined ? [] : [`acc ${pct(p.accuracy)}`]),
    `lr ${p.lr.toExponential(1)}`,
    `${p.msPerStep.toFixed(0)} ms`,
    `${p.tokensPerSecond.toFixed(0)} tok/s`,
    `ETA ${formatDuration(p.etaSeconds)}`,
  ].join(" · ");
}

const count = (n: number) => n.toLocaleString("en-US");

/** A run longer than this on wasm is told, once, what the tensorflow backend would make of it. */
const SLOW_RUN_SECONDS = 600;
/**
 * Training on wasm against tensorflow on the same CPU, from `llmctl bench` runs beside each other
 * (docs/performance.md): gpt2-tiny 4.6× (0.83 / 0.18 of PyTorch), GPT-2 124M 7.4× (0.52 / 0.07).
 */
const TENSORFLOW_TRAINING_SPEEDUP = [4.6, 7.4] as const;

/**
 * On wasm, where the tensorflow backend could run instead: the note that says how long this run will take and
 * about how long it would there, with how to get it. Undefined elsewhere.
 */
async function slowBackendNote(): Promise<((etaSeconds: number) => string) | undefined> {
  const { activeBackendName, tensorflowInstalled } = await import("../backend/index.js");
  if (activeBackendName() !== "wasm" || process.platform !== "linux" || process.arch !== "x64") return undefined;
  const how = tensorflowInstalled()
    ? "run it with --backend tensorflow"
    : "`llmctl setup tensorflow` (about a minute), then run it with --backend tensorflow";
  return (eta) =>
    `note: on the wasm backend this run takes about ${formatDuration(eta)}; the tensorflow backend trains ` +
    `${TENSORFLOW_TRAINING_SPEEDUP[0]}–${TENSORFLOW_TRAINING_SPEEDUP[1]}× faster on the same CPU (about ` +
    `${formatDuration(eta / TENSORFLOW_TRAINING_SPEEDUP[1])}–${formatDuration(eta / TENSORFLOW_TRAINING_SPEEDUP[0])}): ${how}`;
}

/** What every job takes from the command line: the run directory, the train flags, the signal and the events. */
export interface JobFlags {
  outDir: string;
  resume: boolean;
  force: boolean;
  train: Partial<TrainSettings>;
  signal: AbortSignal;
  onEvent: (e: JobEvent) => void;
}

/**
 * Run a training job on the backend the flags pick, with a spinner that renders its events and Ctrl-C that stops
 * it at the next step boundary with a checkpoint. `start` gets what to pass to the job (JobFlags).
 */
export async function runTrainingJob<R>(
  a: GlobalOptions & TrainingArgs,
  start: (job: JobFlags) => Promise<R>,
): Promise<R> {
  await selectBackend(a);
  const interrupt = interruptOnSignals(
    (sig) =>
      `\ninterrupted${sig === "Ctrl-C" ? "" : ` by ${sig}`}: saving a checkpoint at the end of this step ` +
      `(${sig} again to quit without saving)`,
  );
  const spin = spinner("starting");
  const line = (text: string) => {
    if (spin.isSpinning) spin.clear();
    note(text);
  };
  const slow = await slowBackendNote();
  let slowNoted = false;
  // the closing work (scoring, answering) can take longer than the training: its progress and ETA go to the
  // spinner on a terminal, and as a line every 10 s (and at the end) on stderr otherwise, --json included
  let lastLine = 0;
  const closingProgress = (e: Extract<JobEvent, { kind: "progress" }>) => {
    const eta = e.done > 0 ? formatDuration((e.seconds / e.done) * (e.total - e.done)) : "?";
    const text = `${e.what}: ${e.done}/${e.total}${e.done < e.total ? `, ETA ${eta}` : ` in ${formatDuration(e.seconds)}`}`;
    spin.text = text;
    if (process.stderr.isTTY && !a.json) return;
    const now = performance.now();
    if (e.done === e.total || now - lastLine >= 10_000) {
      lastLine = now;
      if (spin.isSpinning) spin.clear();
      note(text);
    }
  };
  const onEvent = (e: JobEvent) => {
    if (e.kind === "status") spin.text = e.text;
    else if (e.kind === "progress") closingProgress(e);
    else if (e.kind === "notice") {
      if (!e.detail) line(e.text);
      else verbose(a, e.text);
    } else if (e.kind === "data") {
      const test = e.test === null ? "" : `, test ${count(e.test)}`;
      line(
        `data: ${e.source} — train ${count(e.train)}, validation ${count(e.validation)}${test} ${e.unit} ` +
          `(${e.trainBatches} training and ${e.validationBatches} validation batches)`,
      );
    } else if (e.kind === "model") {
      const what = e.resumed ? "resuming" : "training";
      line(`${what} ${count(e.trainableParameters)} of ${count(e.totalParameters)} parameters (${e.source})`);
    } else if (e.kind === "step") {
      // from the third step: the first ones include warm-up (kernel set-up, allocation)
      if (slow && !slowNoted && e.progress.step >= 3 && e.progress.etaSeconds > SLOW_RUN_SECONDS) {
        slowNoted = true;
        line(slow(e.progress.etaSeconds));
      }
      spin.text = stepLine(e.progress);
      // without a terminal the spinner is silent; --verbose then logs every step instead
      if (!process.stderr.isTTY) verbose(a, spin.text);
    } else if (e.kind === "eval") line(bookEvalLine(e.record));
    else if (e.kind === "epoch") {
      const r = e.record;
      if (typeof r.sample === "string") line(r.sample);
      if (typeof r.train_accuracy === "number" && typeof r.val_accuracy === "number")
        line(`Training accuracy: ${pct(r.train_accuracy)} | Validation accuracy: ${pct(r.val_accuracy)}`);
    } else if (e.kind === "checkpoint") verbose(a, `checkpoint at step ${e.step} in ${e.dir}`);
  };
  try {
    return await start({ ...runDirectory(a), train: trainOverrides(a), signal: interrupt.signal, onEvent });
  } finally {
    spin.stop();
    interrupt.release();
  }
}

/** The keys every training command's --json summary has. */
export function trainSummary(r: JobResult): Record<string, unknown> {
  const t = r.train;
  return {
    out: r.outDir,
    trainable_parameters: r.trainableParameters,
    steps: t.step,
    train_loss: t.trainLoss,
    val_loss: t.valLoss,
    seconds: Math.round(t.seconds * 10) / 10,
    tokens_per_second: Math.round(t.tokensPerSecond * 10) / 10,
  };
}

/** "trained 90 steps in 51s (1234 tokens/s): train loss 4.130, val loss 6.030" */
export function trainedLine(r: JobResult): string {
  const t = r.train;
  return (
    `trained ${t.step} steps in ${formatDuration(t.seconds)} (${t.tokensPerSecond.toFixed(0)} tokens/s): ` +
    `train loss ${t.trainLoss?.toFixed(3) ?? "n/a"}, val loss ${t.valLoss?.toFixed(3) ?? "n/a"}`
  );
}
