import { test, before, after } from "node:test";
import assert from "node:assert/strict";
import { mkdir, mkdtemp, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { useBackend } from "../src/backend/index.js";
import { runCli } from "./helpers/cli.js";
import { saveNewModel, tinyConfig } from "./helpers/tiny-config.js";

let root: string;
let lmDir: string;

before(async () => {
  await useBackend("cpu");
  root = await mkdtemp(join(tmpdir(), "llmctl-classify-"));
  lmDir = join(root, "lm");
  await saveNewModel(lmDir, tinyConfig({ vocab_size: 64, context_length: 8, emb_dim: 8, n_layers: 1 }));
});

after(async () => {
  await rm(root, { recursive: true, force: true });
});

test("classify: a language model directory is refused with the fix", async () => {
  const r = await runCli(["classify", "--model", lmDir, "Win a prize"]);
  assert.equal(r.code, 2);
  assert.match(r.stderr, /is a language model, not a classifier — finetune one first: llmctl finetune spam --model/);
});

test("classify: no texts, or an empty one, is a usage error", async () => {
  const none = await runCli(["classify", "--model", lmDir]);
  assert.equal(none.code, 2);
  assert.match(none.stderr, /nothing to classify/);
  const blankFile = join(root, "blank.txt");
  await writeFile(blankFile, "\n  \n");
  const blank = await runCli(["classify", "--model", lmDir, "--file", blankFile]);
  assert.equal(blank.code, 2);
  assert.match(blank.stderr, /nothing to classify/);
  const stdin = await runCli(["classify", "--model", lmDir, "--file", "-"], { input: "\n\n" });
  assert.equal(stdin.code, 2);
  assert.match(stdin.stderr, /nothing to classify/);
  const empty = await runCli(["classify", "--model", lmDir, "hi", ""]);
  assert.equal(empty.code, 2);
  assert.match(empty.stderr, /text 2 is empty/);
});

test("classify: a missing model directory or file is named", async () => {
  const r = await runCli(["classify", "--model", join(root, "nope"), "hi"]);
  assert.equal(r.code, 1);
  assert.match(r.stderr, /model directory not found/);
  const f = await runCli(["classify", "--model", lmDir, "--file", join(root, "missing.txt")]);
  assert.equal(f.code, 1);
  assert.match(f.stderr, /file not found/);
});

test("finetune spam: argument errors", async () => {
  const noOut = await runCli(["finetune", "spam", "--model", lmDir]);
  assert.equal(noOut.code, 2);
  assert.match(noOut.stderr, /give --model and --out/);
  // a run saved with lr 5e-5 (only its trainer state is read before the flags are compared)
  const saved = join(root, "saved-run");
  await mkdir(saved, { recursive: true });
  const state = { format: "llmctl-trainer-state", version: 1, step: 1, epoch: 0, batch_index: 1, order: null };
  await writeFile(
    join(saved, "trainer-state.json"),
    JSON.stringify({ ...state, rng: [1, 2, 3, 4], tokens_seen: 8, elapsed_seconds: 1, settings: { lr: 5e-5 } }),
  );
  const resume = await runCli(["finetune", "spam", "--resume", saved, "--lr", "1e-3"]);
  assert.equal(resume.code, 2);
  assert.match(resume.stderr, /drop --lr/);
  const noRun = await runCli(["finetune", "spam", "--resume", join(root, "no-run")]);
  assert.equal(noRun.code, 2);
  assert.match(noRun.stderr, /holds no training run to resume/);
  const clf = await runCli(["finetune", "spam", "--model", lmDir, "--out", join(root, "x"), "--pool", "first"]);
  assert.equal(clf.code, 2);
});
