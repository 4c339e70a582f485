/**
 * The book's `GPTDatasetV1` / `create_dataloader_v1`: overlapping windows over one token stream, where each
 * target is its input shifted by one token, batched with an optional seeded shuffle.
 */
import { BatchLoader, type BatchLoaderOptions } from "./batch-loader.js";
import { UsageError } from "../errors.js";

/** Windows at i = 0, stride, 2·stride, … while i < len − maxLength (the book's range(0, len − L, stride)). */
export class SlidingWindowDataset {
  readonly length: number;

  constructor(
    readonly ids: ArrayLike<number>,
    readonly maxLength: number,
    readonly stride: number,
  ) {
    if (!Number.isInteger(maxLength) || maxLength < 1)
      throw new UsageError(`max length must be a positive integer, got ${maxLength}`);
    if (!Number.isInteger(stride) || stride < 1)
      throw new UsageError(`stride must be a positive integer, got ${stride}`);
    this.length = ids.length > maxLength ? Math.ceil((ids.length - maxLength) / stride) : 0;
  }

  /** Copy window `index` into `input` / `target` at `offset` (each maxLength long). */
  copyWindow(index: number, input: Int32Array, target: Int32Array, offset = 0): void {
    const start = index * this.stride;
    for (let j = 0; j < this.maxLength; j++) {
      input[offset + j] = this.ids[start + j];
      target[offset + j] = this.ids[start + j + 1];
    }
  }

  window(index: number): { input: Int32Array; target: Int32Array } {
    const input = new Int32Array(this.maxLength);
    const target = new Int32Array(this.maxLength);
    this.copyWindow(index, input, target);
    return { input, target };
  }
}

/** A batch as flat row-major [batchSize, seqLen] int32 arrays, ready for tf.tensor2d. */
export interface TokenBatch {
  inputs: Int32Array;
  targets: Int32Array;
  batchSize: number;
  seqLen: number;
}

/** Batches of sliding windows (the book's GPTDatasetV1 in a DataLoader). */
export class SlidingWindowLoader extends BatchLoader<TokenBatch> {
  constructor(
    readonly dataset: SlidingWindowDataset,
    opts: BatchLoaderOptions,
  ) {
    super(dataset.length, opts);
  }

  protected collect(indices: Int32Array): TokenBatch {
    const L = this.dataset.maxLength;
    const inputs = new Int32Array(indices.length * L);
    const targets = new Int32Array(indices.length * L);
    indices.forEach((k, b) => this.dataset.copyWindow(k, inputs, targets, b * L));
    return { inputs, targets, batchSize: indices.length, seqLen: L };
  }
}

/** The book's split: the first `ratio` of the characters train, the rest validate. */
export function splitText(text: string, ratio = 0.9): { train: string; validation: string } {
  if (!(ratio > 0 && ratio < 1)) throw new UsageError(`train ratio must be between 0 and 1, got ${ratio}`);
  const cut = Math.floor(ratio * text.length);
  return { train: text.slice(0, cut), validation: text.slice(cut) };
}
