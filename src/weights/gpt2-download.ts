/**
 * Fetching OpenAI's GPT-2 from where people get it, through the shared download module (resume, retries,
 * atomic rename). Files land in the llmctl cache ($LLMCTL_CACHE, default ~/.cache/llmctl) under
 * `gpt2/openai/<size>/` or `gpt2/hf/<size>/`, so a second load-gpt2 does not download again.
 *
 * No checksums are pinned here: integrity is checked by the formats themselves when the files are converted
 * (every TF tensor carries a CRC32C; the safetensors header must tile the file exactly). Hugging Face files
 * whose answer carries an `X-Linked-Etag` sha256 (LFS files such as model.safetensors) are also checked
 * against it before they enter the cache.
 *
 * LLMCTL_GPT2_MIRROR replaces both hosts (tests point it at a local server): OpenAI files are fetched from
 * `<mirror>/<size>/<file>` and Hugging Face files from `<mirror>/<repo>/resolve/main/<file>`.
 */
import { existsSync } from "node:fs";
import { join } from "node:path";
import { cacheRoot, download } from "../data/download.js";
import { GPT2_HF_REPOS, type Gpt2Size } from "./gpt2-sizes.js";

export const OPENAI_BASE = "https://openaipublic.blob.core.windows.net/gpt-2/models";
export const HF_BASE = "https://huggingface.co";
export type Gpt2Source = "openai" | "hf";

/** Where Hugging Face files come from: LLMCTL_GPT2_MIRROR when set (load --model-id honours it too), else huggingface.co. */
export function hfBase(env: NodeJS.ProcessEnv = process.env): string {
  return env.LLMCTL_GPT2_MIRROR?.replace(/\/+$/, "") || HF_BASE;
}

/** The response header in which Hugging Face sends an LFS file's sha256. */
export const HF_SHA256_HEADER = "x-linked-etag";

/** The files a conversion needs (OpenAI also publishes checkpoint, encoder.json, vocab.bpe, model.ckpt.meta). */
export const OPENAI_FILES = [
  "checkpoint",
  "hparams.json",
  "model.ckpt.index",
  "model.ckpt.data-00000-of-00001",
] as const;
export const HF_FILES = ["config.json", "model.safetensors"] as const;

export function gpt2Urls(
  size: Gpt2Size,
  source: Gpt2Source,
  env: NodeJS.ProcessEnv = process.env,
): { file: string; url: string }[] {
  const mirror = env.LLMCTL_GPT2_MIRROR?.replace(/\/+$/, "");
  if (source === "openai") {
    const base = mirror ?? OPENAI_BASE;
    return OPENAI_FILES.map((file) => ({ file, url: `${base}/${size}/${file}` }));
  }
  const base = hfBase(env);
  return HF_FILES.map((file) => ({ file, url: `${base}/${GPT2_HF_REPOS[size]}/resolve/main/${file}` }));
}

export function gpt2CacheDir(size: Gpt2Size, source: Gpt2Source, env: NodeJS.ProcessEnv = process.env): string {
  return join(cacheRoot(env), "gpt2", source, size);
}

export interface FetchProgress {
  file: string;
  /** index of this file among those to fetch, and how many */
  index: number;
  count: number;
  received: number;
  total?: number;
}

/**
 * Make sure every file of GPT-2 `size` from `source` is in the cache; returns the directory holding them
 * (an OpenAI checkpoint directory or a Hugging Face directory, as openGpt2Checkpoint expects). Files already
 * complete are not fetched again; interrupted ones resume.
 */
export async function fetchGpt2(
  size: Gpt2Size,
  source: Gpt2Source,
  opts: { env?: NodeJS.ProcessEnv; onProgress?: (p: FetchProgress) => void; signal?: AbortSignal } = {},
): Promise<string> {
  const env = opts.env ?? process.env;
  const dir = gpt2CacheDir(size, source, env);
  const files = gpt2Urls(size, source, env);
  for (const [index, { file, url }] of files.entries()) {
    const dest = join(dir, file);
    if (existsSync(dest)) continue;
    await download(url, dest, {
      onProgress: (received, total) => opts.onProgress?.({ file, index, count: files.length, received, total }),
      signal: opts.signal,
      sha256Header: source === "hf" ? HF_SHA256_HEADER : undefined,
      fix: `check the network connection and run the command again (a partial download resumes), or download ${url} yourself and use --from`,
    });
  }
  return dir;
}
