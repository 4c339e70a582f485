/**
 * Float decoding shared by the weight readers (safetensors, TF tensor bundles, GGUF): float64, bfloat16 and
 * IEEE half → float32, and the host's byte order; and the encoders the GGUF writer needs (float32 → half and
 * bfloat16, rounding to nearest even as numpy's astype and ggml do).
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

const f32Scratch = new Float32Array(1);
const u32Scratch = new Uint32Array(f32Scratch.buffer);

/** float32 bit pattern of x (x rounded to float32 first). */
function float32Bits(x: number): number {
  f32Scratch[0] = x;
  return u32Scratch[0]!;
}

/** Round `value >> shift` to nearest, ties to even (the rounding IEEE conversions use). */
function shiftRoundEven(value: number, shift: number): number {
  const kept = value >>> shift;
  const rest = value & ((1 << shift) - 1);
  const half = 1 << (shift - 1);
  return rest > half || (rest === half && kept & 1) ? kept + 1 : kept;
}

/**
 * number → IEEE 754 binary16 bits, from its float32 value, rounding to nearest even (as F16C's vcvtps2ph and
 * numpy do): overflow gives ±infinity, tiny values subnormals or ±0, NaN stays NaN.
 */
export function floatToHalf(x: number): number {
  const u = float32Bits(x);
  const sign = (u >>> 16) & 0x8000;
  const exp = (u >>> 23) & 0xff;
  const mant = u & 0x7fffff;
  if (exp === 0xff) return sign | 0x7c00 | (mant ? 0x200 | (mant >>> 13) : 0);
  const e = exp - 127 + 15; // the half's biased exponent
  if (e >= 0x1f) return sign | 0x7c00;
  if (e <= 0) {
    if (e < -10) return sign; // below half the smallest subnormal (2^-25): rounds to zero
    // subnormal: the implicit bit joins the mantissa, shifted to units of 2^-24
    return sign | shiftRoundEven(mant | 0x800000, 14 - e);
  }
  // a carry out of the mantissa correctly bumps the exponent (up to infinity)
  return sign | ((e << 10) + shiftRoundEven(mant, 13));
}

/** number → bfloat16 bits (the top half of its float32), rounding to nearest even; NaN stays a quiet NaN. */
export function floatToBfloat16(x: number): number {
  const u = float32Bits(x);
  if ((u & 0x7fffffff) > 0x7f800000) return (u >>> 16) | 0x40;
  return (u + 0x7fff + ((u >>> 16) & 1)) >>> 16;
}

/** float32 values → little-endian bytes of F32, F16 or BF16. */
export function encodeFloat(dtype: "F32" | "F16" | "BF16", values: Float32Array): Uint8Array {
  if (dtype === "F32") {
    if (LITTLE_ENDIAN) return new Uint8Array(values.buffer, values.byteOffset, values.byteLength);
    const out = new Uint8Array(values.length * 4);
    const view = new DataView(out.buffer);
    for (let i = 0; i < values.length; i++) view.setFloat32(4 * i, values[i]!, true);
    return out;
  }
  const out = new Uint8Array(values.length * 2);
  const view = new DataView(out.buffer);
  const encode = dtype === "F16" ? floatToHalf : floatToBfloat16;
  for (let i = 0; i < values.length; i++) view.setUint16(2 * i, encode(values[i]!), true);
  return out;
}

export function numElements(shape: readonly number[]): number {
  return shape.reduce((a, b) => a * b, 1);
}
