#!/usr/bin/env node
/* global process, console */
/**
 * Memory over a long pretraining run (issue 13 §4): tensors and RSS sampled every --every steps of pretrain()
 * on a config, with evaluation, epoch ends and checkpoints in the loop as a user's run has them.
 *
 *   npx tsc -p . && node scripts/memory-curve.mjs --backend wasm --steps 1000 --every 100
 *
 * Prints one line per sample (step, tensors, RSS MB, heap MB) and a JSON summary; a leak shows as tensors or
 * RSS that keep climbing after the first samples (allocator warm-up).
 */
import * as tf from "@tensorflow/tfjs";
import { mkdtempSync, readFileSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { parseArgs } from "node:util";
import { useBackend } from "../dist/src/backend/index.js";
import { pretrain } from "../dist/src/train/pretrain.js";

const { values: a } = parseArgs({
  options: {
    config: { type: "string", default: "gpt2-tiny" },
    backend: { type: "string", default: "wasm" },
    steps: { type: "string", default: "1000" },
    every: { type: "string", default: "100" },
    "max-length": { type: "string", default: "32" },
    data: { type: "string", default: join(process.env.LLMCTL_SHARED ?? "../shared", "datasets", "the-verdict.txt") },
  },
});
await useBackend(a.backend);
const dir = mkdtempSync(join(tmpdir(), "llmctl-memory-"));
const text = join(dir, "data.txt");
writeFileSync(text, readFileSync(a.data, "utf8"));
const every = Number(a.every);
const samples = [];
const sample = (step) => {
  const m = process.memoryUsage();
  const s = {
    step,
    tensors: tf.memory().numTensors,
    rss_mb: Math.round(m.rss / 2 ** 20),
    heap_mb: Math.round(m.heapUsed / 2 ** 20),
  };
  samples.push(s);
  console.log(`step ${s.step}: ${s.tensors} tensors, RSS ${s.rss_mb} MB, heap ${s.heap_mb} MB`);
};
await pretrain({
  config: a.config,
  data: [text],
  outDir: join(dir, "run"),
  train: {
    max_steps: Number(a.steps),
    epochs: 1000,
    max_length: Number(a["max-length"]),
    stride: Number(a["max-length"]),
    eval_freq: 50,
    eval_iter: 1,
    checkpoint_every: 250,
    sample_tokens: 0,
  },
  onEvent: (e) => {
    if (e.kind === "step" && (e.progress.step === 1 || e.progress.step % every === 0)) sample(e.progress.step);
  },
});
const after = samples.slice(1);
const spread = (k) => Math.max(...after.map((s) => s[k])) - Math.min(...after.map((s) => s[k]));
console.log(
  JSON.stringify({
    backend: a.backend,
    config: a.config,
    steps: Number(a.steps),
    samples,
    tensors_spread: spread("tensors"),
    rss_spread_mb: spread("rss_mb"),
  }),
);
