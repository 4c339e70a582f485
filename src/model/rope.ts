/**
 * RoPE's angle tables: position p, frequency i → p·invFreq[i], as transformers computes them for Llama and
 * Qwen3 (float32 inverse frequencies, Llama 3's rescaling of the long wavelengths), laid out [T, hd] with the
 * hd/2 frequencies twice over, for ../backend/transformer-ops.ts's rope (rotate_half convention).
 */
import * as tf from "@tensorflow/tfjs";
import type { RopeScaling } from "./config.js";

/**
 * invFreq[i] = θ^(−2i/hd), i < hd/2 (transformers' _compute_default_rope_parameters), then with Llama 3's
 * scaling (_compute_llama3_parameters): wavelengths longer than original_max_position_embeddings /
 * low_freq_factor are slowed down by `factor`, those shorter than original / high_freq_factor kept, and the ones
 * between blended smoothly.
 */
export function inverseFrequencies(headDim: number, theta: number, scaling: RopeScaling | null): Float32Array {
  const inv = new Float32Array(headDim / 2);
  for (let i = 0; i < inv.length; i++) inv[i] = 1 / Math.fround(theta ** Math.fround((2 * i) / headDim));
  if (!scaling) return inv;
  const { factor, low_freq_factor: low, high_freq_factor: high, original_max_position_embeddings: old } = scaling;
  const lowWavelen = old / low;
  const highWavelen = old / high;
  for (let i = 0; i < inv.length; i++) {
    const wavelen = (2 * Math.PI) / inv[i];
    if (wavelen > lowWavelen) inv[i] = inv[i] / factor;
    else if (wavelen >= highWavelen) {
      const smooth = (old / wavelen - low) / (high - low);
      inv[i] = (1 - smooth) * (inv[i] / factor) + smooth * inv[i];
    }
  }
  return inv;
}

const tables = new Map<string, { cos: Float32Array; sin: Float32Array; positions: number }>();

/** cos and sin [T, hd] of positions start..start+T−1 (kept per head size and frequencies, grown as needed). */
export function ropeTables(
  headDim: number,
  theta: number,
  scaling: RopeScaling | null,
  start: number,
  T: number,
): { cos: tf.Tensor2D; sin: tf.Tensor2D } {
  const key = JSON.stringify([headDim, theta, scaling]);
  let t = tables.get(key);
  if (!t || t.positions < start + T) {
    const positions = Math.max(start + T, 2 * (t?.positions ?? 64));
    const inv = inverseFrequencies(headDim, theta, scaling);
    const half = headDim / 2;
    const cos = new Float32Array(positions * headDim);
    const sin = new Float32Array(positions * headDim);
    for (let p = 0; p < positions; p++) {
      for (let i = 0; i < half; i++) {
        const angle = Math.fround(p * inv[i]);
        cos[p * headDim + i] = cos[p * headDim + i + half] = Math.cos(angle);
        sin[p * headDim + i] = sin[p * headDim + i + half] = Math.sin(angle);
      }
    }
    if (tables.size > 8) tables.clear();
    tables.set(key, (t = { cos, sin, positions }));
  }
  const rows = (a: Float32Array) => tf.tensor2d(a.subarray(start * headDim, (start + T) * headDim), [T, headDim]);
  return { cos: rows(t.cos), sin: rows(t.sin) };
}
