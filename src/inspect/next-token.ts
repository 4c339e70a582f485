/**
 * What the model predicts, position by position (chapter 4: the output at position i scores the token at
 * i + 1, so generating needs only the last), and how chapter 5's temperature and top-k reshape the last
 * position's distribution before a token is drawn.
 */
import * as tf from "@tensorflow/tfjs";
import type { GPTModel } from "../model/gpt.js";
import type { Tokenizer } from "../tokenizer/index.js";
import { argmax, softmax, topKMask } from "../generate/sampler.js";

/** Chapter 5's toy example: a 9-word vocabulary and the next-token logits it samples from. */
export const BOOK_TOY_VOCAB = ["closer", "every", "effort", "forward", "inches", "moves", "pizza", "toward", "you"];
export const BOOK_TOY_LOGITS = [4.51, 0.89, -1.9, 6.75, 1.63, -1.62, -1.89, 6.28, 1.79];

export interface TokenProbability {
  id: number;
  token: string;
  probability: number;
}

export interface LastPosition {
  temperature: number;
  top_k: number | null;
  /** per token, in id order or for the tokens shown: the logit and its probability at each stage */
  rows: { id: number; token: string; logit: number; softmax: number; tempered: number; sampled_from: number }[];
}

/** softmax at temperature 1; at `temperature`; and after top-k masking at `temperature` (what is drawn from). */
export function samplingStages(
  logits: ArrayLike<number>,
  opts: { temperature: number; topK: number | null },
): { softmax: Float64Array; tempered: Float64Array; sampledFrom: Float64Array } {
  // temperature 0 is greedy: everything on the arg max
  const atTemperature = (l: ArrayLike<number>) => {
    if (opts.temperature > 0) return softmax(l, opts.temperature);
    const p = new Float64Array(l.length);
    p[argmax(l)] = 1;
    return p;
  };
  const masked = opts.topK != null ? topKMask(logits, opts.topK) : logits;
  return { softmax: softmax(logits), tempered: atTemperature(logits), sampledFrom: atTemperature(masked) };
}

/** The last position's stages for the `show` tokens most likely after masking (all when `show` ≥ the vocabulary). */
export function lastPositionView(
  logits: ArrayLike<number>,
  label: (id: number) => string,
  opts: { temperature: number; topK: number | null; show: number },
): LastPosition {
  const stages = samplingStages(logits, opts);
  const ids = Array.from({ length: logits.length }, (_, i) => i);
  const shown =
    opts.show >= logits.length
      ? ids
      : ids.sort((a, b) => stages.sampledFrom[b] - stages.sampledFrom[a] || logits[b] - logits[a]).slice(0, opts.show);
  return {
    temperature: opts.temperature,
    top_k: opts.topK,
    rows: shown.map((id) => ({
      id,
      token: label(id),
      logit: logits[id],
      softmax: stages.softmax[id],
      tempered: stages.tempered[id],
      sampled_from: stages.sampledFrom[id],
    })),
  };
}

export interface PositionPredictions {
  position: number;
  /** the token at this position */
  id: number;
  token: string;
  /** the most likely next tokens after it (softmax at temperature 1) */
  next: TokenProbability[];
}

export interface NextTokenView {
  positions: PositionPredictions[];
  last: LastPosition;
}

/** The `top` most likely ids of a probability row, most likely first. */
function topProbabilities(probs: Float64Array, top: number, label: (id: number) => string): TokenProbability[] {
  const order = Array.from(probs.keys())
    .sort((a, b) => probs[b] - probs[a])
    .slice(0, top);
  return order.map((id) => ({ id, token: label(id), probability: probs[id] }));
}

/** Every position's top next tokens, and the last position's sampling stages, for ids fed to a language model. */
export function nextTokenView(
  gpt: GPTModel,
  tokenizer: Tokenizer,
  ids: number[],
  opts: { temperature: number; topK: number | null; top: number },
): NextTokenView {
  const logits = tf.tidy(() => gpt.forward(tf.tensor2d([ids], [1, ids.length], "int32")));
  const V = logits.shape[2];
  const data = logits.dataSync();
  logits.dispose();
  const label = (id: number) => tokenizer.decode([id]);
  const row = (t: number) => data.subarray(t * V, (t + 1) * V);
  return {
    positions: ids.map((id, t) => ({
      position: t,
      id,
      token: label(id),
      next: topProbabilities(softmax(row(t)), opts.top, label),
    })),
    last: lastPositionView(row(ids.length - 1), label, { ...opts, show: opts.top }),
  };
}
