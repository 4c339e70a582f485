/**
 * Answers to instructions (chapter 7): the book's greedy answer to one, and the test set's answers, which
 * `finetune instruct`, `llmctl instruct` and the judge's input all come from.
 */
import type { GPTModel } from "../model/gpt.js";
import type { Tokenizer } from "../tokenizer/index.js";
import { InterruptedError } from "../errors.js";
import type { InstructionRecord } from "../data/instruction-data.js";
import { generateText } from "./generate-text.js";
import { MAX_RESPONSE_TOKENS, extractResponse, formatPrompt, responseHeader } from "./prompt-style.js";
import { type PromptStyle } from "../model/model-meta.js";
import { type InstructionEntry } from "../data/instruction-data.js";

export interface ResponseOptions {
  /** default MAX_RESPONSE_TOKENS, the book's limit */
  maxNewTokens?: number;
  /** default 0: greedy, as the book */
  temperature?: number;
  topK?: number | null;
  seed?: number;
  /**
   * Put the style's response header at the end of the prompt, so the answer starts at once (interactive use).
   * Without it, as the book's test-set answers, the model writes the header itself and it is stripped after.
   */
  withHeader?: boolean;
  /** each piece of the answer as soon as it is whole (tokens can end mid-character), leading whitespace dropped */
  onText?: (text: string) => void;
}

/**
 * The book's answer to an instruction: generate from `formatPrompt(entry)` until end-of-text or the token
 * limit, then strip the response tag and surrounding whitespace.
 */
export async function generateResponse(
  gpt: GPTModel,
  tokenizer: Tokenizer,
  entry: Pick<InstructionEntry, "instruction" | "input">,
  style: PromptStyle,
  opts: ResponseOptions = {},
): Promise<{ text: string; tokens: number; stoppedAtEos: boolean }> {
  const prompt = formatPrompt(entry, style) + (opts.withHeader ? responseHeader(style) : "");
  const r = await generateText(gpt, tokenizer, tokenizer.encode(prompt, { allowedSpecial: [] }), {
    maxNewTokens: opts.maxNewTokens ?? MAX_RESPONSE_TOKENS,
    temperature: opts.temperature ?? 0,
    topK: opts.topK ?? null,
    seed: opts.seed,
    trimStart: true, // the book strips whitespace from answers
    onText: opts.onText,
  });
  const stoppedAtEos = r.finishReason === "stop";
  // the end-of-text token counts as generated, but is not part of the answer
  return { text: extractResponse(r.text, style), tokens: stoppedAtEos ? r.tokens - 1 : r.tokens, stoppedAtEos };
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

/** The book's test-set answers: each entry with its greedy `model_response`. */
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
    const r = await generateResponse(gpt, tokenizer, entry, style, { maxNewTokens: opts.maxNewTokens });
    if (r.stoppedAtEos) endedWithEos++;
    out.push({ ...entry, model_response: r.text });
    opts.onProgress?.(out.length, entries.length);
  }
  return { entries: out, endedWithEos, seconds: (performance.now() - start) / 1000 };
}
