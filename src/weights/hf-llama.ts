/**
 * Hugging Face Llama and Qwen3 checkpoints (config.json + model.safetensors, or shards listed in
 * model.safetensors.index.json; F32, F16 or BF16) into an llmctl model directory (docs/families.md).
 *
 * config.json → model config:
 *   vocab_size, max_position_embeddings → vocab_size, context_length
 *   hidden_size, num_attention_heads, num_hidden_layers → emb_dim, n_heads, n_layers
 *   num_key_value_heads, head_dim, intermediate_size → n_kv_heads, head_dim, hidden_dim
 *   rms_norm_eps, rope_theta, rope_scaling (llama3) → norm_eps, rope_theta, rope_scaling
 *   tie_word_embeddings, attention_bias → tied_head, attention_bias; model_type qwen3 → qk_norm
 *
 * Weights: `model.` is dropped (model.layers.0.self_attn.q_proj.weight → layers.0.self_attn.q_proj.weight) and
 * every projection's PyTorch Linear weight [out,in] is transposed to llmctl's [in,out]; embed_tokens, the norms
 * and lm_head [V,D] are taken as they are. A tied checkpoint's lm_head.weight, when saved, is not kept.
 */
import { readFile } from "node:fs/promises";
import { existsSync } from "node:fs";
import { join } from "node:path";
import { FileFormatError, UsageError } from "../errors.js";
import { readJsonObject } from "../formats/file.js";
import { readSafetensors, type SafetensorsFile } from "../formats/safetensors.js";
import {
  type GPTConfig,
  architecture,
  checkWeightShapes,
  parameterShapes,
  validateGPTConfig,
} from "../model/config.js";
import { CONFIG_FILE, validateModelMeta, type ModelMeta } from "../model/model-meta.js";
import { writeModelDir } from "../model/model-dir.js";
import { fillDirectory, makeDirectory, writeFileAtomic } from "../fs-atomic.js";

export const SUPPORTED_MODEL_TYPES = ["llama", "qwen3"] as const;

/** Files of a checkpoint directory kept beside the weights: the tokenizer, its chat template, generation defaults. */
export const KEPT_FILES = [
  "tokenizer.json",
  "tokenizer_config.json",
  "special_tokens_map.json",
  "chat_template.jinja",
  "generation_config.json",
] as const;

export interface LlamaCheckpoint {
  dir: string;
  modelType: (typeof SUPPORTED_MODEL_TYPES)[number];
  config: GPTConfig;
  /** llmctl's weight name → where it is read from */
  tensors: Map<string, { file: SafetensorsFile; sourceName: string; shape: number[]; transpose: boolean }>;
  close(): Promise<void>;
}

/** A Llama or Qwen3 config.json as llmctl's model config (refusing what the model cannot compute). */
export function llamaConfigFrom(hf: Record<string, unknown>, where: string): GPTConfig {
  const type = hf.model_type;
  if (!(SUPPORTED_MODEL_TYPES as readonly unknown[]).includes(type))
    throw new UsageError(
      `${where}: model_type ${JSON.stringify(type)} is not supported by load`,
      `load reads ${SUPPORTED_MODEL_TYPES.join(" and ")} checkpoints; GPT-2 is load-gpt2's`,
    );
  const refuse = (what: string) => {
    throw new UsageError(`${where}: ${what} is not supported`);
  };
  if (hf.hidden_act !== undefined && hf.hidden_act !== "silu") refuse(`hidden_act ${JSON.stringify(hf.hidden_act)}`);
  if (hf.mlp_bias === true) refuse("mlp_bias");
  if (hf.use_sliding_window === true) refuse("use_sliding_window");
  const scaling = hf.rope_scaling as Record<string, unknown> | null | undefined;
  if (scaling && (scaling.rope_type ?? scaling.type) !== "llama3")
    refuse(`rope_scaling of type ${JSON.stringify(scaling.rope_type ?? scaling.type)} (only "llama3")`);
  const heads = hf.num_attention_heads as number;
  const raw: Record<string, unknown> = {
    vocab_size: hf.vocab_size,
    context_length: hf.max_position_embeddings,
    emb_dim: hf.hidden_size,
    n_heads: heads,
    n_layers: hf.num_hidden_layers,
    drop_rate: 0,
    qkv_bias: false,
    // transformers' default for both families is untied
    tied_head: hf.tie_word_embeddings ?? false,
    family: type,
    norm: "rmsnorm",
    norm_eps: hf.rms_norm_eps ?? 1e-6,
    mlp: "swiglu",
    hidden_dim: hf.intermediate_size,
    positions: "rope",
    rope_theta: hf.rope_theta ?? 10000,
    n_kv_heads: hf.num_key_value_heads ?? heads,
    head_dim: hf.head_dim ?? (hf.hidden_size as number) / heads,
    qk_norm: type === "qwen3",
    attention_bias: hf.attention_bias ?? false,
  };
  if (scaling) {
    raw.rope_scaling = {
      rope_type: "llama3",
      factor: scaling.factor,
      low_freq_factor: scaling.low_freq_factor,
      high_freq_factor: scaling.high_freq_factor,
      original_max_position_embeddings: scaling.original_max_position_embeddings,
    };
  }
  return validateGPTConfig(raw, where);
}

/**
 * The inverse of `llamaConfigFrom`: transformers' LlamaConfig or Qwen3Config for a llama- or qwen3-family model
 * config, refusing one whose architecture keys make it a model neither class computes (e.g. a llama with q/k
 * norm). `ids`: bos/eos token ids for config.json (generation_config.json's, when the model has one).
 */
export function hfLlamaConfig(
  cfg: GPTConfig,
  where: string,
  ids: { bos_token_id?: unknown; eos_token_id?: unknown } = {},
): Record<string, unknown> {
  const family = cfg.family ?? "gpt2";
  const a = architecture(cfg);
  const qwen3 = family === "qwen3";
  const refuse = (what: string) => {
    throw new UsageError(
      `${where}: a ${family} model with ${what} has no Hugging Face ${qwen3 ? "Qwen3" : "Llama"} class`,
      "export it with --format llmctl",
    );
  };
  if (!(SUPPORTED_MODEL_TYPES as readonly string[]).includes(family)) refuse(`family ${family}`);
  if (a.norm !== "rmsnorm") refuse(`norm ${a.norm}`);
  if (a.mlp !== "swiglu") refuse(`mlp ${a.mlp}`);
  if (a.positions !== "rope") refuse(`positions ${a.positions}`);
  if (a.qkNorm !== qwen3) refuse(a.qkNorm ? "q/k norm" : "no q/k norm");
  if (cfg.qkv_bias) refuse("qkv_bias (Llama's is attention_bias)");
  return {
    architectures: [qwen3 ? "Qwen3ForCausalLM" : "LlamaForCausalLM"],
    model_type: family,
    vocab_size: cfg.vocab_size,
    max_position_embeddings: cfg.context_length,
    hidden_size: cfg.emb_dim,
    intermediate_size: a.hiddenDim,
    num_hidden_layers: cfg.n_layers,
    num_attention_heads: cfg.n_heads,
    num_key_value_heads: a.nKvHeads,
    head_dim: a.headDim,
    hidden_act: "silu",
    rms_norm_eps: a.normEps,
    rope_theta: a.ropeTheta,
    rope_scaling: a.ropeScaling ? { ...a.ropeScaling } : null,
    attention_bias: a.attentionBias,
    attention_dropout: 0.0,
    ...(qwen3 ? { use_sliding_window: false, sliding_window: null } : { mlp_bias: false, pretraining_tp: 1 }),
    tie_word_embeddings: cfg.tied_head,
    initializer_range: 0.02,
    bos_token_id: ids.bos_token_id ?? null,
    eos_token_id: ids.eos_token_id ?? null,
    torch_dtype: "float32",
    use_cache: true,
  };
}

/** Weights llmctl keeps [in,out] where PyTorch's Linear holds [out,in]. */
export const PROJECTION = /\.(q_proj|k_proj|v_proj|o_proj|gate_proj|up_proj|down_proj)\.weight$/;

/**
 * Open a Llama or Qwen3 checkpoint directory: its config, and every tensor by llmctl's name, checked against the
 * config's parameter table (names and shapes) before anything is read.
 */
export async function openLlamaCheckpoint(dir: string): Promise<LlamaCheckpoint> {
  const configPath = join(dir, "config.json");
  if (!existsSync(configPath))
    throw new UsageError(`${dir} has no config.json`, "point --from at a Hugging Face checkpoint directory");
  const config = llamaConfigFrom(
    await readJsonObject(configPath, { fix: "a checkpoint directory needs it" }),
    configPath,
  );
  const modelType = config.family as LlamaCheckpoint["modelType"];
  const files = await openShards(dir);
  try {
    const tensors: LlamaCheckpoint["tensors"] = new Map();
    for (const file of files) {
      for (const [sourceName, info] of file.tensors) {
        if (/rotary_emb\.inv_freq$/.test(sourceName)) continue; // a buffer older checkpoints saved
        const name = sourceName.startsWith("model.") ? sourceName.slice("model.".length) : sourceName;
        if (name === "lm_head.weight" && config.tied_head) continue; // the tied head is embed_tokens
        const transpose = PROJECTION.test(name) && info.shape.length === 2;
        const shape = transpose ? [info.shape[1], info.shape[0]] : info.shape;
        tensors.set(name, { file, sourceName, shape, transpose });
      }
    }
    // compared in the checkpoint's own names and layout ([out, in] for a Linear), so a message names what is there
    const hfLayout = (name: string, shape: number[]) => (PROJECTION.test(name) ? [...shape].reverse() : shape);
    const expected = new Map([...parameterShapes(config)].map(([name, shape]) => [name, hfLayout(name, shape)]));
    checkWeightShapes(expected, new Map([...tensors].map(([name, t]) => [name, hfLayout(name, t.shape)])), dir, {
      sourceName: (name) => tensors.get(name)?.sourceName ?? (name === "lm_head.weight" ? name : `model.${name}`),
      fix: "the weights do not fit config.json (check hidden_size, the head counts, head_dim and intermediate_size)",
    });
    return { dir, modelType, config, tensors, close: () => closeAll(files) };
  } catch (err) {
    await closeAll(files);
    throw err;
  }
}

async function closeAll(files: SafetensorsFile[]): Promise<void> {
  for (const f of files) await f.close();
}

/** model.safetensors, or the shards model.safetensors.index.json lists. */
async function openShards(dir: string): Promise<SafetensorsFile[]> {
  const single = join(dir, "model.safetensors");
  const indexPath = join(dir, "model.safetensors.index.json");
  if (!existsSync(indexPath)) {
    if (!existsSync(single))
      throw new UsageError(
        `${dir} has neither model.safetensors nor model.safetensors.index.json`,
        "download the checkpoint's safetensors weights too",
      );
    return [await readSafetensors(single)];
  }
  const index = await readJsonObject(indexPath, { fix: "a sharded checkpoint needs it" });
  const map = index.weight_map;
  if (typeof map !== "object" || map === null)
    throw new FileFormatError(`${indexPath} has no weight_map`, "re-download the checkpoint");
  const shardNames = [...new Set(Object.values(map as Record<string, string>))].sort();
  const files: SafetensorsFile[] = [];
  try {
    for (const shard of shardNames) {
      const path = join(dir, shard);
      if (!existsSync(path))
        throw new UsageError(
          `${dir} is missing the shard ${shard} (listed in model.safetensors.index.json)`,
          "download every shard",
        );
      files.push(await readSafetensors(path));
    }
    return files;
  } catch (err) {
    await closeAll(files);
    throw err;
  }
}

/** [rows, cols] row-major → [cols, rows] */
export function transpose2d(data: Float32Array, rows: number, cols: number): Float32Array {
  const out = new Float32Array(data.length);
  for (let r = 0; r < rows; r++) for (let c = 0; c < cols; c++) out[c * rows + r] = data[r * cols + c];
  return out;
}

/**
 * Write the checkpoint as an llmctl model directory, one tensor at a time, and copy its tokenizer and generation
 * files beside it (KEPT_FILES). Returns the config.json written and the files copied.
 */
export async function writeModelDirFromLlama(
  ck: LlamaCheckpoint,
  outDir: string,
  opts: { source?: string; signal?: AbortSignal; onTensor?: (name: string, done: number, total: number) => void } = {},
): Promise<{ meta: ModelMeta; copied: string[] }> {
  const meta = validateModelMeta(
    {
      format: "llmctl-model",
      version: 1,
      model: ck.config,
      // the checkpoint's own tokenizer, kept as tokenizer.json (src/tokenizer/bpe-file.ts reads it)
      tokenizer: "tokenizer.json",
      head: { kind: "lm" },
      source: opts.source ?? `huggingface ${ck.modelType} checkpoint ${ck.dir}`,
    },
    join(outDir, CONFIG_FILE),
  );
  if (!existsSync(join(ck.dir, "tokenizer.json")))
    throw new UsageError(
      `${ck.dir} has no tokenizer.json`,
      "copy the checkpoint's tokenizer.json into it (Llama 3 and Qwen3 ship one)",
    );
  let done = 0;
  const read = async (name: string) => {
    const t = ck.tensors.get(name)!;
    const data = await t.file.read(t.sourceName);
    opts.onTensor?.(name, ++done, ck.tensors.size);
    return t.transpose ? transpose2d(data, t.shape[1], t.shape[0]) : data;
  };
  return fillDirectory(outDir, async () => {
    // the tokenizer first: a config.json naming tokenizer.json never stands without it
    await makeDirectory(outDir);
    const copied: string[] = [];
    for (const f of KEPT_FILES) {
      if (!existsSync(join(ck.dir, f))) continue;
      await writeFileAtomic(join(outDir, f), await readFile(join(ck.dir, f)));
      copied.push(f);
    }
    await writeModelDir(outDir, meta, read, { signal: opts.signal });
    return { meta, copied };
  });
}
