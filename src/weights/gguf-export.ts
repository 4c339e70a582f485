/**
 * Export an llmctl language model as one GGUF file that llama.cpp (and so Ollama, LM Studio, node-llama-cpp)
 * runs with its `gpt2` architecture, plus an Ollama Modelfile beside it. The facts below are llama.cpp's
 * (src/models/gpt2.cpp, src/llama-vocab.cpp, gguf-py/gguf/constants.py), checked by loading our files there:
 *
 *   ours (model.safetensors)           GGUF                          row-major shape in the file
 *   wte.weight                         token_embd.weight             [V, D]
 *   wpe.weight                         position_embd.weight          [ctx, D]  (always F32)
 *   h.{i}.ln_1.weight | bias           blk.{i}.attn_norm.weight | bias      [D]
 *   h.{i}.attn.c_attn.weight | bias    blk.{i}.attn_qkv.weight | bias       [3D, D] ← [D, 3D] transposed | [3D]
 *   h.{i}.attn.c_proj.weight | bias    blk.{i}.attn_output.weight | bias    [D, D] transposed | [D]
 *   h.{i}.ln_2.weight | bias           blk.{i}.ffn_norm.weight | bias       [D]
 *   h.{i}.mlp.c_fc.weight | bias       blk.{i}.ffn_up.weight | bias         [4D, D] ← [D, 4D] transposed | [4D]
 *   h.{i}.mlp.c_proj.weight | bias     blk.{i}.ffn_down.weight | bias       [D, 4D] ← [4D, D] transposed | [D]
 *   ln_f.weight | bias                 output_norm.weight | bias            [D]
 *   lm_head.weight (untied only)       output.weight                 [V, D]; absent = tied to token_embd
 *
 * - The projection kernels are [in, out] in our files (GPT-2's Conv1D layout); ggml multiplies by [out, in]
 *   (ne = {in, out}), so they are transposed. A file without the transpose loads fine (the square ones even
 *   pass the shape check) and generates wrong tokens, silently.
 * - llama.cpp's gpt2 loader requires attn_qkv.bias: a model trained without one gets zeros (the same function).
 * - Integer hyperparameters are UINT32: llama.cpp checks each key's type exactly and rejects UINT64.
 * - The tokenizer travels inside: tokens in GPT-2's byte-to-unicode spelling (as vocab.json), the merges
 *   (merges.txt without its #version line), <|endoftext|> as a control token and as bos/eos, no bos added.
 * - 1-D tensors (norms, biases) and position_embd stay F32 whatever the dtype, as llama.cpp's own converter
 *   keeps them; Q8_0 needs rows that are whole 32-value blocks, other matrices fall back to F16.
 * - llama.cpp aborts the process (not an error) when a position reaches context_length: the Modelfile sets
 *   num_ctx to it so Ollama keeps within it.
 *
 * Streams like the HF export: each tensor is read, transposed, encoded, written and dropped in turn.
 */
import { basename, dirname, join, resolve } from "node:path";
import { FileFormatError, LlmctlError, UsageError } from "../errors.js";
import { writeFileAtomic } from "../fs-atomic.js";
import { type GPTConfig, architecture } from "../model/config.js";
import { existsSync } from "node:fs";
import { readTextFile } from "../formats/file.js";
import {
  fitsType,
  writeGguf,
  type GgmlType,
  type GgufDtype,
  type GgufTensorEntry,
  type GgufValue,
} from "../formats/gguf.js";
import { formatPrompt, responseHeader } from "../generate/prompt-style.js";
import { type PromptStyle } from "../model/model-meta.js";
import { TOKENIZER_FILE, modelVocabulary, type TokenizerVocabulary } from "../tokenizer/bpe-file.js";
import { openExportSource } from "./export-source.js";
import { transpose2d } from "./hf-llama.js";
import { type ExportProgress } from "./hf-export.js";

const TENSOR_TYPE: Readonly<Record<GgufDtype, GgmlType>> = { f32: "F32", f16: "F16", bf16: "BF16", q8_0: "Q8_0" };

/** llama.cpp's general.file_type (enum llama_ftype): ALL_F32, MOSTLY_F16, MOSTLY_Q8_0, MOSTLY_BF16. */
const FILE_TYPE: Readonly<Record<GgufDtype, number>> = { f32: 0, f16: 1, q8_0: 7, bf16: 32 };

/** llama_token_type: what tokenizer.ggml.token_type holds per token. */
const TOKEN_NORMAL = 1;
const TOKEN_CONTROL = 3;
const TOKEN_UNUSED = 5;

/** One GGUF tensor and where its values come from (our tensor, maybe transposed; or zeros). */
interface PlannedTensor {
  name: string;
  /** row-major, as written */
  shape: number[];
  /**
   * our tensor, maybe transposed, and for a llama's q/k projection its rows permuted per head (`permuteHeads`:
   * the head count); zeros; or values computed here (rope_freqs)
   */
  source: { name: string; transpose: boolean; permuteHeads?: number } | "zeros" | { values: Float32Array };
}

/** Every tensor of the GGUF for this config, in llama.cpp's order. */
function plan(cfg: GPTConfig): PlannedTensor[] {
  if ((cfg.family ?? "gpt2") !== "gpt2") return planLlama(cfg);
  const D = cfg.emb_dim;
  const copy = (name: string, ours: string, shape: number[]): PlannedTensor => ({
    name,
    shape,
    source: { name: ours, transpose: false },
  });
  const transposed = (name: string, ours: string, shape: number[]): PlannedTensor => ({
    name,
    shape,
    source: { name: ours, transpose: true },
  });
  const out: PlannedTensor[] = [
    copy("token_embd.weight", "wte.weight", [cfg.vocab_size, D]),
    copy("position_embd.weight", "wpe.weight", [cfg.context_length, D]),
  ];
  for (let i = 0; i < cfg.n_layers; i++) {
    const [h, blk] = [`h.${i}.`, `blk.${i}.`];
    out.push(
      copy(`${blk}attn_norm.weight`, `${h}ln_1.weight`, [D]),
      copy(`${blk}attn_norm.bias`, `${h}ln_1.bias`, [D]),
      transposed(`${blk}attn_qkv.weight`, `${h}attn.c_attn.weight`, [3 * D, D]),
      cfg.qkv_bias
        ? copy(`${blk}attn_qkv.bias`, `${h}attn.c_attn.bias`, [3 * D])
        : { name: `${blk}attn_qkv.bias`, shape: [3 * D], source: "zeros" },
      transposed(`${blk}attn_output.weight`, `${h}attn.c_proj.weight`, [D, D]),
      copy(`${blk}attn_output.bias`, `${h}attn.c_proj.bias`, [D]),
      copy(`${blk}ffn_norm.weight`, `${h}ln_2.weight`, [D]),
      copy(`${blk}ffn_norm.bias`, `${h}ln_2.bias`, [D]),
      transposed(`${blk}ffn_up.weight`, `${h}mlp.c_fc.weight`, [4 * D, D]),
      copy(`${blk}ffn_up.bias`, `${h}mlp.c_fc.bias`, [4 * D]),
      transposed(`${blk}ffn_down.weight`, `${h}mlp.c_proj.weight`, [D, 4 * D]),
      copy(`${blk}ffn_down.bias`, `${h}mlp.c_proj.bias`, [D]),
    );
  }
  out.push(copy("output_norm.weight", "ln_f.weight", [D]), copy("output_norm.bias", "ln_f.bias", [D]));
  if (!cfg.tied_head) out.push(copy("output.weight", "lm_head.weight", [cfg.vocab_size, D]));
  return out;
}

/**
 * A llama or qwen3 model as llama.cpp's `llama` / `qwen3` architecture (llama.cpp's convert_hf_to_gguf.py):
 *
 *   ours (HF's names without model.)            GGUF
 *   embed_tokens.weight                         token_embd.weight              [V, D]
 *   layers.{i}.input_layernorm.weight           blk.{i}.attn_norm.weight       [D]
 *   layers.{i}.self_attn.q_proj.weight | bias   blk.{i}.attn_q.weight | bias   [H·hd, D] (llama: rows permuted)
 *   layers.{i}.self_attn.k_proj.weight | bias   blk.{i}.attn_k.weight | bias   [KV·hd, D] (llama: rows permuted)
 *   layers.{i}.self_attn.v_proj.weight | bias   blk.{i}.attn_v.weight | bias   [KV·hd, D]
 *   layers.{i}.self_attn.o_proj.weight | bias   blk.{i}.attn_output.weight | bias [D, H·hd]
 *   layers.{i}.self_attn.q_norm / k_norm        blk.{i}.attn_q_norm / attn_k_norm .weight [hd] (qwen3)
 *   layers.{i}.post_attention_layernorm.weight  blk.{i}.ffn_norm.weight        [D]
 *   layers.{i}.mlp.gate_proj / up_proj          blk.{i}.ffn_gate / ffn_up .weight [F, D]
 *   layers.{i}.mlp.down_proj.weight             blk.{i}.ffn_down.weight        [D, F]
 *   norm.weight                                 output_norm.weight             [D]
 *   lm_head.weight (untied only)                output.weight                  [V, D]
 *   (llama3 rope_scaling)                       rope_freqs.weight              [hd/2]
 *
 * Our projections are [in, out]: transposed to PyTorch's [out, in]. llama.cpp's `llama` rotates adjacent pairs
 * (x[2i], x[2i+1]) where transformers rotates halves (x[i], x[i+hd/2]), so each head's q and k rows are
 * interleaved (convert_hf_to_gguf's LlamaModel.permute); qwen3 rotates halves in llama.cpp too and is not.
 */
function planLlama(cfg: GPTConfig): PlannedTensor[] {
  const a = architecture(cfg);
  const qwen3 = cfg.family === "qwen3";
  const [D, hd, F] = [cfg.emb_dim, a.headDim, a.hiddenDim];
  const [Q, KV] = [cfg.n_heads * hd, a.nKvHeads * hd];
  const copy = (name: string, ours: string, shape: number[]): PlannedTensor => ({
    name,
    shape,
    source: { name: ours, transpose: false },
  });
  const linear = (name: string, ours: string, shape: number[], permuteHeads?: number): PlannedTensor[] => [
    { name: `${name}.weight`, shape, source: { name: `${ours}.weight`, transpose: true, permuteHeads } },
    ...(a.attentionBias
      ? [{ name: `${name}.bias`, shape: [shape[0]], source: { name: `${ours}.bias`, transpose: false, permuteHeads } }]
      : []),
  ];
  const out: PlannedTensor[] = [copy("token_embd.weight", "embed_tokens.weight", [cfg.vocab_size, D])];
  if (a.ropeScaling) out.push({ name: "rope_freqs.weight", shape: [hd / 2], source: { values: ropeFreqs(cfg) } });
  for (let i = 0; i < cfg.n_layers; i++) {
    const [l, blk] = [`layers.${i}.`, `blk.${i}.`];
    out.push(
      copy(`${blk}attn_norm.weight`, `${l}input_layernorm.weight`, [D]),
      ...linear(`${blk}attn_q`, `${l}self_attn.q_proj`, [Q, D], qwen3 ? undefined : cfg.n_heads),
      ...linear(`${blk}attn_k`, `${l}self_attn.k_proj`, [KV, D], qwen3 ? undefined : a.nKvHeads),
      ...linear(`${blk}attn_v`, `${l}self_attn.v_proj`, [KV, D]),
      ...linear(`${blk}attn_output`, `${l}self_attn.o_proj`, [D, Q]),
    );
    if (a.qkNorm)
      out.push(
        copy(`${blk}attn_q_norm.weight`, `${l}self_attn.q_norm.weight`, [hd]),
        copy(`${blk}attn_k_norm.weight`, `${l}self_attn.k_norm.weight`, [hd]),
      );
    out.push(
      copy(`${blk}ffn_norm.weight`, `${l}post_attention_layernorm.weight`, [D]),
      ...linear(`${blk}ffn_gate`, `${l}mlp.gate_proj`, [F, D]),
      ...linear(`${blk}ffn_up`, `${l}mlp.up_proj`, [F, D]),
      ...linear(`${blk}ffn_down`, `${l}mlp.down_proj`, [D, F]),
    );
  }
  out.push(copy("output_norm.weight", "norm.weight", [D]));
  if (!cfg.tied_head) out.push(copy("output.weight", "lm_head.weight", [cfg.vocab_size, D]));
  return out;
}

/**
 * Llama 3's rope scaling as llama.cpp reads it: per frequency the factor its angle is divided by (1 for short
 * wavelengths, `factor` for long ones, blended between), computed as convert_hf_to_gguf does (float32 frequencies,
 * the rest in double).
 */
function ropeFreqs(cfg: GPTConfig): Float32Array {
  const a = architecture(cfg);
  const s = a.ropeScaling!;
  const hd = a.headDim;
  const old = s.original_max_position_embeddings;
  const [lowWavelen, highWavelen] = [old / s.low_freq_factor, old / s.high_freq_factor];
  const out = new Float32Array(hd / 2);
  for (let i = 0; i < out.length; i++) {
    const freq = Math.fround(1 / Math.fround(Math.fround(a.ropeTheta) ** Math.fround((2 * i) / hd)));
    const wavelen = (2 * Math.PI) / freq;
    if (wavelen < highWavelen) out[i] = 1;
    else if (wavelen > lowWavelen) out[i] = s.factor;
    else {
      const smooth = (old / wavelen - s.low_freq_factor) / (s.high_freq_factor - s.low_freq_factor);
      out[i] = 1 / ((1 - smooth) / s.factor + smooth);
    }
  }
  return out;
}

/**
 * convert_hf_to_gguf's LlamaModel.permute: rows [heads, 2, hd/2, …] → [heads, hd/2, 2, …], so that the halves
 * transformers rotates together become the adjacent pairs llama.cpp rotates. `cols` is 1 for a bias.
 */
function permuteHeads(data: Float32Array, heads: number, cols: number): Float32Array {
  const rows = data.length / cols;
  const half = rows / heads / 2;
  const out = new Float32Array(data.length);
  for (let h = 0; h < heads; h++)
    for (let j = 0; j < 2; j++)
      for (let i = 0; i < half; i++) {
        const from = (h * 2 * half + j * half + i) * cols;
        const to = (h * 2 * half + i * 2 + j) * cols;
        out.set(data.subarray(from, from + cols), to);
      }
  return out;
}

/**
 * The model's tokenizer (GPT-2's or its own byte-level BPE, both llama.cpp's "gpt2" model) as GGUF keys; rows of
 * the embedding beyond its tokens become unused [PADn] tokens.
 */
function tokenizerMetadata(
  { vocab, merges, specialIds, endOfTextId }: TokenizerVocabulary,
  vocabSize: number,
  ids: LlamaTokenIds = { pre: "gpt-2", bos: endOfTextId, eos: endOfTextId },
): [string, GgufValue][] {
  const tokens: string[] = [];
  for (const [text, id] of Object.entries(vocab)) tokens[id] = text;
  const special = new Set(specialIds);
  const types: number[] = tokens.map((_, id) => (special.has(id) ? TOKEN_CONTROL : TOKEN_NORMAL));
  for (let id = tokens.length; id < vocabSize; id++) {
    tokens.push(`[PAD${id}]`);
    types.push(TOKEN_UNUSED);
  }
  return [
    ["tokenizer.ggml.model", { type: "string", value: "gpt2" }],
    ["tokenizer.ggml.pre", { type: "string", value: ids.pre }],
    ["tokenizer.ggml.tokens", { type: "array", itemType: "string", value: tokens }],
    ["tokenizer.ggml.token_type", { type: "array", itemType: "int32", value: types }],
    ["tokenizer.ggml.merges", { type: "array", itemType: "string", value: merges }],
    ["tokenizer.ggml.bos_token_id", { type: "uint32", value: ids.bos }],
    ["tokenizer.ggml.eos_token_id", { type: "uint32", value: ids.eos }],
    ["tokenizer.ggml.add_bos_token", { type: "bool", value: false }],
    ["tokenizer.ggml.add_eos_token", { type: "bool", value: false }],
  ];
}

/** A llama-family model's tokenizer keys: llama.cpp's pre-tokenizer name, bos and eos, its chat template. */
interface LlamaTokenIds {
  pre: string;
  bos: number;
  eos: number;
  chatTemplate?: string;
}

/**
 * llama.cpp's name for the pre-tokenizer of a tokenizer.json (convert_hf_to_gguf tells them by a hash of encoded
 * text; their split regexes differ): Llama 3's splits digits in threes ("llama-bpe"), Qwen2/3's one by one
 * ("qwen2"); anything else is read as GPT-2's.
 */
async function llamaTokenIds(dir: string, tokenizer: TokenizerVocabulary): Promise<LlamaTokenIds> {
  const patterns = JSON.stringify(
    (JSON.parse(await readTextFile(join(dir, TOKENIZER_FILE))) as { pre_tokenizer?: unknown }).pre_tokenizer ?? null,
  );
  // the regexes as JSON writes them (each backslash doubled)
  const pre = patterns.includes(String.raw`\\p{N}{1,3}`)
    ? "llama-bpe"
    : patterns.includes(String.raw`[^\\r\\n\\p{L}\\p{N}]?\\p{L}+|\\p{N}|`)
      ? "qwen2"
      : "gpt-2";
  const readJson = async (f: string) =>
    existsSync(join(dir, f)) ? (JSON.parse(await readTextFile(join(dir, f))) as Record<string, unknown>) : {};
  const generation = await readJson("generation_config.json");
  const first = (v: unknown) => (Array.isArray(v) ? v[0] : v);
  const id = (v: unknown, fallback: number) => (Number.isInteger(first(v)) ? (first(v) as number) : fallback);
  const template = (await readJson("tokenizer_config.json")).chat_template;
  const jinja = join(dir, "chat_template.jinja");
  return {
    pre,
    bos: id(generation.bos_token_id, tokenizer.endOfTextId),
    eos: id(generation.eos_token_id, tokenizer.endOfTextId),
    chatTemplate: existsSync(jinja) ? await readTextFile(jinja) : typeof template === "string" ? template : undefined,
  };
}

function metadata(
  cfg: GPTConfig,
  name: string,
  dtype: GgufDtype,
  tokenizer: TokenizerVocabulary,
  llama?: LlamaTokenIds,
): Map<string, GgufValue> {
  const u32 = (value: number): GgufValue => ({ type: "uint32", value });
  const f32 = (value: number): GgufValue => ({ type: "float32", value });
  if (llama) {
    const a = architecture(cfg);
    const arch = cfg.family === "qwen3" ? "qwen3" : "llama";
    return new Map<string, GgufValue>([
      ["general.architecture", { type: "string", value: arch }],
      ["general.name", { type: "string", value: name }],
      ["general.file_type", u32(FILE_TYPE[dtype])],
      ["general.quantization_version", u32(2)],
      [`${arch}.vocab_size`, u32(cfg.vocab_size)],
      [`${arch}.context_length`, u32(cfg.context_length)],
      [`${arch}.embedding_length`, u32(cfg.emb_dim)],
      [`${arch}.block_count`, u32(cfg.n_layers)],
      [`${arch}.feed_forward_length`, u32(a.hiddenDim)],
      [`${arch}.attention.head_count`, u32(cfg.n_heads)],
      [`${arch}.attention.head_count_kv`, u32(a.nKvHeads)],
      [`${arch}.attention.key_length`, u32(a.headDim)],
      [`${arch}.attention.value_length`, u32(a.headDim)],
      [`${arch}.rope.dimension_count`, u32(a.headDim)],
      [`${arch}.rope.freq_base`, f32(a.ropeTheta)],
      [`${arch}.attention.layer_norm_rms_epsilon`, f32(a.normEps)],
      ...tokenizerMetadata(tokenizer, cfg.vocab_size, llama),
      ...(llama.chatTemplate
        ? ([["tokenizer.chat_template", { type: "string", value: llama.chatTemplate }]] as [string, GgufValue][])
        : []),
    ]);
  }
  return new Map<string, GgufValue>([
    ["general.architecture", { type: "string", value: "gpt2" }],
    ["general.name", { type: "string", value: name }],
    ["general.file_type", u32(FILE_TYPE[dtype])],
    ["general.quantization_version", u32(2)],
    ["gpt2.context_length", u32(cfg.context_length)],
    ["gpt2.embedding_length", u32(cfg.emb_dim)],
    ["gpt2.feed_forward_length", u32(4 * cfg.emb_dim)],
    ["gpt2.block_count", u32(cfg.n_layers)],
    ["gpt2.attention.head_count", u32(cfg.n_heads)],
    ["gpt2.attention.layer_norm_epsilon", { type: "float32", value: 1e-5 }],
    ...tokenizerMetadata(tokenizer, cfg.vocab_size),
  ]);
}

/** The name `ollama create` gets: the file's base name, lower case, in the characters Ollama accepts. */
function ollamaModelName(ggufPath: string): string {
  const base = basename(ggufPath).replace(/\.gguf$/i, "");
  return (
    base
      .toLowerCase()
      .replace(/[^a-z0-9._-]+/g, "-")
      .replace(/^[^a-z0-9]+/, "") || "llmctl-model"
  );
}

/**
 * An Ollama Modelfile for FILE.gguf beside it. Instruction models get their prompt style as the TEMPLATE
 * (Ollama's Go template puts the user's message at {{ .Prompt }}); base models continue the text as given.
 */
function ollamaModelfile(
  ggufFile: string,
  cfg: GPTConfig,
  promptStyle: PromptStyle | undefined,
  endOfText: string,
): string {
  const template = promptStyle
    ? formatPrompt({ instruction: "{{ .Prompt }}", input: "" }, promptStyle) + responseHeader(promptStyle)
    : "{{ .Prompt }}";
  return [
    `# Ollama Modelfile written by llmctl export --format gguf: ollama create NAME -f Modelfile`,
    `FROM ./${ggufFile}`,
    `TEMPLATE """${template}"""`,
    `PARAMETER stop "${endOfText}"`,
    // llama.cpp aborts when a position passes the model's context: keep Ollama within it
    `PARAMETER num_ctx ${cfg.context_length}`,
    "",
  ].join("\n");
}

export interface GgufExportResult {
  out: string;
  modelfile: string;
  /** the name used in the printed `ollama create` line */
  ollama_name: string;
  dtype: GgufDtype;
  tensors: number;
  bytes: number;
  context_length: number;
  /** matrices written as F16 because --dtype q8_0 needs rows that are whole 32-value blocks */
  f16_fallback: string[];
}

function writeError(path: string, err: unknown): unknown {
  const code = (err as NodeJS.ErrnoException).code;
  if (err instanceof LlmctlError || code === undefined) return err;
  return new FileFormatError(`cannot write ${path}: ${(err as Error).message}`, "choose a writable --out", {
    cause: err,
  });
}

/** Write OUT (a .gguf file) and a Modelfile beside it from the model directory MODEL_DIR. */
export async function exportGguf(
  modelDir: string,
  out: string,
  opts: { dtype?: GgufDtype; onProgress?: (p: ExportProgress) => void; signal?: AbortSignal } = {},
): Promise<GgufExportResult> {
  const dtype = opts.dtype ?? "f32";
  if (!out.toLowerCase().endsWith(".gguf"))
    throw new UsageError(`--out ${out} does not end in .gguf`, "name the file to write, e.g. --out model.gguf");
  const weights = await openExportSource(modelDir, "gguf");
  const { meta } = weights;
  const cfg = meta.model;
  try {
    const tokenizer = await modelVocabulary(modelDir, meta.tokenizer);
    const nTokens = Object.keys(tokenizer.vocab).length;
    if (cfg.vocab_size < nTokens) {
      throw new UsageError(
        `${modelDir} has vocab_size ${cfg.vocab_size}, fewer rows than the ${nTokens} tokens of its tokenizer`,
        "GGUF needs an embedding row for every token: export a model whose vocabulary is its tokenizer's",
      );
    }
    const planned = plan(cfg);
    const fallback: string[] = [];
    let done = 0;
    const tensors: GgufTensorEntry[] = planned.map((t) => {
      let type: GgmlType = t.shape.length === 1 || t.name === "position_embd.weight" ? "F32" : TENSOR_TYPE[dtype];
      if (!fitsType(type, t.shape)) {
        type = "F16";
        fallback.push(t.name);
      }
      const { source } = t;
      return {
        name: t.name,
        shape: t.shape,
        type,
        data: async () => {
          opts.onProgress?.({ done: ++done, total: planned.length, name: t.name });
          if (source === "zeros") return new Float32Array(t.shape[0]!);
          if ("values" in source) return source.values;
          let values = await weights.read(source.name);
          if (source.transpose) values = transpose2d(values, t.shape[1]!, t.shape[0]!);
          return source.permuteHeads ? permuteHeads(values, source.permuteHeads, t.shape[1] ?? 1) : values;
        },
      };
    });
    const name = basename(resolve(modelDir));
    let bytes: number;
    try {
      const llama = (cfg.family ?? "gpt2") === "gpt2" ? undefined : await llamaTokenIds(modelDir, tokenizer);
      const keys = metadata(cfg, name, dtype, tokenizer, llama);
      ({ bytes } = await writeGguf(out, keys, tensors, { signal: opts.signal }));
    } catch (err) {
      throw writeError(out, err);
    }
    const modelfile = join(dirname(out), "Modelfile");
    try {
      await writeFileAtomic(modelfile, ollamaModelfile(basename(out), cfg, meta.prompt_style, tokenizer.endOfText));
    } catch (err) {
      throw writeError(modelfile, err);
    }
    return {
      out,
      modelfile,
      ollama_name: ollamaModelName(out),
      dtype,
      tensors: tensors.length,
      bytes,
      context_length: cfg.context_length,
      f16_fallback: fallback,
    };
  } finally {
    await weights.close();
  }
}
