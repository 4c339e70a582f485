/**
 * Chapter 3's causal attention weights of one layer, per head: row i is how much query position i takes from
 * each position 0..i (the mask leaves nothing above the diagonal, and each row sums to 1).
 */
import * as tf from "@tensorflow/tfjs";
import { UsageError } from "../errors.js";
import type { GPTModel } from "../model/gpt.js";
import type { Tokenizer } from "../tokenizer/index.js";

export interface AttentionView {
  tokens: string[];
  ids: number[];
  layer: number;
  /** the heads shown, and their weights [heads.length, T, T] */
  heads: number[];
  weights: number[][][];
}

function checkIndex(what: "layer" | "head", index: number, count: number): void {
  if (!Number.isInteger(index) || index < 0 || index >= count)
    throw new UsageError(
      `--${what} ${index} is out of range: the model has ${count} ${what}s`,
      `pick one of 0..${count - 1}`,
    );
}

/** The attention weights of `layer` (all heads, or `head` alone) for ids. */
export function attentionView(
  gpt: GPTModel,
  tokenizer: Tokenizer,
  ids: number[],
  opts: { layer: number; head?: number },
): AttentionView {
  checkIndex("layer", opts.layer, gpt.config.n_layers);
  if (opts.head !== undefined) checkIndex("head", opts.head, gpt.config.n_heads);
  const heads = opts.head !== undefined ? [opts.head] : Array.from({ length: gpt.config.n_heads }, (_, h) => h);
  const weights = tf.tidy(() => gpt.attentionWeights(tf.tensor2d([ids], [1, ids.length], "int32"), opts.layer));
  const all = (weights.arraySync() as number[][][][])[0]; // [H,T,T]
  weights.dispose();
  return {
    tokens: ids.map((id) => tokenizer.decode([id])),
    ids,
    layer: opts.layer,
    heads,
    weights: heads.map((h) => all[h]),
  };
}
