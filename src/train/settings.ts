/**
 * The `train` section of a config file: every key, its default and its check. Documented in docs/training.md.
 * Defaults are the book's ch05 recipe (`train_model_simple` with batch 2, AdamW 4e-4, weight decay 0.1,
 * eval every 5 steps over 5 batches, split 0.9, seed 123), so a config only lists what differs.
 */
import { ConfigError, UsageError } from "../errors.js";

export interface TrainSettings {
  /** passes over the training batches */
  epochs: number;
  /** sequences per micro-batch */
  batch_size: number;
  /** peak learning rate */
  lr: number;
  /** AdamW's decoupled weight decay λ */
  weight_decay: number;
  /** AdamW betas and epsilon (PyTorch defaults) */
  beta1: number;
  beta2: number;
  eps: number;
  /** "constant" (ch05) or "cosine" (appendix D); both start with `warmup_steps` of linear warmup */
  lr_schedule: "constant" | "cosine";
  warmup_steps: number;
  /** warmup start and cosine floor; default peak/100 and initial/10 as appendix D */
  initial_lr: number | null;
  min_lr: number | null;
  /** clip gradients to this global L2 norm; null = no clipping */
  grad_clip: number | null;
  /** micro-batches summed into one optimizer step */
  grad_accum: number;
  /** evaluate after update 1 and then every eval_freq updates (the book's global_step % eval_freq == 0) */
  eval_freq: number;
  /** batches of train and validation data per evaluation (the book's eval_iter) */
  eval_iter: number;
  /** save a checkpoint every N updates (0 = only at the end and on Ctrl-C) */
  checkpoint_every: number;
  /** stop after this many updates (null = run all epochs); the lr schedule still spans all epochs */
  max_steps: number | null;
  /** training window length (null = the model's context_length) and the stride between windows (null = max_length) */
  max_length: number | null;
  stride: number | null;
  /** fraction of the text's characters used for training; the rest validates */
  train_ratio: number;
  /** seeds the data order, dropout and evaluation subsets */
  seed: number;
  /** dataset name (e.g. "the-verdict") or file path(s) used when --data is not given */
  data: string | string[] | null;
  /** the greedy sample printed after each epoch (the book's start_context) and its length */
  sample_prompt: string;
  sample_tokens: number;
}

export const DEFAULT_TRAIN_SETTINGS: Readonly<TrainSettings> = {
  epochs: 10,
  batch_size: 2,
  lr: 0.0004,
  weight_decay: 0.1,
  beta1: 0.9,
  beta2: 0.999,
  eps: 1e-8,
  lr_schedule: "constant",
  warmup_steps: 0,
  initial_lr: null,
  min_lr: null,
  grad_clip: null,
  grad_accum: 1,
  eval_freq: 5,
  eval_iter: 5,
  checkpoint_every: 0,
  max_steps: null,
  max_length: null,
  stride: null,
  train_ratio: 0.9,
  seed: 123,
  data: null,
  sample_prompt: "Every effort moves you",
  sample_tokens: 50,
};

type Kind = "posint" | "nonnegint" | "posnum" | "nonnegnum" | "ratio" | "int";
const CHECKS: Partial<Record<keyof TrainSettings, { kind: Kind; nullable?: boolean }>> = {
  epochs: { kind: "posint" },
  batch_size: { kind: "posint" },
  lr: { kind: "posnum" },
  weight_decay: { kind: "nonnegnum" },
  beta1: { kind: "ratio" },
  beta2: { kind: "ratio" },
  eps: { kind: "posnum" },
  warmup_steps: { kind: "nonnegint" },
  initial_lr: { kind: "nonnegnum", nullable: true },
  min_lr: { kind: "nonnegnum", nullable: true },
  grad_clip: { kind: "posnum", nullable: true },
  grad_accum: { kind: "posint" },
  eval_freq: { kind: "posint" },
  eval_iter: { kind: "posint" },
  checkpoint_every: { kind: "nonnegint" },
  max_steps: { kind: "posint", nullable: true },
  max_length: { kind: "posint", nullable: true },
  stride: { kind: "posint", nullable: true },
  train_ratio: { kind: "ratio" },
  seed: { kind: "int" },
  sample_tokens: { kind: "nonnegint" },
};

const DESCRIBE: Record<Kind, string> = {
  posint: "a positive integer",
  nonnegint: "a non-negative integer",
  posnum: "a positive number",
  nonnegnum: "a non-negative number",
  ratio: "a number between 0 and 1 (exclusive)",
  int: "an integer",
};

function ok(kind: Kind, v: number): boolean {
  switch (kind) {
    case "posint":
      return Number.isInteger(v) && v > 0;
    case "nonnegint":
      return Number.isInteger(v) && v >= 0;
    case "posnum":
      return Number.isFinite(v) && v > 0;
    case "nonnegnum":
      return Number.isFinite(v) && v >= 0;
    case "ratio":
      return v > 0 && v < 1;
    case "int":
      return Number.isInteger(v);
  }
}

/** Why `value` cannot be train key `key` (e.g. "must be a positive integer"), or null when it can. */
function trainValueProblem(key: string, value: unknown): string | null {
  const check = CHECKS[key as keyof TrainSettings];
  if (check) {
    if (value === null && check.nullable) return null;
    if (typeof value === "number" && ok(check.kind, value)) return null;
    return `must be ${DESCRIBE[check.kind]}${check.nullable ? " or null" : ""}`;
  }
  if (key === "lr_schedule")
    return value === "constant" || value === "cosine" ? null : 'must be "constant" or "cosine"';
  if (key === "data") {
    const fine =
      value === null ||
      typeof value === "string" ||
      (Array.isArray(value) && value.every((d) => typeof d === "string"));
    return fine ? null : "must be a dataset name, a path or a list of paths";
  }
  if (key === "sample_prompt") return typeof value === "string" ? null : "must be a string";
  return null;
}

/** How a value reads in a message: NaN stays NaN (JSON would print null). */
const shown = (v: unknown) => (typeof v === "number" ? String(v) : JSON.stringify(v));

/**
 * Merge a config's train section (and then command-line overrides, which win) over the defaults, checking
 * every key. `where` names the source of `raw` in error messages; a bad override is a UsageError naming its
 * flag, so a mistyped `--lr` is not blamed on the config file.
 */
export function resolveTrainSettings(
  raw: Record<string, unknown> = {},
  overrides: Partial<TrainSettings> = {},
  where = "train config",
): TrainSettings {
  const out: Record<string, unknown> = { ...DEFAULT_TRAIN_SETTINGS };
  for (const [source, entries] of [
    [where, Object.entries(raw)],
    ["options", Object.entries(overrides)],
  ] as const) {
    for (const [key, value] of entries) {
      if (value === undefined) continue;
      if (!(key in DEFAULT_TRAIN_SETTINGS)) {
        throw new ConfigError(
          `${source}: unknown train key '${key}'`,
          `the train keys are ${Object.keys(DEFAULT_TRAIN_SETTINGS).join(", ")} (docs/training.md)`,
        );
      }
      const problem = source === where ? null : trainValueProblem(key, value);
      if (problem) throw new UsageError(`${trainFlag(key)} ${shown(value)}: train key '${key}' ${problem}`);
      out[key] = value;
    }
  }
  for (const key of Object.keys(DEFAULT_TRAIN_SETTINGS)) {
    const problem = trainValueProblem(key, out[key]);
    if (problem) throw new ConfigError(`${where}: train key '${key}' ${problem}, got ${shown(out[key])}`);
  }
  return out as unknown as TrainSettings;
}

/** The command-line flag of a train key: batch_size → --batch-size. */
export function trainFlag(key: string): string {
  return `--${key.replace(/_/g, "-")}`;
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
