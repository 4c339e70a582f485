#!/usr/bin/env node
/* global process, console, performance */
/**
 * Profile training steps (and KV-cached generation) of a GPT config on a TF.js backend.
 *
 *   npx tsc -p . && node scripts/profile-train.mjs --config gpt2-tiny --batch 2 --context 128 --steps 5
 *   node scripts/profile-train.mjs --config gpt2-124m-ch05 --batch 2 --context 256 --steps 2 --kernels
 *   node scripts/profile-train.mjs --backend tensorflow --config gpt2-124m-ch05 --moments tensors   # A/B AdamW
 *
 * Prints per-phase timings (forward+loss, backward, optimizer), tokens/s, GFLOP/s (6·N_matmul·tokens plus
 * attention 12·L·T·D per token, the PaLM appendix count) and, with --kernels, the time per TF.js kernel
 * (tf.profile) grouped by kernel name and input shapes. One JSON line at the end for docs/performance.md.
 */
import * as tf from "@tensorflow/tfjs";
import { parseArgs } from "node:util";
import { useBackend } from "../dist/src/backend/index.js";
import { loadConfigFile } from "../dist/src/model/config.js";
import { buildGPT } from "../dist/src/model/gpt.js";
import { sparseCrossEntropy } from "../dist/src/train/loss.js";
import { AdamW } from "../dist/src/train/adamw.js";
import { namedParameters } from "../dist/src/train/adamw.js";
import { trainStep } from "../dist/src/train/step.js";

const { values: a } = parseArgs({
  options: {
    config: { type: "string", default: "gpt2-tiny" },
    backend: { type: "string", default: "wasm" },
    batch: { type: "string", default: "2" },
    context: { type: "string" },
    steps: { type: "string", default: "3" },
    kernels: { type: "boolean", default: false },
    top: { type: "string", default: "25" },
    gen: { type: "string", default: "32" },
    classifier: { type: "boolean", default: false },
    threads: { type: "string" },
    moments: { type: "string" },
  },
});

if (a.threads) {
  tf.env().set("WASM_HAS_MULTITHREAD_SUPPORT", true);
  const wasm = await import("@tensorflow/tfjs-backend-wasm");
  wasm.setThreadsCount(Number(a.threads));
}
await useBackend(a.backend);
const { model: cfg } = loadConfigFile(a.config);
const B = Number(a.batch);
const T = Number(a.context ?? cfg.context_length);
const head = a.classifier ? { kind: "classifier", numClasses: 2 } : { kind: "lm" };
const gpt = buildGPT(cfg, { head, seed: 1 });
const params = namedParameters(gpt);
const opt = new AdamW(params, { weightDecay: 0.1, moments: a.moments });
const vars = params.map((p) => p.variable);

const V = head.kind === "lm" ? cfg.vocab_size : 2;
const ids = tf.tensor2d(
  Int32Array.from({ length: B * T }, (_, i) => (i * 7919 + 13) % cfg.vocab_size),
  [B, T],
  "int32",
);
const targets = tf.tensor2d(
  Int32Array.from({ length: B * T }, (_, i) => (i * 104729 + 5) % V),
  [B, T],
  "int32",
);

const D = cfg.emb_dim;
const L = cfg.n_layers;
const matmulParams = L * 12 * D * D + (head.kind === "lm" ? cfg.vocab_size * D : 2 * D);
const flopsPerToken = 6 * matmulParams + 12 * L * T * D;
const tokens = B * T;

function lossFn() {
  return sparseCrossEntropy(gpt.forward(ids, { training: true }), targets);
}

async function step() {
  const t0 = performance.now();
  // forward alone (not used for the update) to split forward from backward time
  const fwd = tf.tidy(() => lossFn());
  fwd.dataSync();
  fwd.dispose();
  const t1 = performance.now();
  let t2 = t1;
  const loss = await trainStep(opt, params, {
    microBatches: 1,
    loss: () => lossFn,
    lr: 4e-4,
    gradClip: null,
    onGradients: () => (t2 = performance.now()),
  });
  tf.tidy(() => tf.sum(vars[0]).dataSync()); // wait for the update
  const t3 = performance.now();
  return { loss, forward: t1 - t0, fwdBwd: t2 - t1, optimizer: t3 - t2, total: t3 - t1 };
}

function cpuSeconds() {
  const u = process.cpuUsage();
  return (u.user + u.system) / 1e6;
}

console.error(
  `${a.config} ${head.kind} on ${tf.getBackend()}: B=${B} T=${T} params=${gpt.countParameters()} flops/token=${(flopsPerToken / 1e6).toFixed(1)}M`,
);
const training = Number(a.steps) > 0; // --steps 0: generation only
if (training) await step(); // warm-up: allocations, kernel setup
const mem0 = tf.memory();
const rows = [];
for (let i = 0; i < Number(a.steps); i++) {
  const c0 = cpuSeconds();
  const r = await step();
  r.cpu = (cpuSeconds() - c0) * 1000;
  rows.push(r);
  console.error(
    `step ${i + 1}: loss ${r.loss.toFixed(3)}  fwd ${r.forward.toFixed(0)} ms  fwd+bwd ${r.fwdBwd.toFixed(0)} ms  adamw ${r.optimizer.toFixed(0)} ms  step ${r.total.toFixed(0)} ms (cpu ${r.cpu.toFixed(0)} ms)`,
  );
}
const mem1 = tf.memory();
const median = (xs) => [...xs].sort((x, y) => x - y)[Math.floor(xs.length / 2)];
const stepMs = training ? median(rows.map((r) => r.total)) : NaN;

if (a.kernels && training) {
  const prof = await tf.profile(() => {
    const { value, grads } = tf.variableGrads(() => tf.tidy(lossFn), vars);
    value.dataSync();
    value.dispose();
    for (const g of Object.values(grads)) g.dispose();
  });
  // custom-gradient ops appear as scopes ("unnamed scope", "…__op") around the kernels they ran: count kernels only
  prof.kernels = prof.kernels.filter((k) => !/scope|__op$/.test(k.name));
  const groups = new Map();
  let total = 0;
  for (const k of prof.kernels) {
    const ms = typeof k.kernelTimeMs === "number" ? k.kernelTimeMs : 0;
    total += ms;
    const key = `${k.name} ${k.inputShapes.map((s) => `[${s}]`).join(",")}`;
    const g = groups.get(key) ?? { ms: 0, n: 0 };
    g.ms += ms;
    g.n += 1;
    groups.set(key, g);
  }
  const byName = new Map();
  for (const k of prof.kernels)
    byName.set(k.name, (byName.get(k.name) ?? 0) + (typeof k.kernelTimeMs === "number" ? k.kernelTimeMs : 0));
  console.error(`\nkernel time in one forward+backward: ${total.toFixed(0)} ms over ${prof.kernels.length} kernels`);
  console.error("by kernel:");
  for (const [name, ms] of [...byName].sort((x, y) => y[1] - x[1]).slice(0, 15)) {
    console.error(`  ${ms.toFixed(1).padStart(9)} ms ${((100 * ms) / total).toFixed(1).padStart(5)}%  ${name}`);
  }
  console.error("by kernel and input shapes:");
  for (const [key, g] of [...groups].sort((x, y) => y[1].ms - x[1].ms).slice(0, Number(a.top))) {
    console.error(
      `  ${g.ms.toFixed(1).padStart(9)} ms ${((100 * g.ms) / total).toFixed(1).padStart(5)}%  ×${g.n}  ${key}`,
    );
  }
}

let genTokS = null;
let genCpuTokS = null;
if (head.kind === "lm" && Number(a.gen) > 0) {
  const n = Math.min(Number(a.gen), cfg.context_length - 8);
  const run = () => {
    const cache = gpt.newCache();
    let logits = tf.tidy(() =>
      gpt.forward(tf.tensor2d([[1, 2, 3, 4, 5, 6, 7, 8]], [1, 8], "int32"), { lastOnly: true, cache }),
    );
    const t0 = performance.now();
    const c0 = cpuSeconds();
    for (let i = 0; i < n; i++) {
      const next = tf.tidy(() => tf.argMax(logits, -1).reshape([1, 1]));
      logits.dispose();
      logits = gpt.forward(next, { lastOnly: true, cache });
      next.dispose();
    }
    logits.dataSync();
    logits.dispose();
    cache.dispose();
    genCpuTokS = n / (cpuSeconds() - c0);
    return n / ((performance.now() - t0) / 1000);
  };
  run();
  genTokS = run();
  console.error(
    `KV-cached greedy generation: ${genTokS.toFixed(1)} tokens/s (${genCpuTokS.toFixed(1)} per CPU second)`,
  );
}

const result = {
  config: a.config,
  head: head.kind,
  backend: tf.getBackend(),
  batch: B,
  context: T,
  params: gpt.countParameters(),
  train_step_s: +(stepMs / 1000).toFixed(4),
  train_step_cpu_s: training ? +(median(rows.map((r) => r.cpu)) / 1000).toFixed(4) : null,
  forward_s: training ? +(median(rows.map((r) => r.forward)) / 1000).toFixed(4) : null,
  adamw_s: training ? +(median(rows.map((r) => r.optimizer)) / 1000).toFixed(4) : null,
  train_tok_s: +((tokens / stepMs) * 1000).toFixed(1),
  gflops: +((flopsPerToken * tokens) / (stepMs / 1000) / 1e9).toFixed(2),
  gen_kv_cache_tok_s: genTokS === null ? null : +genTokS.toFixed(2),
  gen_kv_cache_tok_per_cpu_s: genCpuTokS === null ? null : +genCpuTokS.toFixed(2),
  tensors_leaked_per_step: training ? (mem1.numTensors - mem0.numTensors) / rows.length : null,
  peak_rss_mb: Math.round(process.resourceUsage().maxRSS / 1024),
  load: (await import("node:os")).loadavg()[0],
};
console.log(JSON.stringify(result));
gpt.dispose();
opt.dispose();
