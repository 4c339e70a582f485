/**
 * The kernels src/backend/wasm-kernels.ts registers or replaces on wasm give what the cpu backend gives:
 * UnsortedSegmentSum (gather's gradient), Slice (contiguous and not), Unpack (axis 0 and another axis), an
 * Identity whose clone outlives the original, and OneHot in float32 (and int32, which wasm's own kernel keeps).
 */
import { test } from "node:test";
import assert from "node:assert/strict";
import * as tf from "@tensorflow/tfjs";
import { useBackend } from "../src/backend/index.js";

function cases(): Record<string, () => tf.Tensor | tf.Tensor[]> {
  const x = () =>
    tf.tensor3d(
      Float32Array.from({ length: 4 * 5 * 6 }, (_, i) => i * 0.5 - 7),
      [4, 5, 6],
    );
  const ids = () =>
    tf.tensor3d(
      Int32Array.from({ length: 4 * 5 * 6 }, (_, i) => (i * 37) % 11),
      [4, 5, 6],
      "int32",
    );
  return {
    "segment sum": () =>
      tf.unsortedSegmentSum(
        tf.reshape(x(), [20, 6]),
        tf.tensor1d([3, 0, 3, 1, 7, 7, 2, 0, 0, 3, 1, 1, 5, 6, 2, 2, 4, 4, 4, 9], "int32"),
        10,
      ),
    "gather gradient": () =>
      tf.grad((w: tf.Tensor) =>
        tf.sum(tf.mul(tf.gather(w, tf.tensor1d([2, 0, 2, 3], "int32")), tf.range(0, 24).reshape([4, 6]))),
      )(tf.reshape(x(), [20, 6])),
    "contiguous slice": () => tf.slice(x(), [1, 0, 0], [2, 5, 6]),
    "row slice": () => tf.slice(x(), [2, 3, 0], [1, 2, 6]),
    "strided slice": () => tf.slice(x(), [1, 1, 2], [3, 3, 3]),
    "int slice": () => tf.slice(ids(), [3, 0, 0], [1, 5, 6]),
    "unstack axis 0": () => tf.unstack(x()),
    "unstack axis 2": () => tf.unstack(x(), 2),
    "float32 one-hot, out-of-range ids all off": () =>
      tf.oneHot(
        tf.tensor2d(
          [
            [3, 0],
            [-1, 7],
            [9, 2],
          ],
          [3, 2],
          "int32",
        ),
        8,
        2.5,
        -0.5,
        "float32",
      ),
    "one-hot product is a lookup": () =>
      tf.matMul(tf.oneHot(tf.tensor1d([4, 1, 4], "int32"), 20, 1, 0, "float32"), tf.reshape(x(), [20, 6])),
    "int32 one-hot": () => tf.oneHot(tf.tensor1d([1, 5, 0], "int32"), 6),
    "clone outlives original": () => {
      const a = x();
      const b = tf.clone(a);
      a.dispose();
      return tf.add(b, 1);
    },
  };
}

test("wasm kernels give cpu's results", async () => {
  const results = new Map<string, number[][]>();
  for (const backend of ["cpu", "wasm"] as const) {
    await useBackend(backend);
    for (const [name, make] of Object.entries(cases())) {
      const before = tf.memory().numTensors;
      const out = tf.tidy(make);
      const arrays = (Array.isArray(out) ? out : [out]).map((t) => Array.from(t.dataSync()));
      tf.dispose(out);
      assert.equal(tf.memory().numTensors, before, `${name} leaks on ${backend}`);
      const ref = results.get(name);
      if (ref) assert.deepEqual(arrays, ref, `${name}: wasm differs from cpu`);
      else results.set(name, arrays);
    }
  }
  await useBackend("cpu");
});

// both backends' kernels share one scatter-add (src/backend/segment-sum.ts), so check it against a plain sum too
test("segment sum equals a hand-written sum per segment on cpu and wasm; out-of-range ids are dropped", async () => {
  const ids = [3, 0, 3, 1, -1, 7, 2, 0, 12, 3];
  const rows = ids.map((_, r) => [r, 10 * r + 0.5]);
  const want = Array.from({ length: 8 }, (_, s) =>
    [0, 1].map((j) => ids.reduce((acc, id, r) => (id === s ? acc + rows[r][j] : acc), 0)),
  ).flat();
  for (const backend of ["cpu", "wasm"] as const) {
    await useBackend(backend);
    const got = tf.tidy(() => tf.unsortedSegmentSum(tf.tensor2d(rows), tf.tensor1d(ids, "int32"), 8).dataSync());
    assert.deepEqual(Array.from(got), want, backend);
  }
  await useBackend("cpu");
});
