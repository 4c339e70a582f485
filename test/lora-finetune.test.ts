import { test, before, after } from "node:test";
import assert from "node:assert/strict";
import { mkdtemp, readFile, rm, writeFile } from "node:fs/promises";
import { existsSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import * as tf from "@tensorflow/tfjs";
import { useBackend } from "../src/backend/index.js";
import { type GPTModel } from "../src/model/gpt.js";
import type { GPTConfig } from "../src/model/config.js";
import { loadModelDir } from "../src/model/model-dir.js";
import { readModelMeta } from "../src/model/model-meta.js";
import { sha256File } from "../src/model/lora.js";
import { readAllSafetensors } from "../src/formats/safetensors.js";
import { FileFormatError } from "../src/errors.js";
import { finetuneSpam } from "../src/finetune/spam.js";
import { finetuneInstruct } from "../src/finetune/instruct.js";
import { exportModelDir } from "../src/weights/export-source.js";
import { exportHuggingFace } from "../src/weights/hf-export.js";
import { exportGguf } from "../src/weights/gguf-export.js";
import { readGguf } from "./helpers/gguf-reader.js";
import { loadInstructionData } from "../src/data/instruction-data.js";
import { sharedPath } from "./helpers/shared.js";
import { runCli } from "./helpers/cli.js";
import { cliEnv, testBackend } from "./helpers/backend.js";
import { saveNewModel, tinyConfig } from "./helpers/tiny-config.js";
import { interruptAtStep } from "./helpers/interrupt.js";
import { writeSmallSplit } from "./helpers/spam-split.js";

const CFG: GPTConfig = tinyConfig({ vocab_size: 50257, context_length: 24, qkv_bias: true });
const LORA = { rank: 2, alpha: 4 };
const TRAIN = { epochs: 2, batch_size: 8, lr: 1e-2, eval_freq: 2, eval_iter: 2, max_steps: 4 };

let root: string;
let lmDir: string;
let tiedDir: string;
let split: string;

before(async () => {
  await useBackend(testBackend());
  root = await mkdtemp(join(tmpdir(), "llmctl-lora-"));
  lmDir = join(root, "lm");
  tiedDir = join(root, "lm-tied");
  for (const [dir, tied] of [
    [lmDir, false],
    [tiedDir, true],
  ] as const) {
    await saveNewModel(dir, { ...CFG, tied_head: tied }, 11);
  }
  split = await writeSmallSplit(root, { train: 48, validation: 16, test: 16 });
});

after(async () => {
  await rm(root, { recursive: true, force: true });
});

const ids = () =>
  tf.tensor2d(
    [
      [464, 2068, 7586, 21831, 18045, 625, 262, 16931],
      [40, 1842, 345, 13, 0, 0, 0, 0],
    ],
    [2, 8],
    "int32",
  );

function logits(gpt: GPTModel): Float32Array {
  return tf.tidy(() => gpt.forward(ids())).dataSync() as Float32Array;
}

function maxDiff(a: Float32Array, b: Float32Array): number {
  assert.equal(a.length, b.length);
  let m = 0;
  for (let i = 0; i < a.length; i++) m = Math.max(m, Math.abs(a[i] - b[i]));
  return m;
}

test("finetune spam --lora: adapters in their own file, the base named by path and sha256 and left bit-identical", async () => {
  const sha = await sha256File(join(lmDir, "model.safetensors"));
  const out = join(root, "spam-lora");
  const r = await runCli(
    [
      "finetune",
      "spam",
      "-m",
      lmDir,
      "-o",
      out,
      "--split-dir",
      split,
      "--lora",
      "2",
      "--lora-alpha",
      "4",
      "--lr",
      "1e-2",
      "--max-steps",
      "4",
      "--eval-freq",
      "2",
      "--eval-iter",
      "2",
      "--json",
    ],
    { env: cliEnv() },
  );
  assert.equal(r.code, 0, r.stderr);
  const json = JSON.parse(r.stdout);
  // per block: q, k, v, c_proj 2·(16+16) each, c_fc and mlp c_proj 2·(16+64); the head 2·(16+2)
  assert.equal(json.trainable_parameters, 2 * (4 * 64 + 2 * 160) + 36);
  assert.ok(!existsSync(join(out, "model.safetensors")), "the base is not copied");
  const meta = await readModelMeta(out);
  assert.deepEqual(meta.lora, {
    rank: 2,
    alpha: 4,
    base: lmDir,
    base_sha256: sha,
    own_weights: ["score.weight", "score.bias"],
  });
  assert.equal(await sha256File(join(lmDir, "model.safetensors")), sha);
  const adapters = await readAllSafetensors(join(out, "adapters.safetensors"));
  assert.equal(adapters.tensors.size, 2 * 13 + 2);

  // the run loads (as classify does): the frozen weights are the base's, bit for bit; the adapters trained
  const base = await loadModelDir(lmDir);
  const run = await loadModelDir(out);
  try {
    const baseWeights = base.gpt.namedWeights();
    for (const [name, v] of run.gpt.namedWeights()) {
      if (name.startsWith("score.")) continue;
      assert.deepEqual(v.read().dataSync(), baseWeights.get(name)!.read().dataSync(), name);
    }
    const b = run.gpt.adapterWeights().get("h.0.attn.c_attn.v.lora_B")!;
    assert.ok(
      b
        .read()
        .dataSync()
        .some((x) => x !== 0),
    );
  } finally {
    base.gpt.dispose();
    run.gpt.dispose();
  }
  const cls = await runCli(["classify", "-m", out, "You are a winner! Claim your prize", "--json"], { env: cliEnv() });
  assert.equal(cls.code, 0, cls.stderr);
  assert.equal(JSON.parse(cls.stdout).length, 1);
});

test("a LoRA run resumes after Ctrl-C to the uninterrupted run's adapters, and refuses a base whose weights changed", async () => {
  const base = join(root, "lm-copy");
  await saveNewModel(base, CFG, 11);
  const run = { splitDir: split, lora: LORA, pool: "last" as const, train: { ...TRAIN, max_steps: 7 } };
  const whole = join(root, "whole");
  await finetuneSpam({ modelDir: base, outDir: whole, ...run });
  const parted = join(root, "parted");
  await interruptAtStep(3, (stop) =>
    finetuneSpam({
      modelDir: base,
      outDir: parted,
      ...run,
      ...stop,
    }),
  );
  const resumed = await finetuneSpam({ outDir: parted, resume: true });
  assert.equal(resumed.train.step, 7);
  assert.equal(resumed.trainableParameters, 2 * (4 * 64 + 2 * 160) + 36);
  const a = await readFile(join(whole, "adapters.safetensors"));
  const b = await readFile(join(parted, "adapters.safetensors"));
  assert.ok(a.equals(b), "adapters differ after resume");

  // another base under the same path: the adapters no longer fit it
  await saveNewModel(base, CFG, 12);
  await assert.rejects(
    finetuneSpam({ outDir: parted, resume: true, train: { max_steps: 8 } }),
    (err: unknown) => err instanceof FileFormatError && /weights changed since/.test(err.message),
  );
  await assert.rejects(loadModelDir(parted), /weights changed since/);
});

test("merged exports (llmctl, hf, gguf) give the adapter model's logits within 1e-5; a tied head's merge unties it", async () => {
  const data = join(root, "instructions.json");
  await writeFile(
    data,
    JSON.stringify((await loadInstructionData(sharedPath("datasets", "instruction-data.json"))).slice(0, 30)),
  );
  for (const [name, dir] of [
    ["untied", lmDir],
    ["tied", tiedDir],
  ] as const) {
    const out = join(root, `instruct-lora-${name}`);
    const r = await finetuneInstruct({
      modelDir: dir,
      outDir: out,
      data,
      lora: LORA,
      train: { ...TRAIN, max_steps: 3, max_length: 24 },
      responseTokens: 0,
    });
    assert.equal(r.trainableParameters, 2 * (4 * 64 + 2 * 160) + 2 * (16 + 50257));
    const run = await loadModelDir(out);
    const merged = join(root, `merged-${name}`);
    const res = await exportModelDir(out, merged);
    assert.ok(res.merged);
    const plain = await loadModelDir(merged);
    try {
      assert.equal(plain.meta.lora, undefined);
      assert.equal(plain.meta.model.tied_head, false);
      assert.equal(plain.gpt.adapterWeights().size, 0);
      const d = maxDiff(logits(plain.gpt), logits(run.gpt));
      assert.ok(d <= 1e-5, `max |Δlogit| ${d}`);
      const before = await loadModelDir(dir);
      assert.ok(maxDiff(logits(plain.gpt), logits(before.gpt)) > 1e-3, "the adapters changed it");
      before.gpt.dispose();

      // the HF export carries the merged weights
      const hf = join(root, `hf-${name}`);
      await exportHuggingFace(out, hf, { tokenizer: false });
      const { tensors } = await readAllSafetensors(join(hf, "model.safetensors"));
      const fc = plain.gpt.namedWeights().get("h.1.mlp.c_fc.weight")!.read().dataSync();
      assert.deepEqual(tensors.get("transformer.h.1.mlp.c_fc.weight")!.data, fc);
      const head = plain.gpt.namedWeights().get("lm_head.weight")!.read().dataSync();
      assert.deepEqual(tensors.get("lm_head.weight")!.data, head);
      // and so does the GGUF file (its head is ours; a tied head's merge gave it one of its own)
      const file = join(root, `${name}.gguf`);
      await exportGguf(out, file);
      const g = await readGguf(file);
      try {
        assert.deepEqual(await g.read("output.weight"), head);
      } finally {
        await g.close();
      }
    } finally {
      run.gpt.dispose();
      plain.gpt.dispose();
    }
  }
});

test("--lora is refused with --trainable, as a bad rank, and over a LoRA run as the base", async () => {
  const both = await runCli(
    ["finetune", "spam", "-m", lmDir, "-o", join(root, "x"), "--lora", "4", "--trainable", "all"],
    {
      env: cliEnv(),
    },
  );
  assert.equal(both.code, 2, both.stderr);
  assert.match(both.stderr, /--lora trains adapters instead of a --trainable scope/);
  const bad = await runCli(["finetune", "spam", "-m", lmDir, "-o", join(root, "y"), "--lora", "0"], { env: cliEnv() });
  assert.equal(bad.code, 2);
  assert.match(bad.stderr, /--lora must be a positive integer/);
  const alpha = await runCli(["finetune", "instruct", "-m", lmDir, "-o", join(root, "z"), "--lora-alpha", "8"], {
    env: cliEnv(),
  });
  assert.equal(alpha.code, 2);
  assert.match(alpha.stderr, /give --lora RANK too/);
  const onLora = await runCli(
    ["finetune", "spam", "-m", join(root, "spam-lora"), "-o", join(root, "w"), "--split-dir", split, "--lora", "2"],
    { env: cliEnv() },
  );
  assert.notEqual(onLora.code, 0);
  assert.match(onLora.stderr, /is a LoRA model/);
});
