/**
 * Chapter 2's dataloader made visible: the first batches of sliding windows over a token stream, as input and
 * target ids (each target row is its input shifted by one token) with the text each row decodes to.
 */
import { SlidingWindowDataset, SlidingWindowLoader } from "../data/sliding-window.js";
import { UsageError } from "../errors.js";
import type { Tokenizer } from "../tokenizer/index.js";

export interface WindowBatch {
  /** [batchSize, maxLength] */
  inputs: number[][];
  targets: number[][];
  input_text: string[];
  target_text: string[];
}

export interface WindowsView {
  tokens: number;
  /** windows in the whole stream (the book's len(dataset)) */
  windows: number;
  /** full batches in one epoch (drop_last, as the book's create_dataloader_v1) */
  batches_per_epoch: number;
  batches: WindowBatch[];
}

export interface WindowsOptions {
  maxLength: number;
  stride: number;
  batchSize: number;
  /** how many batches to show, from the first */
  batches: number;
}

/** The first `batches` batches of the book's create_dataloader_v1(shuffle=False, drop_last=True). */
export function windowBatches(ids: ArrayLike<number>, tokenizer: Tokenizer, opts: WindowsOptions): WindowsView {
  if (!Number.isInteger(opts.batches) || opts.batches < 1)
    throw new UsageError(`--batches must be a positive integer, got ${opts.batches}`);
  const dataset = new SlidingWindowDataset(ids, opts.maxLength, opts.stride);
  const loader = new SlidingWindowLoader(dataset, { batchSize: opts.batchSize, dropLast: true });
  if (loader.numBatches === 0)
    throw new UsageError(
      `${ids.length} tokens make ${dataset.length} windows of ${opts.maxLength}: not one batch of ${opts.batchSize}`,
      "use a longer text, or a smaller --max-length or --batch-size",
    );
  const rows = (flat: Int32Array, L: number) =>
    Array.from({ length: flat.length / L }, (_, b) => Array.from(flat.subarray(b * L, (b + 1) * L)));
  const batches: WindowBatch[] = [];
  for (const batch of loader.batches()) {
    if (batches.length === opts.batches) break;
    const inputs = rows(batch.inputs, batch.seqLen);
    const targets = rows(batch.targets, batch.seqLen);
    batches.push({
      inputs,
      targets,
      input_text: inputs.map((r) => tokenizer.decode(r)),
      target_text: targets.map((r) => tokenizer.decode(r)),
    });
  }
  return { tokens: ids.length, windows: dataset.length, batches_per_epoch: loader.numBatches, batches };
}
