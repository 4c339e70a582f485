/**
 * Float decoding shared by the weight readers (safetensors, TF tensor bundles, GGUF): float64, bfloat16 and
 * IEEE half → float32, and the host's byte order.
 */

/** The float dtypes readers decode, in safetensors' spelling. */
export type FloatDtype = "F64" | "F32" | "F16" | "BF16";

/** Whether typed arrays on this host are little-endian (every format here is), so bytes can be viewed in place. */
export const LITTLE_ENDIAN = new Uint8Array(new Uint16Array([1]).buffer)[0] === 1;

/** Little-endian bytes of a float dtype → float32 values. */
export function decodeFloat(dtype: FloatDtype, bytes: Uint8Array, n: number): Float32Array {
  const view = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  const out = new Float32Array(n);
  switch (dtype) {
    case "F32":
      for (let i = 0; i < n; i++) out[i] = view.getFloat32(4 * i, true);
      return out;
    case "F64":
      for (let i = 0; i < n; i++) out[i] = view.getFloat64(8 * i, true);
      return out;
    case "BF16": {
      // bfloat16 is the top half of a float32: shift it back into place.
      const u32 = new Uint32Array(out.buffer);
      for (let i = 0; i < n; i++) u32[i] = view.getUint16(2 * i, true) << 16;
      return out;
    }
    case "F16":
      for (let i = 0; i < n; i++) out[i] = halfToFloat(view.getUint16(2 * i, true));
      return out;
    default:
      throw new Error(`decodeFloat: ${dtype} is not a float dtype`);
  }
}

/** IEEE 754 binary16 → number, including subnormals, infinities and NaN. */
export function halfToFloat(h: number): number {
  const sign = h & 0x8000 ? -1 : 1;
  const exp = (h >> 10) & 0x1f;
  const frac = h & 0x3ff;
  if (exp === 0) return sign * frac * 2 ** -24; // subnormal: frac/1024 × 2^-14
  if (exp === 0x1f) return frac ? NaN : sign * Infinity;
  return sign * (1 + frac / 1024) * 2 ** (exp - 15);
}

export function numElements(shape: readonly number[]): number {
  return shape.reduce((a, b) => a * b, 1);
}
