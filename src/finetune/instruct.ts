/**
 * Chapter 7's instruction finetuning: the whole pretrained model is trained on formatted
 * {instruction, input, output} examples with the ordinary next-token loss (padding, and optionally the
 * prompt, ignored), then answers every test instruction so the responses can be judged.
 *
 * The loop itself is the shared Trainer (src/train/trainer.ts); this module supplies its batches, its loss,
 * a per-epoch sample, and the response generation afterwards.
 */
import * as tf from "@tensorflow/tfjs";
import type { ForwardMode, GPTModel } from "../model/gpt.js";
import type { TokenBatch } from "../data/sliding-window.js";
import { IGNORE_INDEX, sparseCrossEntropy } from "../train/loss.js";
import { Trainer, namedParameters, type TrainEvent, type TrainResult } from "../train/trainer.js";
import type { TrainSettings } from "../train/settings.js";
import { END_OF_TEXT_ID, type Tokenizer } from "../tokenizer/index.js";
import { InterruptedError, UsageError } from "../errors.js";
import { generate } from "../generate/generate.js";
import { InstructionDataset, InstructionLoader } from "./collate.js";
import { splitInstructionData, type InstructionRecord, type InstructionSplit } from "./instruct-data.js";
import {
  extractResponse,
  formatPrompt,
  responseHeader,
  type InstructionEntry,
  type PromptStyle,
} from "./prompt-style.js";

/** The book's recipe (chapter 7): AdamW 5e-5, weight decay 0.1, 2 epochs, batch 8, eval every 5 steps over 5 batches. */
export const INSTRUCT_TRAIN_DEFAULTS: Partial<TrainSettings> = {
  epochs: 2,
  batch_size: 8,
  lr: 5e-5,
  weight_decay: 0.1,
  eval_freq: 5,
  eval_iter: 5,
  seed: 123,
};

/** The file the book writes after finetuning: the test entries with the model's answers. */
export const RESPONSES_FILE = "instruction-data-with-response.json";
/** How this run was set up (data, prompt style, masking), so --resume rebuilds the same batches. */
export const INSTRUCT_RUN_FILE = "instruct-run.json";
/** The book's limit on generated answers. */
export const MAX_RESPONSE_TOKENS = 256;

export interface InstructRunInfo {
  format: "llmctl-instruct-run";
  version: 1;
  data: string;
  prompt_style: PromptStyle;
  mask_instruction: boolean;
  /** collate truncation (tokens); the model's context unless set */
  max_length: number;
  base_model: string;
}

/** The book's `calc_loss_batch`: next-token cross-entropy over the batch, targets of −100 skipped. */
export function instructionLoss(gpt: GPTModel, batch: TokenBatch, mode: ForwardMode): tf.Scalar {
  return tf.tidy(() => {
    const ids = tf.tensor2d(batch.inputs, [batch.batchSize, batch.seqLen], "int32"); // [B,T]
    const targets = tf.tensor2d(batch.targets, [batch.batchSize, batch.seqLen], "int32"); // [B,T]
    return sparseCrossEntropy(gpt.forward(ids, mode), targets, IGNORE_INDEX); // logits [B,T,V]
  });
}

export interface InstructionBatches {
  split: InstructionSplit<InstructionRecord>;
  train: InstructionLoader;
  validation: InstructionLoader;
  /** tokens of the longest training example incl. its end-of-text (what max_length must hold to see it whole) */
  longestExample: number;
}

/** Split, tokenize and batch the data as the book: train shuffled with drop_last, validation in order. */
export function instructionBatches(
  entries: readonly InstructionRecord[],
  tokenizer: Tokenizer,
  opts: { style: PromptStyle; batchSize: number; maxLength: number; maskInstruction: boolean },
): InstructionBatches {
  const split = splitInstructionData(entries);
  if (split.train.length < opts.batchSize) {
    throw new UsageError(
      `${entries.length} entries give ${split.train.length} training examples, fewer than one batch of ${opts.batchSize}`,
      "lower --batch-size or give more data (85% of the entries train)",
    );
  }
  const collate = { maxLength: opts.maxLength, maskInstruction: opts.maskInstruction };
  const trainSet = new InstructionDataset(split.train, tokenizer, opts.style);
  const valSet = new InstructionDataset(split.validation, tokenizer, opts.style);
  return {
    split,
    train: new InstructionLoader(trainSet, { ...collate, batchSize: opts.batchSize, shuffle: true, dropLast: true }),
    validation: new InstructionLoader(valSet, { ...collate, batchSize: opts.batchSize }),
    longestExample: Math.max(trainSet.longestExample, valSet.longestExample),
  };
}

/**
 * The book's test-set answer: greedy from `formatPrompt(entry)`, stop at end-of-text, ≤ 256 new tokens, then
 * the response tag and surrounding whitespace stripped.
 */
export async function generateResponse(
  gpt: GPTModel,
  tokenizer: Tokenizer,
  entry: Pick<InstructionEntry, "instruction" | "input">,
  style: PromptStyle,
  maxNewTokens = MAX_RESPONSE_TOKENS,
): Promise<{ text: string; tokens: number; stoppedAtEos: boolean }> {
  const prompt = tokenizer.encode(formatPrompt(entry, style), { allowedSpecial: [] });
  const r = await generate(gpt, prompt, { maxNewTokens, temperature: 0, eosId: END_OF_TEXT_ID });
  const ids = r.stoppedAtEos ? r.ids.slice(0, -1) : r.ids;
  return { text: extractResponse(tokenizer.decode(ids), style), tokens: ids.length, stoppedAtEos: r.stoppedAtEos };
}

/** Prompt ids for answering interactively: the prompt and the response header, so the answer starts at once. */
export function answerPromptIds(
  tokenizer: Tokenizer,
  entry: Pick<InstructionEntry, "instruction" | "input">,
  style: PromptStyle,
): number[] {
  return tokenizer.encode(formatPrompt(entry, style) + responseHeader(style), { allowedSpecial: [] });
}

export interface ResponsesOptions {
  maxNewTokens?: number;
  onProgress?: (done: number, total: number) => void;
  signal?: AbortSignal;
}

export interface ResponsesResult {
  entries: (InstructionRecord & { model_response: string })[];
  /** answers that ended with end-of-text (the format learned) rather than at the token limit */
  endedWithEos: number;
  seconds: number;
}

export async function generateResponses(
  gpt: GPTModel,
  tokenizer: Tokenizer,
  entries: readonly InstructionRecord[],
  style: PromptStyle,
  opts: ResponsesOptions = {},
): Promise<ResponsesResult> {
  const start = performance.now();
  const out: ResponsesResult["entries"] = [];
  let endedWithEos = 0;
  for (const entry of entries) {
    if (opts.signal?.aborted)
      throw new InterruptedError(`response generation interrupted after ${out.length} of ${entries.length}`);
    const r = await generateResponse(gpt, tokenizer, entry, style, opts.maxNewTokens ?? MAX_RESPONSE_TOKENS);
    if (r.stoppedAtEos) endedWithEos++;
    out.push({ ...entry, model_response: r.text });
    opts.onProgress?.(out.length, entries.length);
  }
  return { entries: out, endedWithEos, seconds: (performance.now() - start) / 1000 };
}

export interface FinetuneInstructOptions {
  gpt: GPTModel;
  tokenizer: Tokenizer;
  /** from instructionBatches(), with the run's style, batch size, max length and masking */
  batches: InstructionBatches;
  run: InstructRunInfo;
  settings: TrainSettings;
  runDir: string;
  /** write config.json + model.safetensors (with prompt_style) into a directory */
  saveModel: (dir: string) => Promise<void>;
  resume?: boolean;
  signal?: AbortSignal;
  onEvent?: (event: TrainEvent) => void;
}

/** Finetune the whole model on instruction data with the shared Trainer. */
export async function finetuneInstruct(opts: FinetuneInstructOptions): Promise<TrainResult> {
  const { gpt, tokenizer, run, settings, batches } = opts;
  // as the book: after each epoch, answer the first validation instruction (its start_context)
  const sampleEntry = batches.split.validation[0] ?? batches.split.train[0];
  const trainer = new Trainer<TokenBatch>({
    params: namedParameters(gpt),
    loss: (batch, mode) => instructionLoss(gpt, batch, mode),
    train: batches.train,
    validation: batches.validation,
    batchTokens: (b) => b.batchSize * b.seqLen,
    settings,
    runDir: opts.runDir,
    saveModel: opts.saveModel,
    afterEpoch: async () => ({
      sample: (await generateResponse(gpt, tokenizer, sampleEntry, run.prompt_style, settings.sample_tokens)).text,
    }),
    onEvent: opts.onEvent,
    signal: opts.signal,
    resume: opts.resume,
  });
  return trainer.run();
}
