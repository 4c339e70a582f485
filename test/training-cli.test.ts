/**
 * The training commands' one resume policy and their flag checks, tried through the CLI as a user would:
 * every override that would change the data under a saved run is refused in one line, a damaged data order
 * is refused rather than trained on, and a bad flag value is blamed on the flag, not on the config file.
 */
import { test, before, after } from "node:test";
import assert from "node:assert/strict";
import { spawn } from "node:child_process";
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { useBackend } from "../src/backend/index.js";
import { buildGPT } from "../src/model/gpt.js";
import { saveModelDir } from "../src/model/model-dir.js";
import { toClassifier } from "../src/finetune/classifier.js";
import { runCli } from "./helpers/cli.js";
import { REPO_ROOT, sharedPath } from "./helpers/shared.js";
import { tinyConfig } from "./helpers/tiny-config.js";
import { writeSmallSplit } from "./helpers/spam-split.js";

const env = { env: { LLMCTL_BACKEND: "wasm" } };
const MODEL = tinyConfig({ vocab_size: 50257, context_length: 16, drop_rate: 0.1 });

let dir: string;
let cfg: string;
let text: string;
let run: string;
const state = () => JSON.parse(readFileSync(join(run, "trainer-state.json"), "utf8"));

before(async () => {
  dir = mkdtempSync(join(tmpdir(), "llmctl-training-cli-"));
  cfg = join(dir, "tiny.json");
  writeFileSync(
    cfg,
    JSON.stringify({
      model: MODEL,
      train: { epochs: 1, batch_size: 4, max_length: 16, eval_freq: 100, eval_iter: 1, sample_tokens: 0 },
    }),
  );
  text = join(dir, "text.txt");
  writeFileSync(text, readFileSync(sharedPath("datasets", "the-verdict.txt"), "utf8").slice(0, 3000));
  run = join(dir, "run");
  // 3 updates stop mid-epoch, so the checkpoint holds the epoch's data order
  const r = await runCli(["pretrain", "--config", cfg, "--data", text, "--out", run, "--max-steps", "3"], env);
  assert.equal(r.code, 0, r.stderr);
  assert.equal(state().step, 3);
  assert.ok(Array.isArray(state().order));
});

after(() => rmSync(dir, { recursive: true, force: true }));

test("pretrain --resume refuses, in one line with exit 2, every flag that would change the run's data or recipe", async () => {
  const small = join(dir, "small.txt");
  writeFileSync(small, readFileSync(text, "utf8").slice(0, 1000));
  const saved = readFileSync(join(run, "trainer-state.json"), "utf8");
  for (const [flags, named] of [
    [["--batch-size", "16"], /--batch-size 16 differs from the run's 4/],
    [["--max-length", "8", "--stride", "8"], /--max-length 8 differs from the run's 16; --stride 8 differs/],
    [["--stride", "512"], /--stride 512 differs from the run's null/],
    [["--data", small], /drop --data/],
    [["--config", cfg], /drop --config/],
    [["--lr", "0.1"], /--lr 0.1 differs from the run's 0.0004/],
    [["--seed", "7"], /--seed 7 differs from the run's 123/],
  ] as const) {
    const r = await runCli(["pretrain", "--resume", run, ...flags], env);
    assert.equal(r.code, 2, `${flags.join(" ")}: ${r.stderr}`);
    assert.equal(r.stderr.trim().split("\n").length, 1, r.stderr);
    assert.match(r.stderr, /^llmctl: --resume continues a run as it was set up/);
    assert.match(r.stderr, named);
  }
  assert.equal(readFileSync(join(run, "trainer-state.json"), "utf8"), saved, "a refused resume leaves the run alone");
});

test("pretrain --resume takes a flag that repeats the saved value, and changes only length and cadence", async () => {
  const r = await runCli(
    ["pretrain", "--resume", run, "--batch-size", "4", "--max-steps", "4", "--eval-freq", "2", "--json"],
    env,
  );
  assert.equal(r.code, 0, r.stderr);
  assert.equal(JSON.parse(r.stdout).steps, 4);
  assert.equal(state().settings.eval_freq, 2);
  assert.equal(state().settings.batch_size, 4);
});

test("a trainer state whose data order or position does not fit the data is refused, not trained on", async () => {
  const path = join(run, "trainer-state.json");
  const good = readFileSync(path, "utf8");
  const edit = (change: (s: Record<string, unknown> & { order: number[] }) => void) => {
    const s = JSON.parse(good);
    change(s);
    writeFileSync(path, JSON.stringify(s));
  };
  try {
    edit((s) => (s.order[0] = 10_000));
    let r = await runCli(["pretrain", "--resume", run, "--max-steps", "6"], env);
    assert.equal(r.code, 1, r.stderr);
    assert.match(r.stderr, /the saved data order is not a permutation of 0…\d+ \(holds 10000\)/);

    edit((s) => (s.order = [...s.order, ...s.order]));
    r = await runCli(["pretrain", "--resume", run, "--max-steps", "6"], env);
    assert.equal(r.code, 2, r.stderr);
    assert.match(r.stderr, /the saved data order covers \d+ examples, the data now has \d+/);

    edit((s) => (s.batch_index = 999));
    r = await runCli(["pretrain", "--resume", run, "--max-steps", "6"], env);
    assert.equal(r.code, 2, r.stderr);
    assert.match(r.stderr, /step 4 at batch 999 of epoch 1 does not fit \d+ batches per epoch/);
  } finally {
    writeFileSync(path, good);
  }
});

test("a bad numeric flag is a usage error naming the flag and its value, not the config file", async () => {
  for (const [flag, value, problem] of [
    ["--lr", "NaN", /--lr NaN: train key 'lr' must be a positive number/],
    ["--epochs", "1.5", /--epochs 1.5: train key 'epochs' must be a positive integer/],
    ["--grad-clip", "-1", /--grad-clip -1: train key 'grad_clip' must be a positive number or null/],
  ] as const) {
    const r = await runCli(["pretrain", "--config", cfg, "--data", text, "--out", join(dir, "new"), flag, value], env);
    assert.equal(r.code, 2, r.stderr);
    assert.match(r.stderr, problem);
    assert.doesNotMatch(r.stderr, /tiny\.json/);
  }
});

test("finetune spam --drop-rate on a model that is already a classifier is refused, not ignored", async () => {
  await useBackend("wasm");
  const clfDir = join(dir, "clf");
  const lm = buildGPT(MODEL, { seed: 1 });
  const clf = toClassifier(lm, 2, 1, 0);
  await saveModelDir(clfDir, clf, { labels: ["not spam", "spam"], pool: "last" });
  lm.dispose();
  clf.dispose();
  const split = await writeSmallSplit(dir, { train: 8, validation: 8, test: 4 });
  const args = ["finetune", "spam", "--model", clfDir, "--split-dir", split, "--out", join(dir, "spam")];
  const r = await runCli([...args, "--drop-rate", "0.1"], env);
  assert.equal(r.code, 2, r.stderr);
  assert.match(
    r.stderr,
    /--drop-rate 0.1: .* is already a classifier, whose dropout \(0\) was set when its head was put on/,
  );
  // its own rate is no change
  const same = await runCli([...args, "--drop-rate", "0", "--max-steps", "1", "--json"], env);
  assert.equal(same.code, 0, same.stderr);
});

test("a training step too big for the backend is refused before it runs: the estimate, its parts and the ways out", async () => {
  const out = join(mkdtempSync(join(tmpdir(), "llmctl-preflight-")), "run");
  const r = await runCli(
    ["pretrain", "--config", "gpt2-tiny", "--out", out, "--batch-size", "64", "--backend", "wasm"],
    {
      env: { LLMCTL_DATA_MIRROR: sharedPath("datasets") },
    },
  );
  assert.equal(r.code, 1, r.stderr);
  const errors = r.stderr.split("\n").filter((l) => l.startsWith("llmctl:"));
  assert.equal(errors.length, 1, r.stderr);
  assert.match(
    errors[0],
    /a training step needs about 10\.5 GB on the wasm backend, more than wasm's 4 GB heap \(weights 51 MB, .*activations for 64 × 128 tokens 10\.3 GB\) — try --backend tensorflow .*--batch-size 32 --grad-accum 2/,
  );
  assert.doesNotMatch(errors[0], /--lora/, "pretraining has no LoRA");
  assert.doesNotMatch(r.stderr, /Aborted|unexpected/);
});

test("a run that will take long on wasm says so once, with the ETA there and on tensorflow, and how to get it", async () => {
  const out = join(mkdtempSync(join(tmpdir(), "llmctl-slow-")), "run");
  const child = spawn(
    process.execPath,
    [join(REPO_ROOT, "bin", "llmctl"), "pretrain", "--config", "gpt2-tiny", "--out", out, "--epochs", "400"].concat([
      "--backend",
      "wasm",
    ]),
    { env: { ...process.env, LLMCTL_DATA_MIRROR: sharedPath("datasets") }, stdio: ["ignore", "pipe", "pipe"] },
  );
  let stderr = "";
  child.stderr.on("data", (d) => {
    stderr += d;
    if (/note: on the wasm backend/.test(stderr)) child.kill("SIGTERM");
  });
  const code = await new Promise<number | null>((r) => child.on("close", r));
  assert.equal(code, 143, stderr);
  const notes = stderr.split("\n").filter((l) => l.startsWith("note: on the wasm backend"));
  assert.equal(notes.length, 1, stderr);
  assert.match(
    notes[0],
    /this run takes about \S+.*; the tensorflow backend trains 4\.6–7\.4× faster on the same CPU \(about \S+–\S+\): (run it with --backend tensorflow|`llmctl setup tensorflow`)/,
  );
});
