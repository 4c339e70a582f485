/**
 * Classification as inference: texts encoded and padded as the book's `SpamDataset`, batched, and read by a
 * classifier (chapter 6), the scores of one position (or a mean over positions) standing for the whole text.
 * Training (finetune/) uses the same batches and class scores; `llmctl classify` uses them alone.
 */
import * as tf from "@tensorflow/tfjs";
import type { ForwardMode, GPTModel } from "../model/gpt.js";
import type { Pooling } from "../model/model-meta.js";
import { BatchLoader, type BatchLoaderOptions } from "../data/batch-loader.js";
import { END_OF_TEXT_ID, type Tokenizer } from "../tokenizer/index.js";
import { UsageError } from "../errors.js";

/** Class names by class id, as the book's `classify_review` prints them. */
export const SPAM_LABELS = ["not spam", "spam"] as const;

/** A classifier's label names: its own, else the book's for two classes, else `class N`. */
export function classLabels(head: { num_classes: number; labels?: string[] }): string[] {
  if (head.labels) return head.labels;
  if (head.num_classes === SPAM_LABELS.length) return [...SPAM_LABELS];
  return Array.from({ length: head.num_classes }, (_, i) => `class ${i}`);
}

/** A text with its class id (0 when unknown, as when classifying). */
export interface LabeledText {
  label: number;
  text: string;
}

export interface SpamDatasetOptions {
  /** Pad/truncate every text to this many tokens; default: the longest text here (the book's `max_length=None`). */
  maxLength?: number;
  /** The model's context length: texts and `maxLength` are cut to it. */
  contextLength?: number;
  /** The book pads with `<|endoftext|>`. */
  padTokenId?: number;
}

/** Token ids for one message as the book encodes it; special-token strings in SMS text are ordinary text. */
export function encodeMessage(tokenizer: Tokenizer, text: string): number[] {
  return tokenizer.encode(text, { allowedSpecial: [] });
}

/**
 * The book's `SpamDataset`: every text encoded, truncated to `maxLength` and right-padded to it.
 * Rows live in one flat int32 array [count, maxLength]; `lengths` keeps each text's real token count
 * (before padding) for the last-non-padding and mean pooling.
 */
export class SpamDataset {
  readonly ids: Int32Array; // [count, maxLength]
  readonly lengths: Int32Array; // [count]
  readonly labels: Int32Array; // [count]
  readonly maxLength: number;
  readonly count: number;
  /** How many texts were longer than maxLength and got cut. */
  readonly truncated: number;

  constructor(messages: LabeledText[], tokenizer: Tokenizer, opts: SpamDatasetOptions = {}) {
    const pad = opts.padTokenId ?? END_OF_TEXT_ID;
    const encoded = messages.map((m) => encodeMessage(tokenizer, m.text));
    let maxLength = opts.maxLength ?? encoded.reduce((a, e) => Math.max(a, e.length), 0);
    if (opts.contextLength !== undefined) maxLength = Math.min(maxLength, opts.contextLength);
    if (!Number.isInteger(maxLength) || maxLength < 1) {
      throw new UsageError(`max length must be a positive integer, got ${maxLength}`, "the texts may all be empty");
    }
    this.maxLength = maxLength;
    this.count = messages.length;
    this.ids = new Int32Array(this.count * maxLength).fill(pad);
    this.lengths = new Int32Array(this.count);
    this.labels = new Int32Array(this.count);
    let truncated = 0;
    encoded.forEach((e, i) => {
      const n = Math.min(e.length, maxLength);
      if (e.length > maxLength) truncated++;
      this.ids.set(e.slice(0, n), i * maxLength);
      // An empty text still has one position to pool from (a pad token), as the book's last-token pooling does.
      this.lengths[i] = Math.max(n, 1);
      this.labels[i] = messages[i].label;
    });
    this.truncated = truncated;
  }
}

/** One batch as flat arrays ready for tf.tensor: inputs [batchSize, seqLen], labels/lengths [batchSize]. */
export interface SpamBatch {
  inputs: Int32Array;
  labels: Int32Array;
  lengths: Int32Array;
  batchSize: number;
  seqLen: number;
}

/** The book's DataLoader over a SpamDataset (train: shuffle + drop_last; validation/test: neither). */
export class SpamDataLoader extends BatchLoader<SpamBatch> {
  constructor(
    readonly dataset: SpamDataset,
    opts: BatchLoaderOptions,
  ) {
    super(dataset.count, opts);
  }

  protected collect(indices: Int32Array): SpamBatch {
    const d = this.dataset;
    const T = d.maxLength;
    const inputs = new Int32Array(indices.length * T);
    const labels = new Int32Array(indices.length);
    const lengths = new Int32Array(indices.length);
    indices.forEach((k, b) => {
      inputs.set(d.ids.subarray(k * T, (k + 1) * T), b * T);
      labels[b] = d.labels[k];
      lengths[b] = d.lengths[k];
    });
    return { inputs, labels, lengths, batchSize: indices.length, seqLen: T };
  }
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
  const C = gpt.head.num_classes;
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
