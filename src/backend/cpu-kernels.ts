/**
 * Kernels the cpu backend has but computes far too slowly for llmctl, replaced once when cpu is selected.
 *
 * UnsortedSegmentSum (the gradient of gather, so of every token embedding) is implemented in tfjs-backend-cpu
 * as one equal·multiply·sum pass over all rows per segment: O(segments · rows). For a 50,257-token embedding
 * that is ~55 s per training step of even a tiny GPT. A scatter-add is O(rows).
 */
import * as tf from "@tensorflow/tfjs";
import { scatterAddRows, segmentSumShape } from "./segment-sum.js";

interface CpuBackendLike {
  data: { get(dataId: tf.DataId): { values: ArrayLike<number> } };
  makeTensorInfo(shape: number[], dtype: tf.DataType, values: Float32Array | Int32Array): tf.TensorInfo;
}

let registered = false;

function unsortedSegmentSum({ inputs, attrs, backend }: Parameters<tf.KernelFunc>[0]): tf.TensorInfo {
  const { x, segmentIds } = inputs as { x: tf.TensorInfo; segmentIds: tf.TensorInfo };
  const numSegments = (attrs as unknown as { numSegments: number }).numSegments;
  const cpu = backend as unknown as CpuBackendLike;
  const { outShape, rows, width } = segmentSumShape(x, segmentIds, numSegments);
  const out = x.dtype === "int32" ? new Int32Array(numSegments * width) : new Float32Array(numSegments * width);
  scatterAddRows(out, cpu.data.get(x.dataId).values, cpu.data.get(segmentIds.dataId).values, rows, width, numSegments);
  return cpu.makeTensorInfo(outShape, x.dtype, out);
}

export function registerCpuKernels(): void {
  if (registered) return;
  registered = true;
  if (tf.getKernel("UnsortedSegmentSum", "cpu")) tf.unregisterKernel("UnsortedSegmentSum", "cpu");
  tf.registerKernel({ kernelName: "UnsortedSegmentSum", backendName: "cpu", kernelFunc: unsortedSegmentSum });
}
