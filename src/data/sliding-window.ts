/**
 * The book's `GPTDatasetV1` / `create_dataloader_v1`: overlapping windows over one token stream, where each
 * target is its input shifted by one token, batched with an optional seeded shuffle.
 */
import { Rng } from "./rng.js";
import { UsageError } from "../errors.js";

/** Windows at i = 0, stride, 2·stride, … while i < len − maxLength (the book's range(0, len − L, stride)). */
export class SlidingWindowDataset {
  readonly length: number;

  constructor(
    readonly ids: ArrayLike<number>,
    readonly maxLength: number,
    readonly stride: number,
  ) {
    if (!Number.isInteger(maxLength) || maxLength < 1) throw new UsageError(`max length must be a positive integer, got ${maxLength}`);
    if (!Number.isInteger(stride) || stride < 1) throw new UsageError(`stride must be a positive integer, got ${stride}`);
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

export interface DataLoaderOptions {
  batchSize: number;
  shuffle?: boolean;
  dropLast?: boolean;
}

export class DataLoader {
  readonly batchSize: number;
  readonly shuffle: boolean;
  readonly dropLast: boolean;

  constructor(
    readonly dataset: SlidingWindowDataset,
    opts: DataLoaderOptions,
  ) {
    if (!Number.isInteger(opts.batchSize) || opts.batchSize < 1) throw new UsageError(`batch size must be a positive integer, got ${opts.batchSize}`);
    this.batchSize = opts.batchSize;
    this.shuffle = opts.shuffle ?? false;
    this.dropLast = opts.dropLast ?? false;
  }

  get numBatches(): number {
    const n = this.dataset.length / this.batchSize;
    return this.dropLast ? Math.floor(n) : Math.ceil(n);
  }

  /**
   * The window order for one epoch. With shuffle it draws from `rng`, so a trainer that saves the order
   * (or the RNG state before drawing it) can resume mid-epoch exactly.
   */
  epochOrder(rng?: Rng): Int32Array {
    if (this.shuffle) {
      if (!rng) throw new Error("DataLoader: shuffle needs an Rng");
      return rng.permutation(this.dataset.length);
    }
    return Int32Array.from({ length: this.dataset.length }, (_, i) => i);
  }

  batch(order: Int32Array, batchIndex: number): TokenBatch {
    const L = this.dataset.maxLength;
    const start = batchIndex * this.batchSize;
    const size = Math.min(this.batchSize, order.length - start);
    const inputs = new Int32Array(size * L);
    const targets = new Int32Array(size * L);
    for (let b = 0; b < size; b++) this.dataset.copyWindow(order[start + b], inputs, targets, b * L);
    return { inputs, targets, batchSize: size, seqLen: L };
  }

  *batches(order: Int32Array = this.epochOrder(), fromBatch = 0): Generator<TokenBatch> {
    for (let i = fromBatch; i < this.numBatches; i++) yield this.batch(order, i);
  }
}

/** The book's split: the first `ratio` of the characters train, the rest validate. */
export function splitText(text: string, ratio = 0.9): { train: string; validation: string } {
  if (!(ratio > 0 && ratio < 1)) throw new UsageError(`train ratio must be between 0 and 1, got ${ratio}`);
  const cut = Math.floor(ratio * text.length);
  return { train: text.slice(0, cut), validation: text.slice(cut) };
}
