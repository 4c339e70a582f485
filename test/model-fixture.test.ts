/**
 * Our GPT against the PyTorch reference in ../shared/fixtures/gpt2-tiny (see its README): the Hugging Face
 * weights set into our model must reproduce the recorded logits, logsumexp, loss, top-10, per-position argmax
 * and greedy continuation, on every backend that loads here.
 */
import { test } from "node:test";
import assert from "node:assert/strict";
import { readFileSync } from "node:fs";
import { spawnSync } from "node:child_process";
import * as tf from "@tensorflow/tfjs";
import { bf16MatmulsAvailable, cpuBf16Support, useBackend } from "../src/backend/index.js";
import { testBackend } from "./helpers/backend.js";
import { config, expected, fixture, fixtureModel } from "./helpers/fixture.js";

function logSumExp(row: Float32Array): number {
  let max = -Infinity;
  for (const v of row) max = Math.max(max, v);
  let s = 0;
  for (const v of row) s += Math.exp(v - max);
  return max + Math.log(s);
}

function argmax(row: Float32Array): number {
  let best = 0;
  for (let i = 1; i < row.length; i++) if (row[i] > row[best]) best = i;
  return best;
}

// cpu and wasm always; tensorflow or webgpu too in the suite's pass on it (scripts/test.mjs)
for (const backend of [...new Set(["cpu", "wasm", testBackend()] as const)]) {
  test(`gpt2-tiny fixture on ${backend}: logits, logsumexp, loss, top-10, argmax and greedy continuation`, async (ctx) => {
    await useBackend(backend);
    assert.equal(tf.getBackend(), backend);
    const gpt = await fixtureModel();
    const V = config.vocab_size;
    try {
      for (const c of expected.cases) {
        const T = c.ids.length;
        const logits = gpt.forward(tf.tensor2d([c.ids], [1, T], "int32")); // [1,T,V]
        const all = (await logits.data()) as Float32Array;
        logits.dispose();
        const row = (t: number) => all.subarray(t * V, (t + 1) * V);
        const last = row(T - 1);

        const ref = new Float32Array(readFileSync(fixture(c.logits_last_file)).buffer.slice(0));
        assert.equal(ref.length, V);
        let maxDiff = 0;
        for (let i = 0; i < V; i++) maxDiff = Math.max(maxDiff, Math.abs(last[i] - ref[i]));
        assert.ok(maxDiff <= 1e-4, `${c.name}: max |logit diff| ${maxDiff}`);
        ctx.diagnostic(`${c.name}: max |logit diff| ${maxDiff.toExponential(2)}`);

        assert.ok(
          Math.abs(logSumExp(last) - c.logsumexp_last) <= 1e-3,
          `${c.name}: logsumexp ${logSumExp(last)} vs ${c.logsumexp_last}`,
        );

        const order = Array.from(last.keys())
          .sort((a, b) => last[b] - last[a])
          .slice(0, 10);
        assert.deepEqual(order, c.top10_last.ids, `${c.name}: top-10 ids`);
        order.forEach((id, k) =>
          assert.ok(Math.abs(last[id] - c.top10_last.logits[k]) <= 1e-3, `${c.name}: top-10 logit ${k}`),
        );

        assert.deepEqual(
          Array.from({ length: T }, (_, t) => argmax(row(t))),
          c.argmax_per_position,
          `${c.name}: argmax per position`,
        );

        let loss = 0; // mean cross-entropy of ids[1:] given ids[:-1]
        for (let t = 0; t < T - 1; t++) loss += logSumExp(row(t)) - row(t)[c.ids[t + 1]];
        loss /= T - 1;
        assert.ok(Math.abs(loss - c.loss) <= 1e-3, `${c.name}: loss ${loss} vs ${c.loss}`);

        // greedy, uncached, as the README specifies: the model sees the last n_ctx tokens at positions 0..
        const seq = [...c.ids];
        for (let k = 0; k < c.greedy_continuation.length; k++) {
          const window = seq.slice(-config.context_length);
          const next = gpt.forward(tf.tensor2d([window], [1, window.length], "int32"), { lastOnly: true });
          seq.push(argmax((await next.data()) as Float32Array));
          next.dispose();
        }
        assert.deepEqual(seq.slice(T), c.greedy_continuation, `${c.name}: greedy continuation`);
      }
    } finally {
      gpt.dispose();
    }
  });
}

// --bf16 must really change the arithmetic (a silently ignored flag would match to 1e-6) and stay close: inputs
// of every matmul rounded to 8-bit mantissas move these logits (|logit| ≤ 4) by ~1e-2. A child process, because
// oneDNN's math mode is fixed when TensorFlow first loads. In the suite's tensorflow pass.
if (testBackend() === "tensorflow") {
  test("--bf16 on tensorflow: fixture logits move by bf16 rounding (1e-4 … 0.1), the loss stays within 0.05", (ctx) => {
    if (!bf16MatmulsAvailable())
      return ctx.skip(`--bf16 needs AMX-BF16; this CPU has ${cpuBf16Support() ?? "unknown"}`);
    const child = `
      import * as tf from "@tensorflow/tfjs";
      import { useBackend } from ${JSON.stringify(new URL("../src/backend/index.js", import.meta.url).href)};
      import { config, expected, fixtureModel } from ${JSON.stringify(new URL("./helpers/fixture.js", import.meta.url).href)};
      await useBackend("tensorflow", { bf16: true });
      const gpt = await fixtureModel();
      const out = expected.cases.map((c) => {
        const logits = gpt.forward(tf.tensor2d([c.ids], [1, c.ids.length], "int32"));
        return Array.from(logits.dataSync());
      });
      process.stdout.write(JSON.stringify({ V: config.vocab_size, out }));
    `;
    const r = spawnSync(process.execPath, ["--input-type=module", "-e", child], {
      encoding: "utf8",
      maxBuffer: 1 << 30,
    });
    assert.equal(r.status, 0, r.stderr);
    const { V, out } = JSON.parse(r.stdout) as { V: number; out: number[][] };
    expected.cases.forEach((c, k) => {
      const T = c.ids.length;
      const row = (t: number) => Float32Array.from(out[k].slice(t * V, (t + 1) * V));
      const ref = new Float32Array(readFileSync(fixture(c.logits_last_file)).buffer.slice(0));
      const last = row(T - 1);
      let maxDiff = 0;
      for (let i = 0; i < V; i++) maxDiff = Math.max(maxDiff, Math.abs(last[i] - ref[i]));
      ctx.diagnostic(`${c.name}: max |logit diff| with --bf16 ${maxDiff.toExponential(2)}`);
      assert.ok(maxDiff > 1e-4 && maxDiff < 0.1, `${c.name}: max |logit diff| ${maxDiff}`);
      let loss = 0;
      for (let t = 0; t < T - 1; t++) loss += logSumExp(row(t)) - row(t)[c.ids[t + 1]];
      loss /= T - 1;
      assert.ok(Math.abs(loss - c.loss) < 0.05, `${c.name}: loss ${loss} vs ${c.loss}`);
    });
  });
}
