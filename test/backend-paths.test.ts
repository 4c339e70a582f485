/**
 * Paths on the suite pass's backend (scripts/test.mjs; wasm outside a pass): KV-cached generation, classification
 * and the spam finetune give cpu's answers. Every title names the backend, so a pass can pick them (the webgpu
 * pass runs the tests whose titles say webgpu).
 */
import { test } from "node:test";
import assert from "node:assert/strict";
import { mkdtemp, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import * as tf from "@tensorflow/tfjs";
import { useBackend } from "../src/backend/index.js";
import { generate } from "../src/generate/generate.js";
import { toClassifier } from "../src/finetune/classifier.js";
import { classifyTexts } from "../src/generate/classify.js";
import { finetuneSpam } from "../src/finetune/spam.js";
import type { JobEvent } from "../src/train/run.js";
import { getTokenizer } from "../src/tokenizer/index.js";
import { expected, fixtureModel } from "./helpers/fixture.js";
import { testBackend } from "./helpers/backend.js";
import { writeSmallSplit } from "./helpers/spam-split.js";
import { saveNewModel } from "./helpers/tiny-config.js";

const backend = testBackend();

test(`greedy generation on ${backend}, with and without the KV cache, gives the fixture's ids`, async () => {
  await useBackend(backend);
  const gpt = await fixtureModel();
  try {
    for (const c of expected.cases) {
      for (const useCache of [true, false]) {
        const r = await generate(gpt, c.ids, { maxNewTokens: c.greedy_continuation.length, temperature: 0, useCache });
        assert.deepEqual(r.ids, c.greedy_continuation, `${c.name} (cache ${useCache})`);
      }
    }
  } finally {
    gpt.dispose();
  }
});

test(`classification on ${backend}: the fixture with a fresh 2-class head gives cpu's labels and probabilities within 1e-4`, async () => {
  const texts = ["You won a free prize, call now", "See you at lunch tomorrow?", "Every effort moves you"];
  const classify = async (on: string) => {
    await useBackend(on);
    const lm = await fixtureModel();
    const cls = toClassifier(lm, 2, 7);
    lm.dispose();
    try {
      return await classifyTexts(cls, getTokenizer(), texts, { labels: ["ham", "spam"], pool: "last", batchSize: 2 });
    } finally {
      cls.dispose();
    }
  };
  const want = await classify("cpu");
  const before = tf.memory().numTensors;
  const got = await classify(backend);
  assert.equal(tf.memory().numTensors, before, "tensors left behind");
  got.forEach((g, i) => {
    assert.equal(g.label, want[i].label, texts[i]);
    assert.ok(
      Math.abs(g.probability - want[i].probability) <= 1e-4,
      `${texts[i]}: ${g.probability} vs ${want[i].probability}`,
    );
  });
});

test(`finetune spam on ${backend}: 3 updates on a small split give cpu's step losses (1e-3) and accuracies`, async () => {
  const root = await mkdtemp(join(tmpdir(), "llmctl-paths-"));
  try {
    await useBackend("cpu");
    const lmDir = join(root, "lm");
    const cfg = { vocab_size: 50257, context_length: 24, emb_dim: 16, n_heads: 2, n_layers: 2, drop_rate: 0.1 };
    await saveNewModel(lmDir, { ...cfg, qkv_bias: false, tied_head: false }, 11);
    const splitDir = await writeSmallSplit(root, { train: 32, validation: 8, test: 8 });
    const run = async (on: string) => {
      await useBackend(on);
      const events: JobEvent[] = [];
      const result = await finetuneSpam({
        modelDir: lmDir,
        outDir: join(root, on),
        splitDir,
        trainable: "all",
        pool: "last-nonpad",
        train: { epochs: 1, batch_size: 8, lr: 1e-3, eval_freq: 2, eval_iter: 1, max_steps: 3 },
        onEvent: (e) => events.push(e),
      });
      const steps = events.flatMap((e) => (e.kind === "step" ? [e.progress] : []));
      return { steps, accuracy: result.accuracy };
    };
    const want = await run("cpu");
    const got = await run(backend);
    assert.equal(got.steps.length, 3);
    got.steps.forEach((p, i) => {
      assert.ok(
        Math.abs(p.loss - want.steps[i].loss) <= 1e-3,
        `step ${p.step}: loss ${p.loss} vs ${want.steps[i].loss}`,
      );
      assert.equal(p.accuracy, want.steps[i].accuracy, `step ${p.step}: running accuracy`);
    });
    assert.deepEqual(got.accuracy, want.accuracy);
  } finally {
    await rm(root, { recursive: true, force: true });
  }
});
