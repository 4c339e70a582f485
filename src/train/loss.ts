/**
 * The book's `calc_loss_batch`: cross-entropy between next-token logits and integer targets, as PyTorch's
 * `F.cross_entropy(logits.flatten(0, 1), targets.flatten())` with `ignore_index=-100`.
 *
 * Never builds a one-hot over the vocabulary: per row, loss = logsumexp(logits) − logits[target], where the
 * target logit is picked with a gather on flat indices (row · V + target). The gradient is written out
 * (softmax · w − w at the target, w = 1/count for kept rows, 0 for ignored ones) rather than left to autodiff:
 * autodiff would send it through gather's gradient, an UnsortedSegmentSum over N·V segments, which the cpu
 * backend computes one segment at a time, and through several extra passes over the [N, V] logits.
 */
import type { Rng } from "../data/rng.js";
import * as tf from "@tensorflow/tfjs";
import { UsageError } from "../errors.js";
import type { ForwardMode, GPTModel } from "../model/gpt.js";
import type { TokenBatch } from "../data/sliding-window.js";

/** PyTorch's default `ignore_index`: targets equal to it contribute neither loss nor gradient. */
export const IGNORE_INDEX = -100;

/**
 * Mean cross-entropy over the targets that are not `ignoreIndex`.
 *
 * @param logits  [N, V] or [B, T, V] float32
 * @param targets [N] or [B, T] int32, the class index of each row (or `ignoreIndex`)
 * @returns a scalar; 0 when every target is ignored (PyTorch returns NaN there, which would poison a mean
 *   over batches)
 */
export function sparseCrossEntropy(logits: tf.Tensor, targets: tf.Tensor, ignoreIndex = IGNORE_INDEX): tf.Scalar {
  const leading = logits.shape.slice(0, -1);
  if (logits.rank < 2 || targets.shape.length !== leading.length || targets.shape.some((d, i) => d !== leading[i])) {
    throw new UsageError(
      `cross-entropy: targets of shape [${targets.shape}] do not match logits of shape [${logits.shape}]`,
      "targets must have the logits' shape without the last (class) axis",
    );
  }
  const V = logits.shape[logits.rank - 1];
  const N = leading.reduce((a, b) => a * b, 1);
  return tf.tidy(() => {
    const flat = logits.reshape([N, V]); // [N, V]
    const t = targets.reshape([N]).toInt(); // [N]
    const crossEntropy = tf.customGrad((...args: (tf.Tensor | tf.GradSaveFunc)[]) => {
      const [x, save] = args as [tf.Tensor, tf.GradSaveFunc];
      const keep = tf.notEqual(t, tf.scalar(ignoreIndex, "int32")); // [N] bool
      // ignored rows pick class 0 and get weight 0, so they add neither loss nor gradient
      const safe = tf.where(keep, t, tf.zerosLike(t)); // [N]
      const keepF = keep.toFloat();
      const w = tf.div(keepF, tf.maximum(keepF.sum(), tf.scalar(1))); // [N] 1/count or 0
      // logsumexp from the softmax, which the gradient needs anyway: the largest probability is exp(0)/Σ, so
      // lse = max + log Σ = max − log(max p), and max p ≥ 1/V never underflows. One Softmax kernel (XNNPACK
      // on wasm) instead of logSumExp's Exp, which wasm runs ~4× slower, and no second pass in backward.
      const p = tf.softmax(x); // [N, V]
      const lse = tf.sub(tf.max(x, 1), tf.log(tf.max(p, 1))); // [N]
      const picked = tf.gather(x.reshape([N * V]), tf.add(tf.range(0, N * V, V, "int32"), safe)); // [N]
      const value = tf.sum(tf.mul(tf.sub(lse, picked), w));
      const at = tf.stack([tf.range(0, N, 1, "int32"), safe], 1); // [N, 2] (row, target)
      save([p, w, at]);
      return {
        value,
        gradFunc: (dy: tf.Tensor, saved: tf.Tensor[]) => {
          const [ps, ws, ats] = saved;
          const wdy = tf.mul(ws, dy); // [N]: the upstream scalar folded in here saves a pass over [N, V]
          return tf.sub(tf.mul(ps, wdy.reshape([N, 1])), tf.scatterND(ats, wdy, [N, V]));
        },
      };
    });
    return crossEntropy(flat) as tf.Scalar;
  });
}

/**
 * The book's `calc_loss_batch` for a language model, pretraining and instruction finetuning alike: next-token
 * cross-entropy over every position whose target is not IGNORE_INDEX (padding, a masked instruction).
 */
export function languageModelLoss(gpt: GPTModel): (batch: TokenBatch, mode: ForwardMode) => tf.Scalar {
  return (b, mode) =>
    tf.tidy(() => {
      const ids = tf.tensor2d(b.inputs, [b.batchSize, b.seqLen], "int32"); // [B, T]
      const targets = tf.tensor2d(b.targets, [b.batchSize, b.seqLen], "int32"); // [B, T]
      return sparseCrossEntropy(gpt.forward(ids, mode), targets); // logits [B, T, V]
    });
}

/** Anything that yields numbered batches in an epoch order; `SlidingWindowLoader` and `SpamDataLoader` are. */
export interface BatchSource<B> {
  readonly numBatches: number;
  /** the order of one epoch (of examples, for a loader); a shuffling source draws it from `rng` */
  epochOrder(rng?: Rng): Int32Array;
  batch(order: Int32Array, index: number): B;
}

/** The book's `calc_loss_loader`: mean loss over the first min(maxBatches, numBatches) batches of `order`. */
export async function meanLoss<B>(
  source: BatchSource<B>,
  loss: (batch: B, mode: ForwardMode) => tf.Scalar,
  maxBatches: number,
  order = source.epochOrder(),
): Promise<number> {
  const n = Math.min(maxBatches, source.numBatches);
  if (n === 0) return NaN;
  let sum = 0;
  for (let i = 0; i < n; i++) {
    const batch = source.batch(order, i);
    const value = tf.tidy(() => loss(batch, { training: false }));
    sum += (await value.data())[0];
    value.dispose();
  }
  return sum / n;
}
