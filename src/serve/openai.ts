/**
 * The OpenAI API as llmctl serves it (docs/serve.md): request bodies checked into plain options, and the
 * response, chunk and error objects in OpenAI's shapes, so its clients read them unchanged. A field llmctl cannot
 * honour is refused with a 400 naming it, never silently ignored; fields that change nothing (user, metadata,
 * store, ...) are accepted.
 */
import type { ChatMessage, ChatRole } from "../generate/chat-template.js";
import type { FinishReason } from "../generate/generate-text.js";

/** An answer other than 200: OpenAI's `{"error": {"message", "type", "param", "code"}}` with an HTTP status. */
export class ApiError extends Error {
  constructor(
    readonly status: number,
    message: string,
    readonly param: string | null = null,
    readonly code: string | null = null,
  ) {
    super(message);
    this.name = "ApiError";
  }

  get type(): string {
    return this.status >= 500 ? "server_error" : "invalid_request_error";
  }

  body(): { error: { message: string; type: string; param: string | null; code: string | null } } {
    return { error: { message: this.message, type: this.type, param: this.param, code: this.code } };
  }
}

export interface SamplingRequest {
  model: string;
  /** absent: the endpoint's default (bounded by the context) */
  maxTokens?: number;
  temperature: number;
  topP: number | null;
  topK: number | null;
  /** absent: a fresh random seed per request */
  seed?: number;
  stop: string[];
  stream: boolean;
  includeUsage: boolean;
}

export interface CompletionRequest extends SamplingRequest {
  /** one generation per prompt, text or token ids */
  prompts: (string | number[])[];
}

export interface ChatRequest extends SamplingRequest {
  messages: ChatMessage[];
}

type Body = Record<string, unknown>;

const bad = (param: string, message: string, code: string | null = null) => new ApiError(400, message, param, code);
const present = (v: unknown) => v !== undefined && v !== null;

/** Fields of OpenAI's API that llmctl does not implement, and the values that ask for nothing (so are accepted). */
const UNSUPPORTED: Record<string, (v: unknown) => boolean> = {
  n: (v) => v === 1,
  best_of: (v) => v === 1,
  echo: (v) => v === false,
  suffix: (v) => v === "",
  logprobs: (v) => v === false || v === 0,
  top_logprobs: (v) => v === 0,
  presence_penalty: (v) => v === 0,
  frequency_penalty: (v) => v === 0,
  logit_bias: (v) => typeof v === "object" && Object.keys(v as object).length === 0,
  tools: (v) => Array.isArray(v) && v.length === 0,
  tool_choice: (v) => v === "none",
  functions: (v) => Array.isArray(v) && v.length === 0,
  function_call: (v) => v === "none",
  response_format: (v) => typeof v === "object" && (v as Body).type === "text",
  modalities: (v) => Array.isArray(v) && v.length === 1 && v[0] === "text",
  audio: () => false,
  prediction: () => false,
};

function asBody(raw: unknown): Body {
  if (typeof raw !== "object" || raw === null || Array.isArray(raw))
    throw new ApiError(400, "the request body must be a JSON object");
  return raw as Body;
}

function number(body: Body, name: string, check: (v: number) => boolean, range: string): number | undefined {
  const v = body[name];
  if (!present(v)) return undefined;
  if (typeof v !== "number" || !check(v)) throw bad(name, `${name} must be ${range}, got ${JSON.stringify(v)}`);
  return v;
}

const positiveInteger = (v: number) => Number.isSafeInteger(v) && v >= 1;

function parseSampling(body: Body, maxTokensFields: string[]): SamplingRequest {
  for (const [name, isDefault] of Object.entries(UNSUPPORTED)) {
    if (present(body[name]) && !isDefault(body[name]))
      throw bad(name, `${name} is not supported by llmctl serve (see docs/serve.md for the fields it takes)`);
  }
  if (typeof body.model !== "string" || body.model === "")
    throw bad("model", "model is required: one of the ids GET /v1/models lists");
  let maxTokens: number | undefined;
  for (const name of maxTokensFields) {
    maxTokens ??= number(body, name, positiveInteger, "an integer ≥ 1");
  }
  const temperature = number(body, "temperature", (v) => v >= 0 && v <= 2, "a number from 0 to 2") ?? 1;
  const topP = number(body, "top_p", (v) => v > 0 && v <= 1, "a number in (0, 1]") ?? null;
  const topK = number(body, "top_k", positiveInteger, "an integer ≥ 1") ?? null;
  const seed = number(body, "seed", Number.isSafeInteger, "an integer");

  let stop: string[] = [];
  if (typeof body.stop === "string") stop = [body.stop];
  else if (Array.isArray(body.stop)) stop = body.stop as string[];
  else if (present(body.stop)) throw bad("stop", "stop must be a string or an array of up to 4 strings");
  if (stop.length > 4 || stop.some((s) => typeof s !== "string" || s === ""))
    throw bad("stop", "stop must be a string or an array of up to 4 non-empty strings");

  const stream = body.stream ?? false;
  if (typeof stream !== "boolean") throw bad("stream", "stream must be true or false");
  let includeUsage = false;
  if (present(body.stream_options)) {
    if (!stream) throw bad("stream_options", "stream_options is only allowed with stream: true");
    const o = body.stream_options as Body;
    if (typeof o !== "object" || (present(o.include_usage) && typeof o.include_usage !== "boolean"))
      throw bad("stream_options", 'stream_options must be an object such as {"include_usage": true}');
    includeUsage = o.include_usage === true;
  }
  return { model: body.model, maxTokens, temperature, topP, topK, seed, stop, stream, includeUsage };
}

const isTokenArray = (v: unknown): v is number[] =>
  Array.isArray(v) && v.length > 0 && v.every((x) => typeof x === "number");

export function parseCompletionRequest(raw: unknown): CompletionRequest {
  const body = asBody(raw);
  const sampling = parseSampling(body, ["max_tokens"]);
  const p = body.prompt;
  let prompts: (string | number[])[];
  if (typeof p === "string" || isTokenArray(p)) prompts = [p];
  else if (Array.isArray(p) && p.length > 0 && p.every((x) => typeof x === "string" || isTokenArray(x)))
    prompts = p as (string | number[])[];
  else
    throw bad(
      "prompt",
      "prompt must be a string, an array of token ids, or a non-empty array of either (one per choice)",
    );
  if (prompts.some((x) => x.length === 0)) throw bad("prompt", "the prompt is empty: give at least one token of text");
  return { ...sampling, prompts };
}

const ROLES: Record<string, ChatRole> = { system: "system", developer: "system", user: "user", assistant: "assistant" };

export function parseChatRequest(raw: unknown): ChatRequest {
  const body = asBody(raw);
  const sampling = parseSampling(body, ["max_completion_tokens", "max_tokens"]);
  if (!Array.isArray(body.messages) || body.messages.length === 0)
    throw bad("messages", "messages must be a non-empty array of {role, content}");
  const messages = body.messages.map((m: unknown, i): ChatMessage => {
    const at = `messages[${i}]`;
    if (typeof m !== "object" || m === null) throw bad(at, `${at} must be an object {role, content}`);
    const { role, content } = m as Body;
    const chatRole = typeof role === "string" ? ROLES[role] : undefined;
    if (!chatRole)
      throw bad(`${at}.role`, `${at}.role must be system, developer, user or assistant, got ${JSON.stringify(role)}`);
    if (typeof content === "string") return { role: chatRole, content };
    if (!Array.isArray(content))
      throw bad(`${at}.content`, `${at}.content must be a string or an array of {"type": "text", "text": ...} parts`);
    const texts = content.map((part: unknown, j) => {
      const p = part as Body;
      if (typeof p !== "object" || p === null || p.type !== "text" || typeof p.text !== "string")
        throw bad(`${at}.content[${j}]`, `${at}.content[${j}]: only {"type": "text", "text": ...} parts are supported`);
      return p.text;
    });
    return { role: chatRole, content: texts.join("") };
  });
  return { ...sampling, messages };
}

export interface Usage {
  prompt_tokens: number;
  completion_tokens: number;
  total_tokens: number;
}

export const usage = (prompt: number, completion: number): Usage => ({
  prompt_tokens: prompt,
  completion_tokens: completion,
  total_tokens: prompt + completion,
});

/** What a response or chunk says about itself: id, creation time (unix seconds) and model. */
export interface Header {
  id: string;
  created: number;
  model: string;
}

export type ApiFinishReason = Exclude<FinishReason, "aborted">;

export const completion = (h: Header, choices: { text: string; finish_reason: ApiFinishReason }[], u: Usage) => ({
  ...h,
  object: "text_completion",
  choices: choices.map((c, index) => ({ index, text: c.text, logprobs: null, finish_reason: c.finish_reason })),
  usage: u,
});

export const completionChunk = (h: Header, index: number, text: string, finish: ApiFinishReason | null) => ({
  ...h,
  object: "text_completion",
  choices: [{ index, text, logprobs: null, finish_reason: finish }],
});

export const chatCompletion = (h: Header, content: string, finish: ApiFinishReason, u: Usage) => ({
  ...h,
  object: "chat.completion",
  choices: [
    { index: 0, message: { role: "assistant", content, refusal: null }, logprobs: null, finish_reason: finish },
  ],
  usage: u,
});

export const chatChunk = (
  h: Header,
  delta: { role?: "assistant"; content?: string },
  finish: ApiFinishReason | null,
) => ({
  ...h,
  object: "chat.completion.chunk",
  choices: [{ index: 0, delta, logprobs: null, finish_reason: finish }],
});

/** The closing chunk of a stream asked for with stream_options.include_usage: no choices, the counts. */
export const usageChunk = (h: Header, object: "text_completion" | "chat.completion.chunk", u: Usage) => ({
  ...h,
  object,
  choices: [],
  usage: u,
});

export const modelObject = (id: string, created: number) => ({ id, object: "model", created, owned_by: "llmctl" });
