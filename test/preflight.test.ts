// test: first backend pass only (the wasm heap's arithmetic; nothing is computed)
/**
 * The pre-flight's decision on wasm's 4 GB heap: a step that fits runs as it is; one that fits only with its
 * blocks' activations recomputed gets that, and says so; one that fits neither way is refused with the ways out.
 * And the same question for a model to run (generate/fit.ts).
 */
import { test, before } from "node:test";
import assert from "node:assert/strict";
import { useBackend } from "../src/backend/index.js";
import { BackendError, ConfigError, errorLine } from "../src/errors.js";
import { fitForInference } from "../src/generate/fit.js";
import { keepPackedWeights } from "../src/backend/transformer-ops.js";
import { mkdtempSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
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

/** A model directory's config.json alone (fitForInference reads no weights): GPT-2's shape with `emb`, `layers`. */
function configOnly(emb: number, layers: number, heads: number): string {
  const dir = mkdtempSync(join(tmpdir(), "llmctl-fit-"));
  const model = { vocab_size: 50257, context_length: 1024, emb_dim: emb, n_heads: heads, n_layers: layers };
  writeFileSync(
    join(dir, "config.json"),
    JSON.stringify({
      format: "llmctl-model",
      version: 1,
      tokenizer: "gpt2",
      model: { ...model, drop_rate: 0, qkv_bias: true, tied_head: true },
      head: { kind: "lm" },
    }),
  );
  return dir;
}

test("a model to run on wasm: 355M keeps its packed weights, 774M runs without them (and says so), 1.5B is refused", async () => {
  const notices: string[] = [];
  await fitForInference(configOnly(1024, 24, 16), (t) => notices.push(t));
  assert.equal(notices.length, 0, "355M: its packs fit beside it");
  await fitForInference(configOnly(1280, 36, 20), (t) => notices.push(t));
  assert.equal(notices.length, 1);
  assert.match(notices[0], /weights \(2\.9 GB\) leave no room in wasm's 4 GB heap for their packed copies/);
  await assert.rejects(
    fitForInference(configOnly(1600, 48, 25), () => {}),
    (err: unknown) =>
      err instanceof BackendError &&
      /weights take 5\.8 GB: with a forward pass beside them, more than wasm's 4 GB heap — run it on the tensorflow backend/.test(
        errorLine(err),
      ),
  );
  keepPackedWeights(true);
});
