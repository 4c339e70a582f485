/**
 * Export an llmctl model directory as a Hugging Face directory (a llama or qwen3 model: `exportLlamaFamily`). A
 * GPT-2 model becomes a directory that transformers' GPT2LMHeadModel and GPT2Tokenizer load: config.json (GPT2Config keys), model.safetensors (HF names, [in, out] Conv1D layout,
 * metadata format "pt" as transformers requires), and the tokenizer files vocab.json + merges.txt rebuilt
 * from js-tiktoken's GPT-2 ranks (../tokenizer/vocab.ts); a model with its own tokenizer (`pretrain --tokenizer`)
 * gets its tokenizer.json instead, which transformers' PreTrainedTokenizerFast (AutoTokenizer) loads.
 *
 * Our weights already carry HF names and layout, so the tensors are copied one at a time. Two gaps are
 * filled: HF GPT-2 always has a c_attn bias (zeros when we train without one, which computes the same),
 * and an untied head is written as lm_head.weight with tie_word_embeddings false (and the base weights then
 * carry GPT2LMHeadModel's `transformer.` prefix, as save_pretrained writes them).
 */
import { writeFile } from "node:fs/promises";
import { join } from "node:path";
import { makeDirectory, writeFileAtomic } from "../fs-atomic.js";
import { type GPTConfig, parameterShapes } from "../model/config.js";
import { CONFIG_FILE } from "../model/model-meta.js";
import { writeSafetensors, type SafetensorsEntry } from "../formats/safetensors.js";
import { openExportSource } from "./export-source.js";
import { END_OF_TEXT, END_OF_TEXT_ID } from "../tokenizer/index.js";
import { gpt2TokenizerFiles } from "../tokenizer/vocab.js";
import { TOKENIZER_FILE, modelTokenizer } from "../tokenizer/bpe-file.js";
import { readFile } from "node:fs/promises";
import { existsSync } from "node:fs";
import type { ModelWeights } from "../model/lora.js";
import { KEPT_FILES, PROJECTION, hfLlamaConfig, transpose2d } from "./hf-llama.js";

/** transformers' GPT2Config for our model config. */
export function hfGpt2Config(cfg: GPTConfig): Record<string, unknown> {
  return {
    activation_function: "gelu_new",
    architectures: ["GPT2LMHeadModel"],
    attn_pdrop: cfg.drop_rate,
    bos_token_id: END_OF_TEXT_ID,
    embd_pdrop: cfg.drop_rate,
    eos_token_id: END_OF_TEXT_ID,
    initializer_range: 0.02,
    layer_norm_epsilon: 1e-5,
    model_type: "gpt2",
    n_ctx: cfg.context_length,
    n_embd: cfg.emb_dim,
    n_head: cfg.n_heads,
    n_inner: null,
    n_layer: cfg.n_layers,
    n_positions: cfg.context_length,
    reorder_and_upcast_attn: false,
    resid_pdrop: cfg.drop_rate,
    scale_attn_by_inverse_layer_idx: false,
    scale_attn_weights: true,
    tie_word_embeddings: cfg.tied_head,
    torch_dtype: "float32",
    use_cache: true,
    vocab_size: cfg.vocab_size,
  };
}

// ---- Export ----

export interface ExportProgress {
  done: number;
  total: number;
  name: string;
}

export interface ExportResult {
  out: string;
  config: Record<string, unknown>;
  tensors: number;
  files: string[];
}

export async function exportHuggingFace(
  modelDir: string,
  outDir: string,
  opts: { tokenizer?: boolean; onProgress?: (p: ExportProgress) => void } = {},
): Promise<ExportResult> {
  const src = await openExportSource(modelDir, "hf");
  const { meta, shapes: ours } = src;
  const cfg = meta.model;
  if ((cfg.family ?? "gpt2") !== "gpt2") {
    try {
      return await exportLlamaFamily(modelDir, outDir, src, opts);
    } finally {
      await src.close();
    }
  }
  try {
    // transformers loads an un-prefixed file only when it holds nothing but the base model (as the original
    // gpt2 upload does); next to lm_head.weight the base weights need GPT2LMHeadModel's `transformer.` prefix.
    const prefix = cfg.tied_head ? "" : "transformer.";
    // HF GPT-2 always adds a bias to q, k, v: where we train without one, zeros compute exactly what none does
    const hfShapes = parameterShapes({ ...cfg, qkv_bias: true });
    let done = 0;
    const entries: SafetensorsEntry[] = [...hfShapes].map(([name, shape]) => ({
      name: name === "lm_head.weight" ? name : prefix + name,
      shape,
      data: async () => {
        const data = ours.has(name) ? await src.read(name) : new Float32Array(shape[0]);
        opts.onProgress?.({ done: ++done, total: hfShapes.size, name });
        return data;
      },
    }));
    await makeDirectory(outDir);
    await writeSafetensors(join(outDir, "model.safetensors"), entries, { format: "pt" });
    const tok = await modelTokenizer(modelDir, meta.tokenizer);
    const eos = tok.endOfTextId;
    const config = { ...hfGpt2Config(cfg), bos_token_id: eos, eos_token_id: eos };
    await writeFileAtomic(join(outDir, CONFIG_FILE), JSON.stringify(config, null, 2) + "\n");
    await writeFileAtomic(
      join(outDir, "generation_config.json"),
      JSON.stringify({ bos_token_id: eos, eos_token_id: eos }, null, 2) + "\n",
    );
    const files = [CONFIG_FILE, "generation_config.json", "model.safetensors"];
    if (opts.tokenizer !== false && meta.tokenizer === TOKENIZER_FILE) {
      await writeFileAtomic(join(outDir, TOKENIZER_FILE), await readFile(join(modelDir, TOKENIZER_FILE)));
      const special = tok.endOfText;
      await writeFileAtomic(
        join(outDir, "tokenizer_config.json"),
        JSON.stringify(
          {
            tokenizer_class: "PreTrainedTokenizerFast",
            model_max_length: cfg.context_length,
            bos_token: special,
            eos_token: special,
            unk_token: special,
            add_prefix_space: false,
          },
          null,
          2,
        ) + "\n",
      );
      files.push(TOKENIZER_FILE, "tokenizer_config.json");
    } else if (opts.tokenizer !== false) {
      const { vocab, merges } = gpt2TokenizerFiles();
      await writeFile(join(outDir, "vocab.json"), JSON.stringify(vocab));
      await writeFile(join(outDir, "merges.txt"), ["#version: 0.2", ...merges].join("\n") + "\n");
      await writeFile(
        join(outDir, "tokenizer_config.json"),
        JSON.stringify(
          {
            tokenizer_class: "GPT2Tokenizer",
            model_max_length: cfg.context_length,
            bos_token: END_OF_TEXT,
            eos_token: END_OF_TEXT,
            unk_token: END_OF_TEXT,
            add_prefix_space: false,
          },
          null,
          2,
        ) + "\n",
      );
      files.push("vocab.json", "merges.txt", "tokenizer_config.json");
    }
    return { out: outDir, config, tensors: entries.length, files };
  } finally {
    await src.close();
  }
}

/**
 * A llama or qwen3 model as transformers' LlamaForCausalLM / Qwen3ForCausalLM directory, the inverse of `llmctl
 * load` (./hf-llama.ts): config.json (`hfLlamaConfig`), model.safetensors with the `model.` prefix and every
 * projection back in PyTorch's [out,in] layout (a tied head writes no lm_head.weight, as save_pretrained does), and
 * the tokenizer and generation files the model directory kept (tokenizer.json, its config and chat template,
 * generation_config.json) copied as they are.
 */
async function exportLlamaFamily(
  modelDir: string,
  outDir: string,
  src: ModelWeights,
  opts: { tokenizer?: boolean; onProgress?: (p: ExportProgress) => void },
): Promise<ExportResult> {
  const { meta, shapes } = src;
  const generationPath = join(modelDir, "generation_config.json");
  const generation = existsSync(generationPath)
    ? (JSON.parse(await readFile(generationPath, "utf8")) as { bos_token_id?: unknown; eos_token_id?: unknown })
    : undefined;
  const config = hfLlamaConfig(meta.model, join(modelDir, CONFIG_FILE), generation ?? {});
  let done = 0;
  const entries: SafetensorsEntry[] = [...shapes].map(([name, shape]) => {
    const transpose = PROJECTION.test(name) && shape.length === 2;
    return {
      name: name === "lm_head.weight" ? name : `model.${name}`,
      shape: transpose ? [shape[1], shape[0]] : shape,
      data: async () => {
        const data = await src.read(name);
        opts.onProgress?.({ done: ++done, total: shapes.size, name });
        return transpose ? transpose2d(data, shape[0], shape[1]) : data;
      },
    };
  });
  await makeDirectory(outDir);
  await writeSafetensors(join(outDir, "model.safetensors"), entries, { format: "pt" });
  await writeFileAtomic(join(outDir, CONFIG_FILE), JSON.stringify(config, null, 2) + "\n");
  const files = [CONFIG_FILE, "model.safetensors"];
  for (const f of KEPT_FILES) {
    if (f !== "generation_config.json" && (opts.tokenizer === false || meta.tokenizer !== TOKENIZER_FILE)) continue;
    if (!existsSync(join(modelDir, f))) continue;
    await writeFileAtomic(join(outDir, f), await readFile(join(modelDir, f)));
    files.push(f);
  }
  return { out: outDir, config, tensors: entries.length, files };
}
