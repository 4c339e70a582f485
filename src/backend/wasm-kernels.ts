/**
 * Kernels the wasm backend lacks or gets wrong, registered once when wasm is loaded.
 *
 * UnsortedSegmentSum is the gradient of gather: without it token embeddings cannot train on wasm. It is a
 * scatter-add, memory-bound and simple, so a JS loop over the wasm heap is as fast as a C++ kernel would be.
 */
import * as tf from "@tensorflow/tfjs";
import type { BackendWasm } from "@tensorflow/tfjs-backend-wasm";
import { scatterAddRows, segmentSumShape } from "./segment-sum.js";

let registered = false;

function unsortedSegmentSum({ inputs, attrs, backend }: Parameters<tf.KernelFunc>[0]): tf.TensorInfo {
  const { x, segmentIds } = inputs as { x: tf.TensorInfo; segmentIds: tf.TensorInfo };
  const numSegments = (attrs as unknown as { numSegments: number }).numSegments;
  const wasm = backend as BackendWasm;
  const { outShape, rows, width } = segmentSumShape(x, segmentIds, numSegments);
  const out = wasm.makeOutput(outShape, x.dtype);
  // Views are taken after makeOutput: allocating can grow the wasm heap and detach earlier views.
  const outVals = wasm.typedArrayFromHeap(out) as Float32Array | Int32Array;
  outVals.fill(0);
  scatterAddRows(
    outVals,
    wasm.typedArrayFromHeap(x) as Float32Array | Int32Array,
    wasm.typedArrayFromHeap(segmentIds) as Int32Array,
    rows,
    width,
    numSegments,
  );
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

type KernelArgs = Parameters<tf.KernelFunc>[0];

/**
 * A contiguous block of x (rows first) copied into a new tensor straight from the heap. wasm's own Slice and
 * Unpack read the *whole* input out of the heap (readSync copies it) for every slice they cut: unstacking
 * attention's [24,256,256] weights cut 24 slices in 100 ms, where copying the whole tensor takes 1 ms.
 */
function copyBlock(wasm: BackendWasm, x: tf.TensorInfo, offset: number, shape: number[]): tf.TensorInfo {
  const out = wasm.makeOutput(shape, x.dtype);
  const size = tf.util.sizeFromShape(shape);
  // views are taken after makeOutput: allocating can grow the heap and detach earlier views
  const outVals = wasm.typedArrayFromHeap(out) as Float32Array | Int32Array | Uint8Array;
  const xVals = wasm.typedArrayFromHeap(x) as Float32Array | Int32Array | Uint8Array;
  outVals.set(xVals.subarray(offset, offset + size));
  return out;
}

function fastSlice(stock: tf.KernelFunc) {
  return (args: KernelArgs): tf.TensorInfo | tf.TensorInfo[] => {
    const { x } = args.inputs as { x: tf.TensorInfo };
    const { begin, size } = args.attrs as unknown as { begin: number | number[]; size?: number | number[] };
    if (x.dtype === "string") return stock(args);
    const [b, s] = tf.slice_util.parseSliceParams(x as tf.Tensor, begin, size);
    if (!tf.slice_util.isSliceContinous(x.shape, b, s)) return stock(args);
    return copyBlock(
      args.backend as BackendWasm,
      x,
      tf.slice_util.computeFlatOffset(b, tf.util.computeStrides(x.shape)),
      s,
    );
  };
}

function fastUnpack(stock: tf.KernelFunc) {
  return (args: KernelArgs): tf.TensorInfo | tf.TensorInfo[] => {
    const { value } = args.inputs as { value: tf.TensorInfo };
    const axis = (args.attrs as unknown as { axis: number }).axis;
    if (value.dtype === "string" || !(axis === 0 || axis === -value.shape.length)) return stock(args);
    const [n, ...inner] = value.shape;
    const size = tf.util.sizeFromShape(inner);
    return Array.from({ length: n }, (_, i) => copyBlock(args.backend as BackendWasm, value, i * size, inner));
  };
}

/**
 * OneHot that honours its dtype. tfjs-backend-wasm 4.22's C++ OneHot writes int32 values whatever the output's
 * dtype, so tf.oneHot(ids, depth, 1, 0, "float32") held the bit pattern of 1 (1.4e-45) where a 1 belongs, and
 * a one-hot product computed nothing. Written here as a JS loop over the heap: filling memory is all it does.
 */
function oneHot(stock: tf.KernelFunc) {
  return (args: KernelArgs): tf.TensorInfo | tf.TensorInfo[] => {
    const { indices } = args.inputs as { indices: tf.TensorInfo };
    const { depth, onValue, offValue, dtype } = args.attrs as unknown as {
      depth: number;
      onValue: number;
      offValue: number;
      dtype: tf.DataType;
    };
    if (dtype !== "float32") return stock(args);
    const wasm = args.backend as BackendWasm;
    const out = wasm.makeOutput([...indices.shape, depth], dtype);
    // views are taken after makeOutput: allocating can grow the heap and detach earlier views
    const outVals = wasm.typedArrayFromHeap(out) as Float32Array;
    const ids = wasm.typedArrayFromHeap(indices) as Int32Array;
    outVals.fill(offValue);
    ids.forEach((id, i) => {
      if (id >= 0 && id < depth) outVals[i * depth + id] = onValue;
    });
    return out;
  };
}

function override(kernelName: string, make: (stock: tf.KernelFunc) => tf.KernelFunc): void {
  const stock = tf.getKernel(kernelName, "wasm");
  if (!stock) return;
  tf.unregisterKernel(kernelName, "wasm");
  tf.registerKernel({ ...stock, kernelFunc: make(stock.kernelFunc as tf.KernelFunc) });
}

export function registerWasmKernels(): void {
  if (registered) return;
  registered = true;
  if (!tf.getKernel("UnsortedSegmentSum", "wasm")) {
    tf.registerKernel({ kernelName: "UnsortedSegmentSum", backendName: "wasm", kernelFunc: unsortedSegmentSum });
  }
  override("Identity", () => sharedIdentity);
  override("Slice", fastSlice);
  override("Unpack", fastUnpack);
  override("OneHot", oneHot);
}
