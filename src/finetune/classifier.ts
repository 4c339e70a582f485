/**
 * Chapter 6's classifier: a GPT whose output head is replaced by a small linear layer over the classes
 * (`score.weight` [C,D] + `score.bias` [C]), with most of the network frozen, and the scores of one
 * position — or a mean over positions — standing for the whole text.
 */
import * as tf from "@tensorflow/tfjs";
import { buildGPT, type ForwardMode, type GPTModel } from "../model/gpt.js";
import { UsageError } from "../errors.js";
import type { NamedVariable } from "../train/adamw.js";
import { namedParameters } from "../train/adamw.js";
import { sparseCrossEntropy } from "../train/loss.js";
import type { Tokenizer } from "../tokenizer/index.js";
import { SpamDataLoader, SpamDataset, type SpamBatch } from "./spam-data.js";
import type { Pooling } from "../model/model-meta.js";
import type { TrainableScope } from "./recipes.js";

/**
 * A classifier copy of a language model: every weight but the LM head copied, a new head of `numClasses`
 * outputs drawn from `seed` (as the book's `torch.nn.Linear(emb_dim, num_classes)`). A tied head is simply
 * dropped (the token embedding stays). `dropRate` replaces the LM's dropout (the book finetunes with 0.0).
 * The caller still owns, and disposes, `lm`.
 */
export function toClassifier(lm: GPTModel, numClasses = 2, seed = 123, dropRate = lm.config.drop_rate): GPTModel {
  const cls = buildGPT({ ...lm.config, drop_rate: dropRate }, { head: { kind: "classifier", numClasses }, seed });
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
  gpt.wte.trainable = gpt.wpe.trainable = scope === "all";
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
 * Per-position weights for a pooling, [B*T] row-major: pooled[b] = Σ_t w[b,t] · logits[b,t]. Built on the
 * host from the true lengths, so pooling is a multiply and a sum (no gather, whose gradient some backends lack).
 */
export function poolingWeights(pool: Pooling, lengths: ArrayLike<number>, seqLen: number): Float32Array {
  const B = lengths.length;
  const w = new Float32Array(B * seqLen);
  for (let b = 0; b < B; b++) {
    const len = Math.min(Math.max(lengths[b], 1), seqLen);
    if (pool === "last") w[b * seqLen + seqLen - 1] = 1;
    else if (pool === "last-nonpad") w[b * seqLen + len - 1] = 1;
    else for (let t = 0; t < len; t++) w[b * seqLen + t] = 1 / len;
  }
  return w;
}

/** logits [B,T,C] → [B,C] pooled over positions; `lengths` are the texts' real token counts. */
export function poolLogits(logits: tf.Tensor3D, lengths: ArrayLike<number>, pool: Pooling): tf.Tensor2D {
  const [B, T, C] = logits.shape;
  if (lengths.length !== B) throw new Error(`poolLogits: ${lengths.length} lengths for a batch of ${B}`);
  return tf.tidy(() => {
    if (pool === "last") return tf.reshape(tf.slice(logits, [0, T - 1, 0], [B, 1, C]), [B, C]) as tf.Tensor2D;
    const w = tf.tensor3d(poolingWeights(pool, lengths, T), [B, T, 1]);
    return tf.sum(tf.mul(logits, w), 1) as tf.Tensor2D; // [B,C]
  });
}

/** The class scores of a batch: ids [B,T] → [B,C]. Dropout only when training. */
export function classLogits(gpt: GPTModel, batch: SpamBatch, pool: Pooling, mode: ForwardMode = {}): tf.Tensor2D {
  return tf.tidy(() => {
    const ids = tf.tensor2d(batch.inputs, [batch.batchSize, batch.seqLen], "int32");
    return poolLogits(gpt.forward(ids, mode), batch.lengths, pool);
  });
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

/** Softmax probabilities [B,C] of a batch, on the host (inference). */
export async function classProbabilities(gpt: GPTModel, batch: SpamBatch, pool: Pooling): Promise<Float32Array> {
  const probs = tf.tidy(() => tf.softmax(classLogits(gpt, batch, pool)));
  try {
    return (await probs.data()) as Float32Array;
  } finally {
    probs.dispose();
  }
}

export interface Classification {
  text: string;
  /** the most probable class's label */
  label: string;
  /** that class's softmax probability */
  probability: number;
}

export interface ClassifyOptions {
  /** class names by id */
  labels: readonly string[];
  pool: Pooling;
  /**
   * Pad (and cut) every text to this many tokens, as in training (the book's `classify_review` pads to the
   * training max_length). With last-token pooling this matters: the model learned to read through that much
   * padding. Default: the model's context length.
   */
  maxLength?: number;
  /** texts per forward pass */
  batchSize?: number;
  onProgress?: (done: number, total: number) => void;
}

/** Classify texts in batches: the label and probability of each, in input order. */
export async function classifyTexts(
  gpt: GPTModel,
  tokenizer: Tokenizer,
  texts: readonly string[],
  opts: ClassifyOptions,
): Promise<Classification[]> {
  if (gpt.head.kind !== "classifier")
    throw new UsageError(
      "this model is a language model, not a classifier",
      "finetune one with `llmctl finetune spam`",
    );
  const C = gpt.head.numClasses;
  if (opts.labels.length !== C) throw new UsageError(`${opts.labels.length} labels for a ${C}-class classifier`);
  const ctx = gpt.config.context_length;
  const maxLength = Math.min(opts.maxLength ?? ctx, ctx);
  const batchSize = opts.batchSize ?? 8;
  const out: Classification[] = [];
  for (let start = 0; start < texts.length; start += batchSize) {
    const part = texts.slice(start, start + batchSize);
    const ds = new SpamDataset(
      part.map((text) => ({ label: 0, text })),
      tokenizer,
      { maxLength },
    );
    const loader = new SpamDataLoader(ds, { batchSize: part.length });
    const probs = await classProbabilities(gpt, loader.batch(loader.epochOrder(), 0), opts.pool); // [B,C]
    part.forEach((text, b) => {
      let best = 0;
      for (let c = 1; c < C; c++) if (probs[b * C + c] > probs[b * C + best]) best = c;
      out.push({ text, label: opts.labels[best], probability: probs[b * C + best] });
    });
    opts.onProgress?.(out.length, texts.length);
  }
  return out;
}
