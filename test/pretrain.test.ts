/**
 * Pretraining with the real GPT: the book's ch05 data numbers, exact resume (cpu and the suite pass's backend), and the CLI.
 */
import { test, before, after } from "node:test";
import assert from "node:assert/strict";
import { mkdtempSync, readFileSync, existsSync, writeFileSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import * as tf from "@tensorflow/tfjs";
import { useBackend } from "../src/backend/index.js";
import { buildGPT, type GPTConfig } from "../src/model/gpt.js";
import { loadModelDir, saveModelDir } from "../src/model/model-dir.js";
import { Trainer } from "../src/train/trainer.js";
import { namedParameters } from "../src/train/adamw.js";
import type { EvalRecord } from "../src/train/events.js";
import { resolveTrainSettings, type TrainSettings } from "../src/train/settings.js";
import { makePretrainLoaders, readPretrainTokens, epochSample } from "../src/train/pretrain.js";
import { languageModelLoss } from "../src/train/loss.js";
import { readTrainerState } from "../src/train/run-dir.js";
import { encodeTokenFile } from "../src/tokenizer/token-file.js";
import { getTokenizer } from "../src/tokenizer/index.js";
import { Rng } from "../src/data/rng.js";
import { sharedPath, REPO_ROOT } from "./helpers/shared.js";
import { spawn } from "node:child_process";
import { runCli } from "./helpers/cli.js";
import { testBackend } from "./helpers/backend.js";
import { ConfigError, FileFormatError } from "../src/errors.js";
import { tinyConfig, writeConfigFile } from "./helpers/tiny-config.js";
import { validateGPTConfig } from "../src/model/config.js";

before(async () => {
  await useBackend("cpu");
});

const verdict = () => sharedPath("datasets", "the-verdict.txt");
const made: string[] = [];
const tmp = () => {
  made.push(mkdtempSync(join(tmpdir(), "llmctl-pretrain-")));
  return made.at(-1)!;
};
after(() => made.forEach((dir) => rmSync(dir, { recursive: true, force: true })));

/** A CLI run's inputs in a fresh directory: a tiny config of GPT-2's vocabulary with `train`, and 2,000 characters of the-verdict. */
function tinyRun(train: Record<string, unknown>): { dir: string; cfgPath: string; text: string; out: string } {
  const dir = tmp();
  const cfgPath = join(dir, "tiny.json");
  writeConfigFile(cfgPath, { ...tinyCfg, vocab_size: 50257 }, train);
  const text = join(dir, "text.txt");
  writeFileSync(text, readFileSync(verdict(), "utf8").slice(0, 2000));
  return { dir, cfgPath, text, out: join(dir, "run") };
}

test("book ch05: batch 2, max_length = stride = 256, split 0.9 → 9 training and 1 validation batch on the-verdict", () => {
  const tokens = readPretrainTokens([verdict()], 0.9);
  // the book: 4,608 training tokens (9 · 2 · 256) are seen per epoch; validation keeps its one window
  const data = makePretrainLoaders(tokens, { batch_size: 2, max_length: 256, stride: 256 }, 256);
  assert.equal(data.train.numBatches, 9);
  assert.equal(data.validation.numBatches, 1);
  assert.equal(data.trainTokens + data.validationTokens, 5145 + 1); // the cut can split one token in two
  const first = data.train.batch(data.train.epochOrder(new Rng(123)), 0);
  assert.equal(first.batchSize * first.seqLen, 512);
});

test("a token file gives the same ids as its text; max_length above the context is refused", () => {
  const dir = tmp();
  const ids = getTokenizer().encode(readFileSync(verdict(), "utf8"));
  const bin = join(dir, "verdict.bin");
  writeFileSync(bin, encodeTokenFile(Uint32Array.from(ids), 50257));
  const split = readPretrainTokens([bin], 0.9);
  assert.equal(split.train.length + split.validation.length, 5145);
  assert.equal(split.train.length, Math.floor(0.9 * 5145));
  assert.deepEqual(Array.from(split.train as Uint32Array).slice(0, 4), ids.slice(0, 4));
  assert.throws(
    () => makePretrainLoaders(split, { batch_size: 2, max_length: 300, stride: 300 }, 256),
    /longer than the model's context_length/,
  );
});

test("token data is checked when opened: ids past the vocabulary, a damaged .bin magic, binary 'text'", async () => {
  const dir = tmp();
  const outside = join(dir, "outside.bin");
  writeFileSync(outside, encodeTokenFile(new Uint16Array(100).fill(65535), 50257));
  assert.throws(
    () => readPretrainTokens([outside], 0.9),
    (err: unknown) =>
      err instanceof FileFormatError &&
      err.message === `${outside}: token id 65535 at position 0 is outside the file's vocabulary of 50257`,
  );
  const cli = await runCli(["pretrain", "--config", "gpt2-tiny", "--data", outside, "--out", join(dir, "run")], {
    env: { LLMCTL_BACKEND: "cpu" },
  });
  assert.equal(cli.code, 1);
  assert.match(cli.stderr, /^llmctl: .*outside\.bin: token id 65535 at position 0 is outside/m);
  assert.doesNotMatch(cli.stderr, /unexpected|GatherV2/);

  const text = readFileSync(verdict(), "utf8").slice(0, 500);
  const damaged = encodeTokenFile(Uint16Array.from(getTokenizer().encode(text)), 50257);
  damaged.write("XXXX", 0, "latin1");
  writeFileSync(join(dir, "damaged.bin"), damaged);
  assert.throws(() => readPretrainTokens([join(dir, "damaged.bin")], 0.9), /not an llmctl token file \(bad magic\)/);
  writeFileSync(join(dir, "binary.dat"), damaged);
  assert.throws(() => readPretrainTokens([join(dir, "binary.dat")], 0.9), /holds binary data, neither text/);

  // the model's own vocabulary bounds the ids too: GPT-2 ids do not fit a 256-id model
  writeFileSync(join(dir, "t.txt"), text);
  assert.throws(
    () => readPretrainTokens([join(dir, "t.txt")], 0.9, 256),
    (err: unknown) => err instanceof ConfigError && /the model's vocabulary has 256 ids/.test(err.message),
  );
});

const tinyCfg: GPTConfig = tinyConfig({ vocab_size: 256, context_length: 16, drop_rate: 0.1 });

function settings(over: Partial<TrainSettings> = {}): TrainSettings {
  return resolveTrainSettings(
    {
      epochs: 2,
      batch_size: 4,
      lr: 0.004,
      max_length: 16,
      stride: 16,
      eval_freq: 3,
      eval_iter: 2,
      seed: 5,
      sample_tokens: 0,
    },
    over,
  );
}

async function train(gpt: ReturnType<typeof buildGPT>, dir: string, s: TrainSettings, resume = false) {
  // the-verdict's first ~800 tokens folded into the small test vocabulary (the cpu backend is slow on 50,257)
  const ids = readPretrainTokens([verdict()], 0.9);
  const fold = (a: ArrayLike<number>, n: number) =>
    Array.from(a)
      .slice(0, n)
      .map((id) => id % gpt.config.vocab_size);
  const data = makePretrainLoaders(
    { train: fold(ids.train, 700), validation: fold(ids.validation, 100) },
    s,
    gpt.config.context_length,
  );
  return new Trainer({
    params: namedParameters(gpt),
    loss: languageModelLoss(gpt),
    train: data.train,
    validation: data.validation,
    batchTokens: (b) => b.batchSize * b.seqLen,
    settings: s,
    runSettings: s,
    runDir: dir,
    saveModel: async (d) => {
      await saveModelDir(d, gpt);
    },
    resume,
  }).run();
}

// a Llama-family model of the same size (docs/families.md): RMSNorm, SwiGLU, RoPE, 2 query heads sharing 1 key/value head
const tinyLlamaCfg: GPTConfig = validateGPTConfig({ ...tinyCfg, family: "llama", n_kv_heads: 1, hidden_dim: 48 });

// cpu, and the suite pass's backend (tensorflow and webgpu keep AdamW's moments as tensors: they must checkpoint
// exactly too), whose losses must also be cpu's
const cpuRuns = new Map<GPTConfig, EvalRecord[]>(); // the cpu run's, also when a pass runs only the other backend's test
for (const [label, cfg] of [
  ["the GPT", tinyCfg],
  ["a Llama-family model", tinyLlamaCfg],
] as const)
  for (const backend of new Set(["cpu", testBackend()])) {
    test(`resume with ${label} on ${backend}: N updates straight equal N/2 + resume + N/2 within 1e-6 (dropout on); losses are cpu's within 1e-3`, async () => {
      let cpuEvals = cpuRuns.get(cfg);
      try {
        if (backend !== "cpu" && !cpuEvals) {
          await useBackend("cpu");
          const ref = buildGPT(cfg, { seed: 1 });
          cpuEvals = (await train(ref, tmp(), settings())).evals;
          cpuRuns.set(cfg, cpuEvals);
          ref.dispose();
        }
        await useBackend(backend);
        const a = buildGPT(cfg, { seed: 1 });
        const res = await train(a, tmp(), settings());
        if (backend === "cpu") cpuRuns.set(cfg, res.evals);
        else {
          const want = cpuEvals!;
          assert.equal(res.evals.length, want.length);
          res.evals.forEach((e, i) => {
            for (const k of ["train_loss", "val_loss"] as const)
              assert.ok(Math.abs(e[k]! - want[i][k]!) <= 1e-3, `step ${e.step} ${k}: ${e[k]} vs cpu ${want[i][k]}`);
          });
        }
        const N = res.step;
        assert.ok(N >= 8, `${N} updates`);
        const dir = tmp();
        const b = buildGPT(cfg, { seed: 1 });
        await train(b, dir, settings({ max_steps: N / 2 }));
        assert.equal((await readTrainerState(dir)).step, N / 2);
        b.dispose();
        const { gpt: c } = await loadModelDir(dir);
        const resC = await train(c, dir, settings(), true);
        assert.equal(resC.step, N);
        let maxDiff = 0;
        const wa = a.namedWeights();
        for (const [name, v] of c.namedWeights()) {
          const x = await v.read().data();
          const y = await wa.get(name)!.read().data();
          for (let i = 0; i < x.length; i++) maxDiff = Math.max(maxDiff, Math.abs(x[i] - y[i]));
        }
        assert.ok(maxDiff <= 1e-6, `max weight difference ${maxDiff}`);
        assert.ok(res.trainLoss! < res.evals[0].train_loss, `loss fell ${res.evals[0].train_loss} → ${res.trainLoss}`);
        a.dispose();
        c.dispose();
        assert.ok(tf.memory().numTensors < 1000);
      } finally {
        await useBackend("cpu");
      }
    });
  }

test("the epoch sample is the prompt plus greedy tokens, newlines shown as spaces", async () => {
  const gpt = buildGPT({ ...tinyCfg, vocab_size: 50257 }, { seed: 3 });
  const text = await epochSample(gpt, "Every effort moves you", 4);
  assert.ok(text.startsWith("Every effort moves you") && text.length > "Every effort moves you".length, text);
  assert.ok(!text.includes("\n"));
  // greedy: the same model gives the same sample
  assert.equal(await epochSample(gpt, "Every effort moves you", 4), text);
  gpt.dispose();
});

test("CLI: pretrain writes a model directory, log, plot and JSON summary; --resume continues; bad flags are usage errors", async () => {
  const { dir, cfgPath, text, out } = tinyRun({
    epochs: 1,
    batch_size: 4,
    max_length: 16,
    eval_freq: 2,
    eval_iter: 1,
    sample_tokens: 5,
  });
  const env = { LLMCTL_BACKEND: "wasm" };
  const r = await runCli(
    ["pretrain", "--config", cfgPath, "--data", text, "--max-steps", "3", "--out", out, "--json"],
    { env },
  );
  assert.equal(r.code, 0, r.stderr);
  const summary = JSON.parse(r.stdout.trim());
  assert.equal(summary.steps, 3);
  assert.ok(summary.train_loss > 9 && summary.train_loss < 11.5, `loss ${summary.train_loss}`);
  for (const f of [
    "config.json",
    "model.safetensors",
    "optimizer.safetensors",
    "trainer-state.json",
    "log.jsonl",
    "loss.svg",
  ]) {
    assert.ok(existsSync(join(out, f)), f);
  }
  assert.equal(JSON.parse(readFileSync(join(out, "config.json"), "utf8")).format, "llmctl-model");
  assert.match(r.stderr, /Ep 1 \(Step 000000\): Train loss/);

  const again = await runCli(["pretrain", "--config", cfgPath, "--data", text, "--out", out], { env });
  assert.equal(again.code, 2);
  assert.match(again.stderr, /already holds a training run — continue it with --resume/);

  const resumed = await runCli(["pretrain", "--resume", out, "--max-steps", "5", "--json"], { env });
  assert.equal(resumed.code, 0, resumed.stderr);
  assert.equal(JSON.parse(resumed.stdout.trim()).steps, 5);

  const bad = await runCli(
    ["pretrain", "--config", cfgPath, "--data", text, "--out", join(dir, "r2"), "--batch-size", "0"],
    { env },
  );
  assert.equal(bad.code, 2);
  assert.match(bad.stderr, /'batch_size' must be a positive integer/);
  const none = await runCli(["pretrain", "--out", join(dir, "r3")], { env });
  assert.equal(none.code, 2);
  assert.match(none.stderr, /give --config/);
});

test("CLI: a run whose update overflows (--lr 1e300) exits 1 with one line and saves no checkpoint", async () => {
  const dir = tmp();
  const text = join(dir, "text.txt");
  writeFileSync(text, readFileSync(verdict(), "utf8").slice(0, 3000));
  const out = join(dir, "run");
  const r = await runCli(
    ["pretrain", "--config", "gpt2-tiny", "--data", text, "--max-length", "32", "--lr", "1e300"].concat([
      "--max-steps",
      "1",
      "--checkpoint-every",
      "1",
      "--out",
      out,
    ]),
    { env: { LLMCTL_BACKEND: "wasm" } },
  );
  assert.equal(r.code, 1, r.stderr);
  const errors = r.stderr.split("\n").filter((l) => l.startsWith("llmctl:"));
  assert.equal(errors.length, 1, r.stderr);
  assert.match(
    errors[0],
    /after step 1, \d+ of \d+ weights and optimizer moments are not finite .*no checkpoint was saved/,
  );
  // the advice is a recipe's learning rate, not 1e299, and the rerun it describes is accepted
  assert.match(errors[0], /start again with --force and lower the learning rate \(e\.g\. --lr 0\.00040\)/);
  assert.ok(!existsSync(join(out, "trainer-state.json")) && !existsSync(join(out, "model.safetensors")));
  const rerun = await runCli(
    ["pretrain", "--config", "gpt2-tiny", "--data", text, "--max-length", "32", "--lr", "0.0004"].concat([
      "--max-steps",
      "1",
      "--out",
      out,
      "--force",
    ]),
    { env: { LLMCTL_BACKEND: "wasm" } },
  );
  assert.equal(rerun.code, 0, rerun.stderr);
});

for (const [sig, exitCode] of [
  ["SIGINT", 130],
  ["SIGTERM", 143],
  ["SIGHUP", 129],
] as const) {
  test(`CLI: ${sig} saves a resumable checkpoint, leaves no lock and exits ${exitCode}; the run resumes`, async () => {
    const { cfgPath, text, out } = tinyRun({
      epochs: 50,
      batch_size: 2,
      max_length: 16,
      eval_freq: 1000,
      sample_tokens: 0,
    });
    const child = spawn(
      process.execPath,
      [join(REPO_ROOT, "bin", "llmctl"), "pretrain", "--config", cfgPath, "--data", text, "--out", out, "--verbose"],
      {
        env: { ...process.env, LLMCTL_BACKEND: "wasm" },
        stdio: ["ignore", "pipe", "pipe"],
      },
    );
    let stderr = "";
    let sent = false;
    child.stderr.on("data", (d) => {
      stderr += d;
      // --verbose without a terminal logs every step; interrupt after the second one
      if (!sent && /step 2\//.test(stderr)) {
        sent = true;
        child.kill(sig);
      }
    });
    const code = await new Promise<number | null>((r) => child.on("close", r));
    assert.equal(code, exitCode, stderr);
    assert.match(stderr, /interrupted at step \d+ .*— continue with --resume/);
    const state = await readTrainerState(out);
    assert.ok(state.step >= 2 && !state.finished, `step ${state.step}`);
    assert.ok(existsSync(join(out, "model.safetensors")) && existsSync(join(out, "optimizer.safetensors")));
    assert.ok(!existsSync(join(out, ".llmctl.lock")), "the run directory's lock is released");
    const resumed = await runCli(["pretrain", "--resume", out, "--max-steps", String(state.step + 1)], {
      env: { LLMCTL_BACKEND: "wasm" },
    });
    assert.equal(resumed.code, 0, resumed.stderr);
    assert.equal((await readTrainerState(out)).step, state.step + 1);
  });
}

test("CLI: kill -9 at 10 moments of a run checkpointing every step: the last checkpoint always loads and resumes", async () => {
  const { cfgPath, text, out } = tinyRun({
    epochs: 50,
    batch_size: 2,
    max_length: 16,
    eval_freq: 3,
    eval_iter: 1,
    sample_tokens: 0,
  });
  const rng = new Rng(13);
  let lastStep = 0;
  for (let moment = 0; moment < 10; moment++) {
    const args =
      moment === 0
        ? ["pretrain", "--config", cfgPath, "--data", text, "--out", out, "--checkpoint-every", "1", "--verbose"]
        : ["pretrain", "--resume", out, "--verbose"];
    const child = spawn(process.execPath, [join(REPO_ROOT, "bin", "llmctl"), ...args], {
      env: { ...process.env, LLMCTL_BACKEND: "wasm" },
      stdio: ["ignore", "pipe", "pipe"],
    });
    let stderr = "";
    let armed = false;
    // a seeded moment, 0–400 ms after this process's first step line (mid-update, mid-checkpoint, …); the new
    // run's from its second, which follows the first checkpoint
    const delay = rng.int(400);
    const from = moment === 0 ? /step 2\// : /step \d+\//;
    child.stderr.on("data", (d) => {
      stderr += d;
      if (!armed && from.test(stderr)) {
        armed = true;
        setTimeout(() => child.kill("SIGKILL"), delay);
      }
    });
    const [code, signal] = await new Promise<[number | null, string | null]>((r) =>
      child.on("close", (c, sig) => r([c, sig])),
    );
    assert.equal(signal, "SIGKILL", `moment ${moment}: exit ${code}: ${stderr}`);
    const state = await readTrainerState(out);
    assert.ok(state.step >= lastStep, `moment ${moment}: step went back from ${lastStep} to ${state.step}`);
    lastStep = state.step;
    const { gpt } = await loadModelDir(out);
    gpt.dispose();
  }
  assert.ok(lastStep >= 2, `only ${lastStep} steps checkpointed`);
  const done = await runCli(["pretrain", "--resume", out, "--max-steps", String(lastStep + 1), "--json"], {
    env: { LLMCTL_BACKEND: "wasm" },
  });
  assert.equal(done.code, 0, done.stderr);
  assert.equal(JSON.parse(done.stdout.trim()).steps, lastStep + 1);
});
