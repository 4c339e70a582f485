/**
 * Chapter 6's classifier, as training makes it: a GPT whose output head is replaced by a small linear layer over
 * the classes (`score.weight` [C,D] + `score.bias` [C]), most of the network frozen, its loss and accuracy count.
 * How it reads a text (pooling, class scores) is inference's: generate/classify.ts.
 */
import * as tf from "@tensorflow/tfjs";
import { buildGPT, type GPTModel } from "../model/gpt.js";
import { UsageError } from "../errors.js";
import type { NamedVariable } from "../train/adamw.js";
import { namedParameters } from "../train/adamw.js";
import { sparseCrossEntropy } from "../train/loss.js";
import type { TrainableScope } from "./recipes.js";

/**
 * A classifier copy of a language model: every weight but the LM head copied, a new head of `numClasses`
 * outputs drawn from `seed` (as the book's `torch.nn.Linear(emb_dim, num_classes)`). A tied head is simply
 * dropped (the token embedding stays). `dropRate` replaces the LM's dropout (the book finetunes with 0.0).
 * The caller still owns, and disposes, `lm`.
 */
export function toClassifier(lm: GPTModel, numClasses = 2, seed = 123, dropRate = lm.config.drop_rate): GPTModel {
  const cls = buildGPT(
    { ...lm.config, drop_rate: dropRate },
    { head: { kind: "classifier", num_classes: numClasses }, seed },
  );
  const weights = new Map<string, tf.Tensor>();
  for (const [name, v] of lm.namedWeights()) if (name !== "lm_head.weight") weights.set(name, v.read());
  // the new head keeps its fresh values: copies, so writing them back cannot alias the variables read
  const fresh: tf.Tensor[] = [];
  for (const [name, v] of cls.namedWeights()) {
    if (name.startsWith("score.")) {
      const copy = v.read().clone();
      fresh.push(copy);
      weights.set(name, copy);
    }
  }
  try {
    cls.setWeights(weights);
  } catch (err) {
    cls.dispose();
    throw err;
  } finally {
    for (const t of fresh) t.dispose();
  }
  return cls;
}

/**
 * Freeze the model for finetuning: layers outside the scope get `trainable = false`, so they drop out of
 * `model.trainableWeights` and `trainableVariables()`. Returns the trainable weights by name.
 */
export function freezeForFinetuning(gpt: GPTModel, scope: TrainableScope): NamedVariable[] {
  if (gpt.head.kind !== "classifier")
    throw new UsageError("only a classifier model can be frozen for classification finetuning");
  const n = gpt.blocks.length;
  gpt.wte.trainable = scope === "all";
  if (gpt.wpe) gpt.wpe.trainable = scope === "all";
  gpt.blocks.forEach((b, i) => {
    const fromEnd = n - 1 - i; // 0 = the last block
    b.trainable =
      scope === "all" || (scope === "last-block" && fromEnd === 0) || (scope === "last-2-blocks" && fromEnd <= 1);
  });
  gpt.lnF.trainable = scope !== "head";
  gpt.outHead.trainable = true;
  return namedParameters(gpt);
}

/**
 * The book's `calc_loss_batch` for classification: cross-entropy of the pooled scores [B,C] against the
 * labels [B]. Takes the scores (from classLogits) so a caller can also count correct predictions from them.
 */
export function classificationLoss(logits: tf.Tensor2D, labels: Int32Array): tf.Scalar {
  return tf.tidy(() => sparseCrossEntropy(logits, tf.tensor1d(labels, "int32")));
}

/**
 * Correct predictions in a batch (argmax of the pooled scores), for the book's `calc_accuracy_loader`, as a
 * scalar left on the device, so that it can be counted inside a loss and read later (see readCount).
 */
export function correctCount(logits: tf.Tensor2D, labels: Int32Array): tf.Scalar {
  return tf.tidy(() => tf.sum(tf.equal(tf.argMax(logits, 1), tf.tensor1d(labels, "int32")).toInt()) as tf.Scalar);
}

/** A count from correctCount as a number; frees it. */
export async function readCount(count: tf.Scalar): Promise<number> {
  try {
    return (await count.data())[0];
  } finally {
    count.dispose();
  }
}
