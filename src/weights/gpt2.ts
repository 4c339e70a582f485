/**
 * GPT-2 checkpoints → llmctl model directories, and back out to Hugging Face.
 *
 * Our weight names ARE Hugging Face's GPT-2 names without the `transformer.` prefix (see
 * docs/model-directory.md), and all projection weights are [in, out] in both GPT-2 formats and ours, so
 * conversion is renaming plus one reshape: OpenAI stores each Conv1D weight as [1, in, out].
 *
 *   OpenAI (TF checkpoint)          Hugging Face (safetensors)      shape
 *   model/wte                       wte.weight                      [V, D]
 *   model/wpe                       wpe.weight                      [ctx, D]
 *   model/h{i}/ln_1/g | b           h.{i}.ln_1.weight | bias        [D]
 *   model/h{i}/attn/c_attn/w | b    h.{i}.attn.c_attn.weight | bias [1,D,3D]→[D,3D] | [3D]
 *   model/h{i}/attn/c_proj/w | b    h.{i}.attn.c_proj.weight | bias [1,D,D]→[D,D] | [D]
 *   model/h{i}/ln_2/g | b           h.{i}.ln_2.weight | bias        [D]
 *   model/h{i}/mlp/c_fc/w | b       h.{i}.mlp.c_fc.weight | bias    [1,D,4D]→[D,4D] | [4D]
 *   model/h{i}/mlp/c_proj/w | b     h.{i}.mlp.c_proj.weight | bias  [1,4D,D]→[4D,D] | [D]
 *   model/ln_f/g | b                ln_f.weight | bias              [D]
 *   (head tied to wte)              lm_head.weight (absent, or = wte) [V, D]
 *
 * Conversion streams: each tensor is read from the source, checked, written to model.safetensors and dropped,
 * so converting 1558M (6.2 GB of float32) needs memory for one tensor at a time, not the model.
 */
import { readJsonObject } from "../formats/file.js";
import { existsSync, statSync } from "node:fs";
import { readFile } from "node:fs/promises";
import { fillDirectory } from "../fs-atomic.js";
import { basename, dirname, join } from "node:path";
import { FileFormatError, UsageError } from "../errors.js";
import {
  type GPTConfig,
  checkWeightShapes,
  countParameters,
  parameterShapes,
  validateGPTConfig,
} from "../model/config.js";
import { writeModelDir } from "../model/model-dir.js";
import { CONFIG_FILE, validateModelMeta, type ModelMeta } from "../model/model-meta.js";
import { readSafetensors, type SafetensorsFile } from "../formats/safetensors.js";
import { TensorBundleReader } from "../formats/tf-bundle.js";

/** Config of a GPT-2 model as loaded for inference: qkv bias, tied head, no dropout (finetune sets its own). */
export function gpt2Config(h: {
  n_vocab: number;
  n_ctx: number;
  n_embd: number;
  n_head: number;
  n_layer: number;
}): GPTConfig {
  return {
    vocab_size: h.n_vocab,
    context_length: h.n_ctx,
    emb_dim: h.n_embd,
    n_heads: h.n_head,
    n_layers: h.n_layer,
    drop_rate: 0,
    qkv_bias: true,
    tied_head: true,
  };
}

/** One tensor of a checkpoint, under our name, read on demand. */
export interface SourceTensor {
  /** Name in the source file, for messages. */
  sourceName: string;
  shape: number[];
  read(): Promise<Float32Array>;
}

/** A GPT-2 checkpoint opened for conversion. */
export interface Gpt2Checkpoint {
  format: "openai" | "hf";
  /** What was opened (directory, prefix or file). */
  path: string;
  config: GPTConfig;
  /** Our name → tensor. Exactly the names parameterShapes(config) lists, shapes already checked. */
  tensors: Map<string, SourceTensor>;
  close(): Promise<void>;
}

function fmt(shape: readonly number[]): string {
  return `[${shape.join(", ")}]`;
}

function sameShape(a: readonly number[], b: readonly number[]): boolean {
  return a.length === b.length && a.every((v, i) => v === b[i]);
}

/** Every tensor of the parameter table present, nothing else, every shape right; messages name the source tensor. */
function checkTensors(
  where: string,
  cfg: GPTConfig,
  tensors: Map<string, SourceTensor>,
  sourceNameOf: (ours: string) => string,
): void {
  checkWeightShapes(parameterShapes(cfg), new Map([...tensors].map(([name, t]) => [name, t.shape])), where, {
    fix: "use a GPT-2 checkpoint whose files belong together (hparams/config and weights of the same model size)",
    sourceName: (name) => tensors.get(name)?.sourceName ?? sourceNameOf(name),
  });
}

// ---- OpenAI: hparams.json + model.ckpt.{index,data-00000-of-00001} ----

const OPENAI_PARTS: [RegExp, (m: RegExpMatchArray) => string][] = [
  [/^model\/wte$/, () => "wte.weight"],
  [/^model\/wpe$/, () => "wpe.weight"],
  [/^model\/ln_f\/g$/, () => "ln_f.weight"],
  [/^model\/ln_f\/b$/, () => "ln_f.bias"],
  [/^model\/h(\d+)\/(ln_1|ln_2)\/g$/, (m) => `h.${m[1]}.${m[2]}.weight`],
  [/^model\/h(\d+)\/(ln_1|ln_2)\/b$/, (m) => `h.${m[1]}.${m[2]}.bias`],
  [
    /^model\/h(\d+)\/(attn\/c_attn|attn\/c_proj|mlp\/c_fc|mlp\/c_proj)\/w$/,
    (m) => `h.${m[1]}.${m[2]!.replace("/", ".")}.weight`,
  ],
  [
    /^model\/h(\d+)\/(attn\/c_attn|attn\/c_proj|mlp\/c_fc|mlp\/c_proj)\/b$/,
    (m) => `h.${m[1]}.${m[2]!.replace("/", ".")}.bias`,
  ],
];

/** OpenAI variable name → our name, or undefined for a name that is not a GPT-2 weight. */
export function openaiToInternal(name: string): string | undefined {
  for (const [re, f] of OPENAI_PARTS) {
    const m = name.match(re);
    if (m) return f(m);
  }
  return undefined;
}

/** Our name → OpenAI variable name (for messages). */
export function internalToOpenai(name: string): string {
  if (name === "wte.weight") return "model/wte";
  if (name === "wpe.weight") return "model/wpe";
  const m = name.match(/^(?:h\.(\d+)\.)?(.+)\.(weight|bias)$/);
  if (!m) return name;
  const [, layer, mod, kind] = m;
  const isLn = /^ln_/.test(mod!);
  const leaf = isLn ? (kind === "weight" ? "g" : "b") : kind === "weight" ? "w" : "b";
  return `model/${layer !== undefined ? `h${layer}/` : ""}${mod!.replace(".", "/")}/${leaf}`;
}

/** config.json or hparams.json of a checkpoint directory */
function readJson(path: string, what: string): Promise<Record<string, unknown>> {
  return readJsonObject(path, { fix: `a GPT-2 ${what} directory needs it` });
}

function positiveInt(obj: Record<string, unknown>, keys: string[], path: string): number {
  for (const k of keys) {
    const v = obj[k];
    if (v === undefined || v === null) continue;
    if (typeof v !== "number" || !Number.isInteger(v) || v <= 0)
      throw new FileFormatError(
        `${path}: '${k}' must be a positive integer, got ${JSON.stringify(v)}`,
        "fix or re-download the file",
      );
    return v;
  }
  throw new FileFormatError(`${path} lacks '${keys[0]}'`, "fix or re-download the file");
}

export async function openOpenAICheckpoint(dir: string): Promise<Gpt2Checkpoint> {
  const hpPath = join(dir, "hparams.json");
  const hp = await readJson(hpPath, "OpenAI checkpoint");
  const config = gpt2Config({
    n_vocab: positiveInt(hp, ["n_vocab"], hpPath),
    n_ctx: positiveInt(hp, ["n_ctx"], hpPath),
    n_embd: positiveInt(hp, ["n_embd"], hpPath),
    n_head: positiveInt(hp, ["n_head"], hpPath),
    n_layer: positiveInt(hp, ["n_layer"], hpPath),
  });
  if (config.emb_dim % config.n_heads !== 0)
    throw new FileFormatError(
      `${hpPath}: n_embd ${config.emb_dim} is not divisible by n_head ${config.n_heads}`,
      "fix hparams.json",
    );
  validateGPTConfig(config, hpPath);
  const prefix = await checkpointPrefix(dir);
  const bundle = await TensorBundleReader.open(prefix);
  try {
    const tensors = new Map<string, SourceTensor>();
    for (const e of bundle.entries.values()) {
      const ours = openaiToInternal(e.key);
      if (ours === undefined) {
        // TF bookkeeping (object graph, global step, optimizer slots) is not part of the model.
        if (e.key.startsWith("model/"))
          throw new FileFormatError(
            `${prefix}: unexpected tensor '${e.key}'`,
            "this does not look like an OpenAI GPT-2 checkpoint",
          );
        continue;
      }
      const isConv = /\/w$/.test(e.key);
      if (isConv && (e.shape.length !== 3 || e.shape[0] !== 1)) {
        const want = [1, ...(parameterShapes(config).get(ours) ?? [])];
        throw new FileFormatError(
          `${prefix}: tensor '${e.key}' has shape ${fmt(e.shape)}, expected ${fmt(want)}`,
          "use an unmodified OpenAI GPT-2 checkpoint",
        );
      }
      tensors.set(ours, {
        sourceName: e.key,
        // Drop Conv1D's leading 1: [1, in, out] → [in, out], same bytes.
        shape: isConv ? e.shape.slice(1) : e.shape,
        read: () => bundle.read(e.key),
      });
    }
    checkTensors(prefix, config, tensors, internalToOpenai);
    return { format: "openai", path: dir, config, tensors, close: () => bundle.close() };
  } catch (err) {
    await bundle.close();
    throw err;
  }
}

/** The checkpoint prefix: from the `checkpoint` pointer file when present, else model.ckpt. */
async function checkpointPrefix(dir: string): Promise<string> {
  try {
    const text = await readFile(join(dir, "checkpoint"), "utf8");
    const m = text.match(/^model_checkpoint_path:\s*"([^"]+)"/m);
    if (m) {
      const p = m[1]!;
      return p.startsWith("/") && existsSync(`${p}.index`) ? p : join(dir, basename(p));
    }
  } catch {
    // no pointer file: the conventional name
  }
  return join(dir, "model.ckpt");
}

// ---- Hugging Face: config.json + model.safetensors, or a bare .safetensors ----

/** Buffers HF stores next to the weights (the causal mask), not parameters. */
const HF_BUFFERS = /^h\.\d+\.attn\.(bias|masked_bias)$/;

/** Infer a config from tensor shapes alone; n_heads is not in the shapes, so GPT-2's head size 64 is assumed. */
export function inferGpt2Config(shapes: Map<string, number[]>, where: string, nHeads?: number): GPTConfig {
  const wte = shapes.get("wte.weight");
  const wpe = shapes.get("wpe.weight");
  if (!wte || wte.length !== 2)
    throw new FileFormatError(`${where} has no 2-D 'wte.weight'`, "this does not look like a GPT-2 checkpoint");
  if (!wpe || wpe.length !== 2)
    throw new FileFormatError(`${where} has no 2-D 'wpe.weight'`, "this does not look like a GPT-2 checkpoint");
  let layers = 0;
  for (const n of shapes.keys()) {
    const m = n.match(/^h\.(\d+)\./);
    if (m) layers = Math.max(layers, Number(m[1]) + 1);
  }
  if (layers === 0)
    throw new FileFormatError(
      `${where} has no transformer blocks (h.0.*)`,
      "this does not look like a GPT-2 checkpoint",
    );
  const D = wte[1]!;
  const heads = nHeads ?? (D % 64 === 0 ? D / 64 : undefined);
  if (heads === undefined || D % heads !== 0) {
    throw new UsageError(
      `cannot tell the number of attention heads of ${where} from its shapes (emb_dim ${D} is not a multiple of GPT-2's head size 64)`,
      "put a Hugging Face config.json next to the file, or pass --heads N",
    );
  }
  return validateGPTConfig(
    {
      ...gpt2Config({ n_vocab: wte[0]!, n_ctx: wpe[0]!, n_embd: D, n_head: heads, n_layer: layers }),
      qkv_bias: shapes.has("h.0.attn.c_attn.bias"),
    },
    where,
  );
}

function configFromHF(hf: Record<string, unknown>, path: string): GPTConfig {
  if (hf.model_type !== undefined && hf.model_type !== "gpt2") {
    throw new FileFormatError(
      `${path}: model_type is ${JSON.stringify(hf.model_type)}, not "gpt2"`,
      "load-gpt2 converts GPT-2 models only",
    );
  }
  const act = hf.activation_function;
  if (act !== undefined && act !== "gelu_new" && act !== "gelu_pytorch_tanh") {
    throw new FileFormatError(
      `${path}: activation_function ${JSON.stringify(act)} is not GPT-2's tanh GELU`,
      "llmctl's model uses gelu_new",
    );
  }
  const eps = hf.layer_norm_epsilon;
  if (eps !== undefined && eps !== 1e-5)
    throw new FileFormatError(`${path}: layer_norm_epsilon ${String(eps)} is not 1e-5`, "llmctl's LayerNorm uses 1e-5");
  if (hf.scale_attn_weights === false || hf.scale_attn_by_inverse_layer_idx === true) {
    throw new FileFormatError(
      `${path}: attention scaling differs from GPT-2's 1/sqrt(head size)`,
      "llmctl's attention scales by 1/sqrt(head size) only",
    );
  }
  const cfg = gpt2Config({
    n_vocab: positiveInt(hf, ["vocab_size"], path),
    n_ctx: positiveInt(hf, ["n_positions", "n_ctx"], path),
    n_embd: positiveInt(hf, ["n_embd", "hidden_size"], path),
    n_head: positiveInt(hf, ["n_head", "num_attention_heads"], path),
    n_layer: positiveInt(hf, ["n_layer", "num_hidden_layers"], path),
  });
  if (hf.n_inner !== undefined && hf.n_inner !== null && hf.n_inner !== 4 * cfg.emb_dim) {
    throw new FileFormatError(
      `${path}: n_inner ${String(hf.n_inner)} is not 4 × n_embd`,
      "llmctl's MLP is 4 × emb_dim wide",
    );
  }
  // checked here, so a bad value is blamed on this file, not on the config.json being written
  if (cfg.emb_dim % cfg.n_heads !== 0)
    throw new FileFormatError(
      `${path}: n_embd ${cfg.emb_dim} is not divisible by n_head ${cfg.n_heads}`,
      "fix or re-download the file",
    );
  return validateGPTConfig(cfg, path);
}

function equalArrays(a: Float32Array, b: Float32Array): boolean {
  if (a.length !== b.length) return false;
  for (let i = 0; i < a.length; i++) if (a[i] !== b[i] && !(Number.isNaN(a[i]) && Number.isNaN(b[i]))) return false;
  return true;
}

/**
 * Open a Hugging Face GPT-2 safetensors file. `configPath` (config.json) gives the hyperparameters; without it
 * they are inferred from the shapes. An lm_head equal to wte is the tied head; a different one makes the
 * model untied.
 */
export async function openHFCheckpoint(
  file: string,
  configPath?: string,
  opts: { nHeads?: number } = {},
): Promise<Gpt2Checkpoint> {
  const st: SafetensorsFile = await readSafetensors(file);
  try {
    const raw = new Map<string, { sourceName: string; shape: number[] }>();
    for (const [name, info] of st.tensors) {
      const ours = name.startsWith("transformer.") ? name.slice("transformer.".length) : name;
      if (HF_BUFFERS.test(ours)) continue;
      if (raw.has(ours))
        throw new FileFormatError(
          `${file}: tensor '${ours}' appears both with and without the 'transformer.' prefix`,
          "use a clean GPT-2 checkpoint",
        );
      raw.set(ours, { sourceName: name, shape: info.shape });
    }
    const shapes = new Map([...raw].map(([k, v]) => [k, v.shape]));
    let config: GPTConfig;
    if (configPath) {
      config = configFromHF(await readJson(configPath, "Hugging Face"), configPath);
      if (!shapes.has("h.0.attn.c_attn.bias")) config.qkv_bias = false;
    } else {
      config = inferGpt2Config(shapes, file, opts.nHeads);
    }
    if (opts.nHeads !== undefined && opts.nHeads !== config.n_heads) {
      throw new UsageError(
        `--heads ${opts.nHeads} contradicts ${configPath ?? file} (n_head ${config.n_heads})`,
        "drop --heads",
      );
    }
    const lmHead = raw.get("lm_head.weight");
    if (lmHead) {
      const wte = raw.get("wte.weight");
      const tied =
        wte !== undefined &&
        sameShape(wte.shape, lmHead.shape) &&
        equalArrays(await st.read(wte.sourceName), await st.read(lmHead.sourceName));
      if (tied) raw.delete("lm_head.weight");
      else config.tied_head = false;
    }
    const tensors = new Map<string, SourceTensor>();
    for (const [ours, t] of raw) tensors.set(ours, { ...t, read: () => st.read(t.sourceName) });
    checkTensors(file, config, tensors, (n) => n);
    return { format: "hf", path: file, config, tensors, close: () => st.close() };
  } catch (err) {
    await st.close();
    throw err;
  }
}

/**
 * Open whatever `path` is: an OpenAI checkpoint directory (hparams.json + model.ckpt.*), a Hugging Face
 * directory (config.json + model.safetensors), or a bare .safetensors file (config.json beside it is used
 * when it is a Hugging Face config, otherwise the config is inferred from the shapes).
 */
export async function openGpt2Checkpoint(path: string, opts: { nHeads?: number } = {}): Promise<Gpt2Checkpoint> {
  if (!existsSync(path))
    throw new UsageError(
      `${path} does not exist`,
      "give an OpenAI checkpoint directory, a Hugging Face directory or a .safetensors file",
    );
  if (statSync(path).isDirectory()) {
    if (existsSync(join(path, "hparams.json"))) return openOpenAICheckpoint(path);
    if (existsSync(join(path, "model.safetensors"))) {
      const cfg = join(path, "config.json");
      return openHFCheckpoint(join(path, "model.safetensors"), (await isHFConfig(cfg)) ? cfg : undefined, opts);
    }
    throw new UsageError(
      `${path} is neither an OpenAI checkpoint (hparams.json + model.ckpt.*) nor a Hugging Face directory (config.json + model.safetensors)`,
      "point --from at the directory holding the downloaded files",
    );
  }
  if (path.endsWith(".index") || /\.data-\d{5}-of-\d{5}$/.test(path)) return openOpenAICheckpoint(dirname(path));
  const cfg = join(dirname(path), "config.json");
  return openHFCheckpoint(path, (await isHFConfig(cfg)) ? cfg : undefined, opts);
}

/**
 * A config.json that is Hugging Face's (not an llmctl model directory's). One that does not parse is reported,
 * not passed over: the shapes alone would then be taken, and the error would ask for the file that is there.
 */
async function isHFConfig(path: string): Promise<boolean> {
  if (!existsSync(path)) return false;
  const j = await readJson(path, "Hugging Face");
  return j.format !== "llmctl-model" && (j.model_type !== undefined || j.n_embd !== undefined);
}

// ---- Conversion into an llmctl model directory ----

export interface ConvertProgress {
  /** tensors written so far and in all */
  done: number;
  total: number;
  /** bytes of float32 written so far and in all */
  bytes: number;
  totalBytes: number;
  name: string;
}

/**
 * Stream a checkpoint into an llmctl model directory (docs/model-directory.md), one tensor at a time.
 * Returns the config.json written.
 */
export async function writeModelDirFromCheckpoint(
  ck: Gpt2Checkpoint,
  outDir: string,
  opts: { source?: string; onProgress?: (p: ConvertProgress) => void; signal?: AbortSignal } = {},
): Promise<ModelMeta> {
  const total = ck.tensors.size;
  const totalBytes = countParameters(ck.config) * 4;
  let done = 0;
  let bytes = 0;
  const meta = validateModelMeta(
    {
      format: "llmctl-model",
      version: 1,
      model: ck.config,
      tokenizer: "gpt2",
      head: { kind: "lm" },
      source: opts.source ?? `${ck.format === "openai" ? "openai" : "huggingface"} checkpoint ${ck.path}`,
    },
    join(outDir, CONFIG_FILE),
  );
  const read = async (name: string) => {
    const data = await ck.tensors.get(name)!.read();
    done++;
    bytes += data.length * 4;
    opts.onProgress?.({ done, total, bytes, totalBytes, name });
    return data;
  };
  return fillDirectory(outDir, () => writeModelDir(outDir, meta, read, { signal: opts.signal }));
}
