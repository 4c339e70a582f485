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
import { type GPTConfig } from "../model/config.js";
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
import { modelVocabulary, type TokenizerVocabulary } from "../tokenizer/bpe-file.js";
import { openExportSource } from "./export-source.js";
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
  source: { name: string; transpose: boolean } | "zeros";
}

/** Every tensor of the GGUF for this config, in llama.cpp's order. */
function plan(cfg: GPTConfig): PlannedTensor[] {
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

/** [rows, cols] row-major → [cols, rows]. */
function transpose(data: Float32Array, rows: number, cols: number): Float32Array {
  const out = new Float32Array(data.length);
  for (let r = 0; r < rows; r++) for (let c = 0; c < cols; c++) out[c * rows + r] = data[r * cols + c]!;
  return out;
}

/**
 * The model's tokenizer (GPT-2's or its own byte-level BPE, both llama.cpp's "gpt2" model) as GGUF keys; rows of
 * the embedding beyond its tokens become unused [PADn] tokens.
 */
function tokenizerMetadata(
  { vocab, merges, specialIds, endOfTextId }: TokenizerVocabulary,
  vocabSize: number,
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
    ["tokenizer.ggml.pre", { type: "string", value: "gpt-2" }],
    ["tokenizer.ggml.tokens", { type: "array", itemType: "string", value: tokens }],
    ["tokenizer.ggml.token_type", { type: "array", itemType: "int32", value: types }],
    ["tokenizer.ggml.merges", { type: "array", itemType: "string", value: merges }],
    ["tokenizer.ggml.bos_token_id", { type: "uint32", value: endOfTextId }],
    ["tokenizer.ggml.eos_token_id", { type: "uint32", value: endOfTextId }],
    ["tokenizer.ggml.add_bos_token", { type: "bool", value: false }],
    ["tokenizer.ggml.add_eos_token", { type: "bool", value: false }],
  ];
}

function metadata(
  cfg: GPTConfig,
  name: string,
  dtype: GgufDtype,
  tokenizer: TokenizerVocabulary,
): Map<string, GgufValue> {
  const u32 = (value: number): GgufValue => ({ type: "uint32", value });
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
          const values = await weights.read(source.name);
          return source.transpose ? transpose(values, t.shape[1]!, t.shape[0]!) : values;
        },
      };
    });
    const name = basename(resolve(modelDir));
    let bytes: number;
    try {
      ({ bytes } = await writeGguf(out, metadata(cfg, name, dtype, tokenizer), tensors, { signal: opts.signal }));
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
