/**
 * Before a training step runs: will it fit? An estimate of the peak memory of one step on the active backend,
 * checked against what that backend can hold, so a run too big for it is refused in one line with the numbers
 * and the ways out, instead of ending in wasm's `Aborted()` or the kernel's OOM kill.
 *
 * The activation terms were measured: the wasm heap after two AdamW steps of GPT-style models (D 256–512, 4–8
 * layers, T 256–512, B 2–8, V 50,257) grows by about 6.5 copies of the logits [B,T,V] (the loss, its softmax,
 * their gradients) and, per layer, 28 copies of a [B,T,D] activation and 4 of the [B,H,T,T] attention scores.
 * The same sum gives 11 GB for the book's chapter 7 step (355M, B 8, T 256), as tensorflow's peak RSS measured.
 */
import * as tf from "@tensorflow/tfjs";
import { totalmem } from "node:os";
import { ConfigError } from "../errors.js";
import { WASM_HEAP_BYTES } from "../backend/wasm-heap.js";
import type { GPTConfig } from "../model/config.js";

const GB = 2 ** 30;
/** AdamW's moments go to JS arrays above this on wasm (train/adamw.ts), outside the heap */
const WASM_MOMENTS_IN_HEAP = 512 * 2 ** 20;

/** Whether the job trains LoRA adapters, could (a finetune), or cannot (pretraining): which ways out apply. */
export type LoraUse = "training" | "possible" | "no";

export interface StepShape {
  /** sequences per micro-batch and their length in tokens */
  batchSize: number;
  length: number;
  /** the parameters the optimizer updates (LoRA: the adapters') */
  trainableParameters: number;
  totalParameters: number;
  /** the head's outputs per position: the vocabulary, or a classifier's classes */
  outputs: number;
}

export interface MemoryEstimate {
  weights: number;
  gradients: number;
  moments: number;
  activations: number;
  /** what counts against the backend's limit */
  total: number;
  limit: number;
  /** what the limit is */
  limitName: string;
}

/**
 * `recompute`: the blocks' activations are recomputed in the backward pass (GPTModel.recomputeBlocks): a step
 * keeps each block's input and, while a block's gradient is taken, that one block's activations.
 */
export function estimateStepMemory(
  cfg: GPTConfig,
  shape: StepShape,
  backend: string,
  recompute = false,
): MemoryEstimate {
  const f = 4; // float32
  const { batchSize: B, length: T } = shape;
  const weights = f * shape.totalParameters;
  const gradients = f * shape.trainableParameters;
  const moments = 2 * f * shape.trainableParameters;
  const perLayer = 28 * B * T * cfg.emb_dim + 4 * B * cfg.n_heads * T * T;
  const blocks = recompute ? cfg.n_layers * B * T * cfg.emb_dim + perLayer : cfg.n_layers * perLayer;
  const activations = f * (6.5 * B * T * shape.outputs + blocks);
  if (backend === "wasm") {
    const inHeap = weights + gradients + activations + (moments <= WASM_MOMENTS_IN_HEAP ? moments : 0);
    return {
      weights,
      gradients,
      moments,
      activations,
      total: inHeap,
      limit: WASM_HEAP_BYTES,
      limitName: "wasm's 4 GB heap",
    };
  }
  return {
    weights,
    gradients,
    moments,
    activations,
    total: weights + gradients + moments + activations,
    limit: totalmem(),
    limitName: `this machine's ${(totalmem() / GB).toFixed(1)} GB of memory`,
  };
}

const gb = (bytes: number) => (bytes >= GB / 10 ? `${(bytes / GB).toFixed(1)} GB` : `${Math.ceil(bytes / 2 ** 20)} MB`);

/**
 * Refuse a step that cannot fit, naming the estimate's parts and the ways out. webgpu's limits are the
 * adapter's and are not estimated here.
 */
export function checkStepFits(est: MemoryEstimate, backend: string, shape: StepShape, lora: LoraUse): void {
  if (backend === "webgpu" || est.total <= est.limit) return;
  const ways = [
    backend === "wasm" && "--backend tensorflow (after `llmctl setup tensorflow`), which uses the machine's memory",
    lora === "possible" && "--lora RANK (only the adapters train)",
    shape.batchSize > 1 && `--batch-size ${Math.max(1, Math.floor(shape.batchSize / 2))} --grad-accum 2 (or smaller)`,
    "a smaller --max-length",
  ].filter(Boolean);
  throw new ConfigError(
    `a training step needs about ${gb(est.total)} on the ${backend} backend, more than ${est.limitName} ` +
      `(weights ${gb(est.weights)}, gradients ${gb(est.gradients)}, AdamW moments ${gb(est.moments)}, ` +
      `activations for ${shape.batchSize} × ${shape.length} tokens ${gb(est.activations)})`,
    `try ${ways.join("; or ")}`,
  );
}

/** One line for --verbose: the estimate beside the limit. */
export function describeEstimate(est: MemoryEstimate): string {
  return `memory estimate for a step: ${gb(est.total)} of ${est.limitName} (weights ${gb(est.weights)}, activations ${gb(est.activations)})`;
}

/**
 * The check every training job makes once its model and data are known, before the first step. A step that
 * fits only with its blocks' activations recomputed in the backward pass gets that (and `notice` says so);
 * one that fits neither way is refused.
 */
export function preflightStep(
  gpt: { config: GPTConfig; head: { kind: string; num_classes?: number }; recomputeBlocks: boolean },
  shape: Omit<StepShape, "outputs">,
  opts: { lora: LoraUse; note: (text: string) => void; notice: (text: string) => void },
): void {
  const backend = tf.getBackend();
  const full = { ...shape, outputs: gpt.head.kind === "lm" ? gpt.config.vocab_size : (gpt.head.num_classes ?? 2) };
  const est = estimateStepMemory(gpt.config, full, backend);
  opts.note(describeEstimate(est));
  if (backend === "webgpu" || est.total <= est.limit) return;
  const recomputed = estimateStepMemory(gpt.config, full, backend, true);
  if (recomputed.total <= recomputed.limit) {
    gpt.recomputeBlocks = true;
    opts.notice(
      `to fit ${est.limitName}, the blocks' activations are recomputed in the backward pass: a step needs about ` +
        `${gb(recomputed.total)} instead of ${gb(est.total)}, for about a third more compute`,
    );
    return;
  }
  checkStepFits(est, backend, full, opts.lora);
}
