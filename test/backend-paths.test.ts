/**
 * The inference paths on the suite pass's backend (scripts/test.mjs; cpu outside a pass on another backend):
 * KV-cached generation and classification give cpu's answers. Every title names the backend, so a pass can pick
 * them (the webgpu pass runs the tests whose titles say webgpu).
 */
import { test } from "node:test";
import assert from "node:assert/strict";
import * as tf from "@tensorflow/tfjs";
import { useBackend } from "../src/backend/index.js";
import { generate } from "../src/generate/generate.js";
import { classifyTexts, toClassifier } from "../src/finetune/classifier.js";
import { getTokenizer } from "../src/tokenizer/index.js";
import { expected, fixtureModel } from "./helpers/fixture.js";
import { testBackend } from "./helpers/backend.js";

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
