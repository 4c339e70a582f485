/**
 * What a model directory's config.json says (docs/model-directory.md): the format, the model config, the head and
 * the choices finetuning recorded, read and checked without TF.js, so `info` and the CLI's option parsing stay light.
 * The weights are read and written by ./model-dir.ts.
 */
import { readTextFile } from "../formats/file.js";
import { existsSync, statSync } from "node:fs";
import { join } from "node:path";
import { FileFormatError, LlmctlError, UsageError } from "../errors.js";
import { type GPTConfig, type HeadSpec, validateGPTConfig } from "./config.js";
import type { GPTModel } from "./gpt.js";

export const MODEL_FORMAT = "llmctl-model";
export const MODEL_FORMAT_VERSION = 1;
export const CONFIG_FILE = "config.json";
export const WEIGHTS_FILE = "model.safetensors";
/** A LoRA run's own weights: the adapters, and the frozen weights its base lacks (a new classifier head). */
export const ADAPTERS_FILE = "adapters.safetensors";

/** How instruction prompts are formatted (chapter 7; the styles themselves are src/generate/prompt-style.ts). */
export const PROMPT_STYLES = ["alpaca", "phi3"] as const;
export type PromptStyle = (typeof PROMPT_STYLES)[number];

/**
 * Which position's scores classify a text:
 * - `last` (the book): the last position of the padded row. Padding is `<|endoftext|>`, and the causal mask lets
 *   that position see the whole text, so this works, but the model must learn to read through the padding;
 * - `last-nonpad`: the text's own last token (the book's bonus experiments: 98.33% vs 95.67% test accuracy);
 * - `mean`: the mean over the text's tokens, padding excluded.
 */
export const POOLINGS = ["last", "last-nonpad", "mean"] as const;
export type Pooling = (typeof POOLINGS)[number];

/**
 * The head as config.json records it: the model's HeadSpec, and for a classifier what reading a text needs.
 * `max_length`: the token length texts were padded (and cut) to in training; classification pads to it
 * too, since with `last` pooling the model learned to read through exactly that padding.
 */
export type HeadMeta =
  | { kind: "lm" }
  | (Extract<HeadSpec, { kind: "classifier" }> & { labels?: string[]; pool?: Pooling; max_length?: number });

/**
 * A LoRA model (appendix E): the frozen weights are its base model's, read from that directory and checked
 * against the sha256 recorded here on every load; ADAPTERS_FILE holds the rest.
 */
export interface LoraMeta {
  rank: number;
  /** the adapters' product is scaled by alpha/rank */
  alpha: number;
  /** the base model directory, absolute */
  base: string;
  /** sha256 of the base's model.safetensors when the run started */
  base_sha256: string;
  /** frozen weights the base lacks (a classifier head put on for the run), kept in ADAPTERS_FILE */
  own_weights: string[];
}

/** What a LoRA model's config.json records about its base (rank and alpha come from the model). */
export type LoraBase = Omit<LoraMeta, "rank" | "alpha">;

/**
 * The tokenizer a model reads text with: GPT-2's, or its own byte-level BPE in the model directory's
 * tokenizer.json (`llmctl pretrain --tokenizer DIR` copies it there; src/tokenizer/bpe-file.ts reads it).
 */
export const TOKENIZERS = ["gpt2", "tokenizer.json"] as const;
export type TokenizerName = (typeof TOKENIZERS)[number];

export interface ModelMeta {
  format: typeof MODEL_FORMAT;
  version: typeof MODEL_FORMAT_VERSION;
  model: GPTConfig;
  tokenizer: TokenizerName;
  head: HeadMeta;
  /** how instruction prompts are formatted (chapter 7 models) */
  prompt_style?: PromptStyle;
  /** where the weights came from, e.g. "openai gpt2-124m" or "pretrain configs/gpt2-tiny.json" */
  source?: string;
  /** a LoRA model: adapters over a base model's frozen weights */
  lora?: LoraMeta;
}

/** What saveModelDir may add to the config beyond the model itself. */
export interface ModelExtras {
  /** classifier labels and pooling (the class count comes from the model) */
  labels?: string[];
  pool?: Pooling;
  /** classifier: the padded training length */
  max_length?: number;
  prompt_style?: PromptStyle;
  source?: string;
  /** a LoRA model's base */
  lora?: LoraBase;
  /** the model has its own tokenizer.json (the caller writes the file); default "gpt2" */
  tokenizer?: TokenizerName;
}

function bad(
  path: string,
  problem: string,
  fix = "re-create the model directory (pretrain, load-gpt2 or finetune write one)",
): FileFormatError {
  return new FileFormatError(`${path}: ${problem}`, fix);
}

/** Every key a config.json may have: a misspelt one ("promt_style") is refused rather than silently unused. */
const META_KEYS: readonly (keyof ModelMeta)[] = [
  "format",
  "version",
  "model",
  "tokenizer",
  "head",
  "prompt_style",
  "source",
  "lora",
];

/** Validate a parsed config.json. */
export function validateModelMeta(raw: unknown, path: string): ModelMeta {
  if (typeof raw !== "object" || raw === null || Array.isArray(raw)) throw bad(path, "must be a JSON object");
  const o = raw as Record<string, unknown>;
  if (o.format !== MODEL_FORMAT) throw bad(path, `'format' must be "${MODEL_FORMAT}", got ${JSON.stringify(o.format)}`);
  const unknown = Object.keys(o).find((key) => !(META_KEYS as readonly string[]).includes(key));
  if (unknown !== undefined) {
    throw bad(path, `unknown key '${unknown}'`, `the keys are ${META_KEYS.join(", ")}; remove or rename it`);
  }
  if (o.version !== MODEL_FORMAT_VERSION) {
    throw bad(
      path,
      `unsupported version ${JSON.stringify(o.version)} (this llmctl reads version ${MODEL_FORMAT_VERSION})`,
      "use the llmctl that wrote it",
    );
  }
  if (!(TOKENIZERS as readonly unknown[]).includes(o.tokenizer))
    throw bad(
      path,
      o.tokenizer === undefined ? "no 'tokenizer'" : `unknown tokenizer ${JSON.stringify(o.tokenizer)}`,
      'llmctl supports "gpt2" and "tokenizer.json" (the model directory\'s own)',
    );
  const model = validateGPTConfig(o.model, `${path} (model)`);
  const h = o.head as Record<string, unknown> | undefined;
  let head: HeadMeta;
  if (h === undefined || h.kind === "lm") {
    head = { kind: "lm" };
  } else if (h.kind === "classifier") {
    const n = h.num_classes;
    if (typeof n !== "number" || !Number.isInteger(n) || n < 2)
      throw bad(path, "head.num_classes must be an integer ≥ 2");
    if (
      h.labels !== undefined &&
      (!Array.isArray(h.labels) || h.labels.length !== n || !h.labels.every((l) => typeof l === "string"))
    ) {
      throw bad(path, `head.labels must be ${n} strings`);
    }
    if (h.pool !== undefined && !(POOLINGS as readonly unknown[]).includes(h.pool)) {
      throw bad(path, `head.pool must be one of ${POOLINGS.join(", ")}, got ${JSON.stringify(h.pool)}`);
    }
    const ml = h.max_length;
    if (ml !== undefined && (typeof ml !== "number" || !Number.isInteger(ml) || ml < 1 || ml > model.context_length)) {
      throw bad(
        path,
        `head.max_length must be an integer from 1 to the context length ${model.context_length}, got ${JSON.stringify(ml)}`,
      );
    }
    head = {
      kind: "classifier",
      num_classes: n,
      ...(h.labels ? { labels: h.labels as string[] } : {}),
      pool: (h.pool as Pooling | undefined) ?? "last",
      ...(ml !== undefined ? { max_length: ml as number } : {}),
    };
  } else {
    throw bad(path, `head.kind must be "lm" or "classifier", got ${JSON.stringify(h.kind)}`);
  }
  if (o.prompt_style !== undefined && !(PROMPT_STYLES as readonly unknown[]).includes(o.prompt_style)) {
    throw bad(path, `prompt_style must be one of ${PROMPT_STYLES.join(", ")}, got ${JSON.stringify(o.prompt_style)}`);
  }
  if (o.source !== undefined && typeof o.source !== "string") throw bad(path, "source must be a string");
  const lora = o.lora === undefined ? undefined : validateLoraMeta(o.lora, path);
  return {
    format: MODEL_FORMAT,
    version: MODEL_FORMAT_VERSION,
    model,
    tokenizer: o.tokenizer as TokenizerName,
    head,
    ...(o.prompt_style ? { prompt_style: o.prompt_style as PromptStyle } : {}),
    ...(o.source ? { source: o.source as string } : {}),
    ...(lora ? { lora } : {}),
  };
}

function validateLoraMeta(raw: unknown, path: string): LoraMeta {
  const l = (typeof raw === "object" && raw !== null ? raw : {}) as Record<string, unknown>;
  const positive = (v: unknown) => typeof v === "number" && Number.isFinite(v) && v > 0;
  if (!positive(l.rank) || !Number.isInteger(l.rank)) throw bad(path, "lora.rank must be a positive integer");
  if (!positive(l.alpha)) throw bad(path, "lora.alpha must be a positive number");
  if (typeof l.base !== "string" || !l.base) throw bad(path, "lora.base must name the base model directory");
  if (typeof l.base_sha256 !== "string" || !/^[0-9a-f]{64}$/.test(l.base_sha256))
    throw bad(path, "lora.base_sha256 must be a sha256 in hex");
  if (!Array.isArray(l.own_weights) || !l.own_weights.every((n) => typeof n === "string"))
    throw bad(path, "lora.own_weights must be a list of weight names");
  return {
    rank: l.rank as number,
    alpha: l.alpha as number,
    base: l.base,
    base_sha256: l.base_sha256,
    own_weights: l.own_weights as string[],
  };
}

function checkDir(dir: string): void {
  if (!existsSync(dir)) {
    throw new FileFormatError(
      `model directory not found: ${dir}`,
      "give a directory written by `llmctl pretrain --out`, `llmctl load-gpt2` or `llmctl finetune`",
    );
  }
  if (!statSync(dir).isDirectory())
    throw new FileFormatError(`${dir} is not a directory`, "give a model directory (config.json + model.safetensors)");
}

/** Read and validate DIR/config.json only (no weights): for `info` and for deciding how to load. */
export async function readModelMeta(dir: string): Promise<ModelMeta> {
  checkDir(dir);
  const path = join(dir, CONFIG_FILE);
  if (!existsSync(path)) {
    throw new FileFormatError(
      `${dir} has no ${CONFIG_FILE}`,
      "give a directory written by pretrain, load-gpt2 or finetune",
    );
  }
  let raw: unknown;
  try {
    raw = JSON.parse(await readTextFile(path));
  } catch (err) {
    if (err instanceof LlmctlError) throw err;
    throw bad(path, `not valid JSON (${(err as Error).message})`);
  }
  return validateModelMeta(raw, path);
}

/** The config.json a model would be saved with. */
export function modelMetaFor(gpt: GPTModel, extra: ModelExtras = {}): ModelMeta {
  if (gpt.lora && !extra.lora) throw new Error("modelMetaFor: a LoRA model is saved with its base (extra.lora)");
  const head: HeadMeta =
    gpt.head.kind === "classifier"
      ? {
          kind: "classifier",
          num_classes: gpt.head.num_classes,
          ...(extra.labels ? { labels: extra.labels } : {}),
          pool: extra.pool ?? "last",
          ...(extra.max_length !== undefined ? { max_length: extra.max_length } : {}),
        }
      : { kind: "lm" };
  if (head.kind === "classifier" && head.labels && head.labels.length !== head.num_classes) {
    throw new FileFormatError(
      `${head.labels.length} labels for a classifier with ${head.num_classes} classes`,
      "give one label per class",
    );
  }
  return {
    format: MODEL_FORMAT,
    version: MODEL_FORMAT_VERSION,
    model: gpt.config,
    tokenizer: extra.tokenizer ?? "gpt2",
    head,
    ...(extra.prompt_style ? { prompt_style: extra.prompt_style } : {}),
    ...(extra.source ? { source: extra.source } : {}),
    ...(gpt.lora && extra.lora ? { lora: { ...gpt.lora, ...extra.lora } } : {}),
  };
}

export function checkPooling(pool: string): Pooling {
  if (!(POOLINGS as readonly string[]).includes(pool)) {
    throw new UsageError(`unknown pooling '${pool}'`, `use one of ${POOLINGS.join(", ")}`);
  }
  return pool as Pooling;
}
