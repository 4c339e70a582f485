/**
 * Kernels the cpu backend has but computes far too slowly for llmctl, replaced once when cpu is selected.
 *
 * UnsortedSegmentSum (the gradient of gather, so of every token embedding) is implemented in tfjs-backend-cpu
 * as one equal·multiply·sum pass over all rows per segment: O(segments · rows). For a 50,257-token embedding
 * that is ~55 s per training step of even a tiny GPT. A scatter-add is O(rows).
 */
import * as tf from "@tensorflow/tfjs";

interface CpuBackendLike {
  data: { get(dataId: tf.DataId): { values: ArrayLike<number> } };
  makeTensorInfo(shape: number[], dtype: tf.DataType, values: Float32Array | Int32Array): tf.TensorInfo;
}

let registered = false;

function unsortedSegmentSum({ inputs, attrs, backend }: Parameters<tf.KernelFunc>[0]): tf.TensorInfo {
  const { x, segmentIds } = inputs as { x: tf.TensorInfo; segmentIds: tf.TensorInfo };
  const numSegments = (attrs as unknown as { numSegments: number }).numSegments;
  const cpu = backend as unknown as CpuBackendLike;
  // x: [N, ...inner] with segmentIds [N]
  const rows = segmentIds.shape.reduce((a, b) => a * b, 1);
  const inner = x.shape.slice(segmentIds.shape.length);
  const width = inner.reduce((a, b) => a * b, 1);
  const xVals = cpu.data.get(x.dataId).values;
  const ids = cpu.data.get(segmentIds.dataId).values;
  const out = x.dtype === "int32" ? new Int32Array(numSegments * width) : new Float32Array(numSegments * width);
  for (let r = 0; r < rows; r++) {
    const seg = ids[r];
    if (seg < 0 || seg >= numSegments) continue; // TF drops out-of-range ids
    const src = r * width;
    const dst = seg * width;
    for (let j = 0; j < width; j++) out[dst + j] += xVals[src + j];
  }
  return cpu.makeTensorInfo([numSegments, ...inner], x.dtype, out);
}

export function registerCpuKernels(): void {
  if (registered) return;
  registered = true;
  if (tf.getKernel("UnsortedSegmentSum", "cpu")) tf.unregisterKernel("UnsortedSegmentSum", "cpu");
  tf.registerKernel({ kernelName: "UnsortedSegmentSum", backendName: "cpu", kernelFunc: unsortedSegmentSum });
}
