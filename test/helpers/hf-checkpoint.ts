/** Hugging Face Llama/Qwen3 checkpoints written without Python: seeded random weights in HF's names and layout, and a small tokenizer. */
import assert from "node:assert/strict";
import { mkdir, writeFile } from "node:fs/promises";
import { join } from "node:path";
import * as tf from "@tensorflow/tfjs";
import { writeSafetensors } from "../../src/formats/safetensors.js";
import { useBackend } from "../../src/backend/index.js";
import { loadModelDir } from "../../src/model/model-dir.js";
import { testBackend } from "./backend.js";
import { runCli } from "./cli.js";
import { sharedPath } from "./shared.js";
import type { HFTextConfig } from "./llama-reference.js";

/** a seeded uniform generator (mulberry32) */
export function uniform(seed: number): (scale: number) => number {
  let a = seed >>> 0;
  return (scale) => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return (((t ^ (t >>> 14)) >>> 0) / 4294967296 - 0.5) * 2 * scale;
  };
}

/** Random weights of a Hugging Face config, in its names and layout (Linear [out, in]). */
export function hfWeights(cfg: HFTextConfig, seed: number): Map<string, Float32Array> {
  const rand = uniform(seed);
  const D = cfg.hidden_size;
  const hd = cfg.head_dim ?? D / cfg.num_attention_heads;
  const [Q, KV, F] = [cfg.num_attention_heads * hd, cfg.num_key_value_heads * hd, cfg.intermediate_size];
  const w = new Map<string, Float32Array>();
  const fill = (name: string, n: number, scale: number, offset = 0) =>
    w.set(
      name,
      Float32Array.from({ length: n }, () => offset + rand(scale)),
    );
  fill("model.embed_tokens.weight", cfg.vocab_size * D, 1);
  for (let l = 0; l < cfg.num_hidden_layers; l++) {
    const p = `model.layers.${l}`;
    fill(`${p}.input_layernorm.weight`, D, 0.3, 1);
    fill(`${p}.self_attn.q_proj.weight`, Q * D, 0.4);
    fill(`${p}.self_attn.k_proj.weight`, KV * D, 0.4);
    fill(`${p}.self_attn.v_proj.weight`, KV * D, 0.4);
    fill(`${p}.self_attn.o_proj.weight`, D * Q, 0.2);
    if (cfg.model_type === "qwen3") {
      fill(`${p}.self_attn.q_norm.weight`, hd, 0.3, 1);
      fill(`${p}.self_attn.k_norm.weight`, hd, 0.3, 1);
    }
    fill(`${p}.post_attention_layernorm.weight`, D, 0.3, 1);
    fill(`${p}.mlp.gate_proj.weight`, F * D, 0.3);
    fill(`${p}.mlp.up_proj.weight`, F * D, 0.3);
    fill(`${p}.mlp.down_proj.weight`, D * F, 0.2);
  }
  fill("model.norm.weight", D, 0.3, 1);
  if (!cfg.tie_word_embeddings) fill("lm_head.weight", cfg.vocab_size * D, 0.3);
  return w;
}

export function hfShape(cfg: HFTextConfig, name: string): number[] {
  const D = cfg.hidden_size;
  const hd = cfg.head_dim ?? D / cfg.num_attention_heads;
  const [Q, KV, F] = [cfg.num_attention_heads * hd, cfg.num_key_value_heads * hd, cfg.intermediate_size];
  const shapes: Record<string, number[]> = {
    embed_tokens: [cfg.vocab_size, D],
    lm_head: [cfg.vocab_size, D],
    q_proj: [Q, D],
    k_proj: [KV, D],
    v_proj: [KV, D],
    o_proj: [D, Q],
    gate_proj: [F, D],
    up_proj: [F, D],
    down_proj: [D, F],
    q_norm: [hd],
    k_norm: [hd],
  };
  return shapes[name.split(".").at(-2)!] ?? [D];
}

export async function writeHFCheckpoint(
  dir: string,
  cfg: HFTextConfig,
  weights: Map<string, Float32Array>,
): Promise<void> {
  await mkdir(dir, { recursive: true });
  await writeFile(join(dir, "config.json"), JSON.stringify({ ...cfg, hidden_act: "silu" }, null, 2));
  const entries = [...weights].map(([name, data]) => ({ name, shape: hfShape(cfg, name), data }));
  await writeSafetensors(join(dir, "model.safetensors"), entries, { format: "pt" });
}

/** a byte-level BPE of 300 ids (llmctl's own trainer) for the models' prompts and generate */
export async function trainTokenizer(dir: string): Promise<string> {
  const out = join(dir, "tokenizer");
  const r = await runCli([
    "tokenizer",
    "train",
    "--file",
    sharedPath("datasets", "the-verdict.txt"),
    "--vocab-size",
    "300",
    "--out",
    out,
  ]);
  assert.equal(r.code, 0, r.stderr);
  return out;
}

/** An llmctl model directory's logits [T, V] for ids, on the test pass's backend. */
export async function llmctlLogits(modelDir: string, ids: number[]): Promise<number[][]> {
  await useBackend(testBackend());
  const { gpt } = await loadModelDir(modelDir);
  try {
    const logits = tf.tidy(() => gpt.forward(tf.tensor2d([ids], [1, ids.length], "int32")));
    const rows = ((await logits.array()) as number[][][])[0];
    logits.dispose();
    return rows;
  } finally {
    gpt.dispose();
  }
}
