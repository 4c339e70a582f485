import { test, before } from "node:test";
import assert from "node:assert/strict";
import * as tf from "@tensorflow/tfjs";
import { useBackend } from "../src/backend/index.js";
import { sparseCrossEntropy, IGNORE_INDEX } from "../src/train/loss.js";

before(async () => {
  await useBackend("cpu");
});

function lossOf(logits: number[][], targets: number[]): number {
  return tf.tidy(() => sparseCrossEntropy(tf.tensor2d(logits), tf.tensor1d(targets, "int32")).arraySync());
}

test("book ch07 example: logits [[-1,1],[-0.5,1.5]], targets [0,1] → 1.1269", () => {
  assert.ok(
    Math.abs(
      lossOf(
        [
          [-1, 1],
          [-0.5, 1.5],
        ],
        [0, 1],
      ) - 1.1269,
    ) < 1e-4,
  );
});

test("a third row with target -100 is ignored; with target 1 the mean becomes 0.7936", () => {
  const logits = [
    [-1, 1],
    [-0.5, 1.5],
    [-0.5, 1.5],
  ];
  assert.ok(Math.abs(lossOf(logits, [0, 1, IGNORE_INDEX]) - 1.1269) < 1e-4);
  assert.ok(Math.abs(lossOf(logits, [0, 1, 1]) - 0.7936) < 1e-4);
});

test("far-off targets stay exact: a probability that underflows float32 still gives lse − logit (500, 1000)", () => {
  // softmax of the target is exp(−500) = 0 in float32; the loss must not be Infinity or NaN
  assert.ok(Math.abs(lossOf([[0, -200, 300]], [1]) - 500) < 1e-3);
  assert.ok(Math.abs(lossOf([[1000, 0, 0, -1e-3]], [1]) - 1000) < 1e-3);
  // and across many classes: lse of 1000 equal logits is log(1000)
  assert.ok(Math.abs(lossOf([new Array(1000).fill(7)], [3]) - Math.log(1000)) < 1e-5);
});

test("[B,T,V] logits equal the flattened [N,V] case; all-ignored gives 0", () => {
  const data = Array.from({ length: 2 * 3 * 5 }, (_, i) => Math.sin(i * 1.3) * 3);
  const targets = [4, 0, 2, 1, IGNORE_INDEX, 3];
  const a = tf.tidy(() =>
    sparseCrossEntropy(tf.tensor3d(data, [2, 3, 5]), tf.tensor2d(targets, [2, 3], "int32")).arraySync(),
  );
  const b = tf.tidy(() => sparseCrossEntropy(tf.tensor2d(data, [6, 5]), tf.tensor1d(targets, "int32")).arraySync());
  assert.equal(a, b);
  // reference: mean over the 5 kept rows of logsumexp − picked, computed in float64
  let sum = 0;
  for (let r = 0; r < 6; r++) {
    if (targets[r] === IGNORE_INDEX) continue;
    const row = data.slice(r * 5, r * 5 + 5);
    const m = Math.max(...row);
    sum += m + Math.log(row.reduce((s, x) => s + Math.exp(x - m), 0)) - row[targets[r]];
  }
  assert.ok(Math.abs(a - sum / 5) < 1e-5, `${a} vs ${sum / 5}`);
  assert.equal(lossOf([[1, 2]], [IGNORE_INDEX]), 0);
});

test("mismatched shapes are a clear error", () => {
  assert.throws(() => sparseCrossEntropy(tf.zeros([2, 3, 5]), tf.zeros([3, 2], "int32")), /do not match/);
});

test("gradient matches central finite differences and (softmax − onehot)/n", () => {
  const N = 4;
  const V = 6;
  const data = Array.from({ length: N * V }, (_, i) => Math.cos(i * 0.7) * 2);
  const targets = [5, IGNORE_INDEX, 0, 3];
  const t = tf.tensor1d(targets, "int32");
  const f = (x: tf.Tensor) => sparseCrossEntropy(x, t);
  const grad = tf.tidy(
    () =>
      tf
        .grad(f)(tf.tensor2d(data, [N, V]))
        .arraySync() as number[][],
  );
  const h = 1e-2;
  const kept = targets.filter((x) => x !== IGNORE_INDEX).length;
  for (let r = 0; r < N; r++) {
    const row = data.slice(r * V, r * V + V);
    const m = Math.max(...row);
    const z = row.reduce((s, x) => s + Math.exp(x - m), 0);
    for (let c = 0; c < V; c++) {
      const plus = data.slice();
      plus[r * V + c] += h;
      const minus = data.slice();
      minus[r * V + c] -= h;
      const fd = tf.tidy(
        () => (f(tf.tensor2d(plus, [N, V])).arraySync() - f(tf.tensor2d(minus, [N, V])).arraySync()) / (2 * h),
      );
      assert.ok(Math.abs(fd - grad[r][c]) < 2e-3, `finite difference at [${r},${c}]: ${fd} vs ${grad[r][c]}`);
      const analytic = targets[r] === IGNORE_INDEX ? 0 : (Math.exp(row[c] - m) / z - (c === targets[r] ? 1 : 0)) / kept;
      assert.ok(Math.abs(analytic - grad[r][c]) < 1e-6, `analytic at [${r},${c}]: ${analytic} vs ${grad[r][c]}`);
    }
  }
  t.dispose();
});

test("no tensors leak", () => {
  const before = tf.memory().numTensors;
  const logits = tf.randomNormal([3, 7]);
  const t = tf.tensor1d([1, 2, IGNORE_INDEX], "int32");
  sparseCrossEntropy(logits, t).dispose();
  tf.grad((x: tf.Tensor) => sparseCrossEntropy(x, t))(logits).dispose();
  logits.dispose();
  t.dispose();
  assert.equal(tf.memory().numTensors, before);
});

test("wasm gives the same loss and gradient as cpu", async () => {
  const data = Array.from({ length: 3 * 50 }, (_, i) => Math.sin(i * 0.37) * 4);
  const targets = [7, IGNORE_INDEX, 49];
  const run = () =>
    tf.tidy(() => {
      const t = tf.tensor1d(targets, "int32");
      const x = tf.tensor2d(data, [3, 50]);
      const { value, grad } = tf.valueAndGrad((y: tf.Tensor) => sparseCrossEntropy(y, t))(x);
      return { loss: value.dataSync()[0], grad: Array.from(grad.dataSync()) };
    });
  const cpu = run();
  await useBackend("wasm");
  try {
    const wasm = run();
    assert.ok(Math.abs(cpu.loss - wasm.loss) < 1e-5);
    assert.ok(cpu.grad.every((g, i) => Math.abs(g - wasm.grad[i]) < 1e-5));
    assert.ok(Math.abs(cpu.grad[7] - wasm.grad[7]) < 1e-5 && cpu.grad[7] < 0);
  } finally {
    await useBackend("cpu");
  }
});

test("the upstream gradient scales the result (d(−2.5·loss) = −2.5·d loss)", () => {
  const x = tf.tensor2d([
    [0.3, -1, 2],
    [1, 1, 0],
  ]);
  const t = tf.tensor1d([2, 0], "int32");
  const g1 = tf
    .grad((y: tf.Tensor) => sparseCrossEntropy(y, t))(x)
    .arraySync() as number[][];
  const g2 = tf
    .grad((y: tf.Tensor) => tf.mul(sparseCrossEntropy(y, t), -2.5))(x)
    .arraySync() as number[][];
  g1.flat().forEach((v, i) => assert.ok(Math.abs(-2.5 * v - g2.flat()[i]) < 1e-6));
  tf.dispose([x, t]);
});
