/**
 * The training loop, shared by `pretrain`, `finetune spam` and `finetune instruct`: the book's
 * `train_model_simple` / `train_classifier_simple` with an lr schedule, one trainStep per update (step.ts:
 * accumulation, clipping, AdamW), periodic evaluation (`evaluate_model` over `eval_iter` batches) and exact
 * resume. The run directory (checkpoints, log.jsonl, loss.svg) is run-dir.ts's, its lock the job's (run.ts); the loop reports
 * through events (events.ts), which the CLI renders and TensorBoard records (tensorboard.ts).
 *
 * What a caller provides (see TrainerOptions): the parameters to train under stable names, a loss function
 * for one batch, the train (and validation) batch sources, how to save the model into a directory, and
 * optionally what to do after each epoch (a greedy sample, an accuracy). The trainer owns the rest.
 *
 * Exactness on resume: the data order, the data RNG, the optimizer moments and the step counter are saved;
 * the dropout masks of each micro-batch are seeded by (seed, step, micro-batch), so they do not depend on what
 * ran before.
 */
import { mixSeed, trainStep } from "./step.js";
import { meanLoss, type BatchSource } from "./loss.js";
import type { EpochRecord, EvalRecord, TrainEvent, TrainProgress, TrainResult } from "./events.js";
import * as tf from "@tensorflow/tfjs";
import { join } from "node:path";
import { AdamW, type NamedVariable } from "./adamw.js";
import { learningRate, scheduleOf, type LrSchedule } from "./schedule.js";
import type { LoopSettings, TrainSettings } from "./settings.js";
import {
  PLOT_FILE,
  TRAINER_STATE_FILE,
  appendRunLog,
  checkDataPosition,
  countNonFinite,
  divergedError,
  lossPlot,
  newPosition,
  positionOf,
  readOptimizerState,
  readTrainerState,
  restoreRunLog,
  saveCheckpoint,
  startRunLog,
  trainerState,
  type CommitHook,
  type JobRecord,
  type RunPosition,
} from "./run-dir.js";
import { Rng } from "../data/rng.js";
import type { ForwardMode } from "../model/gpt.js";
import { writeFileAtomic } from "../fs-atomic.js";
import { InterruptedError, TrainingError } from "../errors.js";

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
  /** the job's own choices, saved beside runSettings (run.ts) */
  job?: JobRecord;
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

/**
 * An update is synchronous, so a Ctrl-C (SIGINT) that comes during one is only heard once the event loop polls
 * for I/O: two immediates in a row always pass its poll phase (one alone does not after an I/O callback), so
 * the signal lands before the next update. It costs microseconds.
 */
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

  /** where the run is (what a checkpoint saves besides tensors), as of the last completed optimizer step */
  private at: RunPosition;
  private evals: EvalRecord[] = [];
  /** the step of the checkpoint in runDir (null: none yet); the one a diverged run can go back to */
  private savedStep: number | null = null;

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
    this.schedule = scheduleOf(this.s, this.stepsPerEpoch);
    const { beta1, beta2, eps: epsilon, weight_decay: weightDecay } = this.s;
    this.optimizer = new AdamW(opts.params, { beta1, beta2, epsilon, weightDecay });
    this.at = newPosition(this.s.seed);
  }

  /** Train until all epochs (or max_steps) are done. Frees the optimizer state when it returns or throws. */
  async run(): Promise<TrainResult> {
    let started = false;
    try {
      if (this.opts.resume) await this.restore();
      else await startRunLog(this.opts.runDir);
      this.emit({ kind: "start", step: this.at.step, runDir: this.opts.runDir, resumed: this.opts.resume === true });
      started = true;
      return await this.loop();
    } finally {
      if (started) this.emit({ kind: "stop" });
      this.optimizer.dispose();
    }
  }

  private async loop(): Promise<TrainResult> {
    const { train, signal } = this.opts;
    const segment: Segment = { started: performance.now(), step: this.at.step, tokens: this.at.tokensSeen };
    let lastEvalStep = this.evals.length ? this.evals[this.evals.length - 1].step : -1;
    const seconds = () => (performance.now() - segment.started) / 1000;

    while (this.at.step < this.totalSteps) {
      if (this.at.order === null) this.at.order = train.epochOrder(this.at.rng);
      const group = Math.min(this.s.grad_accum, train.numBatches - this.at.batchIndex);
      const lr = learningRate(this.at.step, this.schedule);
      const updateStarted = performance.now();
      const loss = await this.update(group, lr);
      const ms = performance.now() - updateStarted;
      await this.opts.afterUpdate?.();
      this.at.step += 1;
      this.at.batchIndex += group;
      this.emit({ kind: "step", progress: this.progress(loss, lr, ms, segment) });
      await passThroughEventLoop();

      // the book evaluates when global_step % eval_freq == 0 with global_step starting at 0 for the first update
      if ((this.at.step - 1) % this.s.eval_freq === 0) {
        await this.evaluate(lr, this.at.elapsedSeconds + seconds());
        lastEvalStep = this.at.step;
      }
      if (this.at.batchIndex >= train.numBatches) {
        await this.endEpoch();
      }
      if (
        this.at.step < this.totalSteps &&
        this.s.checkpoint_every > 0 &&
        this.at.step % this.s.checkpoint_every === 0
      ) {
        await this.checkpoint(this.at.elapsedSeconds + seconds(), false);
      }
      if (signal?.aborted && this.at.step < this.totalSteps) {
        await this.checkpoint(this.at.elapsedSeconds + seconds(), false);
        throw new InterruptedError(
          `training interrupted at step ${this.at.step} of ${this.totalSteps}; checkpoint saved in ${this.opts.runDir}`,
          `continue with --resume ${this.opts.runDir}`,
        );
      }
    }
    if (lastEvalStep !== this.at.step && this.at.step > 0) {
      // after the last epoch ended, the update evaluated here belongs to that epoch, not the next
      const epoch = this.at.batchIndex === 0 && this.at.epoch > 0 ? this.at.epoch - 1 : this.at.epoch;
      await this.evaluate(
        learningRate(Math.max(0, this.at.step - 1), this.schedule),
        this.at.elapsedSeconds + seconds(),
        epoch,
      );
    }
    await this.checkpoint(this.at.elapsedSeconds + seconds(), true);
    const last = this.evals[this.evals.length - 1];
    const segSeconds = seconds();
    return {
      step: this.at.step,
      epoch: this.at.epoch,
      tokensSeen: this.at.tokensSeen,
      evals: this.evals,
      trainLoss: last?.train_loss ?? null,
      valLoss: last?.val_loss ?? null,
      seconds: segSeconds,
      tokensPerSecond: (this.at.tokensSeen - segment.tokens) / Math.max(segSeconds, 1e-9),
    };
  }

  /** The per-step record: where the run is, this update's loss and time, throughput and ETA of this segment. */
  private progress(loss: number, lr: number, ms: number, segment: Segment): TrainProgress {
    const seconds = (performance.now() - segment.started) / 1000;
    return {
      step: this.at.step,
      totalSteps: this.totalSteps,
      epoch: this.at.epoch,
      epochs: this.s.epochs,
      batch: this.at.batchIndex,
      batchesPerEpoch: this.opts.train.numBatches,
      loss,
      lr,
      tokensSeen: this.at.tokensSeen,
      msPerStep: ms,
      tokensPerSecond: (this.at.tokensSeen - segment.tokens) / Math.max(seconds, 1e-9),
      etaSeconds: ((this.totalSteps - this.at.step) * seconds) / (this.at.step - segment.step),
    };
  }

  /** One optimizer update over `group` micro-batches; returns their mean loss. */
  private update(group: number, lr: number): Promise<number> {
    const { train, loss, batchTokens } = this.opts;
    return trainStep(this.optimizer, this.opts.params, {
      microBatches: group,
      loss: (k) => {
        const batch = train.batch(this.at.order!, this.at.batchIndex + k);
        this.at.tokensSeen += batchTokens(batch);
        const mode = { training: true, seed: mixSeed(this.s.seed, this.at.step, k) };
        return () => loss(batch, mode);
      },
      lr,
      gradClip: this.s.grad_clip,
      onLoss: (v) => {
        if (!Number.isFinite(v)) throw this.diverged(`the loss became ${v} at step ${this.at.step + 1}`, lr);
      },
    });
  }

  private async evaluate(lr: number, elapsed: number, epoch = this.at.epoch): Promise<void> {
    const { train, validation, loss } = this.opts;
    // a fresh random subset of training batches each time (the book re-iterates its shuffled loader),
    // drawn from a generator seeded by the step so resuming does not change it
    const trainOrder = train.epochOrder(new Rng(mixSeed(this.s.seed, this.at.step, 0xe7a1)));
    const record: EvalRecord = {
      type: "eval",
      step: this.at.step,
      epoch,
      tokens_seen: this.at.tokensSeen,
      train_loss: await meanLoss(train, loss, this.s.eval_iter, trainOrder),
      val_loss: validation && validation.numBatches > 0 ? await meanLoss(validation, loss, this.s.eval_iter) : null,
      lr,
      elapsed_seconds: Math.round(elapsed * 1000) / 1000,
    };
    this.evals.push(record);
    await appendRunLog(this.opts.runDir, record);
    this.emit({ kind: "eval", record });
  }

  private async endEpoch(): Promise<void> {
    const extra = (await this.opts.afterEpoch?.(this.at.epoch)) ?? {};
    const record: EpochRecord = {
      type: "epoch",
      epoch: this.at.epoch,
      step: this.at.step,
      tokens_seen: this.at.tokensSeen,
      ...extra,
    };
    await appendRunLog(this.opts.runDir, record);
    this.emit({ kind: "epoch", record });
    this.at.epoch += 1;
    this.at.batchIndex = 0;
    this.at.order = null;
  }

  private diverged(what: string, lr: number): TrainingError {
    const { runDir, lora } = this.opts;
    return divergedError(what, lr, { runDir, lora, peakLr: this.s.lr, savedStep: this.savedStep });
  }

  private async checkpoint(elapsed: number, final: boolean): Promise<void> {
    const opt = this.optimizer;
    const moments = await opt.stateArrays();
    const { bad, total } = await countNonFinite(this.opts.params, moments);
    if (bad > 0) {
      const lr = learningRate(Math.max(0, this.at.step - 1), this.schedule);
      throw this.diverged(
        `after step ${this.at.step}, ${bad} of ${total} weights and optimizer moments are not finite`,
        lr,
      );
    }
    const state = trainerState(this.at, elapsed, final, this.opts.runSettings, this.opts.job);
    await saveCheckpoint(this.opts.runDir, {
      state,
      saveModel: this.opts.saveModel,
      moments,
      optimizerStep: opt.step,
      previousStep: this.savedStep,
      beforeCommitRename: this.opts.beforeCommitRename,
    });
    this.savedStep = this.at.step;
    await writeFileAtomic(join(this.opts.runDir, PLOT_FILE), lossPlot(this.evals));
    this.emit({ kind: "checkpoint", step: this.at.step, dir: this.opts.runDir, final });
  }

  private async restore(): Promise<void> {
    const dir = this.opts.runDir;
    const st = await readTrainerState(dir);
    const tensors = await readOptimizerState(dir);
    checkDataPosition(st, join(dir, TRAINER_STATE_FILE), {
      examples: this.opts.train.epochOrder(new Rng(0)).length,
      numBatches: this.opts.train.numBatches,
      stepsPerEpoch: this.stepsPerEpoch,
      gradAccum: this.s.grad_accum,
    });
    this.optimizer.loadState(st.step, (key) => tensors.get(key)?.data);
    this.at = positionOf(st);
    this.savedStep = st.step;
    this.evals = await restoreRunLog(dir, st);
  }

  private emit(event: TrainEvent): void {
    this.opts.onEvent?.(event);
  }
}
