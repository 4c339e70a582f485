import { writeFileSync } from "node:fs";
import type { GPTConfig } from "../../src/model/config.js";
import { buildGPT } from "../../src/model/gpt.js";
import { saveModelDir } from "../../src/model/model-dir.js";

/**
 * A GPT small enough for a test to build in milliseconds: 2 blocks of width 16, 2 heads, 12 positions, a
 * 97-token vocabulary, no dropout, no qkv bias, an untied head. `over` sets what a test is about.
 */
export function tinyConfig(over: Partial<GPTConfig> = {}): GPTConfig {
  return {
    vocab_size: 97,
    context_length: 12,
    emb_dim: 16,
    n_heads: 2,
    n_layers: 2,
    drop_rate: 0,
    qkv_bias: false,
    tied_head: false,
    ...over,
  };
}

/** A model directory in `dir` holding a new GPT of `config` with weights drawn from `seed` (buildGPT's default). */
export async function saveNewModel(dir: string, config: GPTConfig, seed?: number): Promise<void> {
  const gpt = buildGPT(config, seed === undefined ? {} : { seed });
  try {
    await saveModelDir(dir, gpt);
  } finally {
    gpt.dispose();
  }
}

/** A config file at `path` (a model and its train section), as `llmctl pretrain --config` and `bench` read it. */
export function writeConfigFile(path: string, model: Partial<GPTConfig>, train: Record<string, unknown>): string {
  writeFileSync(path, JSON.stringify({ model, train }));
  return path;
}
