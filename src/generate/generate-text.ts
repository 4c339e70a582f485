/**
 * Generation as text, the way a reply is shown or served: whole characters as they come (./text-stream.ts),
 * ending at <|endoftext|> or a model's other stop ids (which are not part of the text), at a stop string (./stop-sequences.ts), at the token
 * limit, or when the caller aborts. `generate` stays the one token loop underneath.
 */
import type { GPTModel } from "../model/gpt.js";
import type { Tokenizer } from "../tokenizer/index.js";
import { generate } from "./generate.js";
import type { SamplingOptions } from "./sampler.js";
import { StopSequences } from "./stop-sequences.js";
import { TextStream } from "./text-stream.js";

/** OpenAI's finish reasons, plus "aborted" for a caller that stopped listening (no one to tell) */
export type FinishReason = "stop" | "length" | "aborted";

export interface GenerateTextOptions extends SamplingOptions {
  maxNewTokens: number;
  seed?: number;
  /** end at <|endoftext|> (default true); false lets the model write past it, as `generate` does by default */
  stopAtEndOfText?: boolean;
  /** also end at these ids (a model's EOS and end-of-turn tokens, `ChatPrompt.stopIds`); they are not part of the text */
  stopIds?: readonly number[];
  /** end before the first of these strings; it is not part of the text */
  stop?: readonly string[];
  /** drop whitespace at the start (a reply after "Assistant:" or a response header begins with some) */
  trimStart?: boolean;
  signal?: AbortSignal;
  /** each piece of text as soon as it is whole and known to come before any stop string */
  onText?: (text: string) => void;
}

export interface GenerateTextResult {
  text: string;
  /** tokens generated (the end-of-text or stop-string tokens included) */
  tokens: number;
  finishReason: FinishReason;
  /** prompt tokens the model did not see because the prompt was longer than the context */
  croppedPromptTokens: number;
  seconds: number;
}

export async function generateText(
  gpt: GPTModel,
  tokenizer: Tokenizer,
  promptIds: readonly number[],
  opts: GenerateTextOptions,
): Promise<GenerateTextResult> {
  const stopAtEndOfText = opts.stopAtEndOfText ?? true;
  const stopIds = new Set([...(stopAtEndOfText ? [tokenizer.endOfTextId] : []), ...(opts.stopIds ?? [])]);
  const stream = new TextStream((ids) => tokenizer.decode(ids));
  const stops = new StopSequences(opts.stop ?? []);
  const atStopString = new AbortController();
  const signal = opts.signal ? AbortSignal.any([opts.signal, atStopString.signal]) : atStopString.signal;
  let text = "";
  let started = !opts.trimStart;
  const emit = (piece: string) => {
    if (!started) {
      piece = piece.trimStart();
      if (piece === "") return;
      started = true;
    }
    if (piece === "") return;
    text += piece;
    opts.onText?.(piece);
  };
  const r = await generate(gpt, promptIds, {
    temperature: opts.temperature,
    topK: opts.topK,
    topP: opts.topP,
    seed: opts.seed,
    maxNewTokens: opts.maxNewTokens,
    eosId: [...stopIds],
    vocabLimit: tokenizer.vocabSize,
    signal,
    onToken: (id) => {
      if (stopIds.has(id)) return;
      emit(stops.push(stream.push(id)));
      if (stops.stopped) atStopString.abort();
    },
  });
  emit(stops.push(stream.flush()));
  emit(stops.flush());
  const finishReason: FinishReason =
    r.stoppedAtEos || stops.stopped ? "stop" : opts.signal?.aborted ? "aborted" : "length";
  return {
    text,
    tokens: r.ids.length,
    finishReason,
    croppedPromptTokens: r.croppedPromptTokens,
    seconds: r.seconds,
  };
}
