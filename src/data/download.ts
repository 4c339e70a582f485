/**
 * The one download function, for datasets and model weights alike: resumable, verified, atomic.
 *
 * Bytes go to `dest + ".part"`. A later call (or a retry after a dropped connection) continues from the
 * part file's size with `Range: bytes=N-`; a server that ignores Range (200) or answers from the wrong
 * offset restarts from zero. Only when size and sha256 match does the part file get renamed onto `dest`,
 * so `dest` either does not exist or is complete and correct — never a corrupt file in the cache.
 *
 * node:http(s) rather than fetch: we ask for `Accept-Encoding: identity` and get raw bytes, so the
 * received count, Content-Length and Range offsets all speak about the same bytes (fetch decompresses
 * transparently, which breaks resuming), and errors keep their codes (ECONNREFUSED, ENOTFOUND, …).
 * `file:` URLs are copied, so a directory mirror goes through the same verification.
 */
import http from "node:http";
import https from "node:https";
import { createHash } from "node:crypto";
import { createReadStream, createWriteStream } from "node:fs";
import { open, rename, rm, stat } from "node:fs/promises";
import { makeDirectory } from "../fs-atomic.js";
import { homedir } from "node:os";
import { dirname, join, resolve } from "node:path";
import { finished, pipeline } from "node:stream/promises";
import { fileURLToPath } from "node:url";
import { InterruptedError, LlmctlError, NetworkError } from "../errors.js";

export interface DownloadOptions {
  /** Expected sha256 (hex); a mismatch deletes the part file and throws. */
  sha256?: string;
  /**
   * A response header that may carry the file's sha256, used when `sha256` is not given: the value (quotes
   * and a W/ prefix stripped) counts only if it is 64 hex digits. Every response of the redirect chain is
   * looked at — Hugging Face sends `X-Linked-Etag: "<sha256>"` for LFS files on its 302 to the CDN.
   */
  sha256Header?: string;
  /** Expected size in bytes; lets a complete part file skip the network and catches short files. */
  expectedSize?: number;
  /** Bytes on disk so far (including a resumed part) and the total when the server says it. */
  onProgress?: (received: number, total?: number) => void;
  /** Abort keeps the part file, so the next call resumes. */
  signal?: AbortSignal;
  /** What the user can do when this download fails; shown after every error message. */
  fix?: string;
  /** Consecutive attempts that may fail without progress before giving up (default 3). */
  retries?: number;
  /** Idle-socket timeout in ms; also bounds connecting (default 30,000). */
  timeoutMs?: number;
  /** Pause before retry k is k × this many ms (default 500). */
  retryDelayMs?: number;
}

const DEFAULT_FIX = "check the network connection and run the command again (a partial download resumes)";
const MAX_REDIRECTS = 5;

/** Root of llmctl's download cache: $LLMCTL_CACHE, default ~/.cache/llmctl. Datasets live in `datasets/`. */
export function cacheRoot(env: NodeJS.ProcessEnv = process.env): string {
  const dir = env.LLMCTL_CACHE;
  return dir ? resolve(dir) : join(homedir(), ".cache", "llmctl");
}

/** sha256 of a file, hex, streamed (weights files are hundreds of MB). */
export async function sha256File(path: string): Promise<string> {
  const hash = createHash("sha256");
  await pipeline(createReadStream(path), hash);
  return hash.digest("hex");
}

/** Download `url` to `dest` (see the module comment). Resolves once `dest` holds the verified bytes. */
export async function download(url: string, dest: string, opts: DownloadOptions = {}): Promise<void> {
  const fix = opts.fix ?? DEFAULT_FIX;
  let parsed: URL;
  try {
    parsed = new URL(url);
  } catch {
    throw new NetworkError(`not a URL: ${url}`, fix);
  }
  const part = dest + ".part";
  await makeDirectory(dirname(dest));
  let headerSha256: string | undefined;
  const seen = { onHeaders: undefined as ((h: http.IncomingHttpHeaders) => void) | undefined };
  if (opts.sha256Header !== undefined && opts.sha256 === undefined) {
    const name = opts.sha256Header.toLowerCase();
    seen.onHeaders = (h) => {
      const raw = h[name];
      const value = (Array.isArray(raw) ? raw[0] : raw)
        ?.trim()
        .replace(/^W\//, "")
        .replace(/^"(.*)"$/, "$1");
      if (value !== undefined && /^[0-9a-f]{64}$/i.test(value)) headerSha256 = value.toLowerCase();
    };
  }
  if (parsed.protocol === "file:") await copyToPart(parsed, part, opts, fix);
  else if (parsed.protocol === "http:" || parsed.protocol === "https:")
    await fetchToPart(parsed, part, { ...opts, ...seen }, fix);
  else throw new NetworkError(`cannot download ${url}: only http, https and file URLs are supported`, fix);
  await verifyPart(url, part, { ...opts, sha256: opts.sha256 ?? headerSha256 }, fix);
  await rename(part, dest);
}

async function fileSize(path: string): Promise<number> {
  try {
    return (await stat(path)).size;
  } catch {
    return 0;
  }
}

async function verifyPart(url: string, part: string, opts: DownloadOptions, fix: string): Promise<void> {
  const size = await fileSize(part);
  if (opts.expectedSize !== undefined && size !== opts.expectedSize) {
    await rm(part, { force: true });
    throw new NetworkError(
      `download of ${url} has the wrong size: expected ${opts.expectedSize} bytes, got ${size}`,
      fix,
    );
  }
  if (opts.sha256 !== undefined) {
    const want = opts.sha256.toLowerCase();
    const got = await sha256File(part);
    if (got !== want) {
      await rm(part, { force: true });
      throw new NetworkError(
        `checksum mismatch for ${url}: expected sha256 ${want}, got ${got} (the file was deleted)`,
        fix,
      );
    }
  }
  // Flush before the rename so a crash cannot leave a renamed-but-empty file behind.
  const fh = await open(part, "r+");
  try {
    await fh.sync();
  } finally {
    await fh.close();
  }
}

function interrupted(url: string, signal: AbortSignal): LlmctlError {
  if (signal.reason instanceof LlmctlError) return signal.reason;
  return new InterruptedError(`download of ${url} interrupted`, "run the command again to resume it");
}

async function copyToPart(url: URL, part: string, opts: DownloadOptions, fix: string): Promise<void> {
  const src = fileURLToPath(url);
  let total: number;
  try {
    const st = await stat(src);
    if (!st.isFile()) throw new NetworkError(`not a file: ${src}`, fix);
    total = st.size;
  } catch (err) {
    if (err instanceof NetworkError) throw err;
    throw new NetworkError(`not found: ${src}`, fix, { cause: err });
  }
  let received = 0;
  try {
    await pipeline(
      createReadStream(src),
      async function* (chunks: AsyncIterable<Buffer>) {
        for await (const chunk of chunks) {
          received += chunk.length;
          opts.onProgress?.(received, total);
          yield chunk;
        }
      },
      createWriteStream(part),
      { signal: opts.signal },
    );
  } catch (err) {
    if (opts.signal?.aborted) throw interrupted(url.href, opts.signal);
    throw new NetworkError(`could not copy ${src}: ${(err as Error).message}`, fix, { cause: err });
  }
}

/** An HTTP answer that is not the file (404, 401, …): a NetworkError that says which status it was. */
export class HttpStatusError extends NetworkError {
  constructor(
    message: string,
    fix: string,
    readonly status: number,
  ) {
    super(message, fix);
  }
}

/** fetchToPart's options: DownloadOptions plus a look at every response's headers (redirects included). */
type FetchOptions = DownloadOptions & { onHeaders?: (headers: http.IncomingHttpHeaders) => void };

/** A failure worth retrying: the connection dropped, timed out, or the server had a bad moment (5xx). */
class TransientError extends Error {}

/** What an attempt ended with; the loop in fetchToPart decides what happens next. */
type AttemptOutcome = "complete" | "restart";

// Connection failures that another attempt a second later will not fix: say so at once.
const FATAL_CODES = new Set(["ENOTFOUND", "EAI_FAIL", "ECONNREFUSED", "EHOSTUNREACH", "ENETUNREACH", "EACCES"]);

function describe(err: unknown): string {
  const e = err as NodeJS.ErrnoException;
  if (e?.code === "ENOTFOUND") return `host not found (${e.message})`;
  if (e?.code === "ECONNREFUSED") return `connection refused (${e.message})`;
  return e?.message ?? String(err);
}

async function fetchToPart(url: URL, part: string, opts: FetchOptions, fix: string): Promise<void> {
  const retries = opts.retries ?? 3;
  const retryDelayMs = opts.retryDelayMs ?? 500;
  let failures = 0;
  let restarts = 0;
  for (;;) {
    if (opts.signal?.aborted) throw interrupted(url.href, opts.signal);
    let offset = await fileSize(part);
    if (opts.expectedSize !== undefined) {
      if (offset > opts.expectedSize) {
        await rm(part, { force: true });
        offset = 0;
      } else if (offset === opts.expectedSize && offset > 0) return; // a finished part file: just verify it
    }
    try {
      const outcome = await attempt(url, part, offset, opts, fix);
      if (outcome === "complete") return;
      // The server cannot continue this part file; start over (bounded, in case it never can).
      await rm(part, { force: true });
      if (++restarts > retries)
        throw new NetworkError(
          `could not download ${url.href}: the server keeps answering range requests inconsistently`,
          fix,
        );
    } catch (err) {
      if (opts.signal?.aborted) throw interrupted(url.href, opts.signal);
      if (!(err instanceof TransientError)) throw err;
      // A drop after some progress is a fresh start for the retry budget: a long download over a flaky
      // link may drop many times, yet each resume gets further.
      failures = (await fileSize(part)) > offset ? 0 : failures + 1;
      if (failures > retries)
        throw new NetworkError(
          `could not download ${url.href}: ${err.message} (gave up after ${retries + 1} attempts)`,
          fix,
        );
      await sleep(retryDelayMs * Math.max(1, failures), opts.signal);
    }
  }
}

function sleep(ms: number, signal?: AbortSignal): Promise<void> {
  return new Promise((resolvePromise) => {
    const timer = setTimeout(done, ms);
    function done() {
      clearTimeout(timer);
      signal?.removeEventListener("abort", done);
      resolvePromise();
    }
    signal?.addEventListener("abort", done, { once: true });
  });
}

/** Send one GET (following redirects) and resolve with the final response. */
function request(
  url: URL,
  headers: Record<string, string>,
  opts: FetchOptions,
  fix: string,
  redirects = 0,
): Promise<{ res: http.IncomingMessage; url: URL }> {
  const timeoutMs = opts.timeoutMs ?? 30_000;
  return new Promise((resolvePromise, reject) => {
    const mod = url.protocol === "https:" ? https : http;
    // agent: false — a fresh connection per request, so a dropped or half-read one is never reused.
    const req = mod.request(
      url,
      { method: "GET", headers, agent: false, timeout: timeoutMs, signal: opts.signal },
      (res) => {
        const status = res.statusCode ?? 0;
        opts.onHeaders?.(res.headers);
        if (status >= 300 && status < 400 && status !== 304 && res.headers.location) {
          res.resume();
          if (redirects >= MAX_REDIRECTS) {
            reject(new NetworkError(`could not download ${url.href}: more than ${MAX_REDIRECTS} redirects`, fix));
            return;
          }
          let next: URL;
          try {
            next = new URL(res.headers.location, url);
          } catch {
            reject(new NetworkError(`could not download ${url.href}: bad redirect to ${res.headers.location}`, fix));
            return;
          }
          request(next, headers, opts, fix, redirects + 1).then(resolvePromise, reject);
          return;
        }
        resolvePromise({ res, url });
      },
    );
    req.on("timeout", () => req.destroy(new TransientError(`no response for ${Math.round(timeoutMs / 1000)} s`)));
    req.on("error", (err) => {
      if (err instanceof TransientError || opts.signal?.aborted) reject(err);
      else if (FATAL_CODES.has((err as NodeJS.ErrnoException).code ?? "")) {
        reject(new NetworkError(`could not download ${url.href}: ${describe(err)}`, fix, { cause: err }));
      } else reject(new TransientError(describe(err)));
    });
    req.end();
  });
}

/** "bytes 100-199/1000" → {start: 100, total: 1000}; "bytes *\/1000" (416) → {total: 1000}. */
function parseContentRange(value: string | undefined): { start?: number; total?: number } {
  const m = /^bytes\s+(?:(\d+)-\d+|\*)\/(\d+|\*)$/i.exec(value?.trim() ?? "");
  if (!m) return {};
  return { start: m[1] !== undefined ? Number(m[1]) : undefined, total: m[2] !== "*" ? Number(m[2]) : undefined };
}

async function attempt(
  url: URL,
  part: string,
  offset: number,
  opts: FetchOptions,
  fix: string,
): Promise<AttemptOutcome> {
  const headers: Record<string, string> = { "user-agent": "llmctl", "accept-encoding": "identity" };
  if (offset > 0) headers.range = `bytes=${offset}-`;
  const { res, url: finalUrl } = await request(url, headers, opts, fix);
  const status = res.statusCode ?? 0;

  let start: number;
  let total: number | undefined;
  if (status === 200) {
    start = 0; // a full body: either we asked from 0, or the server ignored Range — rewrite the part file
    const len = res.headers["content-length"];
    total = len !== undefined ? Number(len) : undefined;
  } else if (status === 206 && offset > 0) {
    const range = parseContentRange(res.headers["content-range"]);
    if (range.start !== offset) {
      res.destroy();
      return "restart";
    }
    start = offset;
    total = range.total;
  } else if (status === 416 && offset > 0) {
    // "Range not satisfiable": our part file already holds the whole resource (or more than it).
    res.resume();
    const { total: size } = parseContentRange(res.headers["content-range"]);
    return size === offset ? "complete" : "restart";
  } else {
    res.resume();
    const what = `HTTP ${status}${res.statusMessage ? " " + res.statusMessage : ""}`;
    if (status >= 500 || status === 429 || status === 408) throw new TransientError(what);
    const where = finalUrl.href === url.href ? url.href : `${url.href} (redirected to ${finalUrl.href})`;
    throw new HttpStatusError(`could not download ${where}: ${what}`, fix, status);
  }

  opts.onProgress?.(start, total);
  const { written, error } = await writeBody(res, part, start, (bytes) => opts.onProgress?.(bytes, total));
  const received = start + written;
  if (error !== undefined) {
    if (opts.signal?.aborted) throw error;
    if (error instanceof LlmctlError) throw error;
    throw new TransientError(`connection lost after ${received} bytes (${describe(error)})`);
  }
  if (!res.complete || (total !== undefined && received < total)) {
    throw new TransientError(`connection closed after ${received} of ${total ?? "?"} bytes`);
  }
  return "complete";
}

/**
 * Append the response body to the part file; resolves (never rejects) with how many bytes reached the disk
 * and the error that ended the body early, if any.
 *
 * Flowing mode with 'data' events, attached synchronously after the response arrives (the file opens
 * inside the write chain), rather than pipeline() or for-await: when the server closes mid-body, Node
 * destroys the response and drops any chunk that had arrived but was not yet consumed. 'data' events
 * hand over every chunk before the error, so a resume continues from every byte received.
 */
async function writeBody(
  res: http.IncomingMessage,
  part: string,
  start: number,
  onBytes: (onDisk: number) => void,
): Promise<{ written: number; error?: unknown }> {
  let written = 0;
  let pending = 0;
  let writeError: unknown;
  const opened = open(part, start === 0 ? "w" : "a").catch((err: Error) => {
    writeError = new NetworkError(
      `could not write ${part}: ${err.message}`,
      "check the disk space and permissions of the cache directory",
    );
    res.destroy();
    return undefined;
  });
  let chain: Promise<unknown> = opened;
  res.on("data", (chunk: Buffer) => {
    // Backpressure: stop reading while many chunks wait for the disk.
    if (++pending >= 16) res.pause();
    chain = chain.then(async () => {
      const fh = await opened;
      if (fh && writeError === undefined) {
        try {
          await fh.write(chunk);
          written += chunk.length;
          onBytes(start + written);
        } catch (err) {
          writeError = new NetworkError(
            `could not write ${part}: ${(err as Error).message}`,
            "check the disk space and permissions of the cache directory",
          );
          res.destroy();
        }
      }
      if (--pending < 4 && res.isPaused()) res.resume();
    });
  });
  let error: unknown;
  try {
    await finished(res);
  } catch (err) {
    error = err;
  }
  await chain;
  await (await opened)?.close();
  return { written, error: writeError ?? error };
}
