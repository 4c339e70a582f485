/**
 * Activation checkpointing (GPTModel.recomputeBlocks): a training step that keeps only each block's input and
 * recomputes the rest in the backward pass gives the gradients of the step that keeps everything, dropout masks
 * included, for full training, LoRA adapters and a classifier with frozen blocks; and it leaks no tensor.
 */
import { test, before } from "node:test";
import assert from "node:assert/strict";
import * as tf from "@tensorflow/tfjs";
import { useBackend } from "../src/backend/index.js";
import { buildGPT, type GPTModel } from "../src/model/gpt.js";
import { namedParameters } from "../src/train/adamw.js";
import { sparseCrossEntropy } from "../src/train/loss.js";
import { freezeForFinetuning, toClassifier } from "../src/finetune/classifier.js";
import { testBackend } from "./helpers/backend.js";
import { tinyConfig } from "./helpers/tiny-config.js";

before(async () => {
  await useBackend(testBackend());
});

const B = 2;
const T = 10;

/**
 * The gradients of one training step's loss (dropout on, masks from `seed`), by parameter name, and how many
 * tensors were alive when the forward pass ended (what the backward pass will read).
 */
async function stepGradients(gpt: GPTModel, seed: number): Promise<{ grads: Map<string, Float32Array>; live: number }> {
  let live = 0;
  const params = namedParameters(gpt);
  const ids = tf.tensor2d(
    Array.from({ length: B * T }, (_, i) => (i * 7 + 3) % 97),
    [B, T],
    "int32",
  );
  const targets = tf.tensor2d(
    Array.from({ length: B * T }, (_, i) => (i * 5 + 1) % 97),
    [B, T],
    "int32",
  );
  const { value, grads } = tf.variableGrads(
    () =>
      tf.tidy(() => {
        const logits = gpt.forward(ids, { training: true, seed });
        live = tf.memory().numTensors;
        if (gpt.head.kind === "lm") return sparseCrossEntropy(logits, targets);
        const last = tf.reshape(tf.slice(logits, [0, T - 1, 0], [B, 1, -1]), [B, -1]);
        return sparseCrossEntropy(last, tf.tensor1d([0, 1], "int32"));
      }),
    params.map((p) => p.variable),
  );
  const out = new Map<string, Float32Array>();
  for (const p of params) out.set(p.name, (await grads[p.variable.name].data()) as Float32Array);
  tf.dispose([value, ids, targets, ...Object.values(grads)]);
  return { grads: out, live };
}

async function assertSameGradients(gpt: GPTModel, what: string): Promise<void> {
  gpt.recomputeBlocks = false;
  const { grads: kept, live: keptLive } = await stepGradients(gpt, 11);
  gpt.recomputeBlocks = true;
  const before = tf.memory().numTensors;
  const { grads: recomputed, live } = await stepGradients(gpt, 11);
  assert.equal(tf.memory().numTensors, before, `${what}: a recomputed step leaves no tensor behind`);
  assert.ok(live < keptLive, `${what}: the forward kept ${live} tensors, no fewer than the ${keptLive} kept without`);
  assert.deepEqual([...recomputed.keys()], [...kept.keys()], what);
  assert.ok(kept.size > 0, what);
  for (const [name, g] of kept) {
    const r = recomputed.get(name)!;
    let worst = 0;
    let scale = 0;
    for (let i = 0; i < g.length; i++) {
      worst = Math.max(worst, Math.abs(g[i] - r[i]));
      scale = Math.max(scale, Math.abs(g[i]));
    }
    assert.ok(scale > 0, `${what}: ${name} has a gradient`);
    assert.ok(worst <= 1e-5 * Math.max(1, scale), `${what}: ${name} differs by ${worst} (largest ${scale})`);
  }
}

test("recomputed blocks give the same gradients as kept activations: full training with dropout", async () => {
  const gpt = buildGPT(tinyConfig({ drop_rate: 0.2, qkv_bias: true }), { seed: 3 });
  await assertSameGradients(gpt, "full");
  gpt.dispose();
});

test("recomputed blocks give the same gradients: LoRA adapters on a frozen model", async () => {
  const gpt = buildGPT(tinyConfig({ drop_rate: 0.1 }), { seed: 4 });
  gpt.addLora({ rank: 2, alpha: 4 }, 5);
  // adapters start with B = 0, which makes their A gradients 0: give B values so both are tested
  for (const [name, v] of gpt.adapterWeights())
    if (name.endsWith("lora_B")) v.write(tf.randomNormal(v.shape as number[], 0, 0.1, "float32", 6));
  await assertSameGradients(gpt, "lora");
  gpt.dispose();
});

test("recomputed blocks give the same gradients: a classifier whose first blocks are frozen", async () => {
  const lm = buildGPT(tinyConfig({ n_layers: 3 }), { seed: 7 });
  const clf = toClassifier(lm, 2, 8, 0.1);
  lm.dispose();
  freezeForFinetuning(clf, "last-block");
  await assertSameGradients(clf, "classifier");
  clf.dispose();
});
