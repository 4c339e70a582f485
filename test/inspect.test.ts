// Each view of `llmctl inspect` against a known answer: the book's numbers, the fixture's weights computed by
// hand, and transformers' output_attentions.
import { test } from "node:test";
import assert from "node:assert/strict";
import { spawnSync } from "node:child_process";
import { mkdtemp, readFile, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { runCli } from "./helpers/cli.js";
import { cliEnv } from "./helpers/backend.js";
import { sharedPath } from "./helpers/shared.js";
import { expected, fixture } from "./helpers/fixture.js";
import { readAllSafetensors } from "../src/formats/safetensors.js";

const VERDICT = () => sharedPath("datasets", "the-verdict.txt");
const PROMPT = "Every effort moves you";

// the views' JSON, each test reading the fields it checks
// eslint-disable-next-line @typescript-eslint/no-explicit-any
async function json(args: string[]): Promise<any> {
  const r = await runCli([...args, "--json"], { env: cliEnv() });
  assert.equal(r.code, 0, r.stderr);
  return JSON.parse(r.stdout);
}

let modelDir: string | undefined;
/** the gpt2-tiny fixture as an llmctl model directory, converted once */
async function tinyModel(): Promise<string> {
  if (modelDir) return modelDir;
  const dir = await mkdtemp(join(tmpdir(), "llmctl-inspect-"));
  const r = await runCli(["load-gpt2", "--from", fixture("hf"), "--out", join(dir, "m")]);
  assert.equal(r.code, 0, r.stderr);
  modelDir = join(dir, "m");
  return modelDir;
}

test.after(async () => {
  if (modelDir) await rm(join(modelDir, ".."), { recursive: true, force: true });
});

test("inspect windows gives the book's chapter 2 batches of the-verdict", async () => {
  const first = await json(["inspect", "windows", "--file", VERDICT(), "--max-length", "4", "--stride", "1"]);
  assert.equal(first.tokens, 5145);
  assert.deepEqual(first.batches[0].inputs, [[40, 367, 2885, 1464]]);
  assert.deepEqual(first.batches[0].targets, [[367, 2885, 1464, 1807]]);
  assert.deepEqual(first.batches[0].input_text, ["I HAD always"]);
  assert.deepEqual(first.batches[0].target_text, [" HAD always thought"]);
  // the book's second batch: the window moved by the stride
  const two = await json(["inspect", "windows", "--file", VERDICT(), "--batches", "2"]);
  assert.deepEqual(two.batches[1].inputs, [[367, 2885, 1464, 1807]]);
  assert.deepEqual(two.batches[1].targets, [[2885, 1464, 1807, 3619]]);

  const eight = await json([
    "inspect",
    "windows",
    "--file",
    VERDICT(),
    "--batch-size",
    "8",
    "--max-length",
    "4",
    "--stride",
    "4",
  ]);
  assert.deepEqual(eight.batches[0].inputs, [
    [40, 367, 2885, 1464],
    [1807, 3619, 402, 271],
    [10899, 2138, 257, 7026],
    [15632, 438, 2016, 257],
    [922, 5891, 1576, 438],
    [568, 340, 373, 645],
    [1049, 5975, 284, 502],
    [284, 3285, 326, 11],
  ]);
  assert.deepEqual(eight.batches[0].targets[7], [3285, 326, 11, 287]);
  assert.equal(eight.batches_per_epoch, 160); // 1286 windows, drop_last

  const text = await runCli(["inspect", "windows", "--file", VERDICT()]);
  assert.equal(text.code, 0, text.stderr);
  assert.match(text.stdout, /40 367 2885 1464\s+367 2885 1464 1807\s+"I HAD always"/);
});

test("inspect next --book-example gives chapter 5's probabilities at temperatures 1, 0.1, 5 and under top-3", async () => {
  // computed with numpy from the book's logits [4.51, 0.89, -1.90, 6.75, 1.63, -1.62, -1.89, 6.28, 1.79]
  const golden: Record<string, number[]> = {
    "1": [0.0609, 0.0016, 0.0001, 0.5721, 0.0034, 0.0001, 0.0001, 0.3576, 0.004],
    "0.1": [0, 0, 0, 0.991, 0, 0, 0, 0.009, 0],
    "5": [0.1546, 0.075, 0.0429, 0.2421, 0.0869, 0.0454, 0.043, 0.2203, 0.0898],
  };
  for (const [t, probs] of Object.entries(golden)) {
    const view = await json(["inspect", "next", "--book-example", "--temperature", t]);
    assert.equal(view.last.rows.length, 9);
    assert.equal(view.last.rows[3].token, "forward");
    view.last.rows.forEach((r: { tempered: number }, i: number) =>
      assert.ok(Math.abs(r.tempered - probs[i]) < 5e-5, `T=${t} token ${i}: ${r.tempered} vs ${probs[i]}`),
    );
  }
  // the book's top-k example: [0.0615, 0, 0, 0.5775, 0, 0, 0, 0.3610, 0]
  const topK = await json(["inspect", "next", "--book-example", "--top-k", "3"]);
  const book = [0.0615, 0, 0, 0.5775, 0, 0, 0, 0.361, 0];
  topK.last.rows.forEach((r: { sampled_from: number }, i: number) =>
    assert.ok(Math.abs(r.sampled_from - book[i]) < 5e-5, `top-3 token ${i}: ${r.sampled_from} vs ${book[i]}`),
  );
  const text = await runCli(["inspect", "next", "--book-example", "--top-k", "3"]);
  assert.match(text.stdout, /"forward"\s+6\.75\s+0\.5721\s+0\.5721\s+0\.5775/);
});

/** GPT-2's LayerNorm, float64, over the last axis */
function layerNorm(x: number[], g: Float32Array, b: Float32Array): number[] {
  const mean = x.reduce((a, v) => a + v, 0) / x.length;
  const variance = x.reduce((a, v) => a + (v - mean) ** 2, 0) / x.length;
  return x.map((v, i) => ((v - mean) / Math.sqrt(variance + 1e-5)) * g[i] + b[i]);
}

test("inspect embeddings and attention equal the fixture's weights computed by hand; attention rows are causal distributions", async () => {
  const dir = await tinyModel();
  const { tensors } = await readAllSafetensors(fixture("hf", "model.safetensors"));
  const w = (name: string) => tensors.get(name)!.data;
  const D = 16;
  const ids = [6109, 3626, 6100, 345]; // "Every effort moves you"

  const emb = await json(["inspect", "embeddings", "-m", dir, "-p", PROMPT]);
  assert.deepEqual(emb.ids, ids);
  assert.deepEqual(emb.tokens, ["Every", " effort", " moves", " you"]);
  assert.deepEqual(emb.shapes.token_embeddings, [4, D]);
  assert.deepEqual(emb.shapes.wte, [50257, D]);
  const wte = w("wte.weight");
  const wpe = w("wpe.weight");
  const x = ids.map((id, t) => Array.from({ length: D }, (_, d) => wte[id * D + d] + wpe[t * D + d]));
  ids.forEach((id, t) => {
    assert.deepEqual(emb.token_embeddings[t], Array.from(wte.subarray(id * D, (id + 1) * D)));
    assert.deepEqual(emb.position_embeddings[t], Array.from(wpe.subarray(t * D, (t + 1) * D)));
    emb.input_embeddings[t].forEach((v: number, d: number) => assert.ok(Math.abs(v - x[t][d]) < 1e-6));
  });
  assert.deepEqual(emb.one_hot.shape, [4, 50257]);
  assert.ok(emb.one_hot.max_abs_difference < 1e-6, `one-hot product vs lookup: ${emb.one_hot.max_abs_difference}`);

  // layer 0 by hand: LayerNorm, c_attn, softmax(q·kᵀ/√8) over the past, per head
  const att = await json(["inspect", "attention", "-m", dir, "-p", PROMPT, "--layer", "0"]);
  assert.deepEqual(att.heads, [0, 1]);
  const h = x.map((row) => layerNorm(row, w("h.0.ln_1.weight"), w("h.0.ln_1.bias")));
  const cw = w("h.0.attn.c_attn.weight"); // [16,48]
  const cb = w("h.0.attn.c_attn.bias");
  const qkv = h.map((row) =>
    Array.from({ length: 3 * D }, (_, j) => cb[j] + row.reduce((a, v, i) => a + v * cw[i * 3 * D + j], 0)),
  );
  for (const head of [0, 1]) {
    for (let q = 0; q < 4; q++) {
      const scores = Array.from({ length: q + 1 }, (_, k) => {
        let s = 0;
        for (let d = 0; d < 8; d++) s += qkv[q][head * 8 + d] * qkv[k][D + head * 8 + d];
        return s / Math.sqrt(8);
      });
      const max = Math.max(...scores);
      const e = scores.map((s) => Math.exp(s - max));
      const sum = e.reduce((a, v) => a + v, 0);
      att.weights[head][q].forEach((v: number, k: number) => {
        const want = k <= q ? e[k] / sum : 0;
        assert.ok(Math.abs(v - want) < 1e-5, `head ${head} [${q},${k}]: ${v} vs ${want}`);
      });
    }
  }
  // every layer: rows sum to 1, nothing above the diagonal
  const last = await json(["inspect", "attention", "-m", dir, "-p", PROMPT, "--layer", "1", "--head", "1"]);
  assert.deepEqual(last.heads, [1]);
  for (const [q, row] of (last.weights[0] as number[][]).entries()) {
    assert.ok(Math.abs(row.reduce((a, v) => a + v, 0) - 1) < 1e-5);
    assert.ok(row.slice(q + 1).every((v) => v === 0));
  }
});

test("inspect attention --out writes one heatmap per head with the tokens on both axes", async () => {
  const dir = await tinyModel();
  const out = join(dir, "..", "attention.svg");
  const r = await runCli(["inspect", "attention", "-m", dir, "-p", PROMPT, "--out", out], { env: cliEnv() });
  assert.equal(r.code, 0, r.stderr);
  assert.match(r.stdout, /layer 0, head 1/);
  const svg = await readFile(out, "utf8");
  assert.match(svg, /^<svg /);
  assert.equal(svg.match(/>head \d</g)?.length, 2);
  assert.equal(svg.match(/>effort</g)?.length, 4); // each head: a row label and a column label
  assert.equal(svg.match(/<rect [^>]*><title>/g)?.length, 2 * 16);
});

test("inspect next: every position's likeliest next token is the fixture's argmax, and the last row sums to 1", async () => {
  const dir = await tinyModel();
  const c = expected.cases[1]; // "Hello, I am"
  const prompt = (c as unknown as { text: string }).text;
  const view = await json([
    "inspect",
    "next",
    "-m",
    dir,
    "-p",
    prompt,
    "--top",
    "3",
    "--temperature",
    "0.5",
    "--top-k",
    "2",
  ]);
  assert.deepEqual(
    view.positions.map((p: { id: number }) => p.id),
    c.ids,
  );
  assert.deepEqual(
    view.positions.map((p: { next: { id: number }[] }) => p.next[0].id),
    c.argmax_per_position,
  );
  assert.deepEqual(
    view.last.rows.slice(0, 2).map((r: { id: number }) => r.id),
    c.top10_last.ids.slice(0, 2),
  );
  const kept = view.last.rows.slice(0, 2).reduce((a: number, r: { sampled_from: number }) => a + r.sampled_from, 0);
  assert.ok(Math.abs(kept - 1) < 1e-9, "top-2 keeps all the probability");
  // softmax at T=1 of the likeliest token: exp(logit − logsumexp)
  const top = view.last.rows[0];
  assert.ok(Math.abs(top.softmax - Math.exp(c.top10_last.logits[0] - c.logsumexp_last)) < 1e-5);
});

test("inspect: a layer or head out of range, a prompt past the context, an empty prompt and a non-SVG --out are one line each", async () => {
  const dir = await tinyModel();
  const cases: [string[], RegExp][] = [
    [
      ["attention", "-m", dir, "-p", PROMPT, "--layer", "2"],
      /--layer 2 is out of range: the model has 2 layers.*0\.\.1/,
    ],
    [["attention", "-m", dir, "-p", PROMPT, "--head", "-1"], /--head -1 is out of range: the model has 2 heads/],
    [
      ["embeddings", "-m", dir, "-p", Array(40).fill("word").join(" ")],
      /the prompt has 40 tokens, more than the model's context of 32/,
    ],
    [["next", "-m", dir, "-p", ""], /the prompt is empty/],
    [["attention", "-m", dir, "-p", PROMPT, "--out", "a.png"], /--out a\.png is not an \.svg file/],
    [["next", "--book-example", "-m", dir], /give --model and --prompt, or --book-example alone/],
    [["windows", "--file", VERDICT(), "--max-length", "6000"], /not one batch of 1/],
    [["windows", "--file", "no-such-file.txt"], /--file no-such-file\.txt: no such file, and not a dataset name/],
  ];
  for (const [args, message] of cases) {
    const r = await runCli(["inspect", ...args], { env: cliEnv() });
    assert.notEqual(r.code, 0, args.join(" "));
    assert.match(r.stderr, message);
    assert.equal(r.stderr.trim().split("\n").length <= 2, true, r.stderr);
    assert.doesNotMatch(r.stderr, /\n\s+at /, "no stack trace");
  }
});

const PY_ATTENTIONS = `
import json, sys, torch
from transformers import GPT2LMHeadModel
m = GPT2LMHeadModel.from_pretrained(sys.argv[1], attn_implementation="eager").eval()
with torch.no_grad():
    out = m(torch.tensor([json.loads(sys.argv[2])]), output_attentions=True)
print(json.dumps([a[0].tolist() for a in out.attentions]))
`;

test("inspect attention equals transformers' output_attentions on the fixture, every layer (needs python3 with transformers)", async (t) => {
  const python = process.env.LLMCTL_PYTHON ?? "python3";
  if (spawnSync(python, ["-c", "import torch, transformers"]).status !== 0) {
    t.skip(`${python} with torch and transformers is not available (LLMCTL_PYTHON picks the interpreter)`);
    return;
  }
  const dir = await tinyModel();
  const prompt = "Hello, I am a language model, and I look at the past only.";
  const ids = (await json(["tokenize", prompt])).ids as number[];
  const run = spawnSync(python, ["-c", PY_ATTENTIONS, fixture("hf"), JSON.stringify(ids)], { encoding: "utf8" });
  assert.equal(run.status, 0, run.stderr);
  const theirs = JSON.parse(run.stdout.trim().split("\n").at(-1)!) as number[][][][]; // [layers][H][T][T]
  let worst = 0;
  for (const [layer, heads] of theirs.entries()) {
    const ours = await json(["inspect", "attention", "-m", dir, "-p", prompt, "--layer", String(layer)]);
    heads.forEach((rows, h) =>
      rows.forEach((row, q) => row.forEach((v, k) => (worst = Math.max(worst, Math.abs(v - ours.weights[h][q][k]))))),
    );
  }
  assert.ok(worst < 1e-4, `max |difference| ${worst}`);
  t.diagnostic(
    `${theirs.length} layers × ${theirs[0].length} heads × ${ids.length}² weights: max |difference| ${worst.toExponential(2)}`,
  );
});
