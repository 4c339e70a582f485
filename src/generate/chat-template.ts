/**
 * A conversation as the prompt for the model's next reply (docs/serve.md, "Chat templates").
 *
 * - An instruction model (its model directory has `prompt_style`) sees what it was finetuned on: each earlier
 *   exchange is one training example (the style's prompt, response header and answer) ending in <|endoftext|>,
 *   then the last user message as the style's prompt and response header.
 * - A base model gets the plain template: "User: …\n" and "Assistant: …\n" lines, ending with "Assistant:", and
 *   stops when it starts the next "\nUser:" line.
 *
 * System messages are a paragraph (text + "\n\n") where they stand. Message text is always ordinary text: an
 * "<|endoftext|>" typed by a user does not become the special token.
 *
 * A model directory that holds a Hugging Face chat template (chat_template.jinja, or tokenizer_config.json's) gets
 * that instead (`modelChatPrompt`), rendered and encoded as transformers' apply_chat_template does.
 */
import { existsSync } from "node:fs";
import { join } from "node:path";
import { FileFormatError, LlmctlError, UsageError } from "../errors.js";
import {
  CHAT_TEMPLATE_FILE,
  TOKENIZER_CONFIG_FILE,
  loadHfChatTemplate,
  type HfChatMessage,
  type HfChatTemplate,
} from "../tokenizer/hf-chat-template.js";
import { readTextFile } from "../formats/file.js";
import { formatExample, formatPrompt, responseHeader } from "./prompt-style.js";
import { type PromptStyle } from "../model/model-meta.js";
import type { Tokenizer } from "../tokenizer/index.js";

export type ChatRole = "system" | "user" | "assistant";

export interface ChatMessage {
  role: ChatRole;
  content: string;
}

export interface ChatPrompt {
  /** the prompt as the model sees it, <|endoftext|> written out */
  text: string;
  ids: number[];
  /** stop strings the reply must end before */
  stop: string[];
  /**
   * ids that end the reply (not part of it) besides the tokenizer's end-of-text: with a Hugging Face chat template,
   * every eos_token_id of generation_config.json and the template's end-of-turn token (`modelStopIds`)
   */
  stopIds: number[];
}

/** A model directory's way of turning a conversation into its prompt, loaded once (`loadChatFormat`). */
export type ChatFormat = (messages: readonly ChatMessage[]) => ChatPrompt;

export const PLAIN_USER = "User:";
export const PLAIN_ASSISTANT = "Assistant:";

export function chatPrompt(tokenizer: Tokenizer, messages: readonly ChatMessage[], style?: PromptStyle): ChatPrompt {
  if (messages.length === 0) throw new UsageError("the conversation has no messages", "send at least one user message");
  if (messages[messages.length - 1].role !== "user") {
    throw new UsageError(
      `the last message is the ${messages[messages.length - 1].role}'s; the model answers the user's`,
      "end the messages with a user message",
    );
  }
  const segments = style ? styledSegments(messages, style) : [plainText(messages)];
  const ids: number[] = [];
  segments.forEach((segment, i) => {
    if (i > 0) ids.push(tokenizer.endOfTextId);
    for (const id of tokenizer.encode(segment, { allowedSpecial: [] })) ids.push(id);
  });
  return { text: segments.join(tokenizer.endOfText), ids, stop: style ? [] : [`\n${PLAIN_USER}`], stopIds: [] };
}

function plainText(messages: readonly ChatMessage[]): string {
  let text = "";
  for (const m of messages) {
    if (m.role === "system") text += `${m.content}\n\n`;
    else text += `${m.role === "user" ? PLAIN_USER : PLAIN_ASSISTANT} ${m.content}\n`;
  }
  return text + PLAIN_ASSISTANT;
}

/** one segment per exchange; consecutive messages of one role are joined as paragraphs */
function styledSegments(messages: readonly ChatMessage[], style: PromptStyle): string[] {
  interface Exchange {
    system: string;
    instruction: string[];
    output: string[];
  }
  const exchanges: Exchange[] = [];
  let system = "";
  for (const m of messages) {
    if (m.role === "system") {
      system += `${m.content}\n\n`;
      continue;
    }
    let last = exchanges[exchanges.length - 1];
    if (!last || (m.role === "user" && last.output.length > 0)) {
      last = { system, instruction: [], output: [] };
      exchanges.push(last);
      system = "";
    }
    const part = m.role === "user" ? last.instruction : last.output;
    if (system) part.push(system.trimEnd()); // a system message inside an exchange stays where it was said
    system = "";
    part.push(m.content);
  }
  return exchanges.map((e, i) => {
    const entry = { instruction: e.instruction.join("\n\n"), input: "" };
    return i < exchanges.length - 1
      ? e.system + formatExample({ ...entry, output: e.output.join("\n\n") }, style)
      : e.system + formatPrompt(entry, style) + responseHeader(style);
  });
}

/** Whether a model directory has a Hugging Face chat template of its own. */
export async function hasHfChatTemplate(dir: string): Promise<boolean> {
  if (existsSync(join(dir, CHAT_TEMPLATE_FILE))) return true;
  const config = join(dir, TOKENIZER_CONFIG_FILE);
  return existsSync(config) && /"chat_template"\s*:/.test(await readTextFile(config));
}

/**
 * How a model directory's conversations become prompts: its Hugging Face chat template when it has one (the text
 * encoded with the special tokens it writes, nothing added: transformers' apply_chat_template(tokenize=True); the
 * reply ends at `modelStopIds`), else llmctl's (`chatPrompt`).
 */
export async function loadChatFormat(dir: string, tokenizer: Tokenizer, style?: PromptStyle): Promise<ChatFormat> {
  if (!(await hasHfChatTemplate(dir))) return (messages) => chatPrompt(tokenizer, messages, style);
  const template = await loadHfChatTemplate(dir);
  const stopIds = await modelStopIds(dir, tokenizer, template);
  return (messages) => {
    const text = template.render(messages as readonly HfChatMessage[], { addGenerationPrompt: true });
    return { text, ids: tokenizer.encode(text), stop: [], stopIds };
  };
}

/** The prompt for the model's reply to `messages` (`loadChatFormat`, for one conversation). */
export async function modelChatPrompt(
  dir: string,
  tokenizer: Tokenizer,
  messages: readonly ChatMessage[],
  style?: PromptStyle,
): Promise<ChatPrompt> {
  return (await loadChatFormat(dir, tokenizer, style))(messages);
}

/** Where a Hugging Face model names the ids its generation stops at (eos_token_id: one id or a list). */
export const GENERATION_CONFIG_FILE = "generation_config.json";

/**
 * The ids a reply in the template ends at, as transformers' generate stops: every eos_token_id of the model
 * directory's generation_config.json, and the special token the template writes right after an assistant's
 * message (Llama 3's <|eot_id|>, Qwen's <|im_end|>), which a generation_config.json may leave out.
 */
export async function modelStopIds(dir: string, tokenizer: Tokenizer, template: HfChatTemplate): Promise<number[]> {
  const ids = new Set(await generationConfigEosIds(dir, tokenizer.vocabSize));
  const endOfTurn = templateEndOfTurnId(tokenizer, template);
  if (endOfTurn !== undefined) ids.add(endOfTurn);
  return [...ids];
}

/** generation_config.json's eos_token_id as a list (none when the file or the field is absent). */
export async function generationConfigEosIds(dir: string, vocabSize: number): Promise<number[]> {
  const path = join(dir, GENERATION_CONFIG_FILE);
  if (!existsSync(path)) return [];
  let config: unknown;
  try {
    config = JSON.parse(await readTextFile(path));
  } catch (err) {
    if (err instanceof LlmctlError) throw err;
    throw new FileFormatError(`${path}: not valid JSON (${(err as Error).message.split("\n")[0]})`, "re-create it");
  }
  const eos = (config as { eos_token_id?: unknown } | null)?.eos_token_id;
  if (eos === undefined || eos === null) return [];
  const ids = Array.isArray(eos) ? eos : [eos];
  for (const id of ids) {
    if (!(Number.isInteger(id) && (id as number) >= 0 && (id as number) < vocabSize))
      throw new FileFormatError(
        `${path}: eos_token_id ${JSON.stringify(eos)} is not a token id of the vocabulary (0..${vocabSize - 1})`,
        "give an id or a list of ids",
      );
  }
  return ids as number[];
}

/**
 * The special token the template writes right after an assistant's message, found by rendering one exchange:
 * the text after the reply starts with it when encoding it with special tokens gives a different first id than
 * encoding it as ordinary text. Undefined when the template writes none (or refuses the exchange).
 */
function templateEndOfTurnId(tokenizer: Tokenizer, template: HfChatTemplate): number | undefined {
  const reply = "Reply-to-find-the-end-of-turn";
  let text: string;
  try {
    text = template.render(
      [
        { role: "user", content: "Question" },
        { role: "assistant", content: reply },
      ],
      { addGenerationPrompt: false },
    );
  } catch {
    return undefined;
  }
  const at = text.lastIndexOf(reply);
  const after = at < 0 ? "" : text.slice(at + reply.length);
  if (after === "") return undefined;
  const special = tokenizer.encode(after)[0];
  return special !== tokenizer.encode(after, { allowedSpecial: [] })[0] ? special : undefined;
}
