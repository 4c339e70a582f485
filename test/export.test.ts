import { test, before } from "node:test";
import assert from "node:assert/strict";
import { spawnSync } from "node:child_process";
import { mkdtemp, readFile, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import * as tf from "@tensorflow/tfjs";
import { useBackend } from "../src/backend/index.js";
import { buildGPT, type GPTModel } from "../src/model/gpt.js";
import { loadModelDir, saveModelDir } from "../src/model/model-dir.js";
import { type GPTConfig } from "../src/model/config.js";
import { openGpt2Checkpoint, writeModelDirFromCheckpoint } from "../src/weights/gpt2.js";
import { readAllSafetensors, readSafetensors, writeSafetensors } from "../src/formats/safetensors.js";
import { FileFormatError } from "../src/errors.js";
import { exportHuggingFace } from "../src/weights/hf-export.js";
import { byteToUnicode } from "../src/tokenizer/vocab.js";
import { getTokenizer } from "../src/tokenizer/index.js";
import { runCli } from "./helpers/cli.js";
import { sharedPath } from "./helpers/shared.js";
import { tinyConfig } from "./helpers/tiny-config.js";

before(async () => {
  await useBackend("cpu");
});

const fixture = (...p: string[]) => sharedPath("fixtures", "gpt2-tiny", ...p);
const env = { LLMCTL_BACKEND: "cpu" };

async function convertFixture(out: string): Promise<void> {
  const ck = await openGpt2Checkpoint(fixture("tf"));
  try {
    await writeModelDirFromCheckpoint(ck, out);
  } finally {
    await ck.close();
  }
}

function logits(gpt: GPTModel, ids: number[]): Float32Array {
  return tf.tidy(() => gpt.forward(tf.tensor2d([ids], [1, ids.length], "int32")).dataSync() as Float32Array);
}

function maxAbsDiff(a: Float32Array, b: Float32Array): number {
  assert.equal(a.length, b.length);
  let m = 0;
  for (let i = 0; i < a.length; i++) m = Math.max(m, Math.abs(a[i]! - b[i]!));
  return m;
}

test("export --format hf writes the fixture's own HF tensors back, with a GPT2Config, and reads back identically", async () => {
  const dir = await mkdtemp(join(tmpdir(), "llmctl-export-"));
  await convertFixture(join(dir, "model"));
  const r = await runCli(
    ["export", "--model", join(dir, "model"), "--format", "hf", "--out", join(dir, "hf"), "--json"],
    { env },
  );
  assert.equal(r.code, 0, r.stderr);
  assert.deepEqual(JSON.parse(r.stdout).files.sort(), [
    "config.json",
    "generation_config.json",
    "merges.txt",
    "model.safetensors",
    "tokenizer_config.json",
    "vocab.json",
  ]);

  const hfCfg = JSON.parse(await readFile(join(dir, "hf", "config.json"), "utf8"));
  const orig = JSON.parse(await readFile(fixture("hf", "config.json"), "utf8"));
  for (const key of [
    "model_type",
    "activation_function",
    "n_embd",
    "n_head",
    "n_layer",
    "n_positions",
    "n_ctx",
    "vocab_size",
    "layer_norm_epsilon",
    "tie_word_embeddings",
    "n_inner",
    "scale_attn_weights",
  ]) {
    assert.deepEqual(hfCfg[key], orig[key], key);
  }
  // Every tensor of the original HF file except the causal-mask buffers, bit for bit; no lm_head (tied).
  const exp = await readSafetensors(join(dir, "hf", "model.safetensors"));
  const src = await readSafetensors(fixture("hf", "model.safetensors"));
  assert.deepEqual(exp.metadata, { format: "pt" });
  const srcNames = [...src.tensors.keys()].filter((n) => !/^h\.\d+\.attn\.bias$/.test(n)).sort();
  assert.deepEqual([...exp.tensors.keys()].sort(), srcNames);
  for (const n of srcNames) assert.deepEqual(await exp.read(n), await src.read(n), n);
  await exp.close();
  await src.close();

  // Back through the HF reader: same config, same weights file.
  const ck = await openGpt2Checkpoint(join(dir, "hf"));
  await writeModelDirFromCheckpoint(ck, join(dir, "back"));
  await ck.close();
  assert.ok(
    (await readFile(join(dir, "back", "model.safetensors"))).equals(
      await readFile(join(dir, "model", "model.safetensors")),
    ),
  );

  const again = await runCli(["export", "--model", join(dir, "model"), "--out", join(dir, "hf")], { env });
  assert.equal(again.code, 2);
  assert.match(again.stderr, /already holds config.json, generation_config.json, model.safetensors/);
  await rm(dir, { recursive: true });
});

test("an untied model without qkv bias exports with lm_head.weight and zero c_attn biases and gives the same logits back", async () => {
  const dir = await mkdtemp(join(tmpdir(), "llmctl-export-untied-"));
  const cfg: GPTConfig = tinyConfig({ n_heads: 4, drop_rate: 0.1 });
  const gpt = buildGPT(cfg, { seed: 7 });
  await saveModelDir(join(dir, "model"), gpt);
  await exportHuggingFace(join(dir, "model"), join(dir, "hf"), { tokenizer: false });
  const hfCfg = JSON.parse(await readFile(join(dir, "hf", "config.json"), "utf8"));
  assert.equal(hfCfg.tie_word_embeddings, false);
  assert.equal(hfCfg.resid_pdrop, 0.1);
  const st = await readSafetensors(join(dir, "hf", "model.safetensors"));
  assert.ok(st.tensors.has("lm_head.weight"));
  // beside lm_head.weight the base weights carry the `transformer.` prefix, as GPT2LMHeadModel.save_pretrained writes
  assert.ok(st.tensors.has("transformer.wte.weight") && !st.tensors.has("wte.weight"));
  assert.deepEqual([...(await st.read("transformer.h.1.attn.c_attn.bias"))], new Array(48).fill(0));
  await st.close();

  const ck = await openGpt2Checkpoint(join(dir, "hf"));
  assert.deepEqual(ck.config, { ...cfg, drop_rate: 0, qkv_bias: true });
  await writeModelDirFromCheckpoint(ck, join(dir, "back"));
  await ck.close();
  const { gpt: back } = await loadModelDir(join(dir, "back"));
  const ids = [5, 17, 3, 96, 0, 42];
  assert.ok(maxAbsDiff(logits(gpt, ids), logits(back, ids)) === 0, "a zero bias computes exactly what no bias does");
  gpt.dispose();
  back.dispose();

  const clf = buildGPT(cfg, { seed: 1, head: { kind: "classifier", num_classes: 2 } });
  await saveModelDir(join(dir, "clf"), clf, { labels: ["ham", "spam"] });
  clf.dispose();
  await assert.rejects(exportHuggingFace(join(dir, "clf"), join(dir, "hf2")), /is a classifier/);
  await rm(dir, { recursive: true });
});

test("export of a model directory with a corrupt weights file is a file error (exit 1) naming the tensor", async () => {
  const dir = await mkdtemp(join(tmpdir(), "llmctl-export-corrupt-"));
  const cfg: GPTConfig = tinyConfig({ n_heads: 4, qkv_bias: true, tied_head: true });
  const gpt = buildGPT(cfg, { seed: 3 });
  await saveModelDir(join(dir, "model"), gpt);
  gpt.dispose();
  const weights = join(dir, "model", "model.safetensors");
  const { tensors } = await readAllSafetensors(weights);
  const entries = [...tensors].map(([name, t]) => ({ name, ...t }));
  await writeSafetensors(
    weights,
    entries.filter((e) => e.name !== "h.1.mlp.c_fc.bias"),
  );
  await assert.rejects(
    exportHuggingFace(join(dir, "model"), join(dir, "hf")),
    (e: unknown) => e instanceof FileFormatError && /has no tensor 'h\.1\.mlp\.c_fc\.bias'/.test(e.message),
  );
  await writeSafetensors(
    weights,
    entries.map((e) => (e.name === "wpe.weight" ? { ...e, shape: [16, 12] } : e)),
  );
  const r = await runCli(["export", "--model", join(dir, "model"), "--out", join(dir, "hf")], { env });
  assert.equal(r.code, 1, r.stderr);
  assert.match(
    r.stderr,
    /tensor 'wpe\.weight' has shape \[16, 12\], expected \[12, 16\] — re-save the model directory/,
  );
  assert.equal(r.stderr.trim().split("\n").length, 1);
  await rm(dir, { recursive: true });
});

/** GPT-2 BPE as transformers' GPT2Tokenizer does it, from vocab.json + merges.txt only. */
function hfStyleEncoder(vocab: Record<string, number>, mergesTxt: string): (text: string) => number[] {
  const lines = mergesTxt.split("\n").slice(1, -1);
  const ranks = new Map(lines.map((l, i) => [l, i]));
  const b2u = byteToUnicode();
  const pat = /'s|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+/gu;
  const bpe = (word: string[]): string[] => {
    for (;;) {
      let best = -1;
      let bestRank = Infinity;
      for (let i = 0; i + 1 < word.length; i++) {
        const r = ranks.get(`${word[i]} ${word[i + 1]}`);
        if (r !== undefined && r < bestRank) [best, bestRank] = [i, r];
      }
      if (best < 0) return word;
      const [a, b] = [word[best]!, word[best + 1]!];
      const next: string[] = [];
      for (let i = 0; i < word.length; i++) {
        if (i + 1 < word.length && word[i] === a && word[i + 1] === b) {
          next.push(a + b);
          i++;
        } else next.push(word[i]!);
      }
      word = next;
    }
  };
  return (text) =>
    [...text.matchAll(pat)].flatMap((m) =>
      bpe(Array.from(Buffer.from(m[0], "utf8"), (b) => b2u[b]!)).map((t) => {
        const id = vocab[t];
        assert.ok(id !== undefined, `token ${t} not in vocab.json`);
        return id;
      }),
    );
}

test("exported vocab.json + merges.txt tokenize exactly as js-tiktoken's GPT-2 encoding", async () => {
  const dir = await mkdtemp(join(tmpdir(), "llmctl-export-tok-"));
  await convertFixture(join(dir, "model"));
  await exportHuggingFace(join(dir, "model"), join(dir, "hf"));
  const vocab = JSON.parse(await readFile(join(dir, "hf", "vocab.json"), "utf8")) as Record<string, number>;
  const merges = await readFile(join(dir, "hf", "merges.txt"), "utf8");
  assert.equal(Object.keys(vocab).length, 50257);
  assert.equal(vocab["<|endoftext|>"], 50256);
  assert.equal(vocab["Ġthe"], 262);
  assert.deepEqual(merges.split("\n").slice(0, 5), ["#version: 0.2", "Ġ t", "Ġ a", "h e", "i n"]);
  assert.equal(merges.split("\n").length, 50002); // header + 50000 merges + final newline
  const encode = hfStyleEncoder(vocab, merges);
  const tok = getTokenizer();
  const verdict = await readFile(sharedPath("datasets", "the-verdict.txt"), "utf8");
  const texts = [
    "Every effort moves you",
    "Hello, do you like tea? In the sunlit terraces of someunknownPlace.",
    "  leading spaces, tabs\tand\nnewlines\n\n  ",
    "Ünïcödé — ✓ 日本語 emoji 🙂 and numbers 1234567 3.14",
    "it's they're we've I'm you'll he'd",
    verdict.slice(0, 4000),
  ];
  for (const t of texts) assert.deepEqual(encode(t), tok.encode(t, { allowedSpecial: [] }), t.slice(0, 40));
  await rm(dir, { recursive: true });
});

const PY_CHECK = `
import json, sys, torch
from transformers import GPT2LMHeadModel, GPT2Tokenizer
d, batches, text = sys.argv[1], json.loads(sys.argv[2]), sys.argv[3]
m = GPT2LMHeadModel.from_pretrained(d).eval()
with torch.no_grad():
    out = [m(torch.tensor([ids])).logits[0, -1].tolist() for ids in batches]
tokens = GPT2Tokenizer.from_pretrained(d).encode(text) if text else []
print(json.dumps({"logits": out, "tokens": tokens}))
`;

// $LLMCTL_PYTHON picks the interpreter (e.g. a virtualenv's), default python3 on PATH.
const PYTHON = process.env.LLMCTL_PYTHON ?? "python3";

function runTransformers(dir: string, batches: number[][], text = ""): { logits: number[][]; tokens: number[] } {
  const run = spawnSync(PYTHON, ["-c", PY_CHECK, dir, JSON.stringify(batches), text], {
    encoding: "utf8",
    maxBuffer: 256 << 20,
  });
  assert.equal(run.status, 0, run.stderr);
  return JSON.parse(run.stdout.trim().split("\n").at(-1)!);
}

test("transformers' GPT2LMHeadModel and GPT2Tokenizer load exports and agree with the reference (needs python3 with torch + transformers)", async (t) => {
  const probe = spawnSync(PYTHON, ["-c", "import torch, transformers, safetensors"], { encoding: "utf8" });
  if (probe.status !== 0) {
    t.skip(
      `${PYTHON} with torch, transformers and safetensors is not available (pip install torch transformers safetensors; LLMCTL_PYTHON picks the interpreter)`,
    );
    return;
  }
  const dir = await mkdtemp(join(tmpdir(), "llmctl-export-py-"));
  // The fixture: transformers' logits equal the PyTorch reference files; its tokenizer matches the ids.
  await convertFixture(join(dir, "model"));
  await exportHuggingFace(join(dir, "model"), join(dir, "hf"));
  const expected = JSON.parse(await readFile(fixture("expected.json"), "utf8"));
  const cases = expected.cases as { ids: number[]; text?: string; logits_last_file: string }[];
  const res = runTransformers(
    join(dir, "hf"),
    cases.map((c) => c.ids),
    cases[1]!.text,
  );
  for (const [k, c] of cases.entries()) {
    const ref = new Float32Array((await readFile(fixture(c.logits_last_file))).buffer.slice(0));
    const diff = maxAbsDiff(Float32Array.from(res.logits[k]!), ref);
    assert.ok(diff <= 1e-3, `case ${k}: max |diff| ${diff}`);
    t.diagnostic(`case ${k}: transformers vs reference logits, max |diff| ${diff.toExponential(2)}`);
  }
  assert.deepEqual(res.tokens, cases[1]!.ids);

  // An untied model trained without qkv bias: transformers computes what llmctl computes.
  const cfg: GPTConfig = tinyConfig({ n_heads: 4 });
  const gpt = buildGPT(cfg, { seed: 11 });
  await saveModelDir(join(dir, "untied"), gpt);
  await exportHuggingFace(join(dir, "untied"), join(dir, "hf-untied"), { tokenizer: false });
  const ids = [3, 14, 15, 92, 65, 35, 89, 79];
  const ours = logits(gpt, ids).slice((ids.length - 1) * 97);
  gpt.dispose();
  const theirs = runTransformers(join(dir, "hf-untied"), [ids]).logits[0]!;
  const diff = maxAbsDiff(Float32Array.from(theirs), ours);
  assert.ok(diff <= 1e-4, `untied: max |diff| ${diff}`);
  t.diagnostic(`untied, no qkv bias: transformers vs llmctl logits, max |diff| ${diff.toExponential(2)}`);
  await rm(dir, { recursive: true });
});
