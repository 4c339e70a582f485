/**
 * The book's `calc_loss_batch`: cross-entropy between next-token logits and integer targets, as PyTorch's
 * `F.cross_entropy(logits.flatten(0, 1), targets.flatten())` with `ignore_index=-100`.
 *
 * Never builds a one-hot over the vocabulary: per row, loss = logsumexp(logits) − logits[target], where the
 * target logit is picked with a gather on flat indices (row · V + target).
 */
import * as tf from "@tensorflow/tfjs";
import { UsageError } from "../errors.js";

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
    const keep = tf.notEqual(t, tf.scalar(ignoreIndex, "int32")); // [N] bool
    // Ignored rows pick class 0; their loss is masked out below, so its gradient is zero too.
    const safe = tf.where(keep, t, tf.zerosLike(t)); // [N]
    const rowOffsets = tf.range(0, N * V, V, "int32"); // [N]
    const picked = tf.gather(flat.reshape([N * V]), tf.add(rowOffsets, safe)); // [N]
    const perRow = tf.sub(tf.logSumExp(flat, 1), picked); // [N]
    const keepF = keep.toFloat();
    const count = tf.maximum(keepF.sum(), tf.scalar(1));
    return tf.div(tf.mul(perRow, keepF).sum(), count) as tf.Scalar;
  });
}
