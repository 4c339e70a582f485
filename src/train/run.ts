/**
 * The shape the three training jobs share (`pretrain`, `finetuneSpam`, `finetuneInstruct`): one library call
 * each, load-or-resume → train → report, taking JobOptions, reporting progress through JobEvent and returning
 * a JobResult around the Trainer's result.
 *
 * And the one resume policy (resolveRunSettings): a new run never starts in a directory that holds one; a
 * resumed run keeps the settings it was saved with. On resume, the sources of a new run (config, model, data)
 * cannot be given, and any other setting given again must repeat the saved value, except those that only say
 * how long the run goes and how often it evaluates and checkpoints. So nothing that shapes the data can change
 * under a saved data order, and nothing given is silently ignored.
 */
import { preflightStep, type LoraUse } from "./preflight.js";
import type { NamedVariable } from "./adamw.js";
import { join } from "node:path";
import {
  prepareNewRunDir,
  readTrainerState,
  refuseLockedRunDir,
  TRAINER_STATE_FILE,
  type TrainerState,
} from "./run-dir.js";
import { resolveTrainSettings, trainFlag, type TrainSettings } from "./settings.js";
import type { TrainEvent, TrainResult } from "./events.js";
import { UsageError } from "../errors.js";

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
 * The settings of the run in `runDir`. A new run: `fresh.base` with `overrides`, and `runDir` must not hold a
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
  refuseLockedRunDir(runDir);
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

/**
 * What every job does once its model and data are known: report the model (what trains of how much), and check
 * that a step fits the backend (preflight.ts). Returns the number of parameters that train.
 */
export function announceModel(
  gpt: Parameters<typeof preflightStep>[0] & { countParameters(): number },
  params: readonly NamedVariable[],
  step: { batchSize: number; length: number },
  opts: { source: string; resumed: boolean; lora: LoraUse; emit: (e: JobEvent) => void },
): number {
  const trainableParameters = params.reduce((n, p) => n + p.variable.size, 0);
  const totalParameters = gpt.countParameters();
  opts.emit({ kind: "model", source: opts.source, resumed: opts.resumed, trainableParameters, totalParameters });
  preflightStep(
    gpt,
    { ...step, trainableParameters, totalParameters },
    {
      lora: opts.lora,
      note: (text) => opts.emit({ kind: "notice", text, detail: true }),
    },
  );
  return trainableParameters;
}
