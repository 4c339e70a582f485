/**
 * `llmctl load --model-id ORG/NAME`: a Hugging Face Llama or Qwen3 checkpoint fetched into the llmctl cache
 * through the shared download module (resume from `.part`, retries, atomic rename), from the same host as
 * load-gpt2's Hugging Face files (LLMCTL_GPT2_MIRROR replaces it: `<mirror>/<org>/<name>/resolve/main/<file>`).
 * Files land in `$LLMCTL_CACHE/hf/<org>/<name>/`, the directory `load --from` then converts.
 *
 * Checksums: an answer carrying `X-Linked-Etag` with a sha256 (Hugging Face's LFS files: the weights,
 * often tokenizer.json) is verified against it before the file enters the cache, and a mismatch is refused.
 * Small git files (config.json, …) come with only their git blob sha1 in `ETag`, which is not checked; they
 * are checked by parsing instead. The weights are also checked by their format (the safetensors header must
 * tile the file exactly).
 */
import { existsSync } from "node:fs";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import { UsageError } from "../errors.js";
import { cacheRoot, download, HttpStatusError } from "../data/download.js";
import { readJsonObject } from "../formats/file.js";
import { llamaConfigFrom } from "./hf-llama.js";
import { HF_SHA256_HEADER, hfBase, type FetchProgress } from "./gpt2-download.js";

/** Fetched when the repository has them; a 404 is fine. */
const OPTIONAL = new Set(["generation_config.json", "chat_template.jinja", "tokenizer_config.json"]);
const BEFORE_WEIGHTS = [
  "config.json",
  "generation_config.json",
  "tokenizer.json",
  "tokenizer_config.json",
  "chat_template.jinja",
] as const;
const INDEX = "model.safetensors.index.json";
const SINGLE = "model.safetensors";

/** "ORG/NAME" as Hugging Face spells model ids, or a one-line usage error. */
export function parseModelId(id: string): { org: string; name: string } {
  const m = /^([A-Za-z0-9][A-Za-z0-9_.-]*)\/([A-Za-z0-9][A-Za-z0-9_.-]*)$/.exec(id);
  if (!m || m[1]!.includes("..") || m[2]!.includes(".."))
    throw new UsageError(
      `--model-id ${JSON.stringify(id)} is not a Hugging Face model id`,
      "pass it as ORG/NAME, for example --model-id Qwen/Qwen3-0.6B, or a local checkpoint directory with --from",
    );
  return { org: m[1]!, name: m[2]! };
}

export function hfModelUrl(id: string, file: string, env: NodeJS.ProcessEnv = process.env): string {
  return `${hfBase(env)}/${id}/resolve/main/${file}`;
}

export function hfModelCacheDir(id: string, env: NodeJS.ProcessEnv = process.env): string {
  const { org, name } = parseModelId(id);
  return join(cacheRoot(env), "hf", org, name);
}

/**
 * Make sure the checkpoint `id` is in the cache and return its directory (as `load --from` reads it).
 * Complete files are not fetched again; interrupted ones resume.
 */
export async function fetchHfModel(
  id: string,
  opts: { env?: NodeJS.ProcessEnv; onProgress?: (p: FetchProgress) => void; signal?: AbortSignal } = {},
): Promise<string> {
  const env = opts.env ?? process.env;
  const dir = hfModelCacheDir(id, env);
  const fix = (url: string) =>
    `check the network connection and run the command again (a partial download resumes), or download ${url} yourself and use --from`;
  let index = 0;
  let count = BEFORE_WEIGHTS.length + 1;
  /** false when the server answered 404 for an optional file */
  const get = async (file: string, optional: boolean): Promise<boolean> => {
    const dest = join(dir, file);
    const url = hfModelUrl(id, file, env);
    const i = index++;
    if (existsSync(dest)) return true;
    try {
      // a file:// mirror (a directory of files): a missing file is its 404
      if (url.startsWith("file:") && !existsSync(fileURLToPath(url)))
        throw new HttpStatusError(`could not download ${url}: not found`, fix(url), 404);
      await download(url, dest, {
        signal: opts.signal,
        sha256Header: HF_SHA256_HEADER,
        fix: fix(url),
        onProgress: (received, total) => opts.onProgress?.({ file, index: i, count, received, total }),
      });
      return true;
    } catch (err) {
      if (err instanceof HttpStatusError && err.status === 404) {
        if (optional) return false;
        if (file === "config.json")
          throw new UsageError(
            `${url} was not found (HTTP 404): ${id} is not a Hugging Face model, or not one you can read`,
            `check the model id (ORG/NAME, as on huggingface.co), or set LLMCTL_GPT2_MIRROR to a mirror that has it`,
          );
        throw new UsageError(
          `${url} was not found (HTTP 404): ${id} has no ${file}`,
          file === SINGLE || file.endsWith(".safetensors")
            ? "load reads safetensors weights (model.safetensors, or the shards of model.safetensors.index.json); convert the checkpoint to safetensors and use --from"
            : `download the checkpoint yourself and use --from`,
        );
      }
      throw err;
    }
  };
  for (const file of BEFORE_WEIGHTS) {
    await get(file, OPTIONAL.has(file));
    // Refuse a model load cannot compute before its weights are downloaded.
    if (file === "config.json") llamaConfigFrom(await readJsonObject(join(dir, file)), join(dir, file));
  }

  // The weights: every shard of the index when the repository has one, else model.safetensors.
  const sharded = existsSync(join(dir, INDEX)) || (!existsSync(join(dir, SINGLE)) && (await get(INDEX, true)));
  if (!sharded) {
    await get(SINGLE, false);
    return dir;
  }
  const indexJson = await readJsonObject(join(dir, INDEX));
  const map = (indexJson.weight_map ?? {}) as Record<string, unknown>;
  const shards = [...new Set(Object.values(map))];
  for (const shard of shards)
    if (typeof shard !== "string" || !/^[A-Za-z0-9][A-Za-z0-9_.-]*\.safetensors$/.test(shard))
      throw new UsageError(
        `${join(dir, INDEX)} names the shard ${JSON.stringify(shard)}, which is not a plain .safetensors file name`,
        `download the checkpoint yourself and use --from`,
      );
  count = index + shards.length;
  for (const shard of shards as string[]) await get(shard, false);
  return dir;
}
