// test: first backend pass only (refusals before any training step; nothing computed depends on the backend)
import { test, before } from "node:test";
import assert from "node:assert/strict";
import { mkdtemp } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { useBackend } from "../src/backend/index.js";
import { buildGPT } from "../src/model/gpt.js";
import { saveModelDir } from "../src/model/model-dir.js";
import { runCli } from "./helpers/cli.js";
import { sharedPath } from "./helpers/shared.js";

let root: string;
let smallVocab: string;

before(async () => {
  await useBackend("cpu");
  root = await mkdtemp(join(tmpdir(), "llmctl-finetune-guards-"));
  smallVocab = join(root, "vocab-1000");
  const lm = buildGPT({
    vocab_size: 1000,
    context_length: 32,
    emb_dim: 8,
    n_heads: 2,
    n_layers: 1,
    drop_rate: 0,
    qkv_bias: false,
    tied_head: true,
  });
  await saveModelDir(smallVocab, lm);
  lm.dispose();
});

test("finetune spam and instruct on a model with a smaller vocabulary than GPT-2's: one line, exit 1", async () => {
  const runs = [
    ["finetune", "spam", "--model", smallVocab, "--out", join(root, "spam"), "--max-steps", "1"],
    [
      "finetune",
      "instruct",
      "--model",
      smallVocab,
      "--out",
      join(root, "instruct"),
      "--data",
      sharedPath("datasets", "instruction-data.json"),
      "--max-steps",
      "1",
    ],
  ];
  for (const args of runs) {
    const r = await runCli(args, { env: { LLMCTL_BACKEND: "cpu", LLMCTL_DATA_MIRROR: sharedPath("datasets") } });
    assert.equal(r.code, 1, `${args[1]}: ${r.stderr}`);
    const errors = r.stderr.split("\n").filter((l) => l.startsWith("llmctl:"));
    assert.equal(errors.length, 1, r.stderr);
    assert.match(errors[0], /has a vocabulary of 1000 ids, but finetuning feeds it GPT-2 token ids up to 50256/);
    assert.doesNotMatch(r.stderr, /GatherV2|unexpected/);
  }
});

test("a LoRA run that diverges from a huge --lora-alpha says to lower the alpha, not the learning rate", async () => {
  const base = join(root, "gpt2-tiny");
  const loaded = await runCli(["load-gpt2", "--from", sharedPath("fixtures", "gpt2-tiny", "hf"), "--out", base]);
  assert.equal(loaded.code, 0, loaded.stderr);
  const r = await runCli(
    ["finetune", "spam", "--model", base, "--out", join(root, "alpha"), "--lora", "2", "--lora-alpha", "1e30"].concat([
      "--max-steps",
      "3",
      "--batch-size",
      "2",
    ]),
    { env: { LLMCTL_BACKEND: "wasm", LLMCTL_DATA_MIRROR: sharedPath("datasets") } },
  );
  assert.equal(r.code, 1, r.stderr);
  const errors = r.stderr.split("\n").filter((l) => l.startsWith("llmctl:"));
  assert.equal(errors.length, 1, r.stderr);
  assert.match(errors[0], /not finite.*lower --lora-alpha \(1e\+30 scales the adapters by alpha\/rank = 5\.00e\+29/);
  assert.doesNotMatch(errors[0], /learning rate/);
});
