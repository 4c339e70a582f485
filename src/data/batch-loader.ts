/**
 * What PyTorch's DataLoader does for the book, once for every kind of example: batches of `batchSize` in
 * index order or reshuffled each epoch, the last partial batch kept or dropped (the book's drop_last).
 * Subclasses say only how a list of examples becomes a batch.
 */
import { UsageError } from "../errors.js";
import type { Rng } from "./rng.js";

export interface BatchLoaderOptions {
  batchSize: number;
  shuffle?: boolean;
  dropLast?: boolean;
}

export abstract class BatchLoader<B> {
  readonly batchSize: number;
  readonly shuffle: boolean;
  readonly dropLast: boolean;

  /** `exampleCount`: how many examples the dataset holds */
  constructor(
    readonly exampleCount: number,
    opts: BatchLoaderOptions,
  ) {
    if (!Number.isInteger(opts.batchSize) || opts.batchSize < 1)
      throw new UsageError(`batch size must be a positive integer, got ${opts.batchSize}`);
    this.batchSize = opts.batchSize;
    this.shuffle = opts.shuffle ?? false;
    this.dropLast = opts.dropLast ?? false;
  }

  /** the batch of these examples (indices into the dataset), in this order */
  protected abstract collect(indices: Int32Array): B;

  get numBatches(): number {
    const n = this.exampleCount / this.batchSize;
    return this.dropLast ? Math.floor(n) : Math.ceil(n);
  }

  /**
   * The example order for one epoch. With shuffle it draws from `rng`, so a trainer that saves the order (or
   * the RNG state before drawing it) can resume mid-epoch exactly.
   */
  epochOrder(rng?: Rng): Int32Array {
    if (this.shuffle) {
      if (!rng) throw new Error(`${this.constructor.name}: shuffle needs an Rng`);
      return rng.permutation(this.exampleCount);
    }
    return Int32Array.from({ length: this.exampleCount }, (_, i) => i);
  }

  batch(order: Int32Array, batchIndex: number): B {
    const start = batchIndex * this.batchSize;
    return this.collect(order.subarray(start, Math.min(start + this.batchSize, order.length)));
  }

  *batches(order: Int32Array = this.epochOrder(), fromBatch = 0): Generator<B> {
    for (let i = fromBatch; i < this.numBatches; i++) yield this.batch(order, i);
  }
}
