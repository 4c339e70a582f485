/**
 * No backend leaks: tensor count and bytes stay flat over 50+ training steps (LM and classifier heads), 50+
 * KV-cached tokens and a 70-token generate() that slides past the context, on cpu and on wasm; and training
 * gives the same losses on both.
 */
import { test } from "node:test";
import assert from "node:assert/strict";
import * as tf from "@tensorflow/tfjs";
import { useBackend } from "../src/backend/index.js";
import { testBackend } from "./helpers/backend.js";
import { buildGPT, type GPTModel } from "../src/model/gpt.js";
import type { GPTConfig, HeadSpec } from "../src/model/config.js";
import { sparseCrossEntropy } from "../src/train/loss.js";
import { AdamW, clipCoefficient, globalNorm } from "../src/train/adamw.js";
import { namedParameters } from "../src/train/adamw.js";
import { Rng } from "../src/data/rng.js";
import { generate } from "../src/generate/generate.js";
import { tinyConfig } from "./helpers/tiny-config.js";

const cfg: GPTConfig = tinyConfig({
  vocab_size: 101,
  context_length: 16,
  emb_dim: 32,
  n_heads: 4,
  drop_rate: 0.1,
  qkv_bias: true,
});
const B = 2;
const T = 12;
const STEPS = 55;

function batch(step: number, head: HeadSpec): { ids: tf.Tensor2D; targets: tf.Tensor } {
  const rng = new Rng(1000 + (step % 4)); // four batches, seen over and over: the loss must fall
  const ids = Int32Array.from({ length: B * T }, () => rng.int(cfg.vocab_size));
  if (head.kind === "lm") {
    const targets = Int32Array.from({ length: B * T }, (_, i) => (ids[i] * 7 + 3) % cfg.vocab_size);
    return { ids: tf.tensor2d(ids, [B, T], "int32"), targets: tf.tensor2d(targets, [B, T], "int32") };
  }
  const labels = Int32Array.from({ length: B }, (_, b) => ids[b * T + T - 1] % 2);
  return { ids: tf.tensor2d(ids, [B, T], "int32"), targets: tf.tensor1d(labels, "int32") };
}

/** one AdamW step with clipping, as the Trainer takes it; returns the loss */
async function trainStep(gpt: GPTModel, opt: AdamW, head: HeadSpec, step: number): Promise<number> {
  const { ids, targets } = batch(step, head);
  const params = opt.params;
  const { value, grads } = tf.variableGrads(
    () =>
      tf.tidy(() => {
        const logits = gpt.forward(ids, { training: true, seed: step }); // [B,T,V or C]
        if (head.kind === "lm") return sparseCrossEntropy(logits, targets);
        const last = tf.reshape(tf.slice(logits, [0, T - 1, 0], [B, 1, -1]), [B, -1]); // chapter 6: last token
        return sparseCrossEntropy(last, targets);
      }),
    params.map((p) => p.variable),
  );
  const byName = new Map(params.map((p) => [p.name, grads[p.variable.name]]));
  opt.applyGradients(byName, 3e-3, clipCoefficient(await globalNorm(byName.values()), 1.0));
  const loss = (await value.data())[0];
  tf.dispose([value, ids, targets, ...byName.values()]);
  return loss;
}

/** generation keeps the head's transposed weight from call to call (until the weight changes): make it now */
function primeHeadCopy(gpt: GPTModel): void {
  tf.tidy(() => {
    gpt.forward(tf.tensor2d([[1]], [1, 1], "int32"), { lastOnly: true });
  });
}

const heads: HeadSpec[] = [{ kind: "lm" }, { kind: "classifier", num_classes: 2 }];
const losses = new Map<string, number[]>();

// cpu and wasm always, and the suite pass's backend (tensorflow, webgpu)
for (const backend of new Set(["cpu", "wasm", testBackend()])) {
  for (const head of heads) {
    test(`${backend}: ${STEPS} training steps of the ${head.kind} model leave tensor count and bytes flat`, async () => {
      await useBackend(backend);
      const gpt = buildGPT(cfg, { head, seed: 5 });
      const opt = new AdamW(namedParameters(gpt), { weightDecay: 0.1 });
      const seen: number[] = [];
      let baseline: tf.MemoryInfo | null = null;
      for (let step = 0; step < STEPS; step++) {
        seen.push(await trainStep(gpt, opt, head, step));
        if (step === 2) baseline = tf.memory();
      }
      const end = tf.memory();
      assert.equal(end.numTensors, baseline!.numTensors, "tensors kept growing");
      assert.equal(end.numBytes, baseline!.numBytes, "bytes kept growing");
      const first = seen.slice(0, 4).reduce((a, b) => a + b) / 4;
      const last = seen.slice(-4).reduce((a, b) => a + b) / 4;
      assert.ok(
        last < 0.7 * first,
        `the loss should fall on four repeated batches: ${first.toFixed(3)} → ${last.toFixed(3)}`,
      );
      losses.set(`${backend}/${head.kind}`, seen);
      opt.dispose();
      gpt.dispose();
    });
  }

  test(`${backend}: 60 KV-cached tokens leave tensor count and bytes flat`, async () => {
    await useBackend(backend);
    const gpt = buildGPT({ ...cfg, context_length: 64 }, { seed: 6 });
    primeHeadCopy(gpt);
    const before = tf.memory();
    const cache = gpt.newCache();
    let logits = tf.tidy(() => gpt.forward(tf.tensor2d([[1, 2, 3]], [1, 3], "int32"), { lastOnly: true, cache }));
    let during: tf.MemoryInfo | null = null;
    for (let i = 0; i < 60; i++) {
      const next = tf.tidy(() => tf.reshape(tf.argMax(logits, -1), [1, 1]) as tf.Tensor2D);
      logits.dispose();
      logits = gpt.forward(next, { lastOnly: true, cache });
      next.dispose();
      if (i === 1) during = tf.memory();
      if (i > 1) assert.equal(tf.memory().numTensors, during!.numTensors, `token ${i}: tensors kept growing`);
    }
    assert.equal(cache.length, 63);
    logits.dispose();
    cache.dispose();
    const after = tf.memory();
    assert.equal(after.numTensors, before.numTensors);
    assert.equal(after.numBytes, before.numBytes);
    gpt.dispose();
  });

  test(`${backend}: generate() of 70 sampled tokens, sliding past a 32-token context, leaves nothing behind`, async () => {
    await useBackend(backend);
    const empty = tf.memory();
    const gpt = buildGPT({ ...cfg, context_length: 32 }, { seed: 7 });
    primeHeadCopy(gpt);
    const before = tf.memory();
    const counts: number[] = [];
    const result = await generate(gpt, [5, 6, 7, 8], {
      maxNewTokens: 70,
      temperature: 1,
      topK: 10,
      seed: 3,
      onToken: () => counts.push(tf.memory().numTensors),
    });
    assert.equal(result.ids.length, 70);
    const after = tf.memory();
    assert.equal(after.numTensors, before.numTensors);
    assert.equal(after.numBytes, before.numBytes);
    // while generating: the KV cache replaces its tensors, so the count holds still from token to token
    const steady = counts.slice(2, 20);
    assert.ok(
      steady.every((c) => c === steady[0]),
      `tensor counts while generating: ${steady.join(",")}`,
    );
    gpt.dispose();
    assert.equal(tf.memory().numTensors, empty.numTensors, "the model's dispose() frees its inference copy too");
    assert.equal(tf.memory().numBytes, empty.numBytes);
  });
}

test("wasm trains as cpu does: the same losses step for step (1e-3)", () => {
  for (const head of heads) {
    const cpu = losses.get(`cpu/${head.kind}`);
    const wasm = losses.get(`wasm/${head.kind}`);
    assert.ok(cpu && wasm, "the training tests above must have run");
    // float32 rounding differs between backends and compounds over steps: compare the first ten closely
    for (let i = 0; i < 10; i++) {
      assert.ok(Math.abs(cpu[i] - wasm[i]) < 1e-3, `${head.kind} step ${i}: cpu ${cpu[i]} vs wasm ${wasm[i]}`);
    }
  }
});
