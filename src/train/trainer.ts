/**
 * The training loop, shared by `pretrain`, `finetune spam` and `finetune instruct`: the book's
 * `train_model_simple` / `train_classifier_simple` with AdamW, an lr schedule, gradient accumulation and
 * clipping, periodic evaluation (`evaluate_model` over `eval_iter` batches), a JSONL log, an SVG loss plot,
 * TensorBoard event files and exact resume from atomic checkpoints.
 *
 * What a caller provides (see TrainerOptions): the parameters to train under stable names, a loss function
 * for one batch, the train (and validation) batch sources, how to save the model into a directory, and
 * optionally what to do after each epoch (a greedy sample, an accuracy). The trainer owns the rest.
 *
 * Exactness on resume: the data order, the data RNG, the optimizer moments and the step counter are saved;
 * the dropout masks of each micro-batch are seeded by (seed, step, micro-batch), so they do not depend on what
 * ran before.
 */
import { trainStep } from "./step.js";
import type { EpochRecord, EvalRecord, TrainEvent, TrainProgress } from "./events.js";
import * as tf from "@tensorflow/tfjs";
import { existsSync } from "node:fs";
import { appendFile, readFile, writeFile } from "node:fs/promises";
import { join } from "node:path";
import { AdamW, type NamedVariable } from "./adamw.js";
import { learningRate, makeSchedule, type LrSchedule } from "./schedule.js";
import type { TrainSettings } from "./settings.js";
import {
  LOG_FILE,
  OPTIMIZER_FILE,
  PLOT_FILE,
  TRAINER_STATE_FILE,
  readTrainerState,
  lockRunDir,
  refuseExistingRun,
  writeCheckpoint,
  type CommitHook,
  type TrainerState,
} from "./checkpoint.js";
import { Rng } from "../data/rng.js";
import type { ForwardMode } from "../model/gpt.js";
import { readAllSafetensors, writeSafetensors } from "../formats/safetensors.js";
import { makeDirectory, writeFileAtomic } from "../fs-atomic.js";
import { FileFormatError, FileSystemError, InterruptedError, TrainingError, UsageError } from "../errors.js";
import { linePlotSvg } from "../plot/svg.js";
import { TensorBoardLog } from "./tensorboard.js";

/** Anything that yields numbered batches in an epoch order; `DataLoader` is one. */
export interface BatchSource<B> {
  readonly numBatches: number;
  /** the order of one epoch (of examples, for a DataLoader); a shuffling source draws it from `rng` */
  epochOrder(rng?: Rng): Int32Array;
  batch(order: Int32Array, index: number): B;
}

/**
 * What the loop reads from the run's settings: the optimizer and its schedule, the length of the run, and how
 * often it evaluates and checkpoints. The data's shape (batch size, window length, …) is the batch sources'.
 */
export type LoopSettings = Pick<
  TrainSettings,
  | "lr"
  | "weight_decay"
  | "beta1"
  | "beta2"
  | "eps"
  | "grad_clip"
  | "grad_accum"
  | "lr_schedule"
  | "warmup_steps"
  | "initial_lr"
  | "min_lr"
  | "epochs"
  | "max_steps"
  | "seed"
  | "eval_freq"
  | "eval_iter"
  | "checkpoint_every"
>;

export interface TrainerOptions<B> {
  /** the parameters to train (frozen ones left out), under names that are stable across processes */
  params: NamedVariable[];
  /**
   * mean loss of one batch, for the model's forward pass in `mode`: dropout on while training, its masks
   * seeded by `mode.seed`. Called inside a gradient tape and tf.tidy.
   */
  loss: (batch: B, mode: ForwardMode) => tf.Scalar;
  train: BatchSource<B>;
  validation?: BatchSource<B>;
  /** tokens in a batch (for tokens seen and tokens/s) */
  batchTokens: (batch: B) => number;
  settings: LoopSettings;
  /** the run's whole recipe, saved in each checkpoint's trainer-state.json for resolveRunSettings on --resume */
  runSettings: Readonly<TrainSettings>;
  /** the LoRA adapters trained, if any: a huge alpha/rank, not the learning rate, is then what diverges */
  lora?: { rank: number; alpha: number } | null;
  /** the run directory: checkpoints, log.jsonl, loss.svg, tensorboard/ */
  runDir: string;
  /** write the model directory files (config.json, model.safetensors) into `dir` */
  saveModel: (dir: string) => Promise<void>;
  /** after each epoch, e.g. a greedy sample; the returned fields are logged and reported */
  afterEpoch?: (epoch: number) => Promise<Record<string, unknown> | void> | Record<string, unknown> | void;
  onEvent?: (event: TrainEvent) => void;
  /**
   * Awaited after each optimizer update, before its step event: where a job reads back what its loss kept on
   * the device for that event (webgpu has no synchronous read-back).
   */
  afterUpdate?: () => Promise<void>;
  /** abort → save a resumable checkpoint at the next step boundary and throw InterruptedError */
  signal?: AbortSignal;
  /** continue the run saved in `runDir` (the model passed in must already hold its weights) */
  resume?: boolean;
  /** test hook: called before each file of a checkpoint is moved into place */
  beforeCommitRename?: CommitHook;
}

export interface TrainResult {
  step: number;
  epoch: number;
  tokensSeen: number;
  evals: EvalRecord[];
  /** the last evaluation's losses */
  trainLoss: number | null;
  valLoss: number | null;
  /** wall time of this process's part of the run, and its throughput */
  seconds: number;
  tokensPerSecond: number;
}

/** Seed of a micro-batch's dropout masks: a fixed function of (seed, step, micro-batch), so resuming reproduces it. */
function mixSeed(seed: number, step: number, part: number): number {
  let h = (seed ^ 0x9e3779b9) >>> 0;
  for (const v of [step, part]) {
    h = Math.imul(h ^ v, 0x85ebca6b) >>> 0;
    h = (h ^ (h >>> 13)) >>> 0;
    h = Math.imul(h, 0xc2b2ae35) >>> 0;
    h = (h ^ (h >>> 16)) >>> 0;
  }
  return h;
}

/** The book's `calc_loss_loader`: mean loss over the first min(maxBatches, numBatches) batches of `order`. */
export async function meanLoss<B>(
  source: BatchSource<B>,
  loss: (batch: B, mode: ForwardMode) => tf.Scalar,
  maxBatches: number,
  order = source.epochOrder(),
): Promise<number> {
  const n = Math.min(maxBatches, source.numBatches);
  if (n === 0) return NaN;
  let sum = 0;
  for (let i = 0; i < n; i++) {
    const batch = source.batch(order, i);
    const value = tf.tidy(() => loss(batch, { training: false }));
    sum += (await value.data())[0];
    value.dispose();
  }
  return sum / n;
}

/** The model's trainable variables (LoRA adapters included) under their stable names. */
export function namedParameters(model: {
  namedWeights(): Map<string, { name: string; trainable: boolean }>;
  adapterWeights(): Map<string, { name: string; trainable: boolean }>;
  trainableVariables(): tf.Variable[];
}): NamedVariable[] {
  const byVarName = new Map(model.trainableVariables().map((v) => [v.name, v]));
  const out: NamedVariable[] = [];
  const seen = new Set<string>();
  for (const [name, lv] of [...model.namedWeights(), ...model.adapterWeights()]) {
    const variable = byVarName.get(lv.name);
    if (!variable || !lv.trainable || seen.has(variable.name)) continue;
    seen.add(variable.name);
    out.push({ name, variable });
  }
  return out;
}

/**
 * An update is synchronous, so a Ctrl-C (SIGINT) that comes during one is only heard once the event loop polls
 * for I/O: two immediates in a row always pass its poll phase (one alone does not after an I/O callback), so
 * the signal lands before the next update. It costs microseconds.
 */
/** A write failed for want of space (ENOSPC, EDQUOT), as fileSystemError reports it. */
function outOfSpace(err: unknown): boolean {
  const code = err instanceof FileSystemError ? (err.cause as NodeJS.ErrnoException | undefined)?.code : undefined;
  return code === "ENOSPC" || code === "EDQUOT";
}

function passThroughEventLoop(): Promise<void> {
  return new Promise((resolve) => setImmediate(() => setImmediate(resolve)));
}

/** This process's part of a run: when it started, at which step and token count. */
interface Segment {
  started: number;
  step: number;
  tokens: number;
}

export class Trainer<B> {
  private readonly opts: TrainerOptions<B>;
  private readonly s: LoopSettings;
  private readonly optimizer: AdamW;
  private readonly schedule: LrSchedule;
  private readonly stepsPerEpoch: number;
  readonly totalSteps: number;

  // the resumable state, always as of the last completed optimizer step
  private step = 0;
  private epoch = 0;
  private batchIndex = 0;
  private order: Int32Array | null = null;
  private rng: Rng;
  private tokensSeen = 0;
  private elapsedBefore = 0;
  private evals: EvalRecord[] = [];
  /** the step of the checkpoint in runDir (null: none yet); the one a diverged run can go back to */
  private savedStep: number | null = null;
  private board: TensorBoardLog | null = null;

  constructor(opts: TrainerOptions<B>) {
    this.opts = opts;
    this.s = opts.settings;
    if (opts.train.numBatches === 0) {
      throw new TrainingError(
        "there are no training batches",
        "give more text, or lower max_length / batch_size (a batch needs batch_size windows of max_length + 1 tokens)",
      );
    }
    if (opts.params.length === 0)
      throw new TrainingError("there are no trainable parameters", "unfreeze at least one layer");
    this.stepsPerEpoch = Math.ceil(opts.train.numBatches / this.s.grad_accum);
    this.totalSteps = Math.min(this.s.epochs * this.stepsPerEpoch, this.s.max_steps ?? Infinity);
    // the schedule spans all epochs (the book's len(train_loader) · n_epochs); max_steps only stops early,
    // so a run stopped by max_steps and resumed without it follows the same rates as one straight run
    this.schedule = makeSchedule({
      peakLr: this.s.lr,
      warmupSteps: this.s.warmup_steps,
      totalSteps: this.s.epochs * this.stepsPerEpoch,
      decay: this.s.lr_schedule,
      initialLr: this.s.initial_lr ?? undefined,
      minLr: this.s.min_lr ?? undefined,
    });
    this.optimizer = new AdamW(opts.params, {
      beta1: this.s.beta1,
      beta2: this.s.beta2,
      epsilon: this.s.eps,
      weightDecay: this.s.weight_decay,
    });
    this.rng = new Rng(this.s.seed);
  }

  /** Train until all epochs (or max_steps) are done. Frees the optimizer state when it returns or throws. */
  async run(): Promise<TrainResult> {
    const unlock = await lockRunDir(this.opts.runDir);
    try {
      if (this.opts.resume) await this.restore();
      else await this.start();
      this.board = new TensorBoardLog(this.opts.runDir, this.step, !this.opts.resume);
      return await this.loop();
    } finally {
      this.board?.close();
      this.optimizer.dispose();
      await unlock();
    }
  }

  private async loop(): Promise<TrainResult> {
    const { train, signal } = this.opts;
    const segment: Segment = { started: performance.now(), step: this.step, tokens: this.tokensSeen };
    let lastEvalStep = this.evals.length ? this.evals[this.evals.length - 1].step : -1;
    const seconds = () => (performance.now() - segment.started) / 1000;

    while (this.step < this.totalSteps) {
      if (this.order === null) this.order = train.epochOrder(this.rng);
      const group = Math.min(this.s.grad_accum, train.numBatches - this.batchIndex);
      const lr = learningRate(this.step, this.schedule);
      const updateStarted = performance.now();
      const loss = await this.update(group, lr);
      const ms = performance.now() - updateStarted;
      await this.opts.afterUpdate?.();
      this.step += 1;
      this.batchIndex += group;
      this.emit({ kind: "step", progress: this.progress(loss, lr, ms, segment) });
      await passThroughEventLoop();

      // the book evaluates when global_step % eval_freq == 0 with global_step starting at 0 for the first update
      if ((this.step - 1) % this.s.eval_freq === 0) {
        await this.evaluate(lr, this.elapsedBefore + seconds());
        lastEvalStep = this.step;
      }
      if (this.batchIndex >= train.numBatches) {
        await this.endEpoch();
      }
      if (this.step < this.totalSteps && this.s.checkpoint_every > 0 && this.step % this.s.checkpoint_every === 0) {
        await this.checkpoint(this.elapsedBefore + seconds(), false);
      }
      if (signal?.aborted && this.step < this.totalSteps) {
        await this.checkpoint(this.elapsedBefore + seconds(), false);
        throw new InterruptedError(
          `training interrupted at step ${this.step} of ${this.totalSteps}; checkpoint saved in ${this.opts.runDir}`,
          `continue with --resume ${this.opts.runDir}`,
        );
      }
    }
    if (lastEvalStep !== this.step && this.step > 0) {
      // after the last epoch ended, the update evaluated here belongs to that epoch, not the next
      const epoch = this.batchIndex === 0 && this.epoch > 0 ? this.epoch - 1 : this.epoch;
      await this.evaluate(
        learningRate(Math.max(0, this.step - 1), this.schedule),
        this.elapsedBefore + seconds(),
        epoch,
      );
    }
    await this.checkpoint(this.elapsedBefore + seconds(), true);
    const last = this.evals[this.evals.length - 1];
    const segSeconds = seconds();
    return {
      step: this.step,
      epoch: this.epoch,
      tokensSeen: this.tokensSeen,
      evals: this.evals,
      trainLoss: last?.train_loss ?? null,
      valLoss: last?.val_loss ?? null,
      seconds: segSeconds,
      tokensPerSecond: (this.tokensSeen - segment.tokens) / Math.max(segSeconds, 1e-9),
    };
  }

  /** The per-step record: where the run is, this update's loss and time, throughput and ETA of this segment. */
  private progress(loss: number, lr: number, ms: number, segment: Segment): TrainProgress {
    const seconds = (performance.now() - segment.started) / 1000;
    return {
      step: this.step,
      totalSteps: this.totalSteps,
      epoch: this.epoch,
      epochs: this.s.epochs,
      batch: this.batchIndex,
      batchesPerEpoch: this.opts.train.numBatches,
      loss,
      lr,
      tokensSeen: this.tokensSeen,
      msPerStep: ms,
      tokensPerSecond: (this.tokensSeen - segment.tokens) / Math.max(seconds, 1e-9),
      etaSeconds: ((this.totalSteps - this.step) * seconds) / (this.step - segment.step),
    };
  }

  /** One optimizer update over `group` micro-batches; returns their mean loss. */
  private update(group: number, lr: number): Promise<number> {
    const { train, loss, batchTokens } = this.opts;
    return trainStep(this.optimizer, this.opts.params, {
      microBatches: group,
      loss: (k) => {
        const batch = train.batch(this.order!, this.batchIndex + k);
        this.tokensSeen += batchTokens(batch);
        const mode = { training: true, seed: mixSeed(this.s.seed, this.step, k) };
        return () => loss(batch, mode);
      },
      lr,
      gradClip: this.s.grad_clip,
      onLoss: (v) => {
        if (!Number.isFinite(v)) throw this.diverged(`the loss became ${v} at step ${this.step + 1}`, lr);
      },
    });
  }

  private async evaluate(lr: number, elapsed: number, epoch = this.epoch): Promise<void> {
    const { train, validation, loss } = this.opts;
    // a fresh random subset of training batches each time (the book re-iterates its shuffled loader),
    // drawn from a generator seeded by the step so resuming does not change it
    const trainOrder = train.epochOrder(new Rng(mixSeed(this.s.seed, this.step, 0xe7a1)));
    const record: EvalRecord = {
      type: "eval",
      step: this.step,
      epoch,
      tokens_seen: this.tokensSeen,
      train_loss: await meanLoss(train, loss, this.s.eval_iter, trainOrder),
      val_loss: validation && validation.numBatches > 0 ? await meanLoss(validation, loss, this.s.eval_iter) : null,
      lr,
      elapsed_seconds: Math.round(elapsed * 1000) / 1000,
    };
    this.evals.push(record);
    await appendFile(join(this.opts.runDir, LOG_FILE), JSON.stringify(record) + "\n");
    this.emit({ kind: "eval", record });
  }

  private async endEpoch(): Promise<void> {
    const extra = (await this.opts.afterEpoch?.(this.epoch)) ?? {};
    const record: EpochRecord = {
      type: "epoch",
      epoch: this.epoch,
      step: this.step,
      tokens_seen: this.tokensSeen,
      ...extra,
    };
    await appendFile(join(this.opts.runDir, LOG_FILE), JSON.stringify(record) + "\n");
    this.emit({ kind: "epoch", record });
    this.epoch += 1;
    this.batchIndex = 0;
    this.order = null;
  }

  /**
   * The error for a run whose numbers left the finite range: what happened, and what is left of the run. The
   * checkpoint in runDir predates the divergence (checkpoint() refuses to write a non-finite one), but resuming
   * it replays the same updates, so the way on is a new run with a lower rate, or that checkpoint as a model.
   */
  private diverged(what: string, lr: number): TrainingError {
    const lora = this.opts.lora;
    // a learning rate past 1 is no recipe's: suggest the book's order of magnitude, not a tenth of it
    const saner = this.s.lr > 1 ? 4e-4 : this.s.lr / 10;
    const remedy =
      lora && lora.alpha / lora.rank > 64
        ? `lower --lora-alpha (${lora.alpha} scales the adapters by alpha/rank = ${(lora.alpha / lora.rank).toPrecision(3)}; the default is the rank)`
        : `lower the learning rate (e.g. --lr ${saner.toPrecision(2)}) or set train.grad_clip to 1.0`;
    const dir = this.opts.runDir;
    return new TrainingError(
      `${what} (lr ${lr.toPrecision(3)})`,
      this.savedStep === null
        ? `no checkpoint was saved (${dir} holds only this run's log); start again with --force and ${remedy}`
        : `${dir} keeps the checkpoint of step ${this.savedStep}, the last finite one (-m ${dir} loads it); to train on, start a new run and ${remedy}`,
    );
  }

  private async checkpoint(elapsed: number, final: boolean): Promise<void> {
    const opt = this.optimizer;
    const moments = await opt.stateArrays();
    let bad = 0;
    let total = 0;
    for (const { variable } of this.opts.params) {
      bad += countNonFinite((await variable.data()) as Float32Array);
      total += variable.size;
    }
    for (const { data } of moments.values()) {
      bad += countNonFinite(data);
      total += data.length;
    }
    if (bad > 0) {
      const lr = learningRate(Math.max(0, this.step - 1), this.schedule);
      throw this.diverged(
        `after step ${this.step}, ${bad} of ${total} weights and optimizer moments are not finite`,
        lr,
      );
    }
    const state: TrainerState = {
      format: "llmctl-trainer-state",
      version: 1,
      step: this.step,
      epoch: this.epoch,
      batch_index: this.batchIndex,
      order: this.order ? Array.from(this.order) : null,
      rng: this.rng.state,
      tokens_seen: this.tokensSeen,
      elapsed_seconds: Math.round(elapsed * 1000) / 1000,
      finished: final,
      settings: { ...this.opts.runSettings },
    };
    try {
      await writeCheckpoint(
        this.opts.runDir,
        async (stage) => {
          await this.opts.saveModel(stage);
          const entries = [...moments].map(([name, { shape, data }]) => ({ name, shape, data }));
          await writeSafetensors(join(stage, OPTIMIZER_FILE), entries, {
            format: "llmctl-adamw",
            step: String(opt.step),
          });
          await writeFileAtomic(join(stage, TRAINER_STATE_FILE), JSON.stringify(state, null, 1) + "\n");
        },
        this.opts.beforeCommitRename,
      );
    } catch (err) {
      if (final && outOfSpace(err)) throw await this.saveModelAlone(err as FileSystemError);
      throw err;
    }
    this.savedStep = this.step;
    await writeFileAtomic(join(this.opts.runDir, PLOT_FILE), lossPlot(this.evals));
    this.emit({ kind: "checkpoint", step: this.step, dir: this.opts.runDir, final });
  }

  /**
   * The final checkpoint did not fit (its optimizer state is twice the model): save the trained model alone, which
   * may, where nothing else is lost. Without an earlier checkpoint it goes into the run directory; with one, that
   * checkpoint stays as it is, resumable, and the model goes into model-step-N beside it.
   */
  private async saveModelAlone(full: FileSystemError): Promise<FileSystemError> {
    const runDir = this.opts.runDir;
    const kept = this.savedStep;
    const dir = kept === null ? runDir : join(runDir, `model-step-${this.step}`);
    const restart =
      kept === null
        ? `free space and start again with --force`
        : `${runDir} keeps the resumable checkpoint of step ${kept} (--resume ${runDir} once there is space)`;
    try {
      await this.opts.saveModel(dir);
    } catch (err) {
      if (!outOfSpace(err)) throw err;
      return new FileSystemError(`${full.message}; the trained model alone does not fit either`, restart);
    }
    return new FileSystemError(
      `${full.message}: the final checkpoint (model and optimizer state) did not fit, the trained model of step ` +
        `${this.step} alone did and is in ${dir} (-m ${dir} uses it; it cannot be resumed)`,
      kept === null ? `to train further, ${restart}` : restart,
    );
  }

  private async start(): Promise<void> {
    const dir = this.opts.runDir;
    refuseExistingRun(dir);
    await makeDirectory(dir);
    await writeFile(join(dir, LOG_FILE), "");
  }

  private async restore(): Promise<void> {
    const dir = this.opts.runDir;
    const st = await readTrainerState(dir);
    const optFile = join(dir, OPTIMIZER_FILE);
    if (!existsSync(optFile))
      throw new TrainingError(`${dir} has no ${OPTIMIZER_FILE}`, "the checkpoint is incomplete; start a new run");
    this.checkDataShape(st, join(dir, TRAINER_STATE_FILE));
    const { tensors } = await readAllSafetensors(optFile);
    this.optimizer.loadState(st.step, (key) => tensors.get(key)?.data);
    this.step = st.step;
    this.savedStep = st.step;
    this.epoch = st.epoch;
    this.batchIndex = st.batch_index;
    this.order = st.order ? Int32Array.from(st.order) : null;
    this.rng = new Rng(st.rng);
    this.tokensSeen = st.tokens_seen;
    this.elapsedBefore = st.elapsed_seconds;
    // keep the log up to the checkpoint: entries written after it (before a crash) will be written again
    const logPath = join(dir, LOG_FILE);
    const lines = existsSync(logPath) ? (await readFile(logPath, "utf8")).split("\n").filter(Boolean) : [];
    const kept: string[] = [];
    for (const line of lines) {
      let rec: EvalRecord | EpochRecord;
      try {
        rec = JSON.parse(line);
      } catch {
        continue; // a line torn by a crash
      }
      if (rec.step > st.step || (rec.type === "epoch" && rec.epoch >= st.epoch)) continue;
      kept.push(line);
      if (rec.type === "eval") this.evals.push(rec);
    }
    await writeFileAtomic(logPath, kept.map((l) => l + "\n").join(""));
  }

  /**
   * A checkpoint continues only on the data it was saved with: its epoch order must be a permutation of what
   * this source orders, and its position must be where this source's epochs put it. Otherwise the run would
   * replay indices past the data's end, or train on other examples than it claims.
   */
  private checkDataShape(st: TrainerState, path: string): void {
    const { train } = this.opts;
    const n = train.epochOrder(new Rng(0)).length;
    const fix = "resume with the data and settings the run was started with, or start a new run";
    if (st.order !== null) {
      if (!Array.isArray(st.order) || st.order.length !== n)
        throw new UsageError(
          `${path}: the saved data order covers ${Array.isArray(st.order) ? st.order.length : "no"} examples, the data now has ${n}`,
          fix,
        );
      const seen = new Uint8Array(n);
      for (const i of st.order) {
        if (!Number.isInteger(i) || i < 0 || i >= n || seen[i])
          throw new FileFormatError(
            `${path}: the saved data order is not a permutation of 0…${n - 1} (holds ${JSON.stringify(i)})`,
            "the checkpoint is damaged; start a new run",
          );
        seen[i] = 1;
      }
    }
    const expected = st.epoch * this.stepsPerEpoch + Math.ceil(st.batch_index / this.s.grad_accum);
    if (st.batch_index > train.numBatches || st.step !== expected)
      throw new UsageError(
        `${path}: step ${st.step} at batch ${st.batch_index} of epoch ${st.epoch + 1} does not fit ${train.numBatches} batches per epoch (grad_accum ${this.s.grad_accum})`,
        fix,
      );
  }

  private emit(event: TrainEvent): void {
    this.board?.record(event);
    this.opts.onEvent?.(event);
  }
}

function countNonFinite(data: Float32Array): number {
  let n = 0;
  for (let i = 0; i < data.length; i++) if (!Number.isFinite(data[i])) n++;
  return n;
}

/** The book's plot_losses: train and validation loss against tokens seen. */
export function lossPlot(evals: EvalRecord[]): string {
  return linePlotSvg({
    title: "Loss",
    xLabel: "tokens seen",
    yLabel: "loss",
    series: [
      { label: "training loss", color: "#1f77b4", points: evals.map((e) => [e.tokens_seen, e.train_loss]) },
      {
        label: "validation loss",
        color: "#ff7f0e",
        dashed: true,
        points: evals.filter((e) => e.val_loss !== null).map((e) => [e.tokens_seen, e.val_loss as number]),
      },
    ],
  });
}
