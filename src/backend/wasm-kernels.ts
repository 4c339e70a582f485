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

/**
 * Identity (tf.clone) sharing the input's buffer, as the cpu backend and wasm's own Reshape do. wasm's stock
 * Identity copies, and tfjs clones every tensor it keeps for a backward pass: on GPT-2 124M that copied each
 * weight once per step and the [512,50257] logits several times, and ran the 4 GB wasm heap out. Sharing is
 * safe because no kernel writes into its inputs (variables take new buffers on assign).
 */
function sharedIdentity({ inputs, backend }: Parameters<tf.KernelFunc>[0]): tf.TensorInfo {
  const { x } = inputs as { x: tf.TensorInfo };
  (backend as BackendWasm).incRef(x.dataId);
  return { dataId: x.dataId, shape: x.shape, dtype: x.dtype };
}

export function registerWasmKernels(): void {
  if (registered) return;
  registered = true;
  if (!tf.getKernel("UnsortedSegmentSum", "wasm")) {
    tf.registerKernel({ kernelName: "UnsortedSegmentSum", backendName: "wasm", kernelFunc: unsortedSegmentSum });
  }
  if (tf.getKernel("Identity", "wasm")) tf.unregisterKernel("Identity", "wasm");
  tf.registerKernel({ kernelName: "Identity", backendName: "wasm", kernelFunc: sharedIdentity });
}
