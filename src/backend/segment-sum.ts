/**
 * UnsortedSegmentSum (the gradient of gather, so of every token embedding) as a scatter-add, O(rows): the one
 * loop behind the cpu and wasm kernels, which differ only in where the values live.
 */
import type * as tf from "@tensorflow/tfjs";

/** x [N, ...inner] with segmentIds [N] (tfjs flattens higher-rank ids before calling the kernel) */
export function segmentSumShape(
  x: tf.TensorInfo,
  segmentIds: tf.TensorInfo,
  numSegments: number,
): { outShape: number[]; rows: number; width: number } {
  const rows = segmentIds.shape.reduce((a, b) => a * b, 1);
  const inner = x.shape.slice(segmentIds.shape.length);
  return { outShape: [numSegments, ...inner], rows, width: inner.reduce((a, b) => a * b, 1) };
}

/** out[ids[r]] += x[r] for each row of `width` values; out must start at zero. TF drops out-of-range ids. */
export function scatterAddRows(
  out: Float32Array | Int32Array,
  xVals: ArrayLike<number>,
  ids: ArrayLike<number>,
  rows: number,
  width: number,
  numSegments: number,
): void {
  for (let r = 0; r < rows; r++) {
    const seg = ids[r];
    if (seg < 0 || seg >= numSegments) continue;
    const src = r * width;
    const dst = seg * width;
    for (let j = 0; j < width; j++) out[dst + j] += xVals[src + j];
  }
}
