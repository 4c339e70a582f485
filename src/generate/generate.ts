/**
 * Autoregressive generation (book ch04–05 `generate`, with a KV cache). The model sees at most its last
 * context_length tokens: a longer prompt is cropped to them, and once the sequence outgrows the context the
 * window slides — the cropped window is fed again from position 0, as GPT-2 generation does (absolute position
 * embeddings leave no cheaper exact way), so every token past the context costs a full window.
 */
import * as tf from "@tensorflow/tfjs";
import { FileFormatError, UsageError } from "../errors.js";
import { Rng } from "../data/rng.js";
import type { GPTModel } from "../model/gpt.js";
import { type SamplingOptions, checkSamplingOptions, sampleNext } from "./sampler.js";

export interface GenerateOptions extends SamplingOptions {
  maxNewTokens: number;
  /**
   * stop after emitting this id (e.g. <|endoftext|> 50256), or any of these ids (a model's EOS and end-of-turn
   * tokens); the id is included in the result
   */
  eosId?: number | readonly number[] | null;
  /** default true; false recomputes the whole window for every token (the book's generate_text_simple) */
  useCache?: boolean;
  /** seeds the sampling (default 123); ignored for greedy decoding */
  seed?: number;
  rng?: Rng;
  /** sample only among the first `vocabLimit` ids (ids the tokenizer can decode); default: the model's vocabulary */
  vocabLimit?: number;
  /** called with each new id as soon as it is chosen */
  onToken?: (id: number) => void;
  /** checked before each token: once aborted, generation ends there (no error; the result says `aborted`) */
  signal?: AbortSignal;
}

export interface GenerateResult {
  /** the new ids only */
  ids: number[];
  /** prompt tokens dropped because the prompt was longer than the context (the model sees the last ones) */
  croppedPromptTokens: number;
  stoppedAtEos: boolean;
  /** `signal` was aborted before maxNewTokens (or end-of-text) was reached */
  aborted: boolean;
  seconds: number;
  tokensPerSecond: number;
}

/** NaN or Inf logits: the weights hold non-finite values, as a diverged run (or an infinite adapter) leaves. */
export class NonFiniteLogitsError extends FileFormatError {}

/** Refuse a classifier before anything is printed for it. */
export function requireLanguageModel(gpt: GPTModel, dir?: string): void {
  if (gpt.head.kind !== "lm") {
    throw new UsageError(
      `${dir ?? "this model"} has a classifier head and cannot generate text`,
      "use `llmctl classify` with it",
    );
  }
}

/** Generate up to maxNewTokens ids after promptIds. */
export async function generate(
  gpt: GPTModel,
  promptIds: readonly number[],
  opts: GenerateOptions,
): Promise<GenerateResult> {
  checkSamplingOptions(opts);
  const cfg = gpt.config;
  requireLanguageModel(gpt);
  if (promptIds.length === 0) throw new UsageError("the prompt is empty", "give at least one token of prompt text");
  if (!(Number.isInteger(opts.maxNewTokens) && opts.maxNewTokens >= 0)) {
    throw new UsageError(`max new tokens must be an integer ≥ 0, got ${opts.maxNewTokens}`);
  }
  for (const id of promptIds) {
    if (!(Number.isInteger(id) && id >= 0 && id < cfg.vocab_size)) {
      throw new UsageError(`prompt token id ${id} is outside the model's vocabulary (0..${cfg.vocab_size - 1})`);
    }
  }
  const rng = opts.rng ?? new Rng(opts.seed ?? 123);
  const ctx = cfg.context_length;
  const limit = Math.min(opts.vocabLimit ?? cfg.vocab_size, cfg.vocab_size);
  const useCache = opts.useCache ?? true;
  const seq = promptIds.slice(-ctx);
  const croppedPromptTokens = promptIds.length - seq.length;
  const eosIds = new Set(opts.eosId == null ? [] : typeof opts.eosId === "number" ? [opts.eosId] : opts.eosId);
  const out: number[] = [];
  let stoppedAtEos = false;
  let aborted = false;
  const started = performance.now();

  const cache = gpt.newCache();
  const run = (ids: number[], cached: boolean): tf.Tensor2D => {
    const input = tf.tensor2d([ids], [1, ids.length], "int32");
    try {
      return gpt.forward(input, { lastOnly: true, cache: cached ? cache : undefined });
    } finally {
      input.dispose();
    }
  };
  try {
    let pending: number[] = seq; // tokens the model has not seen yet (all of them at the start)
    for (let step = 0; step < opts.maxNewTokens; step++) {
      if (opts.signal?.aborted) {
        aborted = true;
        break;
      }
      let logitsT: tf.Tensor2D;
      if (!useCache) {
        logitsT = run(seq.slice(-ctx), false);
      } else if (cache.length + pending.length <= ctx) {
        logitsT = run(pending, true); // one position per new token
      } else {
        cache.dispose(); // the window slides: positions restart at 0
        logitsT = run(seq.slice(-ctx), true);
      }
      const logits = (await logitsT.data()) as Float32Array; // [1,V]
      logitsT.dispose();
      // non-finite weights (a diverged run) give NaN logits, which would sample token 0 ("!") forever
      if (!logits.every(Number.isFinite)) {
        throw new NonFiniteLogitsError(
          "the model's logits are not finite (NaN or Inf): its weights hold non-finite values, as a diverged training run leaves",
          "use an earlier checkpoint, or train again with a lower --lr",
        );
      }
      const id = sampleNext(limit < logits.length ? logits.subarray(0, limit) : logits, opts, rng);
      seq.push(id);
      out.push(id);
      pending = [id];
      opts.onToken?.(id);
      if (eosIds.has(id)) {
        stoppedAtEos = true;
        break;
      }
      // Each token's forward pass is synchronous: give the event loop a turn between tokens, so a server
      // keeps accepting connections and hears a client leave, and a terminal hears Ctrl-C.
      await new Promise<void>((resolve) => setImmediate(resolve));
    }
  } finally {
    cache.dispose();
  }
  const seconds = (performance.now() - started) / 1000;
  return {
    ids: out,
    croppedPromptTokens,
    stoppedAtEos,
    aborted,
    seconds,
    tokensPerSecond: seconds > 0 ? out.length / seconds : 0,
  };
}
