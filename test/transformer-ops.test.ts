/**
 * The hand-written gradients of src/backend/transformer-ops.ts against tf.grads of the plain tfjs compositions they
 * replace: on cpu within 1e-5, and the wasm backend's values and gradients against cpu's.
 */
import { test } from "node:test";
import assert from "node:assert/strict";
import * as tf from "@tensorflow/tfjs";
import { useBackend } from "../src/backend/index.js";
import { attention, batchMatMul, dropout, gelu, layerNorm, linear, matMulBT } from "../src/backend/transformer-ops.js";
import { Rng } from "../src/data/rng.js";
import { testBackend } from "./helpers/backend.js";

/** deterministic inputs, the same on every backend */
function data(shape: number[], seed: number, scale = 1): tf.Tensor {
  const rng = new Rng(seed);
  const n = shape.reduce((a, b) => a * b, 1);
  return tf.tensor(
    Float32Array.from({ length: n }, () => (rng.random() * 2 - 1) * scale),
    shape,
    "float32",
  );
}

/** Math.random replaced by a seeded stream while fn runs: the plain side's tf.dropout draws its seed from it, the
 * fast side's mask seeds are read from it too, so both draw the same masks */
function seeded<T>(seed: number, fn: () => T): T {
  const rng = new Rng(seed);
  const original = Math.random;
  Math.random = () => rng.random();
  try {
    return fn();
  } finally {
    Math.random = original;
  }
}

function maxAbsDiff(a: tf.Tensor, b: tf.Tensor): number {
  assert.deepEqual(a.shape, b.shape);
  const x = a.dataSync();
  const y = b.dataSync();
  let m = 0;
  for (let i = 0; i < x.length; i++) m = Math.max(m, Math.abs(x[i] - y[i]));
  return m;
}

/** a non-trivial upstream gradient: the loss is Σ out·r for a fixed random r */
function weighted(out: tf.Tensor, seed: number): tf.Scalar {
  return tf.sum(tf.mul(out, data(out.shape, seed)));
}

interface Case {
  name: string;
  inputs: () => tf.Tensor[];
  fast: (...xs: tf.Tensor[]) => tf.Tensor;
  plain: (...xs: tf.Tensor[]) => tf.Tensor;
  /** both sides draw random numbers: run each under the same seed */
  random?: boolean;
}

const T = 6;
// wasm loops over 2-D products from 32 rows per slice on, below that it uses its batched kernel: test both
const LONG = 40;
const mask = (t = T) => {
  const m = new Float32Array(t * t);
  for (let i = 0; i < t; i++) m.fill(-1e9, i * t + i + 1, (i + 1) * t);
  return tf.tensor2d(m, [t, t]);
};

function plainAttention(q: tf.Tensor, kT: tf.Tensor, v: tf.Tensor, rate: number): tf.Tensor {
  const hd = q.shape[3]!;
  const scores = tf.add(tf.matMul(tf.mul(q, 1 / Math.sqrt(hd)), kT), mask(q.shape[2]));
  const p = tf.softmax(scores);
  return tf.matMul(rate > 0 ? tf.dropout(p, rate) : p, v);
}

function plainGelu(x: tf.Tensor): tf.Tensor {
  const cube = tf.mul(tf.mul(x, x), x);
  const inner = tf.mul(Math.sqrt(2 / Math.PI), tf.add(x, tf.mul(0.044715, cube)));
  return tf.mul(tf.mul(0.5, x), tf.add(1, tf.tanh(inner)));
}

const cases: Case[] = [
  {
    name: "linear with bias",
    inputs: () => [data([5, 4], 1), data([4, 7], 2), data([7], 3)],
    fast: (x, w, b) => linear(x as tf.Tensor2D, w as tf.Tensor2D, b as tf.Tensor1D),
    plain: (x, w, b) => tf.add(tf.matMul(x as tf.Tensor2D, w as tf.Tensor2D), b),
  },
  {
    name: "linear without bias",
    inputs: () => [data([5, 4], 4), data([4, 7], 5)],
    fast: (x, w) => linear(x as tf.Tensor2D, w as tf.Tensor2D),
    plain: (x, w) => tf.matMul(x as tf.Tensor2D, w as tf.Tensor2D),
  },
  {
    name: "x·wᵀ (LM head layout)",
    inputs: () => [data([5, 4], 6), data([9, 4], 7)],
    fast: (x, w) => matMulBT(x as tf.Tensor2D, w as tf.Tensor2D),
    plain: (x, w) => tf.matMul(x as tf.Tensor2D, w as tf.Tensor2D, false, true),
  },
  {
    name: "batched matmul with transposes",
    inputs: () => [data([3, 4, 5], 8), data([3, 6, 4], 9)],
    fast: (a, b) => batchMatMul(a as tf.Tensor3D, b as tf.Tensor3D, true, true),
    plain: (a, b) => tf.matMul(a as tf.Tensor3D, b as tf.Tensor3D, true, true),
  },
  {
    name: "batched matmul, one 2-D product per slice",
    inputs: () => [data([2, 5, LONG], 22), data([2, 33, 5], 23)],
    fast: (a, b) => batchMatMul(a as tf.Tensor3D, b as tf.Tensor3D, true, true),
    plain: (a, b) => tf.matMul(a as tf.Tensor3D, b as tf.Tensor3D, true, true),
  },
  {
    name: "gelu",
    inputs: () => [data([4, 8], 10, 3)],
    fast: (x) => gelu(x),
    plain: (x) => plainGelu(x),
  },
  {
    name: "layer norm",
    inputs: () => [data([2, 3, 8], 11, 2), data([8], 12), data([8], 13)],
    fast: (x, g, b) => layerNorm(x, g, b),
    plain: (x, g, b) => {
      const { mean, variance } = tf.moments(x, -1, true);
      return tf.add(tf.mul(tf.mul(tf.sub(x, mean), tf.rsqrt(tf.add(variance, 1e-5))), g), b);
    },
  },
  {
    name: "dropout",
    inputs: () => [data([16, 8], 14)],
    fast: (x) => dropout(x, 0.25, () => Math.random()),
    plain: (x) => tf.dropout(x, 0.25),
    random: true,
  },
  {
    name: "causal attention",
    inputs: () => [data([2, 3, T, 4], 15), data([2, 3, 4, T], 16), data([2, 3, T, 4], 17)],
    fast: (q, kT, v) => attention(q as tf.Tensor4D, kT as tf.Tensor4D, v as tf.Tensor4D, { mask: mask(), dropRate: 0 }),
    plain: (q, kT, v) => plainAttention(q, kT, v, 0),
  },
  {
    name: "causal attention with dropout",
    inputs: () => [data([2, 3, T, 4], 18), data([2, 3, 4, T], 19), data([2, 3, T, 4], 20)],
    fast: (q, kT, v) =>
      attention(q as tf.Tensor4D, kT as tf.Tensor4D, v as tf.Tensor4D, {
        mask: mask(),
        dropRate: 0.3,
        seeds: () => Math.random(),
      }),
    plain: (q, kT, v) => plainAttention(q, kT, v, 0.3),
    random: true,
  },
  {
    name: "causal attention over 40 positions, with dropout",
    inputs: () => [data([1, 2, LONG, 8], 24), data([1, 2, 8, LONG], 25), data([1, 2, LONG, 8], 26)],
    fast: (q, kT, v) =>
      attention(q as tf.Tensor4D, kT as tf.Tensor4D, v as tf.Tensor4D, {
        mask: mask(LONG),
        dropRate: 0.2,
        seeds: () => Math.random(),
      }),
    plain: (q, kT, v) => plainAttention(q, kT, v, 0.2),
    random: true,
  },
];

/** value and input gradients of fn, as plain arrays (nothing left allocated) */
function evaluate(c: Case, which: "fast" | "plain"): { value: tf.Tensor; grads: tf.Tensor[] } {
  const fn = which === "fast" ? c.fast : c.plain;
  const run = () =>
    tf.tidy(() => {
      const xs = c.inputs();
      const value = fn(...xs);
      const grads = tf.grads((...ys: tf.Tensor[]) => weighted(fn(...ys), 99))(xs);
      return { value, grads };
    });
  // the value and the gradient pass each draw once: both sides get the same draws
  return c.random ? seeded(7, run) : run();
}

test("transformer ops: values and gradients equal tf.grads of the plain ops on cpu (1e-5)", async () => {
  await useBackend("cpu");
  for (const c of cases) {
    const before = tf.memory().numTensors;
    const fast = evaluate(c, "fast");
    const plain = evaluate(c, "plain");
    assert.ok(
      maxAbsDiff(fast.value, plain.value) < 1e-5,
      `${c.name}: value differs by ${maxAbsDiff(fast.value, plain.value)}`,
    );
    fast.grads.forEach((g, i) => {
      const d = maxAbsDiff(g, plain.grads[i]);
      assert.ok(d < 1e-5, `${c.name}: gradient of input ${i} differs by ${d}`);
    });
    tf.dispose([fast.value, plain.value, ...fast.grads, ...plain.grads]);
    assert.equal(tf.memory().numTensors, before, `${c.name} leaks tensors`);
  }
});

// tensorflow in its own pass of the suite: its inference LayerNorm is a TensorFlow kernel of its own
test(`transformer ops: wasm${testBackend() === "tensorflow" ? " and tensorflow give" : " gives"} cpu's values and gradients (1e-4 relative)`, async () => {
  const results = new Map<string, Float32Array[]>();
  for (const backend of ["cpu", "wasm", ...(testBackend() === "tensorflow" ? ["tensorflow" as const] : [])] as const) {
    await useBackend(backend);
    for (const c of cases) {
      const r = evaluate(c, "fast");
      const arrays = [r.value, ...r.grads].map((t) => t.dataSync() as Float32Array);
      tf.dispose([r.value, ...r.grads]);
      const ref = results.get(c.name);
      if (!ref) {
        results.set(c.name, arrays);
        continue;
      }
      arrays.forEach((arr, i) => {
        let scale = 1e-3;
        for (const v of ref[i]) scale = Math.max(scale, Math.abs(v));
        for (let j = 0; j < arr.length; j++) {
          assert.ok(
            Math.abs(arr[j] - ref[i][j]) <= 1e-4 * scale,
            `${c.name}: output ${i}[${j}] is ${arr[j]} on ${backend}, ${ref[i][j]} on cpu`,
          );
        }
      });
    }
  }
  await useBackend("cpu");
});
