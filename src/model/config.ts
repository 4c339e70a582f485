/**
 * The model configuration: the book's GPT_CONFIG_124M in snake_case, plus `tied_head`. Config files in
 * configs/*.json hold `{ "model": GPTConfig, "train": {...} }`; the train section's keys belong to src/train
 * and are passed through here untouched.
 */
import { requireFile } from "../formats/file.js";
import { existsSync, readFileSync, readdirSync } from "node:fs";
import { totalmem } from "node:os";
import { fileURLToPath } from "node:url";
import { join, resolve } from "node:path";
import { ConfigError, FileFormatError, LlmctlError } from "../errors.js";

export interface GPTConfig {
  /** tokens in the vocabulary (50257 for GPT-2) */
  vocab_size: number;
  /** the longest sequence the model sees (size of the position table) */
  context_length: number;
  /** width of the residual stream D */
  emb_dim: number;
  /** attention heads; emb_dim must divide by it */
  n_heads: number;
  /** transformer blocks */
  n_layers: number;
  /** dropout on embeddings, attention weights and both residual branches, only while training */
  drop_rate: number;
  /** bias on the query/key/value projection (GPT-2 has one; the book trains without) */
  qkv_bias: boolean;
  /** output head shares the token embedding (GPT-2 ships tied; the book trains untied) */
  tied_head: boolean;
  /**
   * How fresh weights are drawn: "gpt2" (N(0, 0.02), residual projections scaled by 1/√(2·n_layers), as GPT-2 and
   * nanoGPT) or "torch" (PyTorch's layer defaults, which the book's from-scratch training uses: embeddings N(0, 1),
   * linear weights and biases U(±1/√fan_in)). Default "gpt2".
   */
  init?: "gpt2" | "torch";
}

/** The train section of a config file; its keys are documented and validated by src/train. */
export type TrainSection = Record<string, unknown>;

export interface ConfigFile {
  model: GPTConfig;
  train: TrainSection;
}

/** The output head: next-token logits, or a classifier over num_classes labels (chapter 6), as config.json names it. */
export type HeadSpec = { kind: "lm" } | { kind: "classifier"; num_classes: number };

const INT_KEYS = ["vocab_size", "context_length", "emb_dim", "n_heads", "n_layers"] as const;
const KNOWN_KEYS = new Set<string>([...INT_KEYS, "drop_rate", "qkv_bias", "tied_head", "init"]);

/**
 * Check a parsed model config and fill in defaults (qkv_bias and tied_head default to false, as the book).
 * `where` names the source in error messages, e.g. "configs/gpt2-tiny.json".
 */
export function validateGPTConfig(raw: unknown, where = "model config"): GPTConfig {
  if (typeof raw !== "object" || raw === null || Array.isArray(raw)) {
    throw new ConfigError(`${where}: the model config must be a JSON object`, `give ${[...KNOWN_KEYS].join(", ")}`);
  }
  const obj = raw as Record<string, unknown>;
  for (const key of Object.keys(obj)) {
    if (!KNOWN_KEYS.has(key)) {
      throw new ConfigError(`${where}: unknown model key '${key}'`, `the model keys are ${[...KNOWN_KEYS].join(", ")}`);
    }
  }
  for (const key of INT_KEYS) {
    const v = obj[key];
    if (v === undefined)
      throw new ConfigError(`${where}: model key '${key}' is missing`, `add "${key}": <positive integer>`);
    if (typeof v !== "number" || !Number.isInteger(v) || v <= 0) {
      throw new ConfigError(`${where}: model key '${key}' must be a positive integer, got ${JSON.stringify(v)}`);
    }
  }
  const drop = obj.drop_rate ?? 0;
  if (typeof drop !== "number" || !(drop >= 0 && drop < 1)) {
    throw new ConfigError(
      `${where}: model key 'drop_rate' must be a number in [0, 1), got ${JSON.stringify(obj.drop_rate)}`,
    );
  }
  for (const key of ["qkv_bias", "tied_head"] as const) {
    if (obj[key] !== undefined && typeof obj[key] !== "boolean") {
      throw new ConfigError(`${where}: model key '${key}' must be true or false, got ${JSON.stringify(obj[key])}`);
    }
  }
  if (obj.init !== undefined && obj.init !== "gpt2" && obj.init !== "torch") {
    throw new ConfigError(`${where}: model key 'init' must be "gpt2" or "torch", got ${JSON.stringify(obj.init)}`);
  }
  const cfg: GPTConfig = {
    vocab_size: obj.vocab_size as number,
    context_length: obj.context_length as number,
    emb_dim: obj.emb_dim as number,
    n_heads: obj.n_heads as number,
    n_layers: obj.n_layers as number,
    drop_rate: drop,
    qkv_bias: (obj.qkv_bias as boolean | undefined) ?? false,
    tied_head: (obj.tied_head as boolean | undefined) ?? false,
    ...(obj.init !== undefined ? { init: obj.init as "gpt2" | "torch" } : {}),
  };
  if (cfg.emb_dim % cfg.n_heads !== 0) {
    throw new ConfigError(
      `${where}: emb_dim ${cfg.emb_dim} does not divide into n_heads ${cfg.n_heads}`,
      "choose n_heads that divides emb_dim (head size = emb_dim / n_heads)",
    );
  }
  refuseOversized(cfg, where);
  return cfg;
}

const GB = (bytes: number) => `${(bytes / 2 ** 30).toFixed(1)} GiB`;

/**
 * A model whose float32 weights alone exceed the machine's memory cannot be built, trained or loaded; it is
 * refused from its numbers before anything is allocated (else n_layers 1e6 grows until the OS kills it, and
 * emb_dim 1e9 fails deep in TF.js with "Invalid typed array length").
 */
function refuseOversized(cfg: GPTConfig, where: string): void {
  const parameters = countParameters(cfg);
  const limit = totalmem();
  if (parameters * 4 > limit) {
    throw new ConfigError(
      `${where}: the model has ${parameters.toLocaleString("en-US")} parameters, ${GB(parameters * 4)} as float32; this machine has ${GB(limit)} of memory`,
      "lower n_layers, emb_dim, vocab_size or context_length",
    );
  }
}

/** configs/ of the installed package (dist/src/model → ../../../configs, or src/model → ../../configs). */
export function configsDir(): string {
  const here = fileURLToPath(new URL(".", import.meta.url));
  for (const up of ["../../../configs", "../../configs"]) {
    const dir = resolve(here, up);
    if (existsSync(dir)) return dir;
  }
  return resolve(here, "../../../configs");
}

/** A path to a config file, or the name of a bundled one ("gpt2-tiny" → configs/gpt2-tiny.json). */
export function resolveConfigPath(nameOrPath: string): string {
  if (existsSync(nameOrPath)) return nameOrPath;
  const bundled = join(configsDir(), nameOrPath.endsWith(".json") ? nameOrPath : `${nameOrPath}.json`);
  if (!nameOrPath.includes("/") && existsSync(bundled)) return bundled;
  throw new ConfigError(
    `config not found: ${nameOrPath}`,
    `give a path to a JSON config, or a bundled name (${bundledConfigNames().join(", ")})`,
  );
}

export function bundledConfigNames(): string[] {
  const dir = configsDir();
  if (!existsSync(dir)) return [];
  return readdirSync(dir)
    .filter((f) => f.endsWith(".json"))
    .map((f) => f.slice(0, -5))
    .sort();
}

/** Read and validate a config file (`{ "model": {...}, "train": {...} }`); a bundled name works too. */
export function loadConfigFile(nameOrPath: string): ConfigFile {
  const path = resolveConfigPath(nameOrPath);
  let raw: unknown;
  try {
    requireFile(path, { fix: "give a config file (JSON) or the name of a bundled one (configs/)" });
    raw = JSON.parse(readFileSync(path, "utf8"));
  } catch (err) {
    if (err instanceof LlmctlError) throw err;
    throw new ConfigError(`${path} is not valid JSON: ${(err as Error).message}`, "fix the JSON syntax");
  }
  if (typeof raw !== "object" || raw === null || Array.isArray(raw)) {
    throw new ConfigError(`${path}: a config file must be a JSON object`, 'write { "model": {...}, "train": {...} }');
  }
  const obj = raw as Record<string, unknown>;
  if (obj.model === undefined) {
    throw new ConfigError(`${path}: the 'model' section is missing`, 'write { "model": {...}, "train": {...} }');
  }
  for (const key of Object.keys(obj)) {
    if (key !== "model" && key !== "train" && key !== "description") {
      throw new ConfigError(
        `${path}: unknown top-level key '${key}'`,
        "a config file has 'model', 'train' and optionally 'description'",
      );
    }
  }
  const train = obj.train ?? {};
  if (typeof train !== "object" || train === null || Array.isArray(train)) {
    throw new ConfigError(`${path}: the 'train' section must be a JSON object`);
  }
  return { model: validateGPTConfig(obj.model, path), train: train as TrainSection };
}

/**
 * The parameter table: every weight of the model `buildGPT(cfg, { head })` builds, under its Hugging Face
 * GPT-2 name (no `transformer.` prefix; docs/model-directory.md), in the model's order. Projection weights are
 * [in, out] (GPT-2's Conv1D layout); the heads are [out, D] (PyTorch's Linear layout). A tied head shares wte.
 */
export function parameterShapes(cfg: GPTConfig, head: HeadSpec = { kind: "lm" }): Map<string, number[]> {
  const D = cfg.emb_dim;
  const shapes = new Map<string, number[]>([
    ["wte.weight", [cfg.vocab_size, D]],
    ["wpe.weight", [cfg.context_length, D]],
  ]);
  for (let i = 0; i < cfg.n_layers; i++) {
    const h = `h.${i}`;
    shapes.set(`${h}.ln_1.weight`, [D]).set(`${h}.ln_1.bias`, [D]);
    shapes.set(`${h}.attn.c_attn.weight`, [D, 3 * D]);
    if (cfg.qkv_bias) shapes.set(`${h}.attn.c_attn.bias`, [3 * D]);
    shapes.set(`${h}.attn.c_proj.weight`, [D, D]).set(`${h}.attn.c_proj.bias`, [D]);
    shapes.set(`${h}.ln_2.weight`, [D]).set(`${h}.ln_2.bias`, [D]);
    shapes.set(`${h}.mlp.c_fc.weight`, [D, 4 * D]).set(`${h}.mlp.c_fc.bias`, [4 * D]);
    shapes.set(`${h}.mlp.c_proj.weight`, [4 * D, D]).set(`${h}.mlp.c_proj.bias`, [D]);
  }
  shapes.set("ln_f.weight", [D]).set("ln_f.bias", [D]);
  if (head.kind === "classifier") {
    shapes.set("score.weight", [head.num_classes, D]).set("score.bias", [head.num_classes]);
  } else if (!cfg.tied_head) {
    shapes.set("lm_head.weight", [cfg.vocab_size, D]);
  }
  return shapes;
}

function size(shape: readonly number[]): number {
  return shape.reduce((a, b) => a * b, 1);
}

/**
 * Parameters of the model `buildGPT(cfg, { head })` builds: the parameter table's sum, in closed form so that a
 * config can be sized before its table is (nothing allocated). For the book's 124M config: 163,009,536
 * untied, 124,412,160 tied.
 */
export function countParameters(cfg: GPTConfig, head: HeadSpec = { kind: "lm" }): number {
  const D = cfg.emb_dim;
  // per block: ln_1, ln_2 (2D each), c_attn 3D² (+3D bias), c_proj D² + D, c_fc 4D² + 4D, mlp c_proj 4D² + D
  const block = 12 * D * D + 10 * D + (cfg.qkv_bias ? 3 * D : 0);
  const outHead =
    head.kind === "classifier" ? head.num_classes * D + head.num_classes : cfg.tied_head ? 0 : cfg.vocab_size * D;
  return (cfg.vocab_size + cfg.context_length) * D + cfg.n_layers * block + 2 * D + outHead;
}

export interface ShapeCheckOptions {
  /** what to do about a mismatch (default: load weights written for this config) */
  fix?: string;
  /** the name a tensor has in the source, for messages (e.g. OpenAI's `model/h0/attn/c_attn/w`) */
  sourceName?: (name: string) => string;
}

/**
 * Check a set of tensors against a parameter table: every name present, none extra, every shape equal (a bare
 * number is an element count, for data without a shape). Throws FileFormatError naming the tensor at fault.
 */
export function checkWeightShapes(
  expected: Map<string, number[]>,
  found: Map<string, readonly number[] | number>,
  where: string,
  opts: ShapeCheckOptions = {},
): void {
  const fix =
    opts.fix ??
    "load weights written for this model config (check qkv_bias, tied_head, n_layers, emb_dim and the head)";
  const source = opts.sourceName ?? ((name: string) => name);
  const fmt = (shape: readonly number[]) => `[${shape.join(", ")}]`;
  // in table order, so the first problem reported is the first tensor at fault
  for (const [name, shape] of expected) {
    const got = found.get(name);
    if (got === undefined) {
      const rest = [...expected.keys()].filter((k) => k !== name && !found.has(k)).map(source);
      const needed = source(name) === name ? "" : `needed for ${name}, `;
      const more = rest.length > 0 ? `; ${rest.length} more missing: ${listNames(rest)}` : "";
      throw new FileFormatError(`${where} has no tensor '${source(name)}' (${needed}shape ${fmt(shape)})${more}`, fix);
    }
    if (
      typeof got === "number" ? got !== size(shape) : got.length !== shape.length || got.some((d, i) => d !== shape[i])
    ) {
      const desc = typeof got === "number" ? `${got} values` : `shape ${fmt(got)}`;
      throw new FileFormatError(`${where}: tensor '${source(name)}' has ${desc}, expected ${fmt(shape)}`, fix);
    }
  }
  const extra = [...found.keys()].filter((k) => !expected.has(k));
  if (extra.length > 0) {
    throw new FileFormatError(
      `${where} holds ${extra.length} tensor(s) this model has no place for: ${listNames(extra.map(source))}`,
      fix,
    );
  }
}

function listNames(names: string[]): string {
  return names.length <= 5 ? names.join(", ") : `${names.slice(0, 5).join(", ")}, … (${names.length - 5} more)`;
}
