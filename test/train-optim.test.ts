import { test, before } from "node:test";
import assert from "node:assert/strict";
import * as tf from "@tensorflow/tfjs";
import { useBackend } from "../src/backend/index.js";
import { AdamW, clipCoefficient, globalNorm, type MomentStorage } from "../src/train/adamw.js";
import { learningRate, makeSchedule } from "../src/train/schedule.js";
import { testBackend } from "./helpers/backend.js";

// the tensorflow pass also checks its own storage (TensorFlow's fused Adam kernel); every other pass runs on cpu
const onTensorflow = testBackend() === "tensorflow";

before(async () => {
  await useBackend(onTensorflow ? "tensorflow" : "cpu");
});

const close = (a: number, b: number, tol: number, what = "") =>
  assert.ok(Math.abs(a - b) <= tol, `${what} ${a} vs ${b}`);

const storages: MomentStorage[] = ["arrays", "tensors", ...(onTensorflow ? (["variables"] as const) : [])];
for (const moments of storages) {
  test(`one AdamW step on a scalar (moments in ${moments}): p=1, g=0.5, lr=0.1, λ=0.1 → 0.99 − 0.1 = 0.89 (PyTorch's formula)`, () => {
    const p = tf.variable(tf.scalar(1));
    const opt = new AdamW([{ name: "p", variable: p }], { weightDecay: 0.1, moments });
    const g = tf.scalar(0.5);
    opt.applyGradients(new Map([["p", g]]), 0.1);
    // m = 0.05, v = 0.00025; m̂ = 0.5, v̂ = 0.25; p = 1·(1 − 0.1·0.1) − 0.1 · 0.5 / (0.5 + 1e-8).
    // TensorFlow's kernel forms 1 − β2 in float32 (0.00099998713 for 0.999f, 1.3e-5 off): 7e-7 here
    const tol = moments === "variables" ? 1e-6 : 1e-7;
    close(p.dataSync()[0], 0.89, tol);
    // second step, g = −0.2: m = 0.025, v = 0.00028975, bc1 = 0.19, bc2 = 0.001999
    const g2 = tf.scalar(-0.2);
    opt.applyGradients(new Map([["p", g2]]), 0.1);
    const expected = 0.89 * 0.99 - (0.1 * (0.025 / 0.19)) / (Math.sqrt(0.00028975 / 0.001999) + 1e-8);
    close(p.dataSync()[0], expected, 1e-6);
    close(expected, 0.84654, 1e-5);
    assert.equal(opt.step, 2);
    [p, g, g2].forEach((t) => t.dispose());
    opt.dispose();
  });

  test(`AdamW (moments in ${moments}) on a vector matches a float64 reference over 20 steps with a changing lr`, () => {
    const n = 5;
    const init = [0.3, -1.2, 2.0, 0.0, 0.7];
    const p = tf.variable(tf.tensor1d(init));
    const opt = new AdamW([{ name: "w", variable: p }], {
      weightDecay: 0.05,
      beta1: 0.8,
      beta2: 0.99,
      epsilon: 1e-6,
      moments,
    });
    const ref = init.slice();
    const m = new Array(n).fill(0);
    const v = new Array(n).fill(0);
    for (let t = 1; t <= 20; t++) {
      const lr = 0.01 * (1 + Math.sin(t));
      const grad = ref.map((x, i) => Math.cos(t * (i + 1)) + 0.1 * x);
      const g = tf.tensor1d(grad);
      opt.applyGradients(new Map([["w", g]]), lr);
      g.dispose();
      for (let i = 0; i < n; i++) {
        m[i] = 0.8 * m[i] + 0.2 * grad[i];
        v[i] = 0.99 * v[i] + 0.01 * grad[i] * grad[i];
        const mh = m[i] / (1 - 0.8 ** t);
        const vh = v[i] / (1 - 0.99 ** t);
        ref[i] = ref[i] * (1 - lr * 0.05) - (lr * mh) / (Math.sqrt(vh) + 1e-6);
      }
    }
    const got = p.dataSync();
    for (let i = 0; i < n; i++) close(got[i], ref[i], 1e-5, `w[${i}]`);
    p.dispose();
    opt.dispose();
  });

  test(`AdamW state (moments in ${moments}) saves and restores: a restored optimizer continues identically`, async () => {
    const mk = () => tf.variable(tf.tensor1d([1, 2, 3]));
    const a = mk();
    const optA = new AdamW([{ name: "x", variable: a }], { weightDecay: 0.1, moments });
    const grads = [
      [0.1, -0.2, 0.3],
      [0.5, 0.5, -0.5],
      [-0.1, 0.0, 0.2],
    ];
    const apply = (opt: AdamW, gv: number[]) => {
      const g = tf.tensor1d(gv);
      opt.applyGradients(new Map([["x", g]]), 0.01);
      g.dispose();
    };
    apply(optA, grads[0]);
    apply(optA, grads[1]);
    const saved = new Map([...(await optA.stateArrays())].map(([k, t]) => [k, t.data.slice()]));
    const b = tf.variable(a.clone());
    const optB = new AdamW([{ name: "x", variable: b }], { weightDecay: 0.1, moments });
    optB.loadState(optA.step, (k) => saved.get(k));
    apply(optA, grads[2]);
    apply(optB, grads[2]);
    assert.deepEqual(Array.from(b.dataSync()), Array.from(a.dataSync()));
    assert.throws(() => optB.loadState(2, () => undefined), /no 'm.x'/);
    [a, b].forEach((t) => t.dispose());
    optA.dispose();
    optB.dispose();
  });
}

test("global-norm clipping as clip_grad_norm_: norm of (3,4) and (12) is 13, clipped to 1", async () => {
  const g = new Map<string, tf.Tensor>([
    ["a", tf.tensor1d([3, 4])],
    ["b", tf.tensor1d([12])],
  ]);
  const norm = await globalNorm(g.values());
  close(norm, 13, 1e-6);
  // the factor the Trainer folds into AdamW's gradient scale
  const coef = clipCoefficient(norm, 1);
  const grads = new Map([...g].map(([name, t]) => [name, tf.mul(t, coef)]));
  close(await globalNorm(grads.values()), 1, 1e-6);
  close(grads.get("a")!.dataSync()[0], 3 / (13 + 1e-6), 1e-7);
  // below the threshold nothing changes
  assert.equal(clipCoefficient(await globalNorm(grads.values()), 5), 1);
  for (const t of [...g.values(), ...grads.values()]) t.dispose();
});

test("schedule: appendix D warmup + cosine, and the constant ch05 rate", () => {
  // appendix D: peak 0.01, initial 1e-4, min 1e-5, warmup 20 of 135 steps (the book's numbers)
  const s = makeSchedule({
    peakLr: 0.01,
    initialLr: 0.0001,
    minLr: 0.00001,
    warmupSteps: 20,
    totalSteps: 135,
    decay: "cosine",
  });
  close(learningRate(0, s), 0.0001, 1e-12);
  close(learningRate(10, s), 0.0001 + 10 * (0.0099 / 20), 1e-12);
  close(learningRate(20, s), 0.01, 1e-12);
  // halfway through the decay the cosine term is 0.5
  close(learningRate(20 + 57.5, s), 0.00001 + 0.5 * (0.01 - 0.00001), 1e-12);
  close(learningRate(135, s), 0.00001, 1e-12);
  const c = makeSchedule({ peakLr: 0.0004, totalSteps: 90 });
  assert.equal(learningRate(0, c), 0.0004);
  assert.equal(learningRate(89, c), 0.0004);
  // defaults follow appendix D's ratios
  const d = makeSchedule({ peakLr: 0.01, totalSteps: 10, decay: "cosine", warmupSteps: 2 });
  close(d.initialLr, 0.0001, 1e-15);
  close(d.minLr, 0.00001, 1e-15);
  assert.throws(() => makeSchedule({ peakLr: -1, totalSteps: 1 }), /learning rate must be positive/);
});
