/**
 * A minimal client for Ollama's chat API (https://github.com/ollama/ollama/blob/main/docs/api.md): POST /api/chat,
 * reply streamed as newline-delimited JSON, each line carrying a piece of `message.content`, the last `done: true`.
 * Speaks plain HTTP through node:http so every failure mode (refused, reset, cut off mid-stream) is told apart.
 */
import http from "node:http";
import https from "node:https";
import { NetworkError, UsageError } from "../errors.js";

export const DEFAULT_JUDGE_URL = "http://localhost:11434";
export const DEFAULT_JUDGE_MODEL = "llama3";

/** The book's options for reproducible judging (chapter 7 `query_model`). */
export const JUDGE_OPTIONS = { seed: 123, temperature: 0, num_ctx: 2048 } as const;

export interface OllamaClientOptions {
  url?: string;
  model?: string;
  /** attempts per request for transient failures (dropped connection, 5xx); at least 1 */
  attempts?: number;
  /** first retry delay in ms, doubled each retry */
  retryDelayMs?: number;
  /** give up on a request that sends nothing for this long */
  timeoutMs?: number;
  /** give up on a request whose whole reply takes longer than this (a judge trickling bytes never falls silent) */
  maxTimeMs?: number;
}

/** The longest reply kept (a judge's is a score and a sentence or two); past it the server is not sane. */
export const MAX_REPLY_BYTES = 1 << 20;

/** A failure worth retrying: the server was reachable but the exchange broke. */
class TransientError extends Error {}

interface ChatLine {
  message?: { content?: unknown };
  done?: unknown;
  error?: unknown;
}

export class OllamaClient {
  readonly url: URL;
  readonly model: string;
  private readonly attempts: number;
  private readonly retryDelayMs: number;
  private readonly timeoutMs: number;
  private readonly maxTimeMs: number;

  constructor(opts: OllamaClientOptions = {}) {
    const base = opts.url ?? DEFAULT_JUDGE_URL;
    try {
      this.url = new URL("/api/chat", base);
    } catch {
      throw new UsageError(`'${base}' is not a URL`, `pass --judge-url like ${DEFAULT_JUDGE_URL}`);
    }
    if (this.url.protocol !== "http:" && this.url.protocol !== "https:") {
      throw new UsageError(`'${base}' is not an http(s) URL`, `pass --judge-url like ${DEFAULT_JUDGE_URL}`);
    }
    this.model = opts.model ?? DEFAULT_JUDGE_MODEL;
    this.attempts = Math.max(1, opts.attempts ?? 3);
    this.retryDelayMs = opts.retryDelayMs ?? 500;
    this.timeoutMs = opts.timeoutMs ?? 300_000;
    this.maxTimeMs = opts.maxTimeMs ?? 900_000;
  }

  /** Send one user message; resolve with the whole reply text. Retries transient failures with backoff. */
  async chat(content: string): Promise<string> {
    for (let attempt = 1; ; attempt++) {
      try {
        return await this.chatOnce(content);
      } catch (err) {
        if (!(err instanceof TransientError)) throw err;
        if (attempt >= this.attempts) {
          throw new NetworkError(
            `the judge at ${this.url.origin} failed ${this.attempts} times: ${err.message}`,
            "check the Ollama server's log, then run the evaluation again",
          );
        }
        await new Promise((r) => setTimeout(r, this.retryDelayMs * 2 ** (attempt - 1)));
      }
    }
  }

  private chatOnce(content: string): Promise<string> {
    const body = JSON.stringify({
      model: this.model,
      messages: [{ role: "user", content }],
      options: JUDGE_OPTIONS,
    });
    const transport = this.url.protocol === "https:" ? https : http;
    return new Promise<string>((resolve, reject) => {
      let settled = false;
      const total = setTimeout(
        () => fail(new TransientError(`the reply took longer than ${this.maxTimeMs / 1000} s in all`)),
        this.maxTimeMs,
      );
      const fail = (err: Error) => {
        clearTimeout(total);
        if (settled) return;
        settled = true;
        req.destroy();
        reject(err);
      };
      const req = transport.request(
        this.url,
        {
          method: "POST",
          headers: { "content-type": "application/json", "content-length": Buffer.byteLength(body) },
          timeout: this.timeoutMs,
        },
        (res) => {
          res.setEncoding("utf8");
          const status = res.statusCode ?? 0;
          if (status !== 200) {
            let text = "";
            res.on("data", (d: string) => {
              if (text.length < 4096) text += d;
            });
            res.on("end", () => fail(this.httpError(status, text)));
            res.on("error", () => fail(this.httpError(status, text)));
            return;
          }
          let buffered = "";
          let reply = "";
          let done = false;
          const takeLine = (line: string) => {
            if (line.trim() === "" || done) return;
            let parsed: ChatLine;
            try {
              parsed = JSON.parse(line) as ChatLine;
            } catch {
              throw new NetworkError(
                `the server at ${this.url.origin} did not answer in Ollama's format (got ${JSON.stringify(line.slice(0, 80))})`,
                "check that --judge-url points at an Ollama server",
              );
            }
            if (parsed.error !== undefined) throw this.ollamaError(String(parsed.error));
            const piece = parsed.message?.content;
            if (typeof piece === "string") reply += piece;
            else if (parsed.done !== true) {
              throw new NetworkError(
                `the server at ${this.url.origin} sent a chat line without message.content`,
                "check that --judge-url points at an Ollama server",
              );
            }
            if (parsed.done === true) done = true;
          };
          res.on("data", (chunk: string) => {
            // NDJSON lines may be split across chunks, or several may share one
            buffered += chunk;
            if (buffered.length + reply.length > MAX_REPLY_BYTES) {
              fail(
                new NetworkError(
                  `the server at ${this.url.origin} sent more than ${MAX_REPLY_BYTES / 2 ** 20} MiB for one reply`,
                  "check that --judge-url points at an Ollama server",
                ),
              );
              return;
            }
            let nl: number;
            try {
              while ((nl = buffered.indexOf("\n")) >= 0) {
                takeLine(buffered.slice(0, nl));
                buffered = buffered.slice(nl + 1);
              }
            } catch (err) {
              fail(err as Error);
            }
          });
          res.on("end", () => {
            try {
              takeLine(buffered);
            } catch (err) {
              fail(err as Error);
              return;
            }
            if (!done) fail(new TransientError("the reply ended before Ollama said it was done"));
            else if (!settled) {
              settled = true;
              clearTimeout(total);
              resolve(reply);
            }
          });
          // the socket closing mid-stream surfaces here ("aborted") rather than as 'end'
          res.on("error", (err) => fail(new TransientError(`the connection dropped mid-reply (${err.message})`)));
          res.on("aborted", () => fail(new TransientError("the connection dropped mid-reply")));
        },
      );
      req.on("timeout", () => fail(new TransientError(`no reply within ${this.timeoutMs / 1000} s`)));
      req.on("error", (err: NodeJS.ErrnoException) => fail(this.connectError(err)));
      req.end(body);
    });
  }

  private connectError(err: NodeJS.ErrnoException): Error {
    if (err.code === "ECONNREFUSED") {
      return new NetworkError(
        `nothing is listening at ${this.url.origin}`,
        "is Ollama running? start it with `ollama serve`",
      );
    }
    if (err.code === "ENOTFOUND" || err.code === "EAI_AGAIN") {
      return new NetworkError(`cannot resolve the host of ${this.url.origin}`, "check --judge-url");
    }
    // reset / hang up / pipe: the server was there but the exchange broke
    return new TransientError(err.code ? `${err.code}: ${err.message}` : err.message);
  }

  private ollamaError(message: string): Error {
    if (/not found/i.test(message) && /model/i.test(message)) {
      return new NetworkError(
        `the judge model '${this.model}' is not available: ${message}`,
        `run \`ollama pull ${this.model}\``,
      );
    }
    return new NetworkError(`Ollama at ${this.url.origin} reported: ${message}`);
  }

  private httpError(status: number, body: string): Error {
    let detail = body.trim().slice(0, 200);
    try {
      const parsed = JSON.parse(body) as { error?: unknown };
      if (parsed.error !== undefined) detail = String(parsed.error);
    } catch {
      // not JSON: keep the raw text
    }
    if (status === 404) {
      // Ollama answers 404 for a model that was never pulled; a wrong path also 404s
      return new NetworkError(
        `the judge model '${this.model}' was not found at ${this.url.origin}${detail ? ` (${detail})` : ""}`,
        `run \`ollama pull ${this.model}\` (or check --judge-url)`,
      );
    }
    if (status >= 500 || status === 429) return new TransientError(`HTTP ${status}${detail ? `: ${detail}` : ""}`);
    return new NetworkError(
      `the judge at ${this.url.origin} answered HTTP ${status}${detail ? `: ${detail}` : ""}`,
      "check --judge-url and --judge-model",
    );
  }
}
