/**
 * The model configuration: the book's GPT_CONFIG_124M in snake_case, plus `tied_head`, plus the optional keys
 * that make the same model a Llama 3 or a Qwen3 (docs/families.md). Config files in
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

  // The keys below make the one model a Llama 3 or a Qwen3 (docs/families.md); a config without them is GPT-2
  // exactly. `architecture(cfg)` resolves each to its value.
  /** the weight names: "gpt2" (wte, h.N.attn.c_attn, …) or Hugging Face Llama's (embed_tokens, layers.N.self_attn.q_proj, …), which Qwen3 shares */
  family?: Family;
  /** "layernorm" (weight + bias; GPT-2) or "rmsnorm" (weight only; Llama, Qwen3); default by family */
  norm?: "layernorm" | "rmsnorm";
  /** the norms' epsilon (default 1e-5) */
  norm_eps?: number;
  /** "gelu" (c_fc, c_proj with biases; GPT-2) or "swiglu" (gate_proj, up_proj, down_proj, SiLU; no biases) */
  mlp?: "gelu" | "swiglu";
  /** the MLP's inner width (default 4·emb_dim) */
  hidden_dim?: number;
  /** "learned" (a wpe table; GPT-2) or "rope" (rotary, nothing to learn) */
  positions?: "learned" | "rope";
  /** RoPE's base θ (default 10000) */
  rope_theta?: number;
  /** Llama 3's frequency scaling of RoPE (transformers' rope_scaling with rope_type "llama3") */
  rope_scaling?: RopeScaling;
  /** key/value heads (grouped-query attention): n_heads must divide by it; default n_heads */
  n_kv_heads?: number;
  /** width of one head (default emb_dim / n_heads); Llama-family models may set it independently */
  head_dim?: number;
  /** Qwen3's RMSNorm of each query and key head (q_norm, k_norm), before RoPE */
  qk_norm?: boolean;
  /** bias on q_proj, k_proj, v_proj and o_proj (Llama's attention_bias; Llama-family names only) */
  attention_bias?: boolean;
}

export const FAMILIES = ["gpt2", "llama", "qwen3"] as const;
export type Family = (typeof FAMILIES)[number];

export type RopeScaling = {
  rope_type: "llama3";
  factor: number;
  low_freq_factor: number;
  high_freq_factor: number;
  original_max_position_embeddings: number;
};

/** A config's architecture with every family key resolved to its value (the config's own or the default). */
export type Architecture = {
  /** names as GPT-2's or as Hugging Face Llama's (which Qwen3 shares) */
  names: "gpt2" | "llama";
  norm: "layernorm" | "rmsnorm";
  normEps: number;
  mlp: "gelu" | "swiglu";
  hiddenDim: number;
  positions: "learned" | "rope";
  ropeTheta: number;
  ropeScaling: RopeScaling | null;
  nKvHeads: number;
  headDim: number;
  qkNorm: boolean;
  attentionBias: boolean;
};

/** Every family key resolved: each family's defaults (GPT-2: LayerNorm, GELU, learned positions; Llama: RMSNorm, SwiGLU, RoPE; Qwen3: Llama's plus q/k norm). */
export function architecture(cfg: GPTConfig): Architecture {
  const family = cfg.family ?? "gpt2";
  const llamaLike = family !== "gpt2";
  return {
    names: llamaLike ? "llama" : "gpt2",
    norm: cfg.norm ?? (llamaLike ? "rmsnorm" : "layernorm"),
    normEps: cfg.norm_eps ?? 1e-5,
    mlp: cfg.mlp ?? (llamaLike ? "swiglu" : "gelu"),
    hiddenDim: cfg.hidden_dim ?? 4 * cfg.emb_dim,
    positions: cfg.positions ?? (llamaLike ? "rope" : "learned"),
    ropeTheta: cfg.rope_theta ?? 10000,
    ropeScaling: cfg.rope_scaling ?? null,
    nKvHeads: cfg.n_kv_heads ?? cfg.n_heads,
    headDim: cfg.head_dim ?? cfg.emb_dim / cfg.n_heads,
    qkNorm: cfg.qk_norm ?? family === "qwen3",
    attentionBias: cfg.attention_bias ?? false,
  };
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
const FAMILY_KEYS = [
  "family",
  "norm",
  "norm_eps",
  "mlp",
  "hidden_dim",
  "positions",
  "rope_theta",
  "rope_scaling",
  "n_kv_heads",
  "head_dim",
  "qk_norm",
  "attention_bias",
] as const;
const KNOWN_KEYS = new Set<string>([...INT_KEYS, "drop_rate", "qkv_bias", "tied_head", "init", ...FAMILY_KEYS]);

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
    ...validateFamilyKeys(obj, where),
  };
  if (cfg.head_dim === undefined && cfg.emb_dim % cfg.n_heads !== 0) {
    throw new ConfigError(
      `${where}: emb_dim ${cfg.emb_dim} does not divide into n_heads ${cfg.n_heads}`,
      "choose n_heads that divides emb_dim (head size = emb_dim / n_heads)",
    );
  }
  refuseOversized(cfg, where);
  return cfg;
}

/** The family keys of a model config, checked one by one and together (only the keys given are returned). */
function validateFamilyKeys(obj: Record<string, unknown>, where: string): Partial<GPTConfig> {
  const out: Record<string, unknown> = {};
  const oneOf = (key: string, values: readonly string[]) => {
    if (obj[key] === undefined) return;
    if (!values.includes(obj[key] as string))
      throw new ConfigError(
        `${where}: model key '${key}' must be one of ${values.map((v) => `"${v}"`).join(", ")}, got ${JSON.stringify(obj[key])}`,
      );
    out[key] = obj[key];
  };
  const positive = (key: string, integer: boolean) => {
    const v = obj[key];
    if (v === undefined) return;
    if (typeof v !== "number" || !(v > 0) || !Number.isFinite(v) || (integer && !Number.isInteger(v)))
      throw new ConfigError(
        `${where}: model key '${key}' must be a positive ${integer ? "integer" : "number"}, got ${JSON.stringify(v)}`,
      );
    out[key] = v;
  };
  const flag = (key: string) => {
    if (obj[key] === undefined) return;
    if (typeof obj[key] !== "boolean")
      throw new ConfigError(`${where}: model key '${key}' must be true or false, got ${JSON.stringify(obj[key])}`);
    out[key] = obj[key];
  };
  oneOf("family", FAMILIES);
  oneOf("norm", ["layernorm", "rmsnorm"]);
  oneOf("mlp", ["gelu", "swiglu"]);
  oneOf("positions", ["learned", "rope"]);
  for (const key of ["hidden_dim", "n_kv_heads", "head_dim"]) positive(key, true);
  for (const key of ["norm_eps", "rope_theta"]) positive(key, false);
  flag("qk_norm");
  flag("attention_bias");
  if (obj.rope_scaling !== undefined) out.rope_scaling = validateRopeScaling(obj.rope_scaling, where);
  const cfg = { ...(obj as unknown as GPTConfig), ...out };
  const arch = architecture(cfg);
  if (cfg.n_heads % arch.nKvHeads !== 0)
    throw new ConfigError(
      `${where}: n_heads ${cfg.n_heads} does not divide into n_kv_heads ${arch.nKvHeads}`,
      "each key/value head serves n_heads / n_kv_heads query heads",
    );
  if (arch.headDim % 2 !== 0 && arch.positions === "rope")
    throw new ConfigError(`${where}: RoPE needs an even head size, got ${arch.headDim}`);
  if (arch.names === "gpt2") {
    // GPT-2's fused c_attn [D,3D] holds n_heads heads of D/n_heads for each of q, k and v: nothing else fits
    if (
      arch.qkNorm ||
      arch.attentionBias ||
      arch.nKvHeads !== cfg.n_heads ||
      arch.headDim !== cfg.emb_dim / cfg.n_heads
    )
      throw new ConfigError(
        `${where}: n_kv_heads, head_dim, qk_norm and attention_bias need "family": "llama" or "qwen3"`,
        "GPT-2's fused c_attn holds n_heads heads of emb_dim / n_heads (its bias is qkv_bias)",
      );
  } else if (obj.qkv_bias === true) {
    throw new ConfigError(`${where}: qkv_bias is GPT-2's; the Llama family's key is attention_bias`);
  }
  if (arch.positions !== "rope" && (out.rope_theta !== undefined || out.rope_scaling !== undefined))
    throw new ConfigError(`${where}: rope_theta and rope_scaling need "positions": "rope"`);
  return out as Partial<GPTConfig>;
}

function validateRopeScaling(raw: unknown, where: string): RopeScaling {
  const keys = ["factor", "low_freq_factor", "high_freq_factor", "original_max_position_embeddings"] as const;
  const r = raw as Record<string, unknown>;
  if (typeof raw !== "object" || raw === null || r.rope_type !== "llama3")
    throw new ConfigError(
      `${where}: model key 'rope_scaling' must be Llama 3's { "rope_type": "llama3", ${keys.join(", ")} }, got ${JSON.stringify(raw)}`,
    );
  for (const key of keys) {
    if (typeof r[key] !== "number" || !(r[key] > 0))
      throw new ConfigError(`${where}: rope_scaling.${key} must be a positive number, got ${JSON.stringify(r[key])}`);
  }
  if (!((r.high_freq_factor as number) > (r.low_freq_factor as number)))
    throw new ConfigError(`${where}: rope_scaling.high_freq_factor must exceed low_freq_factor`);
  return {
    rope_type: "llama3",
    factor: r.factor as number,
    low_freq_factor: r.low_freq_factor as number,
    high_freq_factor: r.high_freq_factor as number,
    original_max_position_embeddings: r.original_max_position_embeddings as number,
  };
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
 * GPT-2 name (no `transformer.` prefix; docs/model-directory.md) or, for the Llama family, its Llama/Qwen3 name
 * (no `model.` prefix; docs/families.md), in the model's order. Projection weights are [in, out] (GPT-2's
 * Conv1D layout); the heads are [out, D] (PyTorch's Linear layout). A tied head shares the token embedding.
 */
export function parameterShapes(cfg: GPTConfig, head: HeadSpec = { kind: "lm" }): Map<string, number[]> {
  const D = cfg.emb_dim;
  const arch = architecture(cfg);
  const n = NAMES[arch.names];
  const F = arch.hiddenDim;
  const shapes = new Map<string, number[]>([[`${n.embed}.weight`, [cfg.vocab_size, D]]]);
  if (arch.positions === "learned") shapes.set("wpe.weight", [cfg.context_length, D]);
  const norm = (prefix: string, width: number) => {
    shapes.set(`${prefix}.weight`, [width]);
    if (arch.norm === "layernorm") shapes.set(`${prefix}.bias`, [width]);
  };
  for (let i = 0; i < cfg.n_layers; i++) {
    const h = `${n.block}.${i}`;
    norm(`${h}.${n.ln1}`, D);
    if (arch.names === "gpt2") {
      shapes.set(`${h}.attn.c_attn.weight`, [D, 3 * D]);
      if (cfg.qkv_bias) shapes.set(`${h}.attn.c_attn.bias`, [3 * D]);
      shapes.set(`${h}.attn.c_proj.weight`, [D, D]).set(`${h}.attn.c_proj.bias`, [D]);
    } else {
      const a = `${h}.self_attn`;
      const [Q, KV] = [cfg.n_heads * arch.headDim, arch.nKvHeads * arch.headDim];
      for (const [proj, out] of [
        ["q_proj", Q],
        ["k_proj", KV],
        ["v_proj", KV],
      ] as const) {
        shapes.set(`${a}.${proj}.weight`, [D, out]);
        if (arch.attentionBias) shapes.set(`${a}.${proj}.bias`, [out]);
      }
      shapes.set(`${a}.o_proj.weight`, [Q, D]);
      if (arch.attentionBias) shapes.set(`${a}.o_proj.bias`, [D]);
      if (arch.qkNorm) shapes.set(`${a}.q_norm.weight`, [arch.headDim]).set(`${a}.k_norm.weight`, [arch.headDim]);
    }
    norm(`${h}.${n.ln2}`, D);
    if (arch.mlp === "gelu") {
      shapes.set(`${h}.mlp.c_fc.weight`, [D, F]).set(`${h}.mlp.c_fc.bias`, [F]);
      shapes.set(`${h}.mlp.c_proj.weight`, [F, D]).set(`${h}.mlp.c_proj.bias`, [D]);
    } else {
      shapes.set(`${h}.mlp.gate_proj.weight`, [D, F]).set(`${h}.mlp.up_proj.weight`, [D, F]);
      shapes.set(`${h}.mlp.down_proj.weight`, [F, D]);
    }
  }
  norm(n.lnF, D);
  if (head.kind === "classifier") {
    shapes.set("score.weight", [head.num_classes, D]).set("score.bias", [head.num_classes]);
  } else if (!cfg.tied_head) {
    shapes.set("lm_head.weight", [cfg.vocab_size, D]);
  }
  return shapes;
}

/**
 * The layers' names in each naming: GPT-2's (Hugging Face's GPT2LMHeadModel without `transformer.`) and Llama's
 * (LlamaForCausalLM's and Qwen3ForCausalLM's without `model.`).
 */
export const NAMES = {
  gpt2: { embed: "wte", block: "h", ln1: "ln_1", attn: "attn", ln2: "ln_2", lnF: "ln_f" },
  llama: {
    embed: "embed_tokens",
    block: "layers",
    ln1: "input_layernorm",
    attn: "self_attn",
    ln2: "post_attention_layernorm",
    lnF: "norm",
  },
} as const;

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
  const arch = architecture(cfg);
  const F = arch.hiddenDim;
  const norm = arch.norm === "layernorm" ? 2 * D : D;
  let attn: number;
  if (arch.names === "gpt2") {
    // c_attn 3D² (+3D bias), c_proj D² + D
    attn = 4 * D * D + D + (cfg.qkv_bias ? 3 * D : 0);
  } else {
    const [Q, KV] = [cfg.n_heads * arch.headDim, arch.nKvHeads * arch.headDim];
    attn = 2 * D * Q + 2 * D * KV + (arch.attentionBias ? Q + 2 * KV + D : 0) + (arch.qkNorm ? 2 * arch.headDim : 0);
  }
  const mlp = arch.mlp === "gelu" ? 2 * D * F + F + D : 3 * D * F;
  const block = 2 * norm + attn + mlp;
  const outHead =
    head.kind === "classifier" ? head.num_classes * D + head.num_classes : cfg.tied_head ? 0 : cfg.vocab_size * D;
  const positions = arch.positions === "learned" ? cfg.context_length * D : 0;
  return cfg.vocab_size * D + positions + cfg.n_layers * block + norm + outHead;
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
