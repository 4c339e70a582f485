#!/usr/bin/env node
/* global process, console, performance */
/**
 * Profile KV-cached greedy generation of a GPT config on a TF.js backend.
 *
 *   npx tsc -p . && node scripts/profile-generate.mjs --backend wasm --config gpt2-124m --tied --tokens 32
 *
 * Prints tokens/s, tokens per CPU second (less sensitive to other jobs on the machine than wall time) and the
 * TF.js kernels one cached token runs (tf.profile), by name: the kernel count per token is a load-independent
 * figure. With --kernels, the kernels' own times too. One JSON line at the end.
 */
import * as tf from "@tensorflow/tfjs";
import { parseArgs } from "node:util";
import { useBackend } from "../dist/src/backend/index.js";
import { loadConfigFile } from "../dist/src/model/config.js";
import { buildGPT } from "../dist/src/model/gpt.js";
import { generate } from "../dist/src/generate/generate.js";

const { values: a } = parseArgs({
  options: {
    config: { type: "string", default: "gpt2-124m" },
    backend: { type: "string", default: "wasm" },
    tokens: { type: "string", default: "32" },
    runs: { type: "string", default: "3" },
    tied: { type: "boolean", default: false },
    kernels: { type: "boolean", default: false },
  },
});

await useBackend(a.backend);
const { model } = loadConfigFile(a.config);
const cfg = { ...model, tied_head: a.tied || model.tied_head };
const gpt = buildGPT(cfg, { seed: 0 });
const prompt = [464, 3290, 286, 262, 3504, 373, 257, 1310];
const n = Math.min(Number(a.tokens), cfg.context_length - prompt.length);
const cpuSeconds = () => {
  const u = process.cpuUsage();
  return (u.user + u.system) / 1e6;
};

await generate(gpt, prompt, { maxNewTokens: 2, temperature: 0 }); // warm-up: packing, transposed head
const runs = [];
for (let r = 0; r < Number(a.runs); r++) {
  const c0 = cpuSeconds();
  const res = await generate(gpt, prompt, { maxNewTokens: n, temperature: 0 });
  runs.push({ tokS: res.tokensPerSecond, cpuTokS: res.ids.length / (cpuSeconds() - c0) });
}
const median = (xs) => xs.slice().sort((x, y) => x - y)[Math.floor(xs.length / 2)];

// one cached token, as generate() runs it
const cache = gpt.newCache();
tf.tidy(() => gpt.forward(tf.tensor2d([prompt], [1, prompt.length], "int32"), { lastOnly: true, cache }));
const input = tf.tensor2d([[prompt[0]]], [1, 1], "int32");
const info = await tf.profile(() => {
  const logits = gpt.forward(input, { lastOnly: true, cache });
  logits.dataSync();
  logits.dispose();
});
input.dispose();
cache.dispose();
const byName = new Map();
for (const k of info.kernels) {
  const e = byName.get(k.name) ?? { count: 0, ms: 0 };
  e.count += 1;
  e.ms += typeof k.kernelTimeMs === "number" ? k.kernelTimeMs : 0;
  byName.set(k.name, e);
}
const rows = [...byName].sort((x, y) => y[1].count - x[1].count);
console.error(`kernels per cached token: ${info.kernels.length}`);
for (const [name, e] of rows) {
  console.error(`  ${String(e.count).padStart(4)} ${name.padEnd(24)}${a.kernels ? ` ${e.ms.toFixed(2)} ms` : ""}`);
}
const result = {
  config: a.config,
  tied: cfg.tied_head,
  backend: tf.getBackend(),
  tokens: n,
  gen_kv_cache_tok_s: +median(runs.map((r) => r.tokS)).toFixed(2),
  gen_kv_cache_tok_per_cpu_s: +median(runs.map((r) => r.cpuTokS)).toFixed(2),
  kernels_per_token: info.kernels.length,
  load_average: +(await import("node:os")).loadavg()[0].toFixed(2),
};
console.log(JSON.stringify(result));
gpt.dispose();
