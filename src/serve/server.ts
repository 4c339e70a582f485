/**
 * `llmctl serve`: one model behind an OpenAI-compatible HTTP API (./openai.ts) and a chat page, on node:http.
 *
 * One model, one generation at a time: requests wait in a first-come, first-served queue, so every client gets
 * its answer. Generation yields to the event loop between tokens (src/generate/generate.ts), so the server keeps
 * accepting connections meanwhile and hears a client that leaves: its generation stops at the next token, or
 * never starts if it was still waiting.
 */
import http from "node:http";
import { randomBytes, timingSafeEqual } from "node:crypto";
import { readFile } from "node:fs/promises";
import type { AddressInfo } from "node:net";
import { LlmctlError, UsageError } from "../errors.js";
import type { GPTModel } from "../model/gpt.js";
import { type PromptStyle } from "../model/model-meta.js";
import type { Tokenizer } from "../tokenizer/index.js";
import { chatPrompt, type ChatFormat } from "../generate/chat-template.js";
import { generateText, type GenerateTextResult } from "../generate/generate-text.js";
import * as api from "./openai.js";

/** The chat page, served at `/` as it is in the package (plain HTML and JS, no build step). */
export const CHAT_PAGE = new URL("../../../assets/chat.html", import.meta.url);

/** Request bodies above this are refused (413): a full 1024-token context is ~10 kB of text. */
export const DEFAULT_MAX_BODY_BYTES = 1 << 20;

/** OpenAI's default max_tokens for /v1/completions */
const COMPLETIONS_DEFAULT_MAX_TOKENS = 16;

export interface ServeOptions {
  gpt: GPTModel;
  tokenizer: Tokenizer;
  /** the id clients name in `model` */
  modelId: string;
  /** an instruction model's prompt style; absent, chat uses the plain template (src/generate/chat-template.ts) */
  promptStyle?: PromptStyle;
  /** the model directory's chat format (`loadChatFormat`: its own chat template); absent, llmctl's with promptStyle */
  chatFormat?: ChatFormat;
  host: string;
  /** 0 picks a free port */
  port: number;
  maxBodyBytes?: number;
  /** one line per finished request (method, path, status, tokens, time, or how it ended early) */
  onLog?: (line: string) => void;
  /** when set, every /v1 request must carry `Authorization: Bearer KEY`, as OpenAI clients send it */
  apiKey?: string;
  /**
   * Web origins whose pages may call the API (CORS). The chat page is served from the API's own origin and needs
   * none; a request from any other page is refused before anything is generated.
   */
  corsOrigins?: string[];
}

export interface RunningServer {
  /** e.g. "http://127.0.0.1:8080/" */
  url: string;
  /** Stop accepting, end the requests in progress (a stream gets an error event, a waiting request a 503). */
  close(): Promise<void>;
}

/** First come, first served: each job runs when the one before it has finished. */
class GenerationQueue {
  private tail: Promise<void> = Promise.resolve();

  run<T>(job: () => Promise<T>): Promise<T> {
    const result = this.tail.then(job);
    this.tail = result.then(
      () => undefined,
      () => undefined,
    );
    return result;
  }
}

/** What a request's generations add up to, for the usage counts and the log line. */
interface Totals {
  promptTokens: number;
  completionTokens: number;
  finish: string[];
}

const shuttingDown = () => new api.ApiError(503, "the server is shutting down");

export async function startServer(opts: ServeOptions): Promise<RunningServer> {
  const { gpt, tokenizer, modelId } = opts;
  const chatFormat = opts.chatFormat ?? ((messages) => chatPrompt(tokenizer, messages, opts.promptStyle));
  const page = await readFile(CHAT_PAGE);
  const maxBody = opts.maxBodyBytes ?? DEFAULT_MAX_BODY_BYTES;
  const context = gpt.config.context_length;
  const created = Math.floor(Date.now() / 1000);
  const queue = new GenerationQueue();
  /** each request's controller (close() aborts them) and the promise that settles when it is answered */
  const inFlight = new Map<AbortController, Promise<void>>();
  let closing = false;

  const checkModel = (model: string) => {
    if (model !== modelId)
      throw new api.ApiError(
        404,
        `the model '${model}' does not exist here; this server has '${modelId}'`,
        "model",
        "model_not_found",
      );
  };

  /** max_tokens as asked, or the endpoint's default; either way within the context */
  const budget = (
    promptParam: "prompt" | "messages",
    promptTokens: number,
    asked: number | undefined,
    fallback: number,
  ): number => {
    if (promptTokens >= context)
      throw new api.ApiError(
        400,
        `the prompt has ${promptTokens} tokens; this model's context is ${context} tokens, and the answer needs room in it`,
        promptParam,
        "context_length_exceeded",
      );
    const room = context - promptTokens;
    if (asked === undefined) return Math.min(fallback, room);
    if (asked > room)
      throw new api.ApiError(
        400,
        `this model's context is ${context} tokens; the prompt has ${promptTokens}, so max_tokens can be at most ${room} (got ${asked})`,
        "max_tokens",
        "context_length_exceeded",
      );
    return asked;
  };

  /** Run one generation in its turn; null when the request was aborted before its turn came. */
  const inTurn = (signal: AbortSignal, job: () => Promise<GenerateTextResult>) =>
    queue.run(async () => (signal.aborted ? null : job()));

  const sampling = (r: api.SamplingRequest, maxNewTokens: number, signal: AbortSignal) => ({
    temperature: r.temperature,
    topK: r.topK,
    topP: r.topP,
    seed: r.seed ?? randomBytes(4).readUInt32LE(0),
    maxNewTokens,
    signal,
  });

  const header = (prefix: string): api.Header => ({
    id: `${prefix}-${randomBytes(12).toString("hex")}`,
    created: Math.floor(Date.now() / 1000),
    model: modelId,
  });

  const startEvents = (res: http.ServerResponse) => {
    res.writeHead(200, {
      "content-type": "text/event-stream; charset=utf-8",
      "cache-control": "no-cache",
      "x-accel-buffering": "no",
    });
    res.flushHeaders();
  };
  const event = (res: http.ServerResponse, data: unknown) => {
    if (!res.destroyed) res.write(`data: ${JSON.stringify(data)}\n\n`);
  };
  const endEvents = (res: http.ServerResponse) => {
    if (!res.destroyed) res.end("data: [DONE]\n\n");
  };

  async function completions(body: unknown, res: http.ServerResponse, signal: AbortSignal, t: Totals) {
    const r = api.parseCompletionRequest(body);
    checkModel(r.model);
    const prompts = r.prompts.map((p) => (typeof p === "string" ? tokenizer.encode(p) : p));
    for (const ids of prompts) {
      const bad = ids.find((id) => !(Number.isInteger(id) && id >= 0 && id < tokenizer.vocabSize));
      if (bad !== undefined)
        throw new api.ApiError(
          400,
          Number.isInteger(bad)
            ? `token id ${bad} is outside the vocabulary (0..${tokenizer.vocabSize - 1})`
            : `token id ${bad} is not an integer`,
          "prompt",
        );
    }
    const limits = prompts.map((ids) => budget("prompt", ids.length, r.maxTokens, COMPLETIONS_DEFAULT_MAX_TOKENS));
    const h = header("cmpl");
    const withUsage = r.includeUsage ? { usage: null } : {};
    if (r.stream) startEvents(res);
    const choices: { text: string; finish_reason: api.ApiFinishReason }[] = [];
    for (const [index, ids] of prompts.entries()) {
      const g = await inTurn(signal, () =>
        generateText(gpt, tokenizer, ids, {
          ...sampling(r, limits[index], signal),
          stop: r.stop,
          onText: r.stream
            ? (text) => event(res, { ...api.completionChunk(h, index, text, null), ...withUsage })
            : undefined,
        }),
      );
      if (!g) return;
      t.promptTokens += ids.length;
      t.completionTokens += g.tokens;
      if (g.finishReason === "aborted") return;
      t.finish.push(g.finishReason);
      if (r.stream) event(res, { ...api.completionChunk(h, index, "", g.finishReason), ...withUsage });
      choices.push({ text: g.text, finish_reason: g.finishReason });
    }
    const u = api.usage(t.promptTokens, t.completionTokens);
    if (!r.stream) return sendJson(res, 200, api.completion(h, choices, u));
    if (r.includeUsage) event(res, api.usageChunk(h, "text_completion", u));
    endEvents(res);
  }

  async function chatCompletions(body: unknown, res: http.ServerResponse, signal: AbortSignal, t: Totals) {
    const r = api.parseChatRequest(body);
    checkModel(r.model);
    const prompt = chatFormat(r.messages);
    const maxNewTokens = budget("messages", prompt.ids.length, r.maxTokens, context);
    const h = header("chatcmpl");
    const withUsage = r.includeUsage ? { usage: null } : {};
    if (r.stream) startEvents(res);
    const g = await inTurn(signal, () => {
      if (r.stream) event(res, { ...api.chatChunk(h, { role: "assistant", content: "" }, null), ...withUsage });
      return generateText(gpt, tokenizer, prompt.ids, {
        ...sampling(r, maxNewTokens, signal),
        stop: [...prompt.stop, ...r.stop],
        stopIds: prompt.stopIds,
        trimStart: true,
        onText: r.stream
          ? (content) => event(res, { ...api.chatChunk(h, { content }, null), ...withUsage })
          : undefined,
      });
    });
    if (!g) return;
    t.promptTokens = prompt.ids.length;
    t.completionTokens = g.tokens;
    if (g.finishReason === "aborted") return;
    t.finish.push(g.finishReason);
    const u = api.usage(t.promptTokens, t.completionTokens);
    if (!r.stream) return sendJson(res, 200, api.chatCompletion(h, g.text, g.finishReason, u));
    event(res, { ...api.chatChunk(h, {}, g.finishReason), ...withUsage });
    if (r.includeUsage) event(res, api.usageChunk(h, "chat.completion.chunk", u));
    endEvents(res);
  }

  const routes: Record<string, Record<string, (req: http.IncomingMessage, res: http.ServerResponse) => unknown>> = {
    "/": {
      GET: (_req, res) =>
        res
          .writeHead(200, { "content-type": "text/html; charset=utf-8", "x-content-type-options": "nosniff" })
          .end(page),
    },
    "/v1/models": {
      GET: (_req, res) => sendJson(res, 200, { object: "list", data: [api.modelObject(modelId, created)] }),
    },
    [`/v1/models/${modelId}`]: { GET: (_req, res) => sendJson(res, 200, api.modelObject(modelId, created)) },
  };

  async function handle(req: http.IncomingMessage, res: http.ServerResponse, t: Totals, signal: AbortSignal) {
    const path = new URL(req.url ?? "/", "http://localhost").pathname;
    if (path.startsWith("/v1/")) {
      if (!crossOriginAllowed(req, res, opts.corsOrigins ?? [])) {
        throw new api.ApiError(
          403,
          `requests from the web page at ${req.headers.origin} are not allowed`,
          null,
          "origin_not_allowed",
        );
      }
      if (req.method === "OPTIONS") return res.writeHead(204).end(); // a CORS preflight, answered above
      if (opts.apiKey !== undefined && !bearerMatches(req.headers.authorization, opts.apiKey)) {
        throw new api.ApiError(
          401,
          "missing or wrong API key: send the header Authorization: Bearer KEY (the key given to llmctl serve --api-key)",
          null,
          "invalid_api_key",
        );
      }
    }
    const generation = { "/v1/completions": completions, "/v1/chat/completions": chatCompletions }[path];
    if (generation) {
      if (req.method !== "POST") throw methodNotAllowed(req, path, ["POST"], res);
      if (closing) throw shuttingDown();
      return generation(await readJson(req, maxBody, signal), res, signal, t);
    }
    const route = routes[path];
    if (!route) {
      if (path.startsWith("/v1/models/"))
        throw new api.ApiError(
          404,
          `the model '${decodeURIComponent(path.slice("/v1/models/".length))}' does not exist here; this server has '${modelId}'`,
          "model",
          "model_not_found",
        );
      throw new api.ApiError(404, `no such endpoint: ${req.method} ${path} (see docs/serve.md)`, null, "unknown_url");
    }
    const handler = route[req.method ?? ""];
    if (!handler) throw methodNotAllowed(req, path, Object.keys(route), res);
    return handler(req, res);
  }

  const server = http.createServer((req, res) => {
    const started = performance.now();
    const controller = new AbortController();
    let clientLeft = false;
    res.on("close", () => {
      if (!res.writableFinished) {
        clientLeft = true;
        controller.abort();
      }
    });
    const t: Totals = { promptTokens: 0, completionTokens: 0, finish: [] };
    const answered = handle(req, res, t, controller.signal)
      .catch((err: unknown) => {
        const e = toApiError(err, closing);
        if (e.status === 500) opts.onLog?.(`internal error: ${(err as Error)?.stack ?? String(err)}`);
        if (res.headersSent) {
          // mid-stream the status is already 200, so the error travels as an event
          event(res, e.body());
          res.end();
        } else if (!res.destroyed) {
          sendJson(res, e.status, e.body());
        }
      })
      .then(() => {
        if (controller.signal.aborted && !clientLeft && !res.writableEnded) {
          // stopped by close(): finish the answer so the client is not left waiting
          if (res.headersSent) {
            event(res, shuttingDown().body());
            res.end();
          } else sendJson(res, 503, shuttingDown().body());
        }
        const tokens = t.finish.length > 0 || clientLeft ? ` ${t.promptTokens}+${t.completionTokens} tokens` : "";
        const how = clientLeft
          ? ` client disconnected after ${t.completionTokens} tokens`
          : t.finish.length > 0
            ? ` finish ${t.finish.join(",")}`
            : "";
        const seconds = ((performance.now() - started) / 1000).toFixed(2);
        opts.onLog?.(`${req.method} ${req.url} ${res.statusCode}${tokens}${how} ${seconds} s`);
      })
      .finally(() => inFlight.delete(controller));
    inFlight.set(controller, answered);
  });

  await new Promise<void>((resolve, reject) => {
    server.once("error", (err: NodeJS.ErrnoException) => reject(listenError(err, opts.host, opts.port)));
    server.listen(opts.port, opts.host, () => resolve());
  });
  const address = server.address() as AddressInfo;
  const host = address.family === "IPv6" ? `[${address.address}]` : address.address;

  return {
    url: `http://${host}:${address.port}/`,
    close: async () => {
      closing = true;
      const closed = new Promise<void>((resolve) => server.close(() => resolve()));
      server.closeIdleConnections();
      for (const c of inFlight.keys()) c.abort();
      await Promise.all(inFlight.values()); // each ends at its next token, or at once if it was waiting
      server.closeAllConnections();
      await closed;
    },
  };
}

/** `Authorization: Bearer KEY`, compared in constant time. */
function bearerMatches(header: string | undefined, key: string): boolean {
  const given = Buffer.from(/^Bearer (.+)$/.exec(header ?? "")?.[1] ?? "");
  const want = Buffer.from(key);
  return given.length === want.length && timingSafeEqual(given, want);
}

/**
 * A browser sends Origin with requests from web pages. The API's own origin (the chat page) and the listed ones
 * are allowed, and get the CORS headers a browser needs; any other page is refused, so that a site the user
 * visits cannot make the model generate (a form POST needs no CORS preflight). Clients that are not browsers
 * send no Origin.
 */
function crossOriginAllowed(req: http.IncomingMessage, res: http.ServerResponse, allowed: string[]): boolean {
  const origin = req.headers.origin;
  if (origin === undefined) return true;
  let host: string;
  try {
    host = new URL(origin).host;
  } catch {
    return false;
  }
  if (host === req.headers.host) return true;
  if (!allowed.includes(origin) && !allowed.includes("*")) return false;
  res.setHeader("access-control-allow-origin", allowed.includes("*") ? "*" : origin);
  res.setHeader("vary", "Origin");
  res.setHeader("access-control-allow-methods", "GET, POST, OPTIONS");
  res.setHeader("access-control-allow-headers", "authorization, content-type");
  return true;
}

function sendJson(res: http.ServerResponse, status: number, body: unknown, headers: http.OutgoingHttpHeaders = {}) {
  res.writeHead(status, { "content-type": "application/json", ...headers }).end(JSON.stringify(body));
}

function methodNotAllowed(req: http.IncomingMessage, path: string, allowed: string[], res: http.ServerResponse) {
  res.setHeader("allow", allowed.join(", "));
  return new api.ApiError(
    405,
    `${req.method} is not allowed on ${path}; use ${allowed.join(" or ")}`,
    null,
    "method_not_allowed",
  );
}

function toApiError(err: unknown, closing: boolean): api.ApiError {
  if (err instanceof api.ApiError) return err;
  if (err instanceof UsageError) return new api.ApiError(400, err.message);
  if (closing) return shuttingDown();
  const message = err instanceof LlmctlError ? err.message : `internal error: ${(err as Error)?.message ?? err}`;
  return new api.ApiError(500, message);
}

/**
 * The body as JSON. One over `limit` bytes is refused (413) once it has arrived, read but not kept: answering
 * before a client has finished sending makes many clients see a reset connection instead of the answer.
 */
function readJson(req: http.IncomingMessage, limit: number, signal: AbortSignal): Promise<unknown> {
  return new Promise((resolve, reject) => {
    const chunks: Buffer[] = [];
    let size = 0;
    req.on("data", (chunk: Buffer) => {
      size += chunk.length;
      if (size <= limit) chunks.push(chunk);
    });
    req.on("error", reject);
    signal.addEventListener("abort", () => reject(shuttingDown()), { once: true });
    req.on("end", () => {
      if (size > limit)
        return reject(
          new api.ApiError(
            413,
            `the request body is ${size} bytes, over this server's limit of ${limit}`,
            null,
            "request_too_large",
          ),
        );
      try {
        resolve(JSON.parse(Buffer.concat(chunks).toString("utf8")));
      } catch (err) {
        reject(
          new api.ApiError(400, `the request body is not valid JSON (${(err as Error).message})`, null, "invalid_json"),
        );
      }
    });
  });
}

function listenError(err: NodeJS.ErrnoException, host: string, port: number): LlmctlError {
  if (err.code === "EADDRINUSE")
    return new UsageError(
      `port ${port} on ${host} is already in use`,
      "pick another with --port, or --port 0 for a free one",
    );
  if (err.code === "EACCES")
    return new UsageError(`not allowed to listen on port ${port}`, "use a port above 1023, or --port 0 for a free one");
  if (err.code === "EADDRNOTAVAIL" || err.code === "ENOTFOUND")
    return new UsageError(
      `cannot listen on host ${host} (${err.code})`,
      "use an address of this machine, e.g. 127.0.0.1",
    );
  return new LlmctlError(`cannot listen on ${host}:${port}: ${err.message}`);
}
