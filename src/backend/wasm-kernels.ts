/**
 * Kernels the wasm backend lacks but llmctl needs, registered once when wasm is loaded.
 *
 * UnsortedSegmentSum is the gradient of gather: without it token embeddings cannot train on wasm. It is a
 * scatter-add, memory-bound and simple, so a JS loop over the wasm heap is as fast as a C++ kernel would be.
 */
import * as tf from "@tensorflow/tfjs";
import type { BackendWasm } from "@tensorflow/tfjs-backend-wasm";

let registered = false;

function unsortedSegmentSum({ inputs, attrs, backend }: Parameters<tf.KernelFunc>[0]): tf.TensorInfo {
  const { x, segmentIds } = inputs as { x: tf.TensorInfo; segmentIds: tf.TensorInfo };
  const numSegments = (attrs as unknown as { numSegments: number }).numSegments;
  const wasm = backend as BackendWasm;
  // x: [N, ...inner] with segmentIds [N] (tfjs flattens higher-rank ids before calling this kernel)
  const rows = segmentIds.shape.reduce((a, b) => a * b, 1);
  const inner = x.shape.slice(segmentIds.shape.length);
  const width = inner.reduce((a, b) => a * b, 1);
  const out = wasm.makeOutput([numSegments, ...inner], x.dtype);
  // Views are taken after makeOutput: allocating can grow the wasm heap and detach earlier views.
  const outVals = wasm.typedArrayFromHeap(out) as Float32Array | Int32Array;
  const xVals = wasm.typedArrayFromHeap(x) as Float32Array | Int32Array;
  const ids = wasm.typedArrayFromHeap(segmentIds) as Int32Array;
  outVals.fill(0);
  for (let r = 0; r < rows; r++) {
    const seg = ids[r];
    if (seg < 0 || seg >= numSegments) continue; // TF drops out-of-range ids
    const src = r * width;
    const dst = seg * width;
    for (let j = 0; j < width; j++) outVals[dst + j] += xVals[src + j];
  }
  return out;
}

export function registerWasmKernels(): void {
  if (registered) return;
  registered = true;
  if (!tf.getKernel("UnsortedSegmentSum", "wasm")) {
    tf.registerKernel({ kernelName: "UnsortedSegmentSum", backendName: "wasm", kernelFunc: unsortedSegmentSum });
  }
}
