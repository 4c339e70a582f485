/**
 * llama.cpp as a reference for generation, through node-llama-cpp when it is installed. It is never a
 * dependency of llmctl (its prebuilt binaries for every platform weigh ~700 MB): install it beside llmctl
 * (`npm install node-llama-cpp@3.21.1`), or anywhere and point $LLMCTL_NODE_LLAMA_CPP at that directory.
 * Its prebuilt CPU binary is used as it comes: nothing is downloaded or built (build "never", no GPU).
 *
 * The benchmark gives llama.cpp the very model llmctl measures (bench.ts: buildGPT with seed 0), exported by
 * `export --format gguf` as F32 and F16, and times the same thing llmctl's generate does: greedy tokens after
 * an 8-token prompt, the prompt's evaluation included.
 */
import { mkdtemp, readFile, rm } from "node:fs/promises";
import { createRequire } from "node:module";
import { tmpdir } from "node:os";
import { dirname, join } from "node:path";
import { pathToFileURL } from "node:url";
import { UsageError } from "../errors.js";
import { buildGPT } from "../model/gpt.js";
import { countParameters } from "../model/config.js";
import { saveModelDir } from "../model/model-dir.js";
import { Rng } from "../data/rng.js";
import { exportGguf } from "../weights/gguf-export.js";
import { type BenchShape, REFERENCE_THREADS, machineLoad } from "./bench.js";

/** The version the tests pin; the benchmark uses whichever is installed and records it. */
export const NODE_LLAMA_CPP_VERSION = "3.21.1";

/** The little of node-llama-cpp's API used here (it is imported at run time, so its types are not needed). */
interface LlamaContextSequence {
  evaluate(tokens: number[], opts: { temperature: number; yieldEogToken: boolean }): AsyncGenerator<number>;
  clearHistory(): Promise<void>;
}
interface LlamaContext {
  getSequence(): LlamaContextSequence;
  dispose(): Promise<void>;
}
export interface LlamaModel {
  tokenize(text: string, specialTokens?: boolean): number[];
  createContext(opts: { contextSize: number; threads: { ideal: number; min: number } }): Promise<LlamaContext>;
  dispose(): Promise<void>;
}
export interface Llama {
  loadModel(opts: { modelPath: string }): Promise<LlamaModel>;
  dispose(): Promise<void>;
}
interface NodeLlamaCppModule {
  getLlama(opts: Record<string, unknown>): Promise<Llama>;
}

export interface LlamaCppRuntime {
  llama: Llama;
  /** e.g. "node-llama-cpp 3.21.1 (llama.cpp v0.4.0, prebuilt CPU binary)" */
  path: string;
}

/** Where node-llama-cpp resolves from: $LLMCTL_NODE_LLAMA_CPP, else beside llmctl. */
function resolveNodeLlamaCpp(): string | undefined {
  const dir = process.env.LLMCTL_NODE_LLAMA_CPP;
  const from = dir ? createRequire(join(dir, "noop.js")) : createRequire(import.meta.url);
  try {
    return from.resolve("node-llama-cpp");
  } catch {
    return undefined;
  }
}

async function packageJson(entry: string): Promise<Record<string, unknown>> {
  let dir = dirname(entry);
  while (!dir.endsWith("node-llama-cpp") && dirname(dir) !== dir) dir = dirname(dir);
  return JSON.parse(await readFile(join(dir, "package.json"), "utf8")) as Record<string, unknown>;
}

/** Load node-llama-cpp's CPU build, or say why it cannot be had (not installed, or its binary does not load). */
export async function loadLlamaCpp(): Promise<LlamaCppRuntime | { missing: string }> {
  const entry = resolveNodeLlamaCpp();
  if (!entry) {
    return {
      missing: `node-llama-cpp is not installed (npm install node-llama-cpp@${NODE_LLAMA_CPP_VERSION} beside llmctl, or set LLMCTL_NODE_LLAMA_CPP to the directory it is installed in)`,
    };
  }
  try {
    const mod = (await import(pathToFileURL(entry).href)) as NodeLlamaCppModule;
    const llama = await mod.getLlama({
      gpu: false,
      build: "never",
      usePrebuiltBinaries: true,
      skipDownload: true,
      progressLogs: false,
      logLevel: "error",
    });
    const pkg = await packageJson(entry);
    const info = JSON.parse(
      await readFile(join(dirname(entry), "..", "llama", "llama.cpp.info.json"), "utf8").catch(() => "{}"),
    ) as { tag?: string };
    return {
      llama,
      path: `node-llama-cpp ${String(pkg.version)} (llama.cpp ${info.tag ?? "?"}, prebuilt CPU binary)`,
    };
  } catch (err) {
    return { missing: `node-llama-cpp did not load: ${(err as Error).message.split("\n")[0]}` };
  }
}

export interface LlamaCppGeneration {
  ids: number[];
  seconds: number;
  tokensPerSecond: number;
}

/**
 * Greedy tokens from a GGUF after PROMPT (ids), `maxNewTokens` of them, end-of-text included like llmctl's
 * generate. Positions past the model's context would abort the whole process inside llama.cpp, so they are
 * refused here.
 */
export async function llamaCppGreedy(
  llama: Llama,
  gguf: string,
  prompt: number[],
  maxNewTokens: number,
  opts: { contextLength: number; threads: number; warmup?: boolean },
): Promise<LlamaCppGeneration> {
  if (prompt.length + maxNewTokens > opts.contextLength)
    throw new UsageError(
      `${prompt.length} prompt + ${maxNewTokens} new tokens exceed the context of ${opts.contextLength} positions`,
      "llama.cpp aborts past the context: ask for fewer tokens",
    );
  const model = await llama.loadModel({ modelPath: gguf });
  try {
    const ctx = await model.createContext({
      contextSize: opts.contextLength,
      threads: { ideal: opts.threads, min: opts.threads },
    });
    try {
      const seq = ctx.getSequence();
      const run = async (n: number) => {
        const ids: number[] = [];
        if (n === 0) return ids;
        for await (const id of seq.evaluate(prompt, { temperature: 0, yieldEogToken: true })) {
          ids.push(id);
          if (ids.length >= n) break;
        }
        return ids;
      };
      if (opts.warmup) {
        await run(1);
        await seq.clearHistory();
      }
      const started = performance.now();
      const ids = await run(maxNewTokens);
      const seconds = (performance.now() - started) / 1000;
      return { ids, seconds, tokensPerSecond: seconds > 0 ? ids.length / seconds : 0 };
    } finally {
      await ctx.dispose();
    }
  } finally {
    await model.dispose();
  }
}

export interface LlamaCppRecord {
  backend: "llama.cpp";
  engine: "llama.cpp";
  /** what ran: node-llama-cpp's version, its llama.cpp, the binary */
  path: string;
  precision: "f32" | "f16";
  model: string;
  params: number;
  threads: number;
  prompt_tokens: number;
  generated_tokens: number;
  generate_tokens_per_second: number;
  /** machineLoad() at the end of the measurement: ggml's threads busy-wait, so a loaded machine starves them */
  load_average: number;
  cores: number;
  [extra: string]: unknown;
}

/**
 * llama.cpp's KV-cached greedy generation on the bench's model (call useBackend first: the weights are built
 * with llmctl's initialisation, then exported), F32 and F16, on `threads` threads (default REFERENCE_THREADS, as
 * PyTorch gets). Returns why not when node-llama-cpp is missing.
 */
export async function benchLlamaCpp(
  shape: BenchShape,
  opts: { genTokens?: number; threads?: number; onProgress?: (what: string) => void } = {},
): Promise<LlamaCppRecord[] | string> {
  const threads = opts.threads ?? REFERENCE_THREADS;
  const runtime = await loadLlamaCpp();
  if ("missing" in runtime) return runtime.missing;
  const { cfg } = shape;
  const progress = opts.onProgress ?? (() => {});
  const rng = new Rng(0);
  const prompt = Array.from({ length: 8 }, () => rng.int(cfg.vocab_size));
  const n = Math.min(opts.genTokens ?? 32, cfg.context_length - prompt.length);
  const dir = await mkdtemp(join(tmpdir(), "llmctl-bench-gguf-"));
  try {
    progress(`${shape.model}: exporting the model to GGUF for llama.cpp`);
    const gpt = buildGPT(cfg, { seed: 0 });
    try {
      await saveModelDir(join(dir, "model"), gpt);
    } finally {
      gpt.dispose();
    }
    const records: LlamaCppRecord[] = [];
    for (const dtype of ["f32", "f16"] as const) {
      const gguf = join(dir, `${shape.model}-${dtype}.gguf`);
      await exportGguf(join(dir, "model"), gguf, { dtype });
      progress(`${shape.model}: llama.cpp ${dtype} generation`);
      const gen = await llamaCppGreedy(runtime.llama, gguf, prompt, n, {
        contextLength: cfg.context_length,
        threads,
        warmup: true,
      });
      await rm(gguf);
      records.push({
        backend: "llama.cpp",
        engine: "llama.cpp",
        path: runtime.path,
        precision: dtype,
        model: shape.model,
        params: countParameters(cfg),
        threads,
        prompt_tokens: prompt.length,
        generated_tokens: gen.ids.length,
        generate_tokens_per_second: Math.round(gen.tokensPerSecond * 100) / 100,
        ...machineLoad(),
      });
    }
    return records;
  } finally {
    await runtime.llama.dispose();
    await rm(dir, { recursive: true, force: true });
  }
}
