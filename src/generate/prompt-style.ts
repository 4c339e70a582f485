/**
 * Prompt styles for instruction finetuning (book chapter 7): how an {instruction, input, output} entry becomes
 * the text a model is trained on, and how a generated continuation is turned back into a response.
 *
 * - `alpaca`: the book's `format_input` + "\n\n### Response:\n" + output.
 * - `phi3`: the book's exercise 7.1 — "<|user|>\n" + instruction (+ "\n" + input) + "\n<|assistant|>:\n" + output.
 *   (The exercise writes the assistant tag with a trailing colon; we keep it so models match the book's.)
 *
 * Neither style's tags are GPT-2 special tokens: they are tokenized as ordinary text.
 */
import { UsageError } from "../errors.js";
import type { InstructionEntry } from "../data/instruction-data.js";
import { PROMPT_STYLES, type PromptStyle } from "../model/model-meta.js";

/** The book's limit on generated answers (here, so the CLI's option defaults load no TF.js). */
export const MAX_RESPONSE_TOKENS = 256;

/** The book's default; the one a model directory without `prompt_style` is assumed to use. */
export const DEFAULT_PROMPT_STYLE: PromptStyle = "alpaca";

const ALPACA_PREAMBLE =
  "Below is an instruction that describes a task. Write a response that appropriately completes the request.";

interface StyleDefinition {
  /** instruction + optional input: what the model sees before it answers */
  prompt(entry: Pick<InstructionEntry, "instruction" | "input">): string;
  /** the text between the prompt and the output; generation strips it from responses */
  responseHeader: string;
  /** the tag the book removes from generated text (`replace(tag, "")`) */
  responseTag: string;
}

const STYLES: Record<PromptStyle, StyleDefinition> = {
  alpaca: {
    prompt: (e) =>
      `${ALPACA_PREAMBLE}\n\n### Instruction:\n${e.instruction}` + (e.input ? `\n\n### Input:\n${e.input}` : ""),
    responseHeader: "\n\n### Response:\n",
    responseTag: "### Response:",
  },
  phi3: {
    prompt: (e) => `<|user|>\n${e.instruction}` + (e.input ? `\n${e.input}` : ""),
    responseHeader: "\n<|assistant|>:\n",
    responseTag: "<|assistant|>:",
  },
};

export function isPromptStyle(name: unknown): name is PromptStyle {
  return typeof name === "string" && (PROMPT_STYLES as readonly string[]).includes(name);
}

export function checkPromptStyle(name: string): PromptStyle {
  if (!isPromptStyle(name)) {
    throw new UsageError(`unknown prompt style '${name}'`, `use one of ${PROMPT_STYLES.join(", ")}`);
  }
  return name;
}

/** The book's `format_input`: instruction and, when non-empty, input. */
export function formatPrompt(
  entry: Pick<InstructionEntry, "instruction" | "input">,
  style: PromptStyle = DEFAULT_PROMPT_STYLE,
): string {
  return STYLES[style].prompt(entry);
}

/** The text that introduces the answer, e.g. "\n\n### Response:\n". */
export function responseHeader(style: PromptStyle = DEFAULT_PROMPT_STYLE): string {
  return STYLES[style].responseHeader;
}

/** Prompt + header + output: one training example's full text (before the end-of-text token). */
export function formatExample(entry: InstructionEntry, style: PromptStyle = DEFAULT_PROMPT_STYLE): string {
  return formatPrompt(entry, style) + STYLES[style].responseHeader + entry.output;
}

/**
 * The book's response extraction for text generated after `formatPrompt(...)`: drop the response tag and
 * surrounding whitespace (`generated_text[len(input_text):].replace("### Response:", "").strip()`).
 */
export function extractResponse(continuation: string, style: PromptStyle = DEFAULT_PROMPT_STYLE): string {
  return continuation.split(STYLES[style].responseTag).join("").trim();
}
