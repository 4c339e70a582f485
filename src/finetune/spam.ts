/**
 * `finetune spam`: the book's chapter 6 as one library call. Load a model directory, put a 2-class head on it,
 * freeze all but the chosen layers, train on the balanced SMS split with the shared Trainer (the book's
 * `train_classifier_simple`: AdamW 5e-5, weight decay 0.1, 5 epochs, batch 8, evaluate every 50 steps over 5
 * batches, train/validation accuracy after each epoch), then measure the accuracy on all of train, validation
 * and test (`calc_accuracy_loader`). Reports progress through `onEvent` (a JobEvent); never prints.
 *
 * The output directory is both the run directory (checkpoints, log.jsonl, loss.svg) and the finished
 * classifier's model directory; it also keeps the split CSVs, accuracy.json and accuracy.svg.
 */
import * as tf from "@tensorflow/tfjs";
import { readFile } from "node:fs/promises";
import { join } from "node:path";
import { saveModelDir } from "../model/model-dir.js";
import type { ForwardMode, GPTModel, LoraSettings } from "../model/gpt.js";
import type { ModelMeta } from "../model/model-meta.js";
import { namedParameters } from "../train/adamw.js";
import { LOG_FILE, type JobRecord } from "../train/run-dir.js";
import type { TrainSettings } from "../train/settings.js";
import type { TrainEvent } from "../train/events.js";
import type { LoraUse } from "../train/preflight.js";
import { runJob, type JobEvent, type JobOptions, type JobResult, type JobRun } from "../train/run.js";
import { loadFinetuneModel } from "./base-model.js";
import { resolveDataPath } from "../data/datasets.js";
import { Rng } from "../data/rng.js";
import { getTokenizer } from "../tokenizer/index.js";
import { linePlotSvg } from "../plot/svg.js";
import { writeFileAtomic } from "../fs-atomic.js";
import { UsageError } from "../errors.js";
import {
  labelCounts,
  makeSpamSplit,
  readSmsSpamCollection,
  readSplitCsvs,
  writeSplitCsvs,
  type SpamSplit,
} from "./spam-data.js";
import { classificationLoss, correctCount, freezeForFinetuning, readCount, toClassifier } from "./classifier.js";
import { SPAM_LABELS, SpamDataLoader, SpamDataset, classLogits, type SpamBatch } from "../generate/classify.js";
import {
  ACCURACY_FILE,
  ACCURACY_PLOT_FILE,
  SPAM_DEFAULTS,
  SPAM_TRAIN_DEFAULTS,
  checkScope,
  type TrainableScope,
} from "./recipes.js";
import { checkPooling, type Pooling } from "../model/model-meta.js";

export interface FinetuneSpamOptions extends JobOptions {
  /** score at most this many examples of each set after training (default: all, as the book) */
  maxScored?: number;
  /** a new run's starting model directory: a language model (a 2-class head goes on) or a 2-class classifier */
  modelDir?: string;
  /** the SMSSpamCollection file or a dataset name (default sms-spam); not with splitDir */
  data?: string;
  /** reuse train.csv / validation.csv / test.csv from here instead of building a split */
  splitDir?: string;
  trainable?: TrainableScope;
  /** appendix E: train LoRA adapters instead of a `trainable` scope (everything else frozen) */
  lora?: LoraSettings;
  pool?: Pooling;
  /** dropout of a new head's model; default 0 as the book */
  dropRate?: number;
}

export interface SplitAccuracy {
  train: number;
  validation: number;
  test: number;
}

export interface EpochAccuracy {
  epoch: number;
  train_accuracy: number;
  val_accuracy: number;
}

export interface FinetuneSpamResult extends JobResult {
  accuracy: SplitAccuracy;
  maxLength: number;
  /** per-epoch train/validation accuracy over eval_iter batches (the book's curves) */
  epochs: EpochAccuracy[];
}

/** What accuracy.json holds. */
export interface AccuracyReport {
  format: "llmctl-accuracy";
  version: 1;
  task: "spam";
  train_accuracy: number;
  val_accuracy: number;
  test_accuracy: number;
  examples: { train: number; validation: number; test: number };
  /** --max-scored: the accuracies are over at most this many examples of each set */
  max_scored?: number;
  max_length: number;
  pool: Pooling;
  trainable: TrainableScope | "lora";
  lora?: LoraSettings;
  settings: Partial<TrainSettings>;
}

/**
 * The book's `calc_accuracy_loader`: the fraction of correct predictions over the first `maxBatches` batches
 * in `order` (all batches by default).
 */
export async function accuracy(
  gpt: GPTModel,
  loader: SpamDataLoader,
  pool: Pooling,
  opts: { maxBatches?: number; order?: Int32Array; onBatch?: (i: number, n: number) => void } = {},
): Promise<number> {
  const n = Math.min(opts.maxBatches ?? Infinity, loader.numBatches);
  const order = opts.order ?? loader.epochOrder(new Rng(0));
  let correct = 0;
  let seen = 0;
  for (let i = 0; i < n; i++) {
    const batch = loader.batch(order, i);
    const logits = classLogits(gpt, batch, pool);
    const count = correctCount(logits, batch.labels);
    logits.dispose();
    correct += await readCount(count);
    seen += batch.batchSize;
    opts.onBatch?.(i + 1, n);
  }
  return seen ? correct / seen : NaN;
}

async function loadSplit(
  opts: FinetuneSpamOptions,
  seed: number,
  emit: (e: JobEvent) => void,
): Promise<{ split: SpamSplit; source: string }> {
  if (opts.resume) return { split: await readSplitCsvs(opts.outDir, "run"), source: opts.outDir };
  if (opts.splitDir) return { split: await readSplitCsvs(opts.splitDir), source: opts.splitDir };
  const what = "fetching the SMS Spam Collection";
  emit({ kind: "status", text: what });
  const path = await resolveDataPath(opts.data ?? "sms-spam", {
    onNote: (text) => emit({ kind: "notice", text, detail: true }),
    onProgress: (got, total) =>
      emit({ kind: "status", text: `${what}: ${total ? `${Math.round((100 * got) / total)}%` : `${got} bytes`}` }),
  });
  const messages = await readSmsSpamCollection(path);
  emit({
    kind: "notice",
    text:
      seed === 123
        ? "split: the book's (create_balanced_dataset + random_split, pandas' random_state=123)"
        : `split: the book's way with random_state=${seed} (the book's own is seed 123)`,
  });
  const counts = labelCounts(messages);
  if (counts.spam === 0 || counts.ham === 0) {
    throw new UsageError(
      `${path} has ${counts.ham} ham and ${counts.spam} spam messages`,
      "the data needs both classes",
    );
  }
  return { split: makeSpamSplit(messages, seed), source: path };
}

/**
 * A new run's model: a classifier as it is, a language model with a new 2-class head. A classifier's dropout was
 * fixed when its head was put on, so a different `dropRate` is refused rather than ignored.
 */
function withSpamHead(gpt: GPTModel, meta: ModelMeta, dir: string, seed: number, dropRate?: number): GPTModel {
  if (meta.head.kind !== "classifier")
    return toClassifier(gpt, SPAM_LABELS.length, seed, dropRate ?? SPAM_DEFAULTS.dropRate);
  if (meta.head.num_classes !== SPAM_LABELS.length)
    throw new UsageError(
      `${dir} is a ${meta.head.num_classes}-class classifier`,
      "start spam finetuning from a language model or a 2-class classifier",
    );
  if (dropRate !== undefined && dropRate !== gpt.config.drop_rate)
    throw new UsageError(
      `--drop-rate ${dropRate}: ${dir} is already a classifier, whose dropout (${gpt.config.drop_rate}) was set when its head was put on`,
      "drop --drop-rate, or start from the language model",
    );
  return gpt;
}

/** What a spam run records (trainer-state.json's `job`): its starting model, data and choices. */
export interface SpamRecord extends JobRecord {
  task: "finetune spam";
  from: string;
  data: string;
  /** what trained: a scope, or LoRA adapters (rank and alpha in `lora`) */
  trainable: TrainableScope | "lora";
  lora?: LoraSettings;
  pool: Pooling;
  max_length: number;
  seed: number;
}

/**
 * The book's chapter 6 as one job: load-or-resume → train → measure. A new run builds (or reuses) the split,
 * puts a 2-class head on the model, freezes all but `trainable`, and records its choices (SpamRecord); a
 * resumed run takes all of that from outDir.
 */
export function finetuneSpam(opts: FinetuneSpamOptions): Promise<FinetuneSpamResult> {
  if (opts.resume !== true && opts.modelDir === undefined)
    throw new UsageError("give --model and --out (or --resume DIR)", "see `llmctl finetune spam --help`");
  if (opts.data !== undefined && opts.splitDir !== undefined)
    throw new UsageError("give --data or --split-dir, not both");
  if (opts.lora && opts.trainable !== undefined)
    throw new UsageError("--lora trains adapters instead of a --trainable scope", "give one of them");
  return runJob<SpamBatch, SpamRecord, Omit<FinetuneSpamResult, keyof JobResult>>(opts, {
    task: "finetune spam",
    newRun: { base: SPAM_TRAIN_DEFAULTS, where: "finetune spam", force: opts.force, inputs: [opts.modelDir] },
    sources: { model: opts.modelDir, data: opts.data, split_dir: opts.splitDir },
    given: { trainable: opts.trainable, pool: opts.pool, lora: opts.lora },
    start: (run) => startSpam(opts, run),
  });
}

async function startSpam(opts: FinetuneSpamOptions, run: JobRun<SpamRecord>) {
  const { settings, saved, resume, emit } = run;
  if (saved) {
    if (saved.trainable !== "lora") checkScope(saved.trainable);
    checkPooling(saved.pool);
  }
  const seed = settings.seed;
  const pool = saved?.pool ?? opts.pool ?? SPAM_DEFAULTS.pool;
  const lora = saved ? saved.lora : opts.lora;
  const trainable = lora ? "lora" : (saved?.trainable ?? opts.trainable ?? SPAM_DEFAULTS.trainable);
  const from = saved?.from ?? opts.modelDir!;

  const { split, source } = await loadSplit(opts, seed, emit);
  const { gpt, meta, loraBase } = await loadFinetuneModel(resume ? opts.outDir : from, run, {
    lora,
    prepare: (lm, meta) => withSpamHead(lm, meta, from, seed, opts.dropRate),
  });
  const data = spamBatches(split, gpt.config.context_length, settings.batch_size, saved?.max_length);
  const { maxLength, sets, loaders } = data;
  emit({
    kind: "data",
    source,
    unit: "examples",
    train: sets.train.count,
    validation: sets.validation.count,
    test: sets.test.count,
    trainBatches: loaders.train.numBatches,
    validationBatches: loaders.validation.numBatches,
  });
  emit({ kind: "notice", text: `texts padded to ${maxLength} tokens` });
  const trainCounts = labelCounts(split.train);
  if (trainCounts.ham === 0 || trainCounts.spam === 0) {
    const only = trainCounts.ham === 0 ? "spam (label 1)" : "ham (label 0)";
    emit({
      kind: "notice",
      text: `note: the training split (${source}) holds only ${only}: the classifier can learn nothing but that answer`,
    });
  }
  if (data.truncated > 0)
    emit({ kind: "notice", text: `${data.truncated} texts are longer than ${maxLength} tokens and were truncated` });
  if (!resume) {
    settings.data = source;
    await writeSplitCsvs(opts.outDir, split);
  }
  const record: SpamRecord = saved ?? {
    task: "finetune spam",
    from,
    data: source,
    trainable,
    ...(lora ? { lora } : {}),
    pool,
    max_length: maxLength,
    seed,
  };

  // running accuracy of the training batches of the current epoch, counted from the loss's own logits: kept on
  // the device inside the loss, read after the update
  let runCorrect = 0;
  let runSeen = 0;
  const counted: tf.Scalar[] = [];
  const extras = {
    labels: [...SPAM_LABELS],
    pool,
    max_length: maxLength,
    source: `finetune spam from ${from}`,
    ...(loraBase ? { lora: loraBase } : {}),
  };
  const epochs: EpochAccuracy[] = [];
  const converted = !resume && meta.head.kind !== "classifier";
  return {
    gpt,
    source: resume ? opts.outDir : converted ? `${from} with a new 2-class head` : from,
    record,
    lora: (trainable === "lora" ? "training" : "possible") as LoraUse,
    length: maxLength,
    params: trainable === "lora" ? namedParameters(gpt) : freezeForFinetuning(gpt, trainable),
    loss: (batch: SpamBatch, mode: ForwardMode): tf.Scalar => {
      const logits = classLogits(gpt, batch, pool, mode);
      if (mode.training) {
        counted.push(tf.keep(correctCount(logits, batch.labels)));
        runSeen += batch.batchSize;
      }
      return classificationLoss(logits, batch.labels);
    },
    train: loaders.train,
    validation: loaders.validation,
    saveModel: async (dir: string) => {
      await saveModelDir(dir, gpt, extras);
    },
    afterUpdate: async () => {
      for (const count of counted.splice(0)) runCorrect += await readCount(count);
    },
    afterEpoch: async (epoch: number) => {
      // the book: accuracy over eval_iter batches of a freshly shuffled train loader and of the validation loader
      const order = loaders.train.epochOrder(new Rng(seed * 1000 + epoch));
      const maxBatches = settings.eval_iter;
      const accuracies = {
        train_accuracy: await accuracy(gpt, loaders.train, pool, { maxBatches, order }),
        val_accuracy: await accuracy(gpt, loaders.validation, pool, { maxBatches }),
      };
      epochs.push({ epoch, ...accuracies });
      runCorrect = 0;
      runSeen = 0;
      return accuracies;
    },
    onEvent: (event: TrainEvent, emitJob: (e: JobEvent) => void) => {
      if (event.kind === "step" && runSeen > 0)
        emitJob({ ...event, progress: { ...event.progress, accuracy: runCorrect / runSeen } });
      else emitJob(event);
      if (event.kind === "stop") tf.dispose(counted.splice(0)); // counts of an update that did not finish
    },
    finish: async () => {
      const acc = await finalAccuracy(gpt, data, pool, emit, opts.maxScored);
      const { epochs: n, batch_size, lr, weight_decay } = settings;
      const report: AccuracyReport = {
        format: "llmctl-accuracy",
        version: 1,
        task: "spam",
        train_accuracy: acc.train,
        val_accuracy: acc.validation,
        test_accuracy: acc.test,
        examples: { train: sets.train.count, validation: sets.validation.count, test: sets.test.count },
        ...(opts.maxScored !== undefined ? { max_scored: opts.maxScored } : {}),
        max_length: maxLength,
        pool,
        trainable,
        ...(lora ? { lora } : {}),
        settings: { epochs: n, batch_size, lr, weight_decay, seed },
      };
      await writeFileAtomic(join(opts.outDir, ACCURACY_FILE), JSON.stringify(report, null, 2) + "\n");
      const allEpochs = await epochHistory(opts.outDir, epochs);
      await writeFileAtomic(join(opts.outDir, ACCURACY_PLOT_FILE), accuracyPlot(allEpochs));
      return { accuracy: acc, maxLength, epochs: allEpochs };
    },
  };
}

interface SpamBatches {
  /** every text padded (or cut) to this many tokens: the longest training text's, at most the context */
  maxLength: number;
  truncated: number;
  sets: Record<keyof SplitAccuracy, SpamDataset>;
  /** the book's loaders: train shuffled with drop_last, validation and test in order */
  loaders: Record<keyof SplitAccuracy, SpamDataLoader>;
}

/** Tokenize and batch the split as the book; `maxLength` is a resumed run's (else the longest training text). */
function spamBatches(split: SpamSplit, contextLength: number, batchSize: number, maxLength?: number): SpamBatches {
  const tok = getTokenizer();
  const train = new SpamDataset(split.train, tok, { contextLength, maxLength });
  const padTo = { maxLength: train.maxLength };
  const sets = {
    train,
    validation: new SpamDataset(split.validation, tok, padTo),
    test: new SpamDataset(split.test, tok, padTo),
  };
  const loaders = {
    train: new SpamDataLoader(train, { batchSize, shuffle: true, dropLast: true }),
    validation: new SpamDataLoader(sets.validation, { batchSize }),
    test: new SpamDataLoader(sets.test, { batchSize }),
  };
  if (loaders.train.numBatches === 0)
    throw new UsageError(`${train.count} training examples make no full batch of ${batchSize}`, "lower --batch-size");
  const truncated = train.truncated + sets.validation.truncated + sets.test.truncated;
  return { maxLength: train.maxLength, truncated, sets, loaders };
}

/** The book's closing `calc_accuracy_loader` over all of train, validation and test. */
async function finalAccuracy(
  gpt: GPTModel,
  data: SpamBatches,
  pool: Pooling,
  emit: (e: JobEvent) => void,
  maxScored?: number,
): Promise<SplitAccuracy> {
  const acc: SplitAccuracy = { train: NaN, validation: NaN, test: NaN };
  for (const name of ["train", "validation", "test"] as const) {
    // the book measures the training accuracy over its shuffled drop_last loader (1,040 of 1,045 examples); here the
    // five left out are the last five rather than five random ones, so the number does not depend on an RNG draw
    const loader = data.loaders[name];
    const full =
      name === "train" ? new SpamDataLoader(data.sets.train, { batchSize: loader.batchSize, dropLast: true }) : loader;
    const started = performance.now();
    const what = `scoring the ${name} set`;
    acc[name] = await accuracy(gpt, full, pool, {
      maxBatches: maxScored === undefined ? undefined : Math.max(1, Math.ceil(maxScored / full.batchSize)),
      onBatch: (batch, batches) =>
        emit({ kind: "progress", what, done: batch, total: batches, seconds: (performance.now() - started) / 1000 }),
    });
  }
  return acc;
}

/** This process's epoch records, preceded by those of earlier parts of a resumed run (from log.jsonl). */
async function epochHistory(dir: string, current: EpochAccuracy[]): Promise<EpochAccuracy[]> {
  const byEpoch = new Map<number, EpochAccuracy>();
  try {
    for (const line of (await readFile(join(dir, LOG_FILE), "utf8")).split("\n")) {
      if (!line) continue;
      const r = JSON.parse(line) as Record<string, unknown>;
      if (r.type === "epoch" && typeof r.train_accuracy === "number") {
        byEpoch.set(r.epoch as number, {
          epoch: r.epoch as number,
          train_accuracy: r.train_accuracy,
          val_accuracy: r.val_accuracy as number,
        });
      }
    }
  } catch {
    // no log: only this process's epochs
  }
  for (const e of current) byEpoch.set(e.epoch, e);
  return [...byEpoch.values()].sort((a, b) => a.epoch - b.epoch);
}

/** The book's accuracy plot: training and validation accuracy after each epoch. */
export function accuracyPlot(epochs: EpochAccuracy[]): string {
  return linePlotSvg({
    title: "Accuracy",
    xLabel: "epoch",
    yLabel: "accuracy",
    series: [
      { label: "training accuracy", color: "#1f77b4", points: epochs.map((e) => [e.epoch + 1, e.train_accuracy]) },
      {
        label: "validation accuracy",
        color: "#ff7f0e",
        dashed: true,
        points: epochs.map((e) => [e.epoch + 1, e.val_accuracy]),
      },
    ],
  });
}
