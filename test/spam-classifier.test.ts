import { test, before } from "node:test";
import assert from "node:assert/strict";
import * as tf from "@tensorflow/tfjs";
import { useBackend } from "../src/backend/index.js";
import { buildGPT } from "../src/model/gpt.js";
import type { GPTConfig } from "../src/model/config.js";
import { AdamW } from "../src/train/adamw.js";
import { toClassifier, freezeForFinetuning, classificationLoss } from "../src/finetune/classifier.js";
import { poolLogits, poolingWeights, classLogits, type SpamBatch } from "../src/generate/classify.js";
import type { TrainableScope } from "../src/finetune/recipes.js";
import { tinyConfig } from "./helpers/tiny-config.js";

before(async () => {
  await useBackend("cpu");
});

const CFG: GPTConfig = tinyConfig({ vocab_size: 64, context_length: 8, n_layers: 3 });

function batch(): SpamBatch {
  // two texts of 3 and 6 tokens, padded with id 63 to 6 positions
  return {
    inputs: Int32Array.from([5, 9, 2, 63, 63, 63, 1, 4, 8, 16, 32, 7]),
    labels: Int32Array.from([1, 0]),
    lengths: Int32Array.from([3, 6]),
    batchSize: 2,
    seqLen: 6,
  };
}

test("toClassifier copies every weight but the LM head and adds score.weight [2,D] + score.bias [2]", () => {
  const lm = buildGPT(CFG, { seed: 1 });
  const cls = toClassifier(lm, 2, 7);
  const a = lm.namedWeights();
  const b = cls.namedWeights();
  assert.deepEqual(b.get("score.weight")!.shape, [2, 16]);
  assert.deepEqual(b.get("score.bias")!.shape, [2]);
  assert.ok(!b.has("lm_head.weight"));
  for (const [name, v] of a) {
    if (name === "lm_head.weight") continue;
    assert.deepEqual(b.get(name)!.read().dataSync(), v.read().dataSync(), name);
  }
  // a tied LM converts too (the head shared wte; wte stays)
  const tied = buildGPT({ ...CFG, tied_head: true }, { seed: 2 });
  const tcls = toClassifier(tied);
  assert.deepEqual(
    tcls.namedWeights().get("wte.weight")!.read().dataSync(),
    tied.namedWeights().get("wte.weight")!.read().dataSync(),
  );
  for (const m of [lm, cls, tied, tcls]) m.dispose();
});

function snapshot(named: Map<string, tf.LayerVariable>): Map<string, Float32Array> {
  return new Map([...named].map(([n, v]) => [n, Float32Array.from(v.read().dataSync() as Float32Array)]));
}

const EXPECTED_TRAINABLE: Record<TrainableScope, (name: string) => boolean> = {
  head: (n) => n.startsWith("score."),
  "last-block": (n) => n.startsWith("score.") || n.startsWith("ln_f.") || n.startsWith("h.2."),
  "last-2-blocks": (n) =>
    n.startsWith("score.") || n.startsWith("ln_f.") || n.startsWith("h.2.") || n.startsWith("h.1."),
  all: () => true,
};

for (const scope of Object.keys(EXPECTED_TRAINABLE) as TrainableScope[]) {
  test(`--trainable ${scope}: frozen weights bit-identical after a step, trainable ones changed`, () => {
    const lm = buildGPT(CFG, { seed: 3 });
    const cls = toClassifier(lm, 2, 4);
    lm.dispose();
    const params = freezeForFinetuning(cls, scope);
    const expected = [...cls.namedWeights().keys()].filter(EXPECTED_TRAINABLE[scope]);
    assert.deepEqual(params.map((p) => p.name).sort(), expected.sort());
    assert.equal(cls.trainableVariables().length, expected.length);

    const before = snapshot(cls.namedWeights());
    const opt = new AdamW(params, { weightDecay: 0.1 });
    const { value, grads } = tf.variableGrads(
      () => classificationLoss(classLogits(cls, batch(), "last", { training: true }), batch().labels),
      cls.trainableVariables(),
    );
    const byName = new Map(params.map((p) => [p.name, grads[p.variable.name]]));
    opt.applyGradients(byName, 1e-2);
    value.dispose();
    for (const g of Object.values(grads)) g.dispose();

    const after = snapshot(cls.namedWeights());
    for (const [name, was] of before) {
      const now = after.get(name)!;
      if (expected.includes(name)) assert.notDeepEqual(now, was, `${name} should have changed`);
      else assert.deepEqual(now, was, `${name} should be frozen`);
    }
    opt.dispose();
    cls.dispose();
  });
}

test("pooling picks the right positions: last, last non-padding, mean over non-padding", () => {
  // logits [2,4,2]: value = 10·t + class (+100 for the second row) so each position is recognisable
  const values: number[] = [];
  for (let b = 0; b < 2; b++) for (let t = 0; t < 4; t++) for (let c = 0; c < 2; c++) values.push(100 * b + 10 * t + c);
  const logits = tf.tensor3d(values, [2, 4, 2]);
  const lengths = [2, 4];
  const pooled = (p: "last" | "last-nonpad" | "mean") => Array.from(poolLogits(logits, lengths, p).dataSync());
  assert.deepEqual(pooled("last"), [30, 31, 130, 131]);
  assert.deepEqual(pooled("last-nonpad"), [10, 11, 130, 131]);
  assert.deepEqual(pooled("mean"), [5, 6, 115, 116]); // (0+10)/2, (100+110+120+130)/4
  assert.deepEqual(Array.from(poolingWeights("mean", [2], 4)), [0.5, 0.5, 0, 0]);
  // the gradient reaches exactly the pooled positions
  const g = tf.grad((x: tf.Tensor) => tf.sum(poolLogits(x as tf.Tensor3D, lengths, "last-nonpad")))(logits);
  assert.deepEqual(Array.from(g.dataSync()), [0, 0, 1, 1, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1, 1]);
  tf.dispose([logits, g]);
});

test("last-nonpad pooling ignores the padding; last pooling reads through it", () => {
  const lm = buildGPT(CFG, { seed: 5 });
  const cls = toClassifier(lm);
  lm.dispose();
  const b = batch();
  // the first text alone, unpadded: its last-token scores equal the padded row's last-nonpad scores (causal mask)
  const alone: SpamBatch = {
    inputs: Int32Array.from([5, 9, 2]),
    labels: Int32Array.from([1]),
    lengths: Int32Array.from([3]),
    batchSize: 1,
    seqLen: 3,
  };
  const ref = Array.from(classLogits(cls, alone, "last").dataSync());
  const nonpad = Array.from(classLogits(cls, b, "last-nonpad").dataSync()).slice(0, 2);
  const last = Array.from(classLogits(cls, b, "last").dataSync()).slice(0, 2);
  nonpad.forEach((v, i) => assert.ok(Math.abs(v - ref[i]) < 1e-5, `${v} vs ${ref[i]}`));
  assert.ok(Math.abs(last[0] - ref[0]) > 1e-6);
  cls.dispose();
});
