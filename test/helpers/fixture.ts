/** The PyTorch reference in ../shared/fixtures/gpt2-tiny (see its README) and our model loaded with its weights. */
import { readFileSync } from "node:fs";
import { buildGPT, type GPTModel } from "../../src/model/gpt.js";
import type { GPTConfig } from "../../src/model/config.js";
import { readAllSafetensors } from "../../src/formats/safetensors.js";
import { sharedPath } from "./shared.js";

export interface FixtureCase {
  name: string;
  ids: number[];
  logits_last_file: string;
  top10_last: { ids: number[]; logits: number[] };
  logsumexp_last: number;
  argmax_per_position: number[];
  greedy_continuation: number[];
  loss: number;
}

export const fixture = (...p: string[]) => sharedPath("fixtures", "gpt2-tiny", ...p);
export const expected = JSON.parse(readFileSync(fixture("expected.json"), "utf8")) as {
  config: Record<string, number>;
  cases: FixtureCase[];
};

export const config: GPTConfig = {
  vocab_size: expected.config.n_vocab,
  context_length: expected.config.n_ctx,
  emb_dim: expected.config.n_embd,
  n_heads: expected.config.n_head,
  n_layers: expected.config.n_layer,
  drop_rate: 0.1, // must not matter: inference never drops
  qkv_bias: true, // GPT-2 has a c_attn bias
  tied_head: true, // the file has no lm_head.weight
};

export async function fixtureModel(): Promise<GPTModel> {
  const { tensors } = await readAllSafetensors(fixture("hf", "model.safetensors"));
  const weights = new Map<string, Float32Array>();
  for (const [name, t] of tensors) {
    if (/^h\.\d+\.attn\.bias$/.test(name)) continue; // the causal-mask buffer, not a parameter (README)
    weights.set(name, t.data);
  }
  const gpt = buildGPT(config, { initialize: false });
  gpt.setWeights(weights);
  return gpt;
}
