/**
 * The Trainer on a model small enough to train hundreds of steps in a second: a bigram LM (logits = W[input])
 * with dropout, so resume exactness covers the data order, dropout, AdamW moments, accumulation and clipping.
 */
import { test, before } from "node:test";
import assert from "node:assert/strict";
import { mkdtempSync, readFileSync, existsSync, readdirSync } from "node:fs";
import { mkdir, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import * as tf from "@tensorflow/tfjs";
import { useBackend } from "../src/backend/index.js";
import { Trainer, type TrainerOptions } from "../src/train/trainer.js";
import type { TrainEvent } from "../src/train/events.js";
import type { ForwardMode } from "../src/model/gpt.js";
import { resolveTrainSettings, type TrainSettings } from "../src/train/settings.js";
import { sparseCrossEntropy } from "../src/train/loss.js";
import { readTrainerState, recoverCheckpoint } from "../src/train/run-dir.js";
import { readAllSafetensors, writeSafetensors } from "../src/formats/safetensors.js";
import { SlidingWindowLoader, SlidingWindowDataset, type TokenBatch } from "../src/data/sliding-window.js";
import { Rng } from "../src/data/rng.js";
import { InterruptedError, TrainingError, UsageError } from "../src/errors.js";

before(async () => {
  await useBackend("cpu");
});

const V = 16;
const tokens = (() => {
  const rng = new Rng(7);
  // a stream with structure (next ≈ 3·prev + 1 mod V, sometimes random) so the loss can fall
  const ids: number[] = [0];
  for (let i = 1; i < 400; i++) ids.push(rng.random() < 0.8 ? (3 * ids[i - 1] + 1) % V : rng.int(V));
  return ids;
})();

function loaders(batchSize = 3) {
  const train = new SlidingWindowLoader(new SlidingWindowDataset(tokens.slice(0, 104), 8, 4), {
    batchSize,
    shuffle: true,
    dropLast: true,
  });
  const validation = new SlidingWindowLoader(new SlidingWindowDataset(tokens.slice(104, 150), 8, 8), {
    batchSize,
    shuffle: false,
    dropLast: false,
  });
  return { train, validation };
}

class Bigram {
  readonly W: tf.Variable;
  constructor(init?: Float32Array) {
    const data = init ?? Float32Array.from({ length: V * V }, (_, i) => Math.sin(i * 12.9898) * 0.1);
    this.W = tf.variable(tf.tensor2d(data, [V, V]));
  }
  loss = (b: TokenBatch, mode: ForwardMode): tf.Scalar => {
    const ids = tf.tensor2d(b.inputs, [b.batchSize, b.seqLen], "int32");
    let logits: tf.Tensor = tf.gather(this.W, ids); // [B, T, V]
    if (mode.training) logits = tf.dropout(logits, 0.2, undefined, mode.seed);
    return sparseCrossEntropy(logits, tf.tensor2d(b.targets, [b.batchSize, b.seqLen], "int32"));
  };
  save = async (dir: string) => {
    await writeSafetensors(join(dir, "model.safetensors"), [
      { name: "W", shape: [V, V], data: this.W.dataSync() as Float32Array },
    ]);
    await writeFile(join(dir, "config.json"), JSON.stringify({ format: "test-bigram" }));
  };
  static async load(dir: string): Promise<Bigram> {
    const { tensors } = await readAllSafetensors(join(dir, "model.safetensors"));
    return new Bigram(tensors.get("W")!.data);
  }
}

function settings(over: Partial<TrainSettings> = {}): TrainSettings {
  return resolveTrainSettings(
    {
      epochs: 3,
      batch_size: 3,
      lr: 0.05,
      weight_decay: 0.1,
      eval_freq: 4,
      eval_iter: 2,
      grad_accum: 2,
      grad_clip: 0.5,
      lr_schedule: "cosine",
      warmup_steps: 3,
      seed: 99,
    },
    over,
  );
}

function options(
  model: Bigram,
  runDir: string,
  over: Partial<TrainerOptions<TokenBatch>> = {},
  s = settings(),
): TrainerOptions<TokenBatch> {
  const { train, validation } = loaders(s.batch_size);
  return {
    params: [{ name: "W", variable: model.W }],
    loss: model.loss,
    train,
    validation,
    batchTokens: (b) => b.batchSize * b.seqLen,
    settings: s,
    runSettings: s,
    runDir,
    saveModel: model.save,
    ...over,
  };
}

const tmp = () => mkdtempSync(join(tmpdir(), "llmctl-trainer-"));

test("the data gives 8 micro-batches per epoch, so 4 updates per epoch with grad_accum 2, 12 in all", () => {
  const model = new Bigram();
  const t = new Trainer(options(model, tmp()));
  assert.equal(loaders().train.numBatches, 8);
  assert.equal(t.totalSteps, 12);
  model.W.dispose();
});

test("resume: 12 updates straight equal 5 + resume + 7 within 1e-6 (dropout, shuffle, accumulation, clipping, cosine)", async () => {
  const straightDir = tmp();
  const a = new Bigram();
  const resA = await new Trainer(options(a, straightDir)).run();
  assert.equal(resA.step, 12);
  const wa = a.W.dataSync();

  const splitDir = tmp();
  const b = new Bigram();
  await new Trainer(options(b, splitDir, {}, settings({ max_steps: 5 }))).run();
  const half = await readTrainerState(splitDir);
  assert.equal(half.step, 5);
  assert.equal(half.epoch, 1); // 4 updates per epoch: the 5th is the first of epoch 1
  b.W.dispose();
  // a new model from the checkpoint, as `--resume` does
  const c = await Bigram.load(splitDir);
  const resC = await new Trainer(options(c, splitDir, { resume: true })).run();
  assert.equal(resC.step, 12);
  const wc = c.W.dataSync();
  let maxDiff = 0;
  for (let i = 0; i < wa.length; i++) maxDiff = Math.max(maxDiff, Math.abs(wa[i] - wc[i]));
  assert.ok(maxDiff <= 1e-6, `max weight difference ${maxDiff}`);
  // training moved the weights and the log has the same evaluations (steps 1, 5, 9 and the final 12)
  assert.ok(Math.abs(wa[0] - Math.sin(0) * 0.1) > 1e-3);
  const steps = (dir: string) =>
    readFileSync(join(dir, "log.jsonl"), "utf8")
      .trim()
      .split("\n")
      .map((l) => JSON.parse(l))
      .filter((r) => r.type === "eval")
      .map((r) => [r.step, r.train_loss, r.val_loss]);
  assert.deepEqual(
    steps(splitDir).map((r) => r[0]),
    [1, 5, 9, 12],
  );
  const sa = steps(straightDir);
  const sc = steps(splitDir);
  for (let i = 0; i < sa.length; i++) for (let j = 1; j < 3; j++) assert.ok(Math.abs(sa[i][j] - sc[i][j]) < 1e-5);
  assert.ok(sa[3][1] < sa[0][1], `train loss fell: ${sa[0][1]} → ${sa[3][1]}`);
  assert.ok(existsSync(join(splitDir, "loss.svg")));
  assert.ok(readFileSync(join(splitDir, "loss.svg"), "utf8").startsWith("<svg"));
  a.W.dispose();
  c.W.dispose();
});

test("a different seed gives different weights (the resume test is not vacuous)", async () => {
  const a = new Bigram();
  await new Trainer(options(a, tmp(), {}, settings({ max_steps: 3 }))).run();
  const b = new Bigram();
  await new Trainer(options(b, tmp(), {}, settings({ max_steps: 3, seed: 100 }))).run();
  const wa = a.W.dataSync();
  const wb = b.W.dataSync();
  assert.ok(wa.some((x, i) => Math.abs(x - wb[i]) > 1e-6));
  a.W.dispose();
  b.W.dispose();
});

test("the tensor count stays flat over 60 updates", async () => {
  const model = new Bigram();
  const counts: number[] = [];
  const s = settings({ epochs: 20, grad_accum: 1, eval_freq: 7, checkpoint_every: 25 });
  const res = await new Trainer(
    options(model, tmp(), { onEvent: (e: TrainEvent) => e.kind === "step" && counts.push(tf.memory().numTensors) }, s),
  ).run();
  assert.ok(res.step >= 50, `${res.step} steps`);
  assert.equal(new Set(counts).size, 1, `tensor counts varied: ${[...new Set(counts)].join(", ")}`);
  model.W.dispose();
});

test("abort (Ctrl-C) saves a resumable checkpoint and throws InterruptedError; resuming finishes identically", async () => {
  const ref = new Bigram();
  await new Trainer(options(ref, tmp())).run();
  const dir = tmp();
  const m = new Bigram();
  const ac = new AbortController();
  const run = new Trainer(
    options(m, dir, { signal: ac.signal, onEvent: (e) => e.kind === "step" && e.progress.step === 3 && ac.abort() }),
  ).run();
  await assert.rejects(
    run,
    (err: unknown) => err instanceof InterruptedError && err.exitCode === 130 && /--resume/.test(err.fix ?? ""),
  );
  assert.equal((await readTrainerState(dir)).step, 3);
  m.W.dispose();
  const r = await Bigram.load(dir);
  await new Trainer(options(r, dir, { resume: true })).run();
  const wr = r.W.dataSync();
  const wref = ref.W.dataSync();
  for (let i = 0; i < wr.length; i++) assert.ok(Math.abs(wr[i] - wref[i]) <= 1e-6);
  ref.W.dispose();
  r.W.dispose();
});

test("a crash while writing a checkpoint leaves the previous one loadable; a crash mid-commit is rolled forward", async () => {
  const dir = tmp();
  const m = new Bigram();
  await new Trainer(options(m, dir, {}, settings({ max_steps: 4 }))).run();
  const w4 = Array.from(m.W.dataSync());
  m.W.dispose();

  // 1. the process dies while staging (here: saving the model throws) — nothing of the old checkpoint changes
  const m2 = await Bigram.load(dir);
  const crashStaging: TrainerOptions<TokenBatch>["saveModel"] = async (stage) => {
    await writeFile(join(stage, "model.safetensors"), "half a file");
    throw new Error("simulated crash");
  };
  await assert.rejects(
    new Trainer(options(m2, dir, { resume: true, saveModel: crashStaging }, settings({ max_steps: 8 }))).run(),
    /simulated crash/,
  );
  assert.equal((await readTrainerState(dir)).step, 4);
  assert.deepEqual(Array.from((await readAllSafetensors(join(dir, "model.safetensors"))).tensors.get("W")!.data), w4);
  assert.deepEqual(
    readdirSync(dir).filter((f) => f.startsWith(".")),
    [],
  );
  m2.W.dispose();

  // 2. the process dies after the commit point, between two renames — recovery completes the new checkpoint
  const m3 = await Bigram.load(dir);
  let renames = 0;
  const crashMidCommit = (file: string) => {
    if (++renames === 2) throw new Error(`simulated crash before moving ${file}`);
  };
  await assert.rejects(
    new Trainer(
      options(m3, dir, { resume: true, beforeCommitRename: crashMidCommit }, settings({ max_steps: 8 })),
    ).run(),
    /simulated crash/,
  );
  const w8 = Array.from(m3.W.dataSync());
  m3.W.dispose();
  assert.equal(await recoverCheckpoint(dir), true);
  assert.equal((await readTrainerState(dir)).step, 8);
  assert.deepEqual(Array.from((await readAllSafetensors(join(dir, "model.safetensors"))).tensors.get("W")!.data), w8);
  const opt = await readAllSafetensors(join(dir, "optimizer.safetensors"));
  assert.equal(opt.metadata.step, "8");
});

test("a diverging loss is a TrainingError that says to lower the learning rate", async () => {
  const model = new Bigram();
  const nanLoss = (b: TokenBatch, mode: ForwardMode) => tf.mul(model.loss(b, mode), NaN) as tf.Scalar;
  await assert.rejects(
    new Trainer(options(model, tmp(), { loss: nanLoss })).run(),
    (err: unknown) => err instanceof TrainingError && /lower the learning rate/.test(err.fix ?? ""),
  );
  model.W.dispose();
});

test("an update that leaves the weights non-finite is never checkpointed: the run fails and says nothing was saved", async () => {
  const dir = tmp();
  const model = new Bigram();
  // lr 1e39 overflows float32 in the first update; the loss of that update was finite
  await assert.rejects(
    new Trainer(options(model, dir, {}, settings({ lr: 1e39, max_steps: 1, warmup_steps: 0 }))).run(),
    (err: unknown) =>
      err instanceof TrainingError &&
      /after step 1, \d+ of 768 weights and optimizer moments are not finite/.test(err.message) &&
      /no checkpoint was saved/.test(err.fix ?? ""),
  );
  assert.ok(!existsSync(join(dir, "trainer-state.json")) && !existsSync(join(dir, "model.safetensors")));
  model.W.dispose();
});

test("with a checkpoint every step, a poisoned update keeps the last finite checkpoint and the error names it", async () => {
  const dir = tmp();
  const model = new Bigram();
  // the update of step 3 goes bad (as an overflowing one would), after the step's own loss was finite
  const poison = (e: TrainEvent) => e.kind === "step" && e.progress.step === 3 && model.W.assign(tf.fill([V, V], NaN));
  await assert.rejects(
    new Trainer(options(model, dir, { onEvent: poison }, settings({ checkpoint_every: 1 }))).run(),
    (err: unknown) =>
      err instanceof TrainingError &&
      /after step 3, 256 of 768 /.test(err.message) &&
      err.fix!.includes(`${dir} keeps the checkpoint of step 2, the last finite one`) &&
      /--lr 0\.005/.test(err.fix!),
  );
  assert.equal((await readTrainerState(dir)).step, 2);
  const saved = (await readAllSafetensors(join(dir, "model.safetensors"))).tensors.get("W")!.data;
  assert.ok(saved.every(Number.isFinite));
  // and going back to it works: the run resumes from step 2 and finishes
  model.W.dispose();
  const back = await Bigram.load(dir);
  assert.equal(
    (await new Trainer(options(back, dir, { resume: true }, settings({ checkpoint_every: 1 }))).run()).step,
    12,
  );
  back.W.dispose();
});

test("optimizer moments that overflow (v = g² past float32) are not checkpointed either", async () => {
  const dir = tmp();
  const model = new Bigram();
  // a finite loss of 1e30 times the real one: finite gradients whose squares overflow the second moment
  const huge = (b: TokenBatch, mode: ForwardMode) => tf.mul(model.loss(b, mode), 1e30) as tf.Scalar;
  await assert.rejects(
    new Trainer(options(model, dir, { loss: huge }, settings({ max_steps: 1, grad_clip: null }))).run(),
    (err: unknown) => err instanceof TrainingError && /not finite/.test(err.message),
  );
  assert.ok(!existsSync(join(dir, "trainer-state.json")));
  model.W.dispose();
});

test("an existing run directory is not overwritten without --resume", async () => {
  const dir = tmp();
  const model = new Bigram();
  await new Trainer(options(model, dir, {}, settings({ max_steps: 1 }))).run();
  await assert.rejects(
    new Trainer(options(model, dir, {}, settings({ max_steps: 1 }))).run(),
    (err: unknown) => err instanceof UsageError && /already holds/.test(err.message),
  );
  await mkdir(join(dir, "x"), { recursive: true });
  model.W.dispose();
});

test("train settings: defaults are the ch05 recipe; bad values name the key", () => {
  const s = resolveTrainSettings({});
  assert.equal(s.batch_size, 2);
  assert.equal(s.lr, 0.0004);
  assert.equal(s.weight_decay, 0.1);
  assert.equal(s.eval_freq, 5);
  assert.equal(s.train_ratio, 0.9);
  assert.equal(resolveTrainSettings({ lr: 0.1 }, { lr: 0.2 }).lr, 0.2);
  assert.throws(() => resolveTrainSettings({ batch_size: 0 }), /'batch_size' must be a positive integer/);
  assert.throws(() => resolveTrainSettings({ learning_rate: 1 }), /unknown train key 'learning_rate'/);
});
