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

// What --bf16 guarantees (docs/tensorflow-backend.md#--bf16): on a CPU with AMX-BF16, a float32 product of the
// shapes GPT-2 124M trains on is computed from bfloat16-rounded inputs with float32 sums. TensorFlow leaves small
// products (the fixture's 16-wide ones) to kernels that ignore oneDNN's math mode, so the test takes the ch05 124M
// step's largest one, x·W of the MLP: [512, 768] · [768, 3072]. The result must match a reference made from
// bf16-rounded inputs far better than the float32 product, which it must differ from: a silently ignored flag
// fails. A child process, because oneDNN's math mode is fixed when TensorFlow first loads. In the tensorflow pass.
if (testBackend() === "tensorflow") {
  test("--bf16 on tensorflow: a 124M-sized product is the product of the bf16-rounded inputs", (ctx) => {
    if (!bf16MatmulsAvailable())
      return ctx.skip(`--bf16 needs AMX-BF16; this CPU has ${cpuBf16Support() ?? "unknown"}`);
    const [M, K, N] = [512, 768, 3072];
    const value = (i: number, seed: number) => Math.fround(Math.sin(seed * (i + 1)) * 1.7);
    const child = `
      import * as tf from "@tensorflow/tfjs";
      import { useBackend } from ${JSON.stringify(new URL("../src/backend/index.js", import.meta.url).href)};
      await useBackend("tensorflow", { bf16: true });
      const value = ${value.toString()};
      const a = tf.tensor2d(Float32Array.from({ length: ${M * K} }, (_, i) => value(i, 0.37)), [${M}, ${K}]);
      const b = tf.tensor2d(Float32Array.from({ length: ${K * N} }, (_, i) => value(i, 0.91)), [${K}, ${N}]);
      process.stdout.write(JSON.stringify(Array.from(tf.matMul(a, b).dataSync())));
    `;
    const r = spawnSync(process.execPath, ["--input-type=module", "-e", child], {
      encoding: "utf8",
      maxBuffer: 1 << 30,
    });
    assert.equal(r.status, 0, r.stderr);
    const got = JSON.parse(r.stdout) as number[];
    // round to nearest even on the upper 16 bits, as oneDNN converts float32 to bfloat16
    const bits = new Uint32Array(1);
    const asFloat = new Float32Array(bits.buffer);
    const bf16 = (x: number) => {
      asFloat[0] = x;
      bits[0] = (bits[0] + 0x7fff + ((bits[0] >>> 16) & 1)) & 0xffff0000;
      return asFloat[0];
    };
    let errBf16 = 0;
    let errFp32 = 0;
    for (let i = 0; i < M; i += 16) {
      for (let j = 0; j < N; j += 97) {
        let exact = 0;
        let rounded = 0;
        for (let k = 0; k < K; k++) {
          const [x, w] = [value(i * K + k, 0.37), value(k * N + j, 0.91)];
          exact += x * w;
          rounded += bf16(x) * bf16(w);
        }
        errBf16 = Math.max(errBf16, Math.abs(got[i * N + j] - rounded));
        errFp32 = Math.max(errFp32, Math.abs(got[i * N + j] - exact));
      }
    }
    ctx.diagnostic(
      `max |difference| from the bf16-input product ${errBf16.toExponential(2)}, ` +
        `from the float32 product ${errFp32.toExponential(2)}`,
    );
    assert.ok(errFp32 > 1e-3, `--bf16 changed nothing: max |difference| from the float32 product is ${errFp32}`);
    assert.ok(errBf16 < errFp32 / 20, `not the bf16-input product: ${errBf16} against ${errFp32} from float32`);
  });
}
