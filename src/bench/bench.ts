/**
 * Throughput of one (backend, model) pair, measured the way ../shared/bench/torch_ref.py measures PyTorch, so
 * the two can be compared on exactly the same shapes: training = forward + backward + AdamW step on random
 * tokens of [batch, context] (median of the timed steps, after one warm-up step); generation = 32 greedy tokens
 * after an 8-token prompt, without the KV cache (the book's generate_text_simple) and then with it.
 */
import { trainStep } from "../train/step.js";
import * as tf from "@tensorflow/tfjs";
import { existsSync } from "node:fs";
import { availableParallelism, loadavg } from "node:os";
import { fileURLToPath } from "node:url";
import { dirname, join } from "node:path";
import { buildGPT, type GPTConfig } from "../model/gpt.js";
import { countParameters } from "../model/config.js";
import { generate } from "../generate/generate.js";
import { Rng } from "../data/rng.js";
import { AdamW } from "../train/adamw.js";
import { sparseCrossEntropy } from "../train/loss.js";
import { namedParameters } from "../train/adamw.js";
import { type BackendStatus, backendThreads } from "../backend/index.js";
import { runProgram } from "../run-program.js";

export interface BenchShape {
  /** config name, e.g. "gpt2-tiny" */
  model: string;
  cfg: GPTConfig;
  batch: number;
  /** training sequence length */
  context: number;
}

export interface BenchRecord {
  backend: string;
  /** matmul precision: "fp32", or "bf16" (--bf16; PyTorch's autocast) */
  precision: "fp32" | "bf16";
  model: string;
  vocab_size: number;
  context: number;
  emb_dim: number;
  n_layers: number;
  n_heads: number;
  batch: number;
  params: number;
  train_tokens_per_second: number;
  generate_tokens_per_second: number;
  generate_tokens_per_second_no_cache: number;
  peak_rss_mb: number;
  /** median seconds per training step */
  train_step_seconds?: number;
  /** threads the measured engine computes on (none given for a GPU) */
  threads?: number;
  /** what else the machine ran: see machineLoad */
  load_average: number;
  cores: number;
  [extra: string]: unknown;
}

/**
 * The machine's 1-minute load average at the end of a measurement, beside its core count. Speeds measured
 * while other jobs hold the cores are not comparable (llama.cpp's and PyTorch's threads spin at their
 * barriers and lose the most): the bench records the load so such runs can be told apart.
 */
export function machineLoad(): { load_average: number; cores: number } {
  return { load_average: round(loadavg()[0]), cores: availableParallelism() };
}

export interface BenchOptions {
  /** the backend was loaded with --bf16 */
  bf16?: boolean;
  /** timed training steps after the warm-up step (default 3) */
  trainSteps?: number;
  /** generated tokens per measurement (default 32, as torch_ref.py) */
  genTokens?: number;
  onProgress?: (what: string) => void;
}

function median(xs: number[]): number {
  const s = xs.slice().sort((a, b) => a - b);
  return s[Math.floor(s.length / 2)];
}

const round = (x: number, digits = 2) => Math.round(x * 10 ** digits) / 10 ** digits;

export function peakRssMb(): number {
  return round(process.resourceUsage().maxRSS / 1024, 1);
}

/** Measure one shape on the current backend (call useBackend first). */
export async function benchShape(shape: BenchShape, opts: BenchOptions = {}): Promise<BenchRecord> {
  const { cfg, batch, context } = shape;
  const trainSteps = opts.trainSteps ?? 3;
  const genTokens = opts.genTokens ?? 32;
  const progress = opts.onProgress ?? (() => {});
  const rng = new Rng(0);
  const randomIds = (n: number) => Int32Array.from({ length: n }, () => rng.int(cfg.vocab_size));
  const gpt = buildGPT(cfg, { seed: 0 });
  try {
    const params = namedParameters(gpt);
    const opt = new AdamW(params, { weightDecay: 0.1 });
    const x = tf.tensor2d(randomIds(batch * context), [batch, context], "int32");
    const y = tf.tensor2d(randomIds(batch * context), [batch, context], "int32");
    const times: number[] = [];
    for (let step = 0; step <= trainSteps; step++) {
      progress(`${shape.model}: training step ${step + 1}/${trainSteps + 1}`);
      const t0 = performance.now();
      // its loss read waits for this step's forward and backward and, queued before them, the last update's work
      await trainStep(opt, params, {
        microBatches: 1,
        loss: () => () => sparseCrossEntropy(gpt.forward(x, { training: true }), y),
        lr: 4e-4,
        gradClip: null,
      });
      if (step > 0) times.push((performance.now() - t0) / 1000); // the first step warms allocators up
    }
    tf.dispose([x, y]);
    opt.dispose();
    const stepSeconds = median(times);

    const prompt = Array.from(randomIds(8));
    // in torch_ref.py's order: without the cache first, then with it
    progress(`${shape.model}: generating without the cache`);
    const uncached = await generate(gpt, prompt, { maxNewTokens: genTokens, temperature: 0, useCache: false });
    progress(`${shape.model}: generating with the KV cache`);
    const cached = await generate(gpt, prompt, {
      maxNewTokens: Math.min(genTokens, cfg.context_length - prompt.length),
      temperature: 0,
    });
    return {
      backend: tf.getBackend(),
      precision: opts.bf16 ? "bf16" : "fp32",
      model: shape.model,
      vocab_size: cfg.vocab_size,
      context,
      emb_dim: cfg.emb_dim,
      n_layers: cfg.n_layers,
      n_heads: cfg.n_heads,
      batch,
      params: countParameters(cfg),
      train_tokens_per_second: round((batch * context) / stepSeconds, 1),
      generate_tokens_per_second: round(cached.tokensPerSecond),
      generate_tokens_per_second_no_cache: round(uncached.tokensPerSecond),
      peak_rss_mb: peakRssMb(),
      train_step_seconds: round(stepSeconds, 3),
      threads: await backendThreads(tf.getBackend() as BackendStatus["name"]),
      ...machineLoad(),
    };
  } finally {
    gpt.dispose();
  }
}

/** ../shared/bench/torch_ref.py next to the repository (or $LLMCTL_TORCH_REF). */
export function torchRefPath(): string | undefined {
  if (process.env.LLMCTL_TORCH_REF) return process.env.LLMCTL_TORCH_REF;
  let dir = dirname(fileURLToPath(import.meta.url));
  for (let i = 0; i < 6; i++) {
    const candidate = join(dir, "..", "shared", "bench", "torch_ref.py");
    if (existsSync(join(dir, "package.json")) && existsSync(candidate)) return candidate;
    dir = dirname(dir);
  }
  return undefined;
}

/** Does this python have PyTorch? */
export async function pythonHasTorch(python: string): Promise<boolean> {
  if (!existsSync(python)) return false;
  return (await runProgram(python, ["-c", "import torch"])).code === 0;
}

/** The threads each reference (PyTorch, llama.cpp) gets unless told: the two cores of the reference machine. */
export const REFERENCE_THREADS = 2;

/**
 * Run torch_ref.py with `python` on the same shape and steps (REFERENCE_THREADS threads unless told; bf16 = its
 * --bf16 autocast) and return its numbers under our keys, with what it says it ran: `engine` (PyTorch's
 * version) and `path` (e.g. "sdpa+fused-adamw").
 * The script is run through runpy so its peak RSS can be read in the same interpreter afterwards.
 */
export async function benchTorch(
  python: string,
  script: string,
  shape: BenchShape,
  { bf16 = false, steps = 3, threads = REFERENCE_THREADS }: { bf16?: boolean; steps?: number; threads?: number } = {},
): Promise<BenchRecord> {
  const { cfg } = shape;
  const argv = [
    script,
    "--model",
    "gpt2-tiny",
    "--batch",
    String(shape.batch),
    "--context",
    String(shape.context),
    "--vocab",
    String(cfg.vocab_size),
    "--emb",
    String(cfg.emb_dim),
    "--layers",
    String(cfg.n_layers),
    "--heads",
    String(cfg.n_heads),
    "--steps",
    String(steps),
    "--gen-tokens",
    "32",
    "--threads",
    String(threads),
    ...(cfg.tied_head ? ["--tied"] : []),
    ...(bf16 ? ["--bf16"] : []),
  ];
  const code =
    "import json, resource, runpy, sys\n" +
    `sys.argv = ${JSON.stringify(argv)}\n` +
    "runpy.run_path(sys.argv[0], run_name='__main__')\n" +
    "print(json.dumps({'peak_rss_mb': resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}))\n";
  const r = await runProgram(python, ["-c", code]);
  const lines = r.stdout
    .trim()
    .split("\n")
    .filter((l) => l.startsWith("{"));
  if (r.code !== 0 || lines.length < 2)
    throw new Error(`torch_ref.py failed (exit ${r.code}): ${r.stderr.trim().split("\n").pop()}`);
  const ref = JSON.parse(lines[0]) as Record<string, number | string>;
  const rss = JSON.parse(lines[1]) as { peak_rss_mb: number };
  return {
    backend: String(ref.engine),
    engine: String(ref.engine),
    path: String(ref.path ?? "?"),
    precision: bf16 ? "bf16" : "fp32",
    model: shape.model,
    vocab_size: cfg.vocab_size,
    context: shape.context,
    emb_dim: cfg.emb_dim,
    n_layers: cfg.n_layers,
    n_heads: cfg.n_heads,
    batch: shape.batch,
    params: Number(ref.params),
    train_tokens_per_second: Number(ref.train_tok_s),
    generate_tokens_per_second: Number(ref.gen_kv_cache_tok_s),
    generate_tokens_per_second_no_cache: Number(ref.gen_no_cache_tok_s),
    peak_rss_mb: round(rss.peak_rss_mb, 1),
    train_step_seconds: Number(ref.train_step_s),
    threads: Number(ref.threads ?? threads),
    ...machineLoad(),
  };
}

/** ours / reference for the three speeds (how far from PyTorch on the same CPU we are). */
export function ratios(ours: BenchRecord, ref: BenchRecord): Record<string, number> {
  const r = (a: number, b: number) => (b > 0 ? round(a / b, 3) : NaN);
  return {
    train: r(ours.train_tokens_per_second, ref.train_tokens_per_second),
    generate: r(ours.generate_tokens_per_second, ref.generate_tokens_per_second),
    generate_no_cache: r(ours.generate_tokens_per_second_no_cache, ref.generate_tokens_per_second_no_cache),
  };
}
