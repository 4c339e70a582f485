/**
 * A training job, the one way the three (`pretrain`, `finetuneSpam`, `finetuneInstruct`) run: `runJob` takes the
 * run directory's lock, resolves the settings (new or resumed), lets the job load its model and data, checks that
 * a step fits, trains with the Trainer and lets the job report; the model is disposed however it ends. A job
 * supplies only what is its own (JobSpec): its model, data, loss, epoch end and report. Its choices (data, pool,
 * prompt style…) are its JobRecord, saved with every checkpoint in trainer-state.json: the one run record.
 *
 * And the one resume policy (resolveRunSettings): a new run never starts in a directory that holds one; a
 * resumed run keeps the settings it was saved with. On resume, the sources of a new run (config, model, data)
 * cannot be given, and any other setting given again must repeat the saved value, except those that only say
 * how long the run goes and how often it evaluates and checkpoints. So nothing that shapes the data can change
 * under a saved data order, and nothing given is silently ignored.
 */
import { preflightStep, type LoraUse } from "./preflight.js";
import { existsSync, readFileSync } from "node:fs";
import { join } from "node:path";
import {
  lockRunDir,
  prepareNewRunDir,
  readTrainerState,
  TRAINER_STATE_FILE,
  type JobRecord,
  type TrainerState,
} from "./run-dir.js";
import { resolveTrainSettings, trainFlag, type TrainSettings } from "./settings.js";
import type { TrainEvent, TrainResult } from "./events.js";
import { Trainer, type TrainerOptions } from "./trainer.js";
import { keepPackedWeights } from "../backend/transformer-ops.js";
import { recordTensorBoard } from "./tensorboard.js";
import type { GPTModel } from "../model/gpt.js";
import { FileFormatError, UsageError } from "../errors.js";

/** Settings a resumed run may change: its length and its evaluation and checkpoint cadence. */
export const RESUME_ADJUSTABLE: readonly string[] = [
  "epochs",
  "max_steps",
  "eval_freq",
  "eval_iter",
  "checkpoint_every",
];

/** What every training job takes besides its own options. */
export interface JobOptions {
  /** the run directory: checkpoints, log.jsonl, loss.svg and the trained model */
  outDir: string;
  /** continue the run saved in outDir */
  resume?: boolean;
  /** a new run may start in an outDir that holds other files (see prepareNewRunDir) */
  force?: boolean;
  /** train settings over the job's recipe (a new run) or over the saved ones (resume, see resolveRunSettings) */
  train?: Partial<TrainSettings>;
  /** aborting saves a checkpoint at the next step boundary, then the job throws InterruptedError */
  signal?: AbortSignal;
  onEvent?: (event: JobEvent) => void;
}

/** What every training job returns besides its own results. */
export interface JobResult {
  outDir: string;
  resumed: boolean;
  settings: TrainSettings;
  train: TrainResult;
  /** the parameters the optimizer updated (LoRA: the adapters') */
  trainableParameters: number;
}

/** A training job's progress: its set-up, then the Trainer's events, then its closing measurements. */
export type JobEvent =
  /** what the job is busy with (fetching data, loading a model, measuring accuracy): a spinner's text */
  | { kind: "status"; text: string }
  /** the closing work after training (scoring the sets, answering the test set): `done` of `total` so far */
  | { kind: "progress"; what: string; done: number; total: number; seconds: number }
  /** a fact for the person running it; `detail` ones are for --verbose */
  | { kind: "notice"; text: string; detail?: boolean }
  /** the data, split and batched; `unit` is what train/validation/test count */
  | {
      kind: "data";
      source: string;
      unit: "tokens" | "examples";
      train: number;
      validation: number;
      test: number | null;
      trainBatches: number;
      validationBatches: number;
    }
  /** the model, loaded (or rebuilt from the run directory on resume) */
  | { kind: "model"; source: string; resumed: boolean; trainableParameters: number; totalParameters: number }
  | TrainEvent;

/** A new run's settings before any overrides: a config's train section or the job's recipe. */
export interface NewRunSettings {
  base: Record<string, unknown>;
  /** names `base` in error messages (a config path, "finetune spam") */
  where: string;
  /** start in a directory that holds other files; `inputs`: directories the run reads, never its output */
  force?: boolean;
  inputs?: (string | undefined)[];
}

/**
 * The settings of the run in `runDir` (whose lock the caller holds). A new run: `fresh.base` with `overrides`, and `runDir` must not hold a
 * run. A resumed run: the saved settings, `overrides` only where RESUME_ADJUSTABLE (or equal to the saved
 * value), and its trainer state. `sources` are a new run's inputs (config, model, data): refused on resume.
 */
export async function resolveRunSettings(
  runDir: string,
  overrides: Partial<TrainSettings>,
  resume: boolean,
  fresh: NewRunSettings,
  sources: Record<string, unknown> = {},
): Promise<{ settings: TrainSettings; state: TrainerState | null }> {
  if (!resume) {
    await prepareNewRunDir(runDir, { force: fresh.force, inputs: fresh.inputs });
    return { settings: resolveTrainSettings(fresh.base, overrides, fresh.where), state: null };
  }
  const given = Object.keys(sources).filter((k) => sources[k] !== undefined);
  if (given.length > 0) {
    throw new UsageError(
      `--resume continues a run as it was set up, from its own model and data; drop ${given.map(trainFlag).join(", ")}`,
      "or start a new run with another --out",
    );
  }
  const state = await readTrainerState(runDir);
  const where = join(runDir, TRAINER_STATE_FILE);
  const saved = resolveTrainSettings(state.settings, {}, where);
  refuseChanges({ ...saved }, overrides, RESUME_ADJUSTABLE);
  const adjusted = Object.fromEntries(Object.entries(overrides).filter(([k]) => RESUME_ADJUSTABLE.includes(k)));
  return { settings: resolveTrainSettings(state.settings, adjusted, where), state };
}

/**
 * On resume, a setting given again must repeat the saved value (flags are named from the keys: pool → --pool);
 * `adjustable` keys may differ.
 */
export function refuseChanges(
  saved: Readonly<Record<string, unknown>>,
  given: Readonly<Record<string, unknown>>,
  adjustable: readonly string[] = [],
): void {
  const same = (a: unknown, b: unknown) => a === b || JSON.stringify(a) === JSON.stringify(b);
  const changed = Object.keys(given).filter(
    (k) => given[k] !== undefined && !adjustable.includes(k) && !same(given[k], saved[k]),
  );
  if (changed.length === 0) return;
  const shown = (v: unknown) => {
    if (typeof v === "number") return String(v);
    const lora = v as { rank?: unknown; alpha?: unknown } | null;
    if (typeof lora === "object" && lora !== null && "rank" in lora) return `${lora.rank} (alpha ${lora.alpha})`;
    return JSON.stringify(v);
  };
  const change = (k: string) =>
    saved[k] === undefined
      ? `${trainFlag(k)} ${shown(given[k])}: the run was started without it`
      : `${trainFlag(k)} ${shown(given[k])} differs from the run's ${shown(saved[k])}`;
  throw new UsageError(
    `--resume continues a run as it was set up: ${changed.map(change).join("; ")}`,
    `drop ${changed.map(trainFlag).join(", ")}, or start a new run with another --out`,
  );
}

/** What a job's batches have: tokens seen are batchSize × seqLen. */
type Batch = { batchSize: number; seqLen: number };

export type JobTask = "pretrain" | "finetune spam" | "finetune instruct";

/** A job under way, as runJob hands it to the job's own parts. */
export interface JobRun<R extends JobRecord> {
  outDir: string;
  settings: TrainSettings;
  resume: boolean;
  /** a resumed run's record, as its checkpoint saved it (null: a new run) */
  saved: R | null;
  emit: (event: JobEvent) => void;
  /** hand runJob a model: it is disposed when the job ends, however it ends */
  own(gpt: GPTModel): GPTModel;
}

/** What a job has set up once its model and data are loaded: the Trainer's parts that are its own. */
export interface JobSetup<B, R extends JobRecord, Out> extends Pick<
  TrainerOptions<B>,
  "params" | "loss" | "train" | "validation" | "afterEpoch" | "afterUpdate"
> {
  gpt: GPTModel;
  /** where the model came from (the model event) */
  source: string;
  /** the job's choices, saved with every checkpoint and handed back on --resume */
  record: R;
  lora: LoraUse;
  /** the longest sequence of a step, for the pre-flight */
  length: number;
  saveModel: (dir: string) => Promise<void>;
  /** once the step is known to fit, before the first one (instruct: the losses before finetuning) */
  beforeTraining?: () => Promise<void>;
  /** the job's view of the Trainer's events before they reach the caller (spam adds its running accuracy) */
  onEvent?: (event: TrainEvent, emit: (event: JobEvent) => void) => void;
  /** after training: the job's closing measurements and files */
  finish(train: TrainResult): Promise<Out>;
}

/** One training job: what it is, how a new run starts, and its own parts. */
export interface JobSpec<B extends Batch, R extends JobRecord, Out> {
  task: JobTask;
  newRun: NewRunSettings;
  /** a new run's sources (config, model, data): refused on resume */
  sources?: Record<string, unknown>;
  /** record fields given as options: a resumed run must repeat the saved values */
  given?: Partial<R>;
  /** load the model (new: from its source; resumed: from the run directory) and the data */
  start(run: JobRun<R>): Promise<JobSetup<B, R, Out>>;
}

/** Run a training job in `opts.outDir`: lock → settings → the job's model and data → pre-flight → Trainer → report. */
export async function runJob<B extends Batch, R extends JobRecord, Out>(
  opts: JobOptions,
  job: JobSpec<B, R, Out>,
): Promise<JobResult & Out> {
  const emit = (e: JobEvent) => opts.onEvent?.(e);
  const resume = opts.resume === true;
  const { outDir } = opts;
  const unlock = await lockRunDir(outDir);
  const owned: GPTModel[] = [];
  try {
    const { settings, state } = await resolveRunSettings(
      outDir,
      opts.train ?? {},
      resume,
      job.newRun,
      resume ? job.sources : {},
    );
    const saved = state ? (savedRecord(outDir, state, job.task) as R) : null;
    if (saved && job.given) refuseChanges(saved, job.given);
    const own = (gpt: GPTModel) => (owned.push(gpt), gpt);
    const run: JobRun<R> = { outDir, settings, resume, saved, emit, own };
    const setup = await job.start(run);
    const { gpt, params } = setup;
    const trainableParameters = params.reduce((n, p) => n + p.variable.size, 0);
    const totalParameters = gpt.countParameters();
    emit({ kind: "model", source: setup.source, resumed: resume, trainableParameters, totalParameters });
    preflightStep(
      gpt,
      { batchSize: settings.batch_size, length: setup.length, trainableParameters, totalParameters },
      {
        lora: setup.lora,
        note: (text) => emit({ kind: "notice", text, detail: true }),
        notice: (text) => emit({ kind: "notice", text }),
      },
    );
    if (state?.finished)
      emit({
        kind: "notice",
        text: `${outDir}: the run finished at step ${state.step}; it continues only as far as --epochs / --max-steps now allow`,
      });
    const train = await training(async () => {
      await setup.beforeTraining?.();
      return new Trainer<B>({
        params,
        loss: setup.loss,
        train: setup.train,
        validation: setup.validation,
        batchTokens: (b) => b.batchSize * b.seqLen,
        settings,
        runSettings: settings,
        job: setup.record,
        lora: gpt.lora,
        runDir: outDir,
        saveModel: setup.saveModel,
        afterEpoch: setup.afterEpoch,
        afterUpdate: setup.afterUpdate,
        onEvent: recordTensorBoard(setup.onEvent ? (e) => setup.onEvent!(e, emit) : emit),
        signal: opts.signal,
        resume,
      }).run();
    });
    const out = await setup.finish(train);
    return { outDir, resumed: resume, settings, train, trainableParameters, ...out };
  } finally {
    for (const gpt of owned) gpt.dispose();
    await unlock();
  }
}

/** `run` without wasm keeping packed weights between products (keepPackedWeights): what training wants. */
async function training<T>(run: () => Promise<T>): Promise<T> {
  keepPackedWeights(false);
  try {
    return await run();
  } finally {
    keepPackedWeights(true);
  }
}

/**
 * Runs saved before the record moved into trainer-state.json kept it in a file of the job's own beside it:
 * finetune.json (spam), instruct-run.json (instruct); pretraining kept none.
 */
const EARLIER_RECORDS: Record<string, JobTask> = {
  "finetune.json": "finetune spam",
  "instruct-run.json": "finetune instruct",
};

/** The saved run's record, refused when another job saved it. */
function savedRecord(dir: string, state: TrainerState, task: JobTask): JobRecord {
  const record = state.job ?? earlierRecord(dir);
  if (record.task !== task)
    throw new FileFormatError(
      `${dir} is a \`${record.task}\` run, not a \`${task}\` one`,
      `resume it with llmctl ${record.task} --resume ${dir}`,
    );
  return record;
}

function earlierRecord(dir: string): JobRecord {
  for (const [file, task] of Object.entries(EARLIER_RECORDS)) {
    const path = join(dir, file);
    if (!existsSync(path)) continue;
    try {
      return { ...(JSON.parse(readFileSync(path, "utf8")) as object), task };
    } catch (err) {
      throw new FileFormatError(`${path} is not valid JSON: ${(err as Error).message}`, "start a new run");
    }
  }
  return { task: "pretrain" };
}
