import { test, before, after } from "node:test";
import assert from "node:assert/strict";
import { mkdtempSync, readFileSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import * as tf from "@tensorflow/tfjs";
import { useBackend } from "../src/backend/index.js";
import { Rng } from "../src/data/rng.js";
import { buildGPT, type ForwardOptions, type GPTModel } from "../src/model/gpt.js";
import { saveModelDir } from "../src/model/model-dir.js";
import { readAllSafetensors } from "../src/formats/safetensors.js";
import { getTokenizer } from "../src/tokenizer/index.js";
import { generate } from "../src/generate/generate.js";
import {
  kthLargest,
  nextTokenProbabilities,
  sampleNext,
  softmax,
  topKMask,
  topPFilter,
} from "../src/generate/sampler.js";
import { TextStream } from "../src/generate/text-stream.js";
import { UsageError } from "../src/errors.js";
import { runCli } from "./helpers/cli.js";
import { sharedPath } from "./helpers/shared.js";
import { tinyConfig } from "./helpers/tiny-config.js";

// the book's toy next-token logits (ch05, "Decoding strategies to control randomness")
const TOY = [4.51, 0.89, -1.9, 6.75, 1.63, -1.62, -1.89, 6.28, 1.79];

const round4 = (xs: ArrayLike<number>) => Array.from(xs, (x) => Math.round(x * 1e4) / 1e4);

test("softmax of the toy logits matches the book; top-3 masks to [0.0615, 0, 0, 0.5775, 0, 0, 0, 0.3610, 0]", () => {
  assert.deepEqual(round4(softmax(TOY)), [0.0609, 0.0016, 0.0001, 0.5721, 0.0034, 0.0001, 0.0001, 0.3576, 0.004]);
  assert.deepEqual(round4(softmax(topKMask(TOY, 3))), [0.0615, 0, 0, 0.5775, 0, 0, 0, 0.361, 0]);
  assert.deepEqual(
    round4(nextTokenProbabilities(TOY, { topK: 3, temperature: 1 })),
    [0.0615, 0, 0, 0.5775, 0, 0, 0, 0.361, 0],
  );
  // top-p: 0.5721 alone reaches 0.5; 0.9 needs the two largest (0.5721 + 0.3576 = 0.9297)
  assert.deepEqual(round4(topPFilter(softmax(TOY), 0.5)), [0, 0, 0, 1, 0, 0, 0, 0, 0]);
  assert.deepEqual(round4(topPFilter(softmax(TOY), 0.9)), [0, 0, 0, 0.6154, 0, 0, 0, 0.3846, 0]);
});

for (const temperature of [1, 5]) {
  test(`10,000 samples at temperature ${temperature}: every frequency within 4 sigma of softmax(logits / T)`, () => {
    const rng = new Rng(123);
    const n = 10_000;
    const counts = new Array<number>(TOY.length).fill(0);
    for (let i = 0; i < n; i++) counts[sampleNext(TOY, { temperature }, rng)]++;
    const p = softmax(TOY, temperature);
    for (let i = 0; i < TOY.length; i++) {
      const sigma = Math.sqrt((p[i] * (1 - p[i])) / n);
      const freq = counts[i] / n;
      assert.ok(
        Math.abs(freq - p[i]) <= 4 * sigma + 1e-12,
        `token ${i}: frequency ${freq} vs p ${p[i].toFixed(5)} (4σ = ${(4 * sigma).toFixed(5)})`,
      );
    }
    if (temperature === 5)
      assert.ok(
        counts.every((c) => c > 0),
        "temperature 5 flattens: every token is drawn",
      );
  });
}

test("temperature 0 and top-k 1 are greedy; top-k sampling never leaves the top k", () => {
  const rng = new Rng(1);
  for (let i = 0; i < 50; i++) {
    assert.equal(sampleNext(TOY, { temperature: 0 }, rng), 3);
    assert.equal(sampleNext(TOY, { temperature: 3, topK: 1 }, rng), 3);
    assert.ok([0, 3, 7].includes(sampleNext(TOY, { temperature: 5, topK: 3 }, rng)));
  }
});

test("streamed decoding holds a token that ends mid-character until the character is complete", () => {
  const tok = getTokenizer();
  const text = " naïve 🙂 café 日本語 done";
  const ids = tok.encode(text);
  const stream = new TextStream((x) => tok.decode(x));
  const pieces = ids.map((id) => stream.push(id));
  pieces.push(stream.flush());
  assert.equal(pieces.join(""), text);
  assert.ok(
    pieces.every((p) => !p.includes("\uFFFD")),
    JSON.stringify(pieces),
  );
  // the emoji takes several tokens, so at least one push emitted nothing
  assert.ok(pieces.some((p) => p === ""));
});

// ---------------------------------------------------------------------------------------------------------

interface FixtureCase {
  text?: string | null;
  ids: number[];
  greedy_continuation: number[];
}
const fixture = (...p: string[]) => sharedPath("fixtures", "gpt2-tiny", ...p);
const cases = (JSON.parse(readFileSync(fixture("expected.json"), "utf8")) as { cases: FixtureCase[] }).cases;
let fixtureGpt: GPTModel;
let workDir: string;

before(async () => {
  await useBackend("cpu");
  const { tensors } = await readAllSafetensors(fixture("hf", "model.safetensors"));
  const weights = new Map<string, Float32Array>();
  for (const [name, t] of tensors) if (!/^h\.\d+\.attn\.bias$/.test(name)) weights.set(name, t.data); // mask buffers
  fixtureGpt = buildGPT(tinyConfig({ vocab_size: 50257, context_length: 32, qkv_bias: true, tied_head: true }), {
    initialize: false,
  });
  fixtureGpt.setWeights(weights);
  workDir = mkdtempSync(join(tmpdir(), "llmctl-generate-"));
  await saveModelDir(join(workDir, "fixture"), fixtureGpt, { source: "gpt2-tiny fixture" });
});

after(() => {
  fixtureGpt?.dispose();
  if (workDir) rmSync(workDir, { recursive: true, force: true });
});

test("library greedy generation reproduces the fixture's greedy continuations, with and without the KV cache", async () => {
  for (const c of cases) {
    for (const useCache of [true, false]) {
      const r = await generate(fixtureGpt, c.ids, {
        maxNewTokens: c.greedy_continuation.length,
        temperature: 0,
        useCache,
      });
      assert.deepEqual(r.ids, c.greedy_continuation, `${c.text ?? "synthetic"} (cache ${useCache})`);
    }
  }
});

test("cached and uncached generation give identical ids, also far past the context (window slides)", async () => {
  const prompt = cases[0].ids;
  const greedy = await generate(fixtureGpt, prompt, { maxNewTokens: 70, temperature: 0, useCache: true });
  const greedyNoCache = await generate(fixtureGpt, prompt, { maxNewTokens: 70, temperature: 0, useCache: false });
  assert.equal(greedy.ids.length, 70); // 4 + 70 tokens: more than twice the context of 32
  assert.deepEqual(greedy.ids, greedyNoCache.ids);

  const small = buildGPT(tinyConfig({ vocab_size: 300, context_length: 10, drop_rate: 0.1 }), { seed: 5 });
  try {
    for (const opts of [
      { temperature: 0 },
      { temperature: 1, seed: 9 },
      { temperature: 0.8, topK: 20, seed: 3 },
      { temperature: 1.2, topP: 0.9, seed: 4 },
    ]) {
      const a = await generate(small, [1, 2, 3], { ...opts, maxNewTokens: 25, useCache: true });
      const b = await generate(small, [1, 2, 3], { ...opts, maxNewTokens: 25, useCache: false });
      assert.deepEqual(a.ids, b.ids, JSON.stringify(opts));
    }
    // sampling is reproducible from the seed and differs with another seed
    const s1 = await generate(small, [1, 2, 3], { temperature: 1, seed: 1, maxNewTokens: 20 });
    const s1again = await generate(small, [1, 2, 3], { temperature: 1, seed: 1, maxNewTokens: 20 });
    const s2 = await generate(small, [1, 2, 3], { temperature: 1, seed: 2, maxNewTokens: 20 });
    assert.deepEqual(s1.ids, s1again.ids);
    assert.notDeepEqual(s1.ids, s2.ids);
  } finally {
    small.dispose();
  }
});

test("a prompt longer than the context is cropped to its last context_length tokens", async () => {
  const long = [...cases[2].ids, ...cases[0].ids, ...cases[1].ids]; // 40 tokens, context 32
  const r = await generate(fixtureGpt, long, { maxNewTokens: 5, temperature: 0 });
  const cropped = await generate(fixtureGpt, long.slice(-32), { maxNewTokens: 5, temperature: 0, useCache: false });
  assert.equal(r.croppedPromptTokens, 8);
  assert.deepEqual(r.ids, cropped.ids);
});

test("stop at end-of-text; bad requests are UsageErrors", async () => {
  const first = cases[0].greedy_continuation[0];
  const r = await generate(fixtureGpt, cases[0].ids, { maxNewTokens: 10, temperature: 0, eosId: first });
  assert.deepEqual(r.ids, [first]);
  assert.equal(r.stoppedAtEos, true);
  await assert.rejects(
    generate(fixtureGpt, [], { maxNewTokens: 3 }),
    (e: unknown) => e instanceof UsageError && /prompt is empty/.test(e.message),
  );
  await assert.rejects(
    generate(fixtureGpt, [1], { maxNewTokens: 3, temperature: -1 }),
    /temperature must be a number ≥ 0/,
  );
  await assert.rejects(generate(fixtureGpt, [1], { maxNewTokens: 3, topK: 0 }), /top-k must be an integer ≥ 1/);
  await assert.rejects(generate(fixtureGpt, [1], { maxNewTokens: 3, topP: 1.5 }), /top-p must be in \(0, 1\]/);
  await assert.rejects(generate(fixtureGpt, [50257], { maxNewTokens: 3 }), /outside the model's vocabulary/);
});

test("llmctl generate --temperature 0 --json gives the fixture's greedy continuation (cached and not)", async () => {
  const dir = join(workDir, "fixture");
  const tok = getTokenizer();
  const textCases = cases.filter((x) => typeof x.text === "string" && tok.encode(x.text).join() === x.ids.join());
  assert.equal(textCases.length, 2);
  for (const c of textCases) {
    for (const extra of [[], ["--no-cache"]]) {
      const r = await runCli(
        [
          "generate",
          "--model",
          dir,
          "--prompt",
          c.text!,
          "--temperature",
          "0",
          "--max-new-tokens",
          "12",
          "--json",
          ...extra,
        ],
        {
          env: { LLMCTL_BACKEND: "cpu" },
        },
      );
      assert.equal(r.code, 0, r.stderr);
      const j = JSON.parse(r.stdout);
      assert.deepEqual(j.prompt_ids, c.ids);
      assert.deepEqual(j.ids, c.greedy_continuation);
      assert.equal(j.text, getTokenizer().decode(c.greedy_continuation));
      assert.ok(typeof j.tokens_per_second === "number" && j.tokens_per_second > 0);
    }
  }
  // streamed text output: the prompt, then the new text, then a newline
  const c = cases[1];
  const s = await runCli(["generate", "-m", dir, "-p", c.text!, "-t", "0", "-n", "12"], {
    env: { LLMCTL_BACKEND: "cpu" },
  });
  assert.equal(s.code, 0, s.stderr);
  assert.equal(s.stdout, c.text + getTokenizer().decode(c.greedy_continuation) + "\n");
  // quiet by default; --verbose names the backend that ran, on stderr
  assert.doesNotMatch(s.stderr, /backend:/);
  const v = await runCli(["generate", "-m", dir, "-p", c.text!, "-t", "0", "-n", "2", "--verbose"], {
    env: { LLMCTL_BACKEND: "cpu" },
  });
  assert.equal(v.code, 0, v.stderr);
  assert.match(v.stderr, /^backend: cpu \(@tensorflow\/tfjs \d/m);
});

test("llmctl generate: an empty prompt and a missing model directory give clear one-line errors", async () => {
  const empty = await runCli(["generate", "--model", join(workDir, "fixture"), "--prompt", ""]);
  assert.equal(empty.code, 2);
  assert.match(empty.stderr, /^llmctl: the prompt is empty — /);
  const missing = await runCli(["generate", "--model", join(workDir, "nope"), "--prompt", "Hello"]);
  assert.equal(missing.code, 1);
  assert.match(missing.stderr, /^llmctl: model directory not found: .*nope — /);
  assert.equal(missing.stderr.trim().split("\n").length, 1);
  const badTemp = await runCli([
    "generate",
    "--model",
    join(workDir, "fixture"),
    "--prompt",
    "Hi",
    "--temperature",
    "-2",
  ]);
  assert.equal(badTemp.code, 2);
  assert.match(badTemp.stderr, /temperature must be a number ≥ 0/);
});

test("llmctl generate refuses a classifier before printing the prompt, and NaN weights with a message", async () => {
  const classifier = buildGPT({ ...fixtureGpt.config }, { seed: 1, head: { kind: "classifier", num_classes: 2 } });
  const nan = buildGPT({ ...fixtureGpt.config }, { seed: 1 });
  try {
    await saveModelDir(join(workDir, "classifier"), classifier, { labels: ["ham", "spam"] });
    const r = await runCli(["generate", "-m", join(workDir, "classifier"), "-p", "Hello"]);
    assert.equal(r.code, 2);
    assert.equal(r.stdout, "");
    assert.match(
      r.stderr,
      /^llmctl: this model has a classifier head and cannot generate text — use `llmctl classify`/,
    );

    const weights = new Map([...nan.namedWeights()].map(([name, v]) => [name, v.read().dataSync() as Float32Array]));
    const scale = [...weights.keys()].find((name) => name.startsWith("ln_f."))!;
    weights.get(scale)!.fill(NaN);
    nan.setWeights(weights);
    await saveModelDir(join(workDir, "nan"), nan, {});
    const g = await runCli(["generate", "-m", join(workDir, "nan"), "-p", "Hello", "-t", "0"]);
    assert.equal(g.code, 1);
    assert.match(g.stderr, /^llmctl: the model's logits are not finite .* — use an earlier checkpoint/m);
    await assert.rejects(generate(nan, [1, 2], { maxNewTokens: 1, temperature: 0 }), /logits are not finite/);
  } finally {
    classifier.dispose();
    nan.dispose();
  }
});

test("top-k selection finds the k-th largest value exactly, ties included", () => {
  const rng = new Rng(42);
  for (let trial = 0; trial < 200; trial++) {
    const n = 1 + rng.int(300);
    // few distinct values, so ties are common
    const values = Float64Array.from({ length: n }, () => (trial % 2 ? rng.int(7) : rng.random() * 20 - 10));
    const sorted = Array.from(values).sort((a, b) => b - a);
    const k = 1 + rng.int(n);
    assert.equal(kthLargest(Float64Array.from(values), k), sorted[k - 1], `n ${n}, k ${k}`);
    const kept = topKMask(values, k).filter((v) => v !== -Infinity).length;
    assert.equal(kept, sorted.filter((v) => v >= sorted[k - 1]).length);
  }
});

test("with the KV cache each new token feeds one position; past the context the cropped window is fed again", async () => {
  const fed: number[] = [];
  const original = fixtureGpt.forward;
  fixtureGpt.forward = ((ids: tf.Tensor2D, opts?: ForwardOptions) => {
    if (opts?.cache) fed.push(ids.shape[1]);
    return original.call(fixtureGpt, ids, opts);
  }) as typeof original;
  try {
    await generate(fixtureGpt, cases[0].ids, { maxNewTokens: 31, temperature: 0 });
  } finally {
    fixtureGpt.forward = original;
  }
  // prompt of 4, then 1 per token until the 32 positions are full (4 + 28), then a full window per token
  assert.deepEqual(fed, [4, ...new Array(28).fill(1), 32, 32]);
});

// Generation is memory-bound on the weights, and each kernel also has a fixed cost (~0.05–0.1 ms on tensorflow
// and wasm) that one-row tensors cannot hide: 12 blocks × 75 kernels were a third of a 124M token's time. The
// count is a load-independent figure; this bound is what one block takes now (48 on wasm and cpu, 52 on
// tensorflow, some of whose kernels run others); before, a block took 75–85.
test("a KV-cached token runs at most 52 kernels per block, plus the embedding and the head", async () => {
  const cache = fixtureGpt.newCache();
  const ids = cases[0].ids;
  tf.tidy(() => fixtureGpt.forward(tf.tensor2d([ids], [1, ids.length], "int32"), { lastOnly: true, cache }));
  const next = tf.tensor2d([[ids[0]]], [1, 1], "int32");
  try {
    const { kernels } = await tf.profile(() => {
      fixtureGpt.forward(next, { lastOnly: true, cache }).dispose();
    });
    const blocks = fixtureGpt.config.n_layers;
    assert.ok(kernels.length <= 52 * blocks + 20, `${kernels.length} kernels for ${blocks} blocks`);
  } finally {
    next.dispose();
    cache.dispose();
  }
});
