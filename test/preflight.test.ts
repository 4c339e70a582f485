// test: first backend pass only (the wasm heap's arithmetic; nothing is computed)
/**
 * The pre-flight's decision on wasm's 4 GB heap: a step that fits runs as it is; one that fits only with its
 * blocks' activations recomputed gets that, and says so; one that fits neither way is refused with the ways out.
 */
import { test, before } from "node:test";
import assert from "node:assert/strict";
import { useBackend } from "../src/backend/index.js";
import { ConfigError, errorLine } from "../src/errors.js";
import { preflightStep } from "../src/train/preflight.js";
import { tinyConfig } from "./helpers/tiny-config.js";

before(async () => {
  await useBackend("wasm");
});

/** GPT-2 medium's shape (355M): the book's chapter 7 base */
const medium = tinyConfig({ vocab_size: 50257, context_length: 1024, emb_dim: 1024, n_heads: 16, n_layers: 24 });

function check(batchSize: number, length: number, trainable: number) {
  const gpt = { config: medium, head: { kind: "lm" }, recomputeBlocks: false };
  const notices: string[] = [];
  const shape = { batchSize, length, trainableParameters: trainable, totalParameters: 354_823_168 };
  preflightStep(gpt, shape, { lora: "training", note: () => {}, notice: (t) => notices.push(t) });
  return { recompute: gpt.recomputeBlocks, notices };
}

test("ch07 on GPT-2 355M with LoRA: 8 × 92 tokens fits wasm only recomputed, 2 × 64 as it is", () => {
  const lora = check(8, 92, 3_949_192);
  assert.equal(lora.recompute, true);
  assert.deepEqual(lora.notices, [
    "to fit wasm's 4 GB heap, the blocks' activations are recomputed in the backward pass: a step needs about 2.4 GB instead of 4.5 GB, for about a third more compute",
  ]);
  assert.deepEqual(check(2, 64, 3_949_192), { recompute: false, notices: [] });
});

test("a step too big even recomputed is refused with its parts and the ways out", () => {
  assert.throws(
    () => check(8, 1024, 3_949_192),
    (err: unknown) =>
      err instanceof ConfigError &&
      /^a training step needs about \d+\.\d GB on the wasm backend, more than wasm's 4 GB heap .* — try --backend tensorflow .*--batch-size 4 --grad-accum 2/.test(
        errorLine(err),
      ),
  );
});
