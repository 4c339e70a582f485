/**
 * One optimizer step, the one place gradients are taken: the loss of each micro-batch and its gradients
 * (summed over the micro-batches), their mean, clipping to a global norm, then AdamW. The Trainer, the bench and
 * the profiler all step through here.
 */
import * as tf from "@tensorflow/tfjs";
import { clipCoefficient, globalNorm, type AdamW, type NamedVariable } from "./adamw.js";

export interface StepOptions {
  /** how many micro-batches make the step (gradient accumulation) */
  microBatches: number;
  /** the loss of micro-batch k; called inside the gradient tape (the batch is best fetched before) */
  loss: (k: number) => () => tf.Scalar;
  lr: number;
  /** clip the mean gradient's global norm to this (torch's clip_grad_norm_), or null */
  gradClip: number | null;
  /** each micro-batch's loss as it is read; may throw (a non-finite loss), and then nothing is updated */
  onLoss?: (loss: number, k: number) => void;
  /** after the gradients, before the update (the profiler times the two apart) */
  onGradients?: () => void;
}

/** Runs one step on `params`; returns the mean loss of its micro-batches. */
export async function trainStep(
  optimizer: AdamW,
  params: readonly NamedVariable[],
  opts: StepOptions,
): Promise<number> {
  const nameOf = new Map(params.map((p) => [p.variable.name, p.name]));
  const variables = params.map((p) => p.variable);
  let summed: Map<string, tf.Tensor> | null = null;
  let lossSum = 0;
  try {
    for (let k = 0; k < opts.microBatches; k++) {
      const lossFn = opts.loss(k);
      const { value, grads } = tf.variableGrads(() => tf.tidy(lossFn), variables);
      const v = (await value.data())[0];
      value.dispose();
      lossSum += v;
      if (summed === null) {
        summed = new Map(Object.entries(grads).map(([varName, g]) => [nameOf.get(varName)!, g]));
      } else {
        for (const [varName, g] of Object.entries(grads)) {
          const name = nameOf.get(varName)!;
          const prev = summed.get(name)!;
          summed.set(name, tf.add(prev, g));
          prev.dispose();
          g.dispose();
        }
      }
      opts.onLoss?.(v, k);
    }
    opts.onGradients?.();
    // the mean over the micro-batches and the clipping, both folded into AdamW's gradient scale
    let scale = 1 / opts.microBatches;
    if (opts.gradClip !== null) scale *= clipCoefficient((await globalNorm(summed!.values())) * scale, opts.gradClip);
    optimizer.applyGradients(summed!, opts.lr, scale);
  } finally {
    if (summed) for (const g of summed.values()) g.dispose();
  }
  return lossSum / opts.microBatches;
}

/** Seed of a micro-batch's dropout masks: a fixed function of (seed, step, micro-batch), so resuming reproduces it. */
export function mixSeed(seed: number, step: number, part: number): number {
  let h = (seed ^ 0x9e3779b9) >>> 0;
  for (const v of [step, part]) {
    h = Math.imul(h ^ v, 0x85ebca6b) >>> 0;
    h = (h ^ (h >>> 13)) >>> 0;
    h = Math.imul(h, 0xc2b2ae35) >>> 0;
    h = (h ^ (h >>> 16)) >>> 0;
  }
  return h;
}
