/**
 * Pretraining a GPT on raw text, as the book's ch05: split the text by characters (train_ratio), tokenize each
 * part, cut overlapping windows (max_length, stride), shuffle the training batches with drop_last, keep the
 * validation batches in order, and train next-token prediction with the shared Trainer, printing a greedy
 * sample of `sample_prompt` after every epoch.
 */
import * as tf from "@tensorflow/tfjs";
import { readFileSync, existsSync, statSync } from "node:fs";
import { DataLoader, SlidingWindowDataset, splitText, type TokenBatch } from "../data/sliding-window.js";
import { isTokenFile, readTokenFile } from "../tokenizer/token-file.js";
import { END_OF_TEXT, END_OF_TEXT_ID, getTokenizer } from "../tokenizer/index.js";
import { ConfigError, FileFormatError } from "../errors.js";
import type { ForwardMode, GPTModel } from "../model/gpt.js";
import { generate } from "../generate/generate.js";
import { sparseCrossEntropy } from "./loss.js";
import type { TrainSettings } from "./settings.js";

export interface PretrainData {
  train: DataLoader;
  validation: DataLoader;
  trainTokens: number;
  validationTokens: number;
}

/** Token ids of the training and validation parts. */
export interface TokenSplit {
  train: ArrayLike<number>;
  validation: ArrayLike<number>;
}

/**
 * Read `files` and split them into training and validation tokens. Text files follow the book: the
 * characters are split at train_ratio, then each part is tokenized (several files are joined with
 * `<|endoftext|>`). When any file is a token file (`llmctl tokenize --out`), everything is turned into ids
 * (joined with the end-of-text id) and the ids are split at train_ratio instead.
 */
export function readPretrainTokens(files: string[], trainRatio: number): TokenSplit {
  if (files.length === 0)
    throw new ConfigError("no training data", "pass --data FILE (text or `llmctl tokenize --out` file)");
  for (const f of files) {
    if (!existsSync(f) || !statSync(f).isFile())
      throw new FileFormatError(`data file not found: ${f}`, "check the --data path");
  }
  const tok = getTokenizer();
  const tokenFiles = files.map((f) => isTokenFile(f));
  if (!tokenFiles.some(Boolean)) {
    const text = files.map((f) => readFileSync(f, "utf8")).join(END_OF_TEXT);
    const { train, validation } = splitText(text, trainRatio);
    return { train: tok.encode(train), validation: tok.encode(validation) };
  }
  const parts: ArrayLike<number>[] = files.map((f, i) => {
    if (!tokenFiles[i]) return tok.encode(readFileSync(f, "utf8"));
    const { ids, vocabSize } = readTokenFile(f);
    if (vocabSize !== tok.vocabSize) {
      throw new FileFormatError(
        `${f} was tokenized for a vocabulary of ${vocabSize}, the GPT-2 tokenizer has ${tok.vocabSize}`,
        "re-create it with `llmctl tokenize --out`",
      );
    }
    return ids;
  });
  const total = parts.reduce((n, p) => n + p.length, 0) + parts.length - 1;
  const all = new Uint32Array(total);
  let at = 0;
  parts.forEach((p, i) => {
    if (i > 0) all[at++] = END_OF_TEXT_ID;
    all.set(p as ArrayLike<number>, at);
    at += p.length;
  });
  const cut = Math.floor(trainRatio * all.length);
  return { train: all.subarray(0, cut), validation: all.subarray(cut) };
}

/** The book's two loaders: train shuffled with drop_last, validation in order with every window. */
export function makePretrainLoaders(
  tokens: TokenSplit,
  s: Pick<TrainSettings, "batch_size" | "max_length" | "stride">,
  contextLength: number,
): PretrainData {
  const maxLength = s.max_length ?? contextLength;
  const stride = s.stride ?? maxLength;
  if (maxLength > contextLength) {
    throw new ConfigError(
      `max_length ${maxLength} is longer than the model's context_length ${contextLength}`,
      `set train.max_length (or --max-length) to at most ${contextLength}`,
    );
  }
  const train = new DataLoader(new SlidingWindowDataset(tokens.train, maxLength, stride), {
    batchSize: s.batch_size,
    shuffle: true,
    dropLast: true,
  });
  const validation = new DataLoader(new SlidingWindowDataset(tokens.validation, maxLength, stride), {
    batchSize: s.batch_size,
    shuffle: false,
    dropLast: false,
  });
  return { train, validation, trainTokens: tokens.train.length, validationTokens: tokens.validation.length };
}

/** The book's calc_loss_batch for a language model: next-token cross-entropy over every position. */
export function languageModelLoss(gpt: GPTModel): (batch: TokenBatch, mode: ForwardMode) => tf.Scalar {
  return (b, mode) =>
    tf.tidy(() => {
      const ids = tf.tensor2d(b.inputs, [b.batchSize, b.seqLen], "int32");
      const targets = tf.tensor2d(b.targets, [b.batchSize, b.seqLen], "int32");
      return sparseCrossEntropy(gpt.forward(ids, mode), targets);
    });
}

/** The book's generate_and_print_sample: prompt + 50 greedy tokens, newlines shown as spaces. */
export async function epochSample(gpt: GPTModel, prompt: string, maxNewTokens: number): Promise<string> {
  const tok = getTokenizer();
  const ids = tok.encode(prompt);
  if (ids.length === 0) return "";
  const { ids: next } = await generate(gpt, ids, { maxNewTokens, temperature: 0 });
  return (prompt + tok.decode(next)).replace(/\n/g, " ");
}
