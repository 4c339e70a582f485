/**
 * The book's `InstructionDataset` and `custom_collate_fn` (chapter 7): tokenized examples of different lengths
 * become one padded batch whose padding is ignored by the loss, plus a loader with the BatchSource interface
 * (numBatches / epochOrder / batch) that the Trainer drives.
 */
import { BatchLoader, type BatchLoaderOptions } from "../data/batch-loader.js";
import type { TokenBatch } from "../data/sliding-window.js";
import { UsageError } from "../errors.js";
import type { Tokenizer } from "../tokenizer/index.js";
import { END_OF_TEXT_ID } from "../tokenizer/index.js";
import { IGNORE_INDEX } from "../train/loss.js";
import { formatExample, formatPrompt } from "../generate/prompt-style.js";
import { type PromptStyle } from "../model/model-meta.js";
import { type InstructionEntry } from "../data/instruction-data.js";

/** One tokenized example: prompt + response header + output (no end-of-text yet). */
export interface InstructionItem {
  ids: ArrayLike<number>;
  /** tokens of the prompt alone (instruction + input), for --mask-instruction (exercise 7.2) */
  promptLength: number;
}

export interface CollateOptions {
  padId?: number;
  ignoreIndex?: number;
  /** truncate inputs and targets to this many tokens (the book's allowed_max_length) */
  maxLength?: number;
  /** also ignore the targets that predict prompt tokens (exercise 7.2) */
  maskInstruction?: boolean;
}

/**
 * `custom_collate_fn`: append one end-of-text, pad with it to the batch's longest + 1, inputs = padded[:-1],
 * targets = padded[1:], every padding target after the first → ignoreIndex, optionally mask the prompt's
 * targets, then truncate to maxLength. Returns row-major [B, T] int32 arrays.
 */
export function collateInstructions(items: readonly InstructionItem[], opts: CollateOptions = {}): TokenBatch {
  if (items.length === 0) throw new UsageError("cannot collate an empty batch");
  const pad = opts.padId ?? END_OF_TEXT_ID;
  const ignore = opts.ignoreIndex ?? IGNORE_INDEX;
  if (opts.maxLength !== undefined && (!Number.isInteger(opts.maxLength) || opts.maxLength < 1)) {
    throw new UsageError(`max length must be a positive integer, got ${opts.maxLength}`);
  }
  // padded rows are (longest + 1) long; inputs and targets drop one token each
  let longest = 0;
  for (const item of items) longest = Math.max(longest, item.ids.length);
  const T = Math.min(longest, opts.maxLength ?? longest);
  const B = items.length;
  const inputs = new Int32Array(B * T);
  const targets = new Int32Array(B * T);
  for (let b = 0; b < B; b++) {
    const { ids, promptLength } = items[b];
    const n = ids.length;
    // padded[j] = ids[j] for j < n, else pad (position n is the appended end-of-text)
    const at = (j: number): number => (j < n ? ids[j] : pad);
    // The book masks every target equal to the pad id except the first, which also catches an end-of-text
    // inside the text itself; we reproduce that exactly rather than only masking positions ≥ n.
    let padsSeen = 0;
    const row = b * T;
    for (let j = 0; j < longest; j++) {
      let target = at(j + 1);
      if (target === pad && padsSeen++ > 0) target = ignore;
      // targets[:promptLength-1]: the targets that predict tokens 1..promptLength-1 of the prompt
      if (opts.maskInstruction && j < promptLength - 1) target = ignore;
      if (j < T) {
        inputs[row + j] = at(j);
        targets[row + j] = target;
      }
    }
  }
  return { inputs, targets, batchSize: B, seqLen: T };
}

/** The book's `InstructionDataset`: every entry formatted with a prompt style and tokenized once. */
export class InstructionDataset {
  readonly items: InstructionItem[];

  constructor(
    readonly entries: readonly InstructionEntry[],
    tokenizer: Tokenizer,
    readonly style: PromptStyle,
  ) {
    // allowedSpecial [] : a literal "<|endoftext|>" inside the data is text, not the end of the example
    this.items = entries.map((e) => ({
      ids: tokenizer.encode(formatExample(e, style), { allowedSpecial: [] }),
      promptLength: tokenizer.encode(formatPrompt(e, style), { allowedSpecial: [] }).length,
    }));
  }

  get length(): number {
    return this.items.length;
  }

  /** Tokens in the longest example plus its end-of-text: the context a model needs to see it whole. */
  get longestExample(): number {
    return this.items.reduce((m, it) => Math.max(m, it.ids.length + 1), 0);
  }
}

export interface InstructionLoaderOptions extends CollateOptions, BatchLoaderOptions {}

/**
 * Batches of collated examples, driven by the Trainer as pretraining windows are. Training in the book:
 * shuffle, drop_last; validation: in order, keep the last partial batch.
 */
export class InstructionLoader extends BatchLoader<TokenBatch> {
  constructor(
    readonly dataset: InstructionDataset,
    private readonly opts: InstructionLoaderOptions,
  ) {
    super(dataset.length, opts);
  }

  protected collect(indices: Int32Array): TokenBatch {
    return collateInstructions(
      Array.from(indices, (k) => this.dataset.items[k]),
      this.opts,
    );
  }
}
