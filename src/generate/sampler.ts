/**
 * Choosing the next token from the logits, as the book's `generate` (ch05): keep the top-k logits, divide by the
 * temperature, softmax, and draw from those probabilities; temperature 0 (or top-k 1) is greedy decoding. Top-p
 * (nucleus) filtering, when asked for, applies to the tempered probabilities. Everything runs in float64 JS on
 * one row of logits, and the draw uses our seeded Rng, so a seed reproduces a sample on every backend.
 */
import { UsageError } from "../errors.js";
import type { Rng } from "../data/rng.js";

export interface SamplingOptions {
  /** 0 = greedy; > 1 flattens the distribution, < 1 sharpens it (default 1) */
  temperature?: number;
  /** keep only the k largest logits (ties with the k-th are kept, as the book's torch.where does) */
  topK?: number | null;
  /** keep the smallest set of most likely tokens whose probability reaches p */
  topP?: number | null;
}

export function checkSamplingOptions(opts: SamplingOptions): void {
  const { temperature = 1, topK, topP } = opts;
  if (!(Number.isFinite(temperature) && temperature >= 0)) {
    throw new UsageError(
      `temperature must be a number ≥ 0, got ${temperature}`,
      "use 0 for greedy decoding, around 1 for sampling",
    );
  }
  if (topK != null && !(Number.isInteger(topK) && topK >= 1))
    throw new UsageError(`top-k must be an integer ≥ 1, got ${topK}`);
  if (topP != null && !(topP > 0 && topP <= 1)) throw new UsageError(`top-p must be in (0, 1], got ${topP}`);
}

export function isGreedy(opts: SamplingOptions): boolean {
  return (opts.temperature ?? 1) === 0 || opts.topK === 1;
}

export function argmax(values: ArrayLike<number>): number {
  let best = 0;
  for (let i = 1; i < values.length; i++) if (values[i] > values[best]) best = i;
  return best;
}

/** Logits below the k-th largest become -Infinity (the book's top-k masking). */
export function topKMask(logits: ArrayLike<number>, k: number): Float64Array {
  const out = Float64Array.from(logits);
  if (k >= out.length) return out;
  const kth = kthLargest(Float64Array.from(logits), k);
  for (let i = 0; i < out.length; i++) if (out[i] < kth) out[i] = -Infinity;
  return out;
}

/**
 * The k-th largest value (k = 1 is the maximum), by quickselect on `a` (reordered in place): linear on average,
 * where sorting GPT-2's 50,257 logits for every token cost ~8 ms.
 */
export function kthLargest(a: Float64Array, k: number): number {
  const target = k - 1; // index in descending order
  let lo = 0;
  let hi = a.length - 1;
  while (lo < hi) {
    const pivot = a[(lo + hi) >>> 1];
    let i = lo;
    let j = hi;
    while (i <= j) {
      while (a[i] > pivot) i++;
      while (a[j] < pivot) j--;
      if (i <= j) {
        const t = a[i];
        a[i] = a[j];
        a[j] = t;
        i++;
        j--;
      }
    }
    // now a[lo..j] ≥ pivot ≥ a[i..hi], and everything strictly between j and i equals the pivot
    if (target <= j) hi = j;
    else if (target >= i) lo = i;
    else return a[target];
  }
  return a[target];
}

/** softmax(logits / temperature) in float64; -Infinity logits get probability 0. */
export function softmax(logits: ArrayLike<number>, temperature = 1): Float64Array {
  const out = new Float64Array(logits.length);
  let max = -Infinity;
  for (let i = 0; i < logits.length; i++) max = Math.max(max, logits[i]);
  let sum = 0;
  for (let i = 0; i < logits.length; i++) {
    out[i] = Math.exp((logits[i] - max) / temperature);
    sum += out[i];
  }
  for (let i = 0; i < out.length; i++) out[i] /= sum;
  return out;
}

/** Zero all but the most likely tokens whose cumulative probability first reaches p, then renormalise. */
export function topPFilter(probs: Float64Array, p: number): Float64Array {
  if (p >= 1) return probs;
  const order = Array.from(probs.keys())
    .filter((i) => probs[i] > 0)
    .sort((a, b) => probs[b] - probs[a]);
  const out = new Float64Array(probs.length);
  let cumulative = 0;
  for (const i of order) {
    out[i] = probs[i];
    cumulative += probs[i];
    if (cumulative >= p) break;
  }
  for (let i = 0; i < out.length; i++) out[i] /= cumulative;
  return out;
}

/** The distribution the next token is drawn from (top-k, then temperature, then top-p). Not for greedy. */
export function nextTokenProbabilities(logits: ArrayLike<number>, opts: SamplingOptions): Float64Array {
  const masked = opts.topK != null ? topKMask(logits, opts.topK) : Float64Array.from(logits);
  const probs = softmax(masked, opts.temperature ?? 1);
  return opts.topP != null ? topPFilter(probs, opts.topP) : probs;
}

/** Draw an index with probability probs[i] (inverse CDF on one uniform number). */
export function sampleIndex(probs: ArrayLike<number>, rng: Rng): number {
  const u = rng.random();
  let cumulative = 0;
  let last = 0;
  for (let i = 0; i < probs.length; i++) {
    if (probs[i] <= 0) continue;
    cumulative += probs[i];
    last = i;
    if (u < cumulative) return i;
  }
  return last; // u within rounding of 1
}

/** The next token id from one row of logits. */
export function sampleNext(logits: ArrayLike<number>, opts: SamplingOptions, rng: Rng): number {
  if (isGreedy(opts)) return argmax(logits);
  return sampleIndex(nextTokenProbabilities(logits, opts), rng);
}
