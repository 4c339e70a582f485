import { test, before } from "node:test";
import assert from "node:assert/strict";
import { mkdtemp, readFile, writeFile, copyFile, rm, mkdir } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import * as tf from "@tensorflow/tfjs";
import { useBackend } from "../src/backend/index.js";
import { buildGPT } from "../src/model/gpt.js";
import { loadModelDir } from "../src/model/model-dir.js";
import { type GPTConfig } from "../src/model/config.js";
import {
  openaiToInternal,
  internalToOpenai,
  openGpt2Checkpoint,
  writeModelDirFromCheckpoint,
  gpt2Config,
} from "../src/weights/gpt2.js";
import { GPT2_HPARAMS } from "../src/weights/gpt2-sizes.js";
import { writeTensorBundle } from "../src/formats/tf-bundle.js";
import { writeSafetensors, readSafetensors } from "../src/formats/safetensors.js";
import { FileFormatError, UsageError } from "../src/errors.js";
import { countParameters, parameterShapes } from "../src/model/config.js";
import { sharedPath } from "./helpers/shared.js";
import { tinyConfig } from "./helpers/tiny-config.js";

before(async () => {
  await useBackend("cpu");
});

const fixture = (...p: string[]) => sharedPath("fixtures", "gpt2-tiny", ...p);
const TINY: GPTConfig = tinyConfig({ vocab_size: 50257, context_length: 32, qkv_bias: true, tied_head: true });

async function tempDir(): Promise<string> {
  return mkdtemp(join(tmpdir(), "llmctl-gpt2-"));
}

/** Deterministic pseudo-random values (no Math.random: failures must reproduce). */
function values(n: number, seed: number): Float32Array {
  const out = new Float32Array(n);
  let s = seed >>> 0 || 1;
  for (let i = 0; i < n; i++) {
    s = (Math.imul(s, 1664525) + 1013904223) >>> 0;
    out[i] = (s / 2 ** 32 - 0.5) * 0.2;
  }
  return out;
}

/** A synthetic OpenAI checkpoint for cfg, optionally dropping or reshaping a tensor. */
async function writeOpenAI(
  dir: string,
  cfg: GPTConfig,
  edit: { drop?: string; reshape?: [string, number[]] } = {},
): Promise<Map<string, Float32Array>> {
  await mkdir(dir, { recursive: true });
  await writeFile(
    join(dir, "hparams.json"),
    JSON.stringify({
      n_vocab: cfg.vocab_size,
      n_ctx: cfg.context_length,
      n_embd: cfg.emb_dim,
      n_head: cfg.n_heads,
      n_layer: cfg.n_layers,
    }),
  );
  const ours = new Map<string, Float32Array>();
  const tensors = [...parameterShapes(cfg)].map(([name, shape], k) => {
    const data = values(
      shape.reduce((a, b) => a * b, 1),
      k + 1,
    );
    ours.set(name, data);
    const key = internalToOpenai(name);
    const isConv = key.endsWith("/w");
    return { key, shape: edit.reshape?.[0] === key ? edit.reshape[1] : isConv ? [1, ...shape] : shape, data };
  });
  await writeTensorBundle(
    join(dir, "model.ckpt"),
    tensors.filter((t) => t.key !== edit.drop),
  );
  await writeFile(
    join(dir, "checkpoint"),
    'model_checkpoint_path: "model.ckpt"\nall_model_checkpoint_paths: "model.ckpt"\n',
  );
  return ours;
}

test("our GPT-2 shapes are the ones the model builds (every head/bias variant)", () => {
  for (const cfg of [
    { ...TINY, vocab_size: 97, context_length: 12, n_layers: 3 },
    { ...TINY, vocab_size: 97, context_length: 12, tied_head: false },
    { ...TINY, vocab_size: 97, context_length: 12, qkv_bias: false, tied_head: false },
  ]) {
    const gpt = buildGPT(cfg, { initialize: false });
    try {
      assert.deepEqual(parameterShapes(cfg), new Map([...gpt.namedWeights()].map(([name, v]) => [name, v.shape])));
    } finally {
      gpt.dispose();
    }
  }
  // 124M as loaded: 124,439,808 parameters.
  assert.equal(countParameters(gpt2Config(GPT2_HPARAMS["124M"])), 124_439_808);
  assert.equal(countParameters(gpt2Config(GPT2_HPARAMS["1558M"])), 1_557_611_200);
});

test("OpenAI ↔ internal names round-trip for every tensor, including two-digit layers", () => {
  const cfg = gpt2Config(GPT2_HPARAMS["1558M"]);
  for (const name of parameterShapes(cfg).keys()) {
    const openai = internalToOpenai(name);
    assert.match(openai, /^model\//);
    assert.equal(openaiToInternal(openai), name, openai);
  }
  assert.equal(internalToOpenai("h.47.mlp.c_proj.weight"), "model/h47/mlp/c_proj/w");
  assert.equal(internalToOpenai("h.3.ln_2.bias"), "model/h3/ln_2/b");
  assert.equal(openaiToInternal("model/h12/attn/c_attn/b"), "h.12.attn.c_attn.bias");
  assert.equal(openaiToInternal("model/ln_f/g"), "ln_f.weight");
  assert.equal(openaiToInternal("global_step"), undefined);
});

test("gpt2-tiny tf/ and hf/ convert to identical model directories that give the reference logits", async () => {
  const dir = await tempDir();
  const outs: string[] = [];
  for (const src of [fixture("tf"), fixture("hf"), join(fixture("tf"), "model.ckpt.index")]) {
    const ck = await openGpt2Checkpoint(src);
    try {
      assert.deepEqual(ck.config, TINY);
      const out = join(dir, `m${outs.length}`);
      let last = 0;
      const meta = await writeModelDirFromCheckpoint(ck, out, { onProgress: (p) => (last = p.done) });
      assert.equal(last, parameterShapes(TINY).size);
      assert.deepEqual(meta.model, TINY);
      assert.deepEqual(meta.head, { kind: "lm" });
      outs.push(out);
    } finally {
      await ck.close();
    }
  }
  const [a, b, c] = await Promise.all(outs.map((o) => readFile(join(o, "model.safetensors"))));
  assert.ok(a!.equals(b!), "OpenAI and HF conversions are byte-identical");
  assert.ok(a!.equals(c!));
  const cfgJson = JSON.parse(await readFile(join(outs[0]!, "config.json"), "utf8"));
  assert.equal(cfgJson.format, "llmctl-model");
  assert.equal(cfgJson.tokenizer, "gpt2");

  // The converted HF file holds the same values as the original, without the mask buffers.
  const conv = await readSafetensors(join(outs[1]!, "model.safetensors"));
  const orig = await readSafetensors(fixture("hf", "model.safetensors"));
  assert.equal(conv.tensors.size, orig.tensors.size - 2);
  for (const name of conv.tensors.keys()) assert.deepEqual(await conv.read(name), await orig.read(name));
  await conv.close();
  await orig.close();

  // Through the model: last-position logits within 1e-3 of the PyTorch reference, argmax per position exact.
  const expected = JSON.parse(await readFile(fixture("expected.json"), "utf8"));
  const { gpt } = await loadModelDir(outs[0]!);
  try {
    for (const [k, c] of (
      expected.cases as { ids: number[]; argmax_per_position: number[]; logits_last_file: string }[]
    ).entries()) {
      const ref = new Float32Array((await readFile(fixture(c.logits_last_file))).buffer.slice(0));
      const { last, argmax } = tf.tidy(() => {
        const logits = gpt.forward(tf.tensor2d([c.ids], [1, c.ids.length], "int32")); // [1,T,V]
        return {
          last: logits.slice([0, c.ids.length - 1, 0], [1, 1, -1]).dataSync() as Float32Array,
          argmax: Array.from(logits.argMax(-1).dataSync()),
        };
      });
      let maxDiff = 0;
      for (let i = 0; i < ref.length; i++) maxDiff = Math.max(maxDiff, Math.abs(last[i]! - ref[i]!));
      assert.ok(maxDiff <= 1e-3, `case ${k}: max |logit diff| ${maxDiff}`);
      assert.deepEqual(argmax, c.argmax_per_position, `case ${k}`);
    }
  } finally {
    gpt.dispose();
  }
  await rm(dir, { recursive: true });
});

test("a bare .safetensors infers its config from shapes; heads need GPT-2's head size 64 or --heads", async () => {
  const dir = await tempDir();
  const file = join(dir, "weights.safetensors");
  await copyFile(fixture("hf", "model.safetensors"), file);
  await assert.rejects(
    openGpt2Checkpoint(file),
    (err: unknown) =>
      err instanceof UsageError && /attention heads.*emb_dim 16/.test(err.message) && /--heads/.test(err.fix ?? ""),
  );
  const ck = await openGpt2Checkpoint(file, { nHeads: 2 });
  assert.deepEqual(ck.config, TINY);
  await ck.close();
  await rm(dir, { recursive: true });
});

test("HF checkpoints with the transformer. prefix and lm_head: tied when equal to wte, untied otherwise", async () => {
  const dir = await tempDir();
  const cfg: GPTConfig = { ...TINY, vocab_size: 50, context_length: 8, emb_dim: 128, n_heads: 2, n_layers: 1 };
  const shapes = parameterShapes(cfg);
  const data = new Map(
    [...shapes].map(([n, s], k) => [
      n,
      values(
        s.reduce((a, b) => a * b, 1),
        k + 7,
      ),
    ]),
  );
  const entries = (lmHead?: Float32Array) => [
    ...[...shapes].map(([name, shape]) => ({ name: `transformer.${name}`, shape, data: data.get(name)! })),
    { name: "transformer.h.0.attn.bias", shape: [1, 1, 8, 8], data: new Float32Array(64).fill(1) },
    { name: "transformer.h.0.attn.masked_bias", shape: [], data: new Float32Array([-1e4]) },
    ...(lmHead ? [{ name: "lm_head.weight", shape: [50, 128], data: lmHead }] : []),
  ];
  await writeSafetensors(join(dir, "tied.safetensors"), entries(data.get("wte.weight")!));
  const tied = await openGpt2Checkpoint(join(dir, "tied.safetensors"));
  assert.deepEqual(tied.config, { ...cfg, n_heads: 2 }); // 128 / 64
  assert.ok(!tied.tensors.has("lm_head.weight"));
  await tied.close();

  const head = values(50 * 128, 99);
  await writeSafetensors(join(dir, "untied.safetensors"), entries(head));
  const untied = await openGpt2Checkpoint(join(dir, "untied.safetensors"));
  assert.equal(untied.config.tied_head, false);
  assert.deepEqual(await untied.tensors.get("lm_head.weight")!.read(), head);
  const out = join(dir, "model");
  await writeModelDirFromCheckpoint(untied, out);
  await untied.close();
  const { meta, gpt } = await loadModelDir(out);
  assert.equal(meta.model.tied_head, false);
  assert.deepEqual((await gpt.namedWeights().get("lm_head.weight")!.read().data()) as Float32Array, head);
  gpt.dispose();
  await rm(dir, { recursive: true });
});

test("an OpenAI checkpoint with 11 layers (h10 sorts before h2) converts; bad ones name the tensor and shapes", async () => {
  const dir = await tempDir();
  const cfg: GPTConfig = { ...TINY, vocab_size: 30, context_length: 6, emb_dim: 8, n_heads: 2, n_layers: 11 };
  const ours = await writeOpenAI(join(dir, "ok"), cfg);
  const ck = await openGpt2Checkpoint(join(dir, "ok"));
  assert.deepEqual(ck.config, cfg);
  assert.equal(ck.tensors.get("h.10.attn.c_attn.weight")!.sourceName, "model/h10/attn/c_attn/w");
  assert.deepEqual(ck.tensors.get("h.10.attn.c_attn.weight")!.shape, [8, 24]);
  for (const [name, data] of ours) assert.deepEqual(await ck.tensors.get(name)!.read(), data, name);
  await ck.close();

  await writeOpenAI(join(dir, "missing"), cfg, { drop: "model/h7/mlp/c_fc/b" });
  await assert.rejects(
    openGpt2Checkpoint(join(dir, "missing")),
    (err: unknown) =>
      err instanceof FileFormatError && /has no tensor 'model\/h7\/mlp\/c_fc\/b'.*shape \[32\]/.test(err.message),
  );

  await writeOpenAI(join(dir, "shape"), cfg, { reshape: ["model/h3/attn/c_proj/w", [1, 4, 16]] });
  await assert.rejects(
    openGpt2Checkpoint(join(dir, "shape")),
    (err: unknown) =>
      err instanceof FileFormatError &&
      /tensor 'model\/h3\/attn\/c_proj\/w' has shape \[4, 16\], expected \[8, 8\]/.test(err.message),
  );

  await writeOpenAI(join(dir, "conv"), cfg, { reshape: ["model/h0/mlp/c_fc/w", [8, 32]] });
  await assert.rejects(
    openGpt2Checkpoint(join(dir, "conv")),
    /tensor 'model\/h0\/mlp\/c_fc\/w' has shape \[8, 32\], expected \[1, 8, 32\]/,
  );

  // hparams that disagree with the weights (a 355M hparams.json next to smaller weights).
  await writeOpenAI(join(dir, "hp"), cfg);
  await writeFile(join(dir, "hp", "hparams.json"), JSON.stringify({ ...GPT2_HPARAMS["355M"] }));
  await assert.rejects(
    openGpt2Checkpoint(join(dir, "hp")),
    /tensor 'model\/wte' has shape \[30, 8\], expected \[50257, 1024\]/,
  );

  await mkdir(join(dir, "empty"));
  await assert.rejects(
    openGpt2Checkpoint(join(dir, "empty")),
    (err: unknown) => err instanceof UsageError && /neither an OpenAI checkpoint/.test(err.message),
  );
  await assert.rejects(openGpt2Checkpoint(join(dir, "nope")), /does not exist/);
  await rm(dir, { recursive: true });
});
