/**
 * Our GPT against the PyTorch reference in ../shared/fixtures/gpt2-tiny (see its README): the Hugging Face
 * weights set into our model must reproduce the recorded logits, logsumexp, loss, top-10, per-position argmax
 * and greedy continuation, on every backend that loads here.
 */
import { test } from "node:test";
import assert from "node:assert/strict";
import { readFileSync } from "node:fs";
import * as tf from "@tensorflow/tfjs";
import { useBackend } from "../src/backend/index.js";
import { testBackend } from "./helpers/backend.js";
import { buildGPT, type GPTModel } from "../src/model/gpt.js";
import type { GPTConfig } from "../src/model/config.js";
import { readAllSafetensors } from "../src/weights/safetensors.js";
import { sharedPath } from "./helpers/shared.js";

interface FixtureCase {
  name: string;
  ids: number[];
  logits_last_file: string;
  top10_last: { ids: number[]; logits: number[] };
  logsumexp_last: number;
  argmax_per_position: number[];
  greedy_continuation: number[];
  loss: number;
}

const fixture = (...p: string[]) => sharedPath("fixtures", "gpt2-tiny", ...p);
const expected = JSON.parse(readFileSync(fixture("expected.json"), "utf8")) as { config: Record<string, number>; cases: FixtureCase[] };

const config: GPTConfig = {
  vocab_size: expected.config.n_vocab,
  context_length: expected.config.n_ctx,
  emb_dim: expected.config.n_embd,
  n_heads: expected.config.n_head,
  n_layers: expected.config.n_layer,
  drop_rate: 0.1, // must not matter: inference never drops
  qkv_bias: true, // GPT-2 has a c_attn bias
  tied_head: true, // the file has no lm_head.weight
};

async function fixtureModel(): Promise<GPTModel> {
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

function logSumExp(row: Float32Array): number {
  let max = -Infinity;
  for (const v of row) max = Math.max(max, v);
  let s = 0;
  for (const v of row) s += Math.exp(v - max);
  return max + Math.log(s);
}

function argmax(row: Float32Array): number {
  let best = 0;
  for (let i = 1; i < row.length; i++) if (row[i] > row[best]) best = i;
  return best;
}

// cpu and wasm always; tensorflow too in the suite's tensorflow pass (scripts/test.mjs)
for (const backend of [...new Set(["cpu", "wasm", testBackend()] as const)]) {
  test(`gpt2-tiny fixture on ${backend}: logits, logsumexp, loss, top-10, argmax and greedy continuation`, async (ctx) => {
    await useBackend(backend);
    assert.equal(tf.getBackend(), backend);
    const gpt = await fixtureModel();
    const V = config.vocab_size;
    try {
      for (const c of expected.cases) {
        const T = c.ids.length;
        const logits = gpt.forward(tf.tensor2d([c.ids], [1, T], "int32"), false); // [1,T,V]
        const all = logits.dataSync() as Float32Array;
        logits.dispose();
        const row = (t: number) => all.subarray(t * V, (t + 1) * V);
        const last = row(T - 1);

        const ref = new Float32Array(readFileSync(fixture(c.logits_last_file)).buffer.slice(0));
        assert.equal(ref.length, V);
        let maxDiff = 0;
        for (let i = 0; i < V; i++) maxDiff = Math.max(maxDiff, Math.abs(last[i] - ref[i]));
        assert.ok(maxDiff <= 1e-3, `${c.name}: max |logit diff| ${maxDiff}`);
        ctx.diagnostic(`${c.name}: max |logit diff| ${maxDiff.toExponential(2)}`);

        assert.ok(Math.abs(logSumExp(last) - c.logsumexp_last) <= 1e-3, `${c.name}: logsumexp ${logSumExp(last)} vs ${c.logsumexp_last}`);

        const order = Array.from(last.keys()).sort((a, b) => last[b] - last[a]).slice(0, 10);
        assert.deepEqual(order, c.top10_last.ids, `${c.name}: top-10 ids`);
        order.forEach((id, k) => assert.ok(Math.abs(last[id] - c.top10_last.logits[k]) <= 1e-3, `${c.name}: top-10 logit ${k}`));

        assert.deepEqual(Array.from({ length: T }, (_, t) => argmax(row(t))), c.argmax_per_position, `${c.name}: argmax per position`);

        let loss = 0; // mean cross-entropy of ids[1:] given ids[:-1]
        for (let t = 0; t < T - 1; t++) loss += logSumExp(row(t)) - row(t)[c.ids[t + 1]];
        loss /= T - 1;
        assert.ok(Math.abs(loss - c.loss) <= 1e-3, `${c.name}: loss ${loss} vs ${c.loss}`);

        // greedy, uncached, as the README specifies: the model sees the last n_ctx tokens at positions 0..
        const seq = [...c.ids];
        for (let k = 0; k < c.greedy_continuation.length; k++) {
          const window = seq.slice(-config.context_length);
          const next = gpt.forwardLast(tf.tensor2d([window], [1, window.length], "int32"));
          seq.push(argmax(next.dataSync() as Float32Array));
          next.dispose();
        }
        assert.deepEqual(seq.slice(T), c.greedy_continuation, `${c.name}: greedy continuation`);
      }
    } finally {
      gpt.dispose();
    }
  });
}
