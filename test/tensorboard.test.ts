// test: first backend pass only (the event files; the training loop itself is checked on every backend by train-trainer)
/**
 * TensorBoard event files: the framing byte for byte against tensorboard's own EventFileWriter, the Trainer's
 * scalars through a crash, a torn record and a resume, and the real reader (tensorboard's EventAccumulator, with
 * $LLMCTL_PYTHON) seeing each step once with the values log.jsonl holds.
 */
import { test, before, after } from "node:test";
import assert from "node:assert/strict";
import { spawn, spawnSync } from "node:child_process";
import { appendFileSync, mkdtempSync, readFileSync, readdirSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import * as tf from "@tensorflow/tfjs";
import { useBackend } from "../src/backend/index.js";
import { encodeEvent, tfRecord, FILE_VERSION } from "../src/formats/tfevents.js";
import { crc32c, unmaskCrc } from "../src/formats/crc32c.js";
import { decodeMessage, int64Field, lastField, messageFields } from "../src/formats/protobuf.js";
import { Trainer, type TrainerOptions } from "../src/train/trainer.js";
import { recordTensorBoard } from "../src/train/tensorboard.js";
import type { EvalRecord, EpochRecord } from "../src/train/events.js";
import { TENSORBOARD_DIR } from "../src/train/tensorboard.js";
import { resolveTrainSettings } from "../src/train/settings.js";
import { sparseCrossEntropy } from "../src/train/loss.js";
import { SlidingWindowLoader, SlidingWindowDataset, type TokenBatch } from "../src/data/sliding-window.js";
import { Rng } from "../src/data/rng.js";
import { runCli } from "./helpers/cli.js";
import { cliEnv } from "./helpers/backend.js";
import { sharedPath } from "./helpers/shared.js";

before(async () => {
  await useBackend("cpu");
});

const dirs: string[] = [];
const tmp = () => {
  const dir = mkdtempSync(join(tmpdir(), "llmctl-tensorboard-"));
  dirs.push(dir);
  return dir;
};
after(() => {
  for (const dir of dirs) rmSync(dir, { recursive: true, force: true });
});

// Written by tensorboard 2.21's tensorboard.summary.writer.event_file_writer.EventFileWriter: its file_version
// event, a summary with two simple values at step 300, and a SessionLog START at step 2^40 + 7.
const TENSORBOARD_WROTE =
  "4800000000000000fe92489d09a614d822d3c3da411a0d627261696e2e4576656e743a32522e0a2c74656e736f72626f6172642e73756d6d" +
  "6172792e7772697465722e6576656e745f66696c655f7772697465727ae5178034000000000000005e33175c0900001040fc54d94110ac02" +
  "2a260a140a0d6576616c2f76616c5f6c6f7373150000c1400a0e0a07737465702f6c721517b7d1394202f51814000000000000005e3d2915" +
  "0900006040fc54d941108780808080203a020801dcb749ba";

test("TFRecord framing and Event encoding: byte for byte what tensorboard's own EventFileWriter writes", () => {
  const ours = Buffer.concat([
    tfRecord(
      encodeEvent(1796164747.3762603, 0, {
        fileVersion: FILE_VERSION,
        writer: "tensorboard.summary.writer.event_file_writer",
      }),
    ),
    tfRecord(
      encodeEvent(1700000000.25, 300, {
        scalars: [
          { tag: "eval/val_loss", value: 6.03125 },
          { tag: "step/lr", value: 0.0004 },
        ],
      }),
    ),
    tfRecord(encodeEvent(1700000001.5, 2 ** 40 + 7, { sessionStart: true })),
  ]);
  assert.equal(ours.toString("hex"), TENSORBOARD_WROTE);
  // the mask of the length's CRC, spelled out: ((crc >>> 15) | (crc << 17)) + 0xa282ead8
  const crc = crc32c(ours.subarray(0, 8));
  assert.equal(ours.readUInt32LE(8), ((((crc >>> 15) | (crc << 17)) >>> 0) + 0xa282ead8) >>> 0);
});

interface ReadEvent {
  wallTime: number;
  step: number;
  fileVersion?: string;
  sessionStart?: boolean;
  scalars?: Record<string, number>;
}

/** Read an event file as TensorBoard does: whole records with good CRCs, stopping at a torn last one. */
function readEventFile(path: string): { events: ReadEvent[]; tornBytes: number } {
  const buf = readFileSync(path);
  const events: ReadEvent[] = [];
  let pos = 0;
  while (pos + 12 <= buf.length) {
    const len = Number(buf.readBigUInt64LE(pos));
    assert.equal(unmaskCrc(buf.readUInt32LE(pos + 8)), crc32c(buf.subarray(pos, pos + 8)), `length CRC at ${pos}`);
    if (pos + 12 + len + 4 > buf.length) break;
    const data = buf.subarray(pos + 12, pos + 12 + len);
    assert.equal(unmaskCrc(buf.readUInt32LE(pos + 12 + len)), crc32c(data), `data CRC at ${pos}`);
    pos += 12 + len + 4;
    const f = decodeMessage(data, "Event");
    const wall = lastField(f, 1)!.value as Uint8Array;
    const ev: ReadEvent = {
      wallTime: new DataView(wall.buffer, wall.byteOffset, 8).getFloat64(0, true),
      step: Number(int64Field(f, 2, "Event")),
    };
    const version = lastField(f, 3);
    if (version) ev.fileVersion = new TextDecoder().decode(version.value as Uint8Array);
    if (lastField(f, 7)) ev.sessionStart = int64Field(decodeMessage(messageFields(f, 7, "")[0]!, ""), 1, "") === 1n;
    const summary = messageFields(f, 5, "Event")[0];
    if (summary) {
      ev.scalars = {};
      for (const v of messageFields(decodeMessage(summary, "Summary"), 1, "Summary")) {
        const vf = decodeMessage(v, "Value");
        const tag = new TextDecoder().decode(lastField(vf, 1)!.value as Uint8Array);
        const val = lastField(vf, 2)!.value as Uint8Array;
        ev.scalars[tag] = new DataView(val.buffer, val.byteOffset, 4).getFloat32(0, true);
      }
    }
    events.push(ev);
  }
  return { events, tornBytes: buf.length - pos };
}

function eventFiles(runDir: string): string[] {
  return readdirSync(join(runDir, TENSORBOARD_DIR))
    .sort()
    .map((f) => join(runDir, TENSORBOARD_DIR, f));
}

// $LLMCTL_PYTHON picks the interpreter (e.g. a virtualenv's), default python3 on PATH.
const PYTHON = process.env.LLMCTL_PYTHON ?? "python3";

// What `tensorboard --logdir RUN` loads with its Python loader: every directory of event files under RUN is a run
const PY_ACCUMULATE = `
import json, sys
from tensorboard.backend.event_processing import event_accumulator as ea, event_multiplexer as em
mux = em.EventMultiplexer(size_guidance={ea.SCALARS: 0}).AddRunsFromDirectory(sys.argv[1])
mux.Reload()
print(json.dumps({run: {"file_version": mux.GetAccumulator(run).file_version, "scalars": {
    tag: [[s.step, s.wall_time, s.value] for s in mux.Scalars(run, tag)] for tag in tags["scalars"]}}
    for run, tags in mux.Runs().items()}))
`;

type Accumulated = { file_version: number; scalars: Record<string, [number, number, number][]> };

/** What tensorboard's EventAccumulator reads from RUN/tensorboard (the one run under RUN), or null without the package. */
function accumulate(runDir: string): Accumulated | null {
  const run = spawnSync(PYTHON, ["-c", PY_ACCUMULATE, runDir], { encoding: "utf8", maxBuffer: 64 << 20 });
  if (run.status !== 0 && /No module named|ENOENT|not found/.test(run.stderr + String(run.error ?? ""))) return null;
  assert.equal(run.status, 0, run.stderr);
  const runs = JSON.parse(run.stdout.trim().split("\n").at(-1)!) as Record<string, Accumulated>;
  assert.deepEqual(Object.keys(runs), [TENSORBOARD_DIR]);
  return runs[TENSORBOARD_DIR]!;
}

/**
 * Start `tensorboard --logdir RUN` as a user would (its default loader: the Rust data server where the package
 * ships one) and poll its scalars API until `tag` has `points` points or a minute passes.
 */
async function servedScalars(runDir: string, tag: string, points: number): Promise<[number, number, number][]> {
  const server = spawn(PYTHON, ["-m", "tensorboard.main", "--logdir", runDir, "--host", "127.0.0.1", "--port", "0"], {
    stdio: ["ignore", "pipe", "pipe"],
  });
  try {
    let output = "";
    const url = await new Promise<string>((resolve, reject) => {
      const onData = (d: Buffer) => {
        output += d;
        const m = /TensorBoard \S+ at (http:\/\/\S+)/.exec(output);
        if (m) resolve(m[1]!);
      };
      server.stdout.on("data", onData);
      server.stderr.on("data", onData);
      server.on("close", (code) => reject(new Error(`tensorboard exited with ${code}: ${output}`)));
    });
    const query = `${url}data/plugin/scalars/scalars?run=${TENSORBOARD_DIR}&tag=${encodeURIComponent(tag)}`;
    let last: [number, number, number][] = [];
    for (const started = Date.now(); Date.now() - started < 60_000; await new Promise((r) => setTimeout(r, 500))) {
      const res = await fetch(query);
      if (res.ok) last = ((await res.json()) as [number, number, number][]).map(([wall, step, v]) => [step, wall, v]);
      if (last.length >= points) break;
    }
    return last;
  } finally {
    server.kill();
  }
}

const NO_TENSORBOARD = `${PYTHON} with the tensorboard package is not available (pip install tensorboard; LLMCTL_PYTHON picks the interpreter)`;

const V = 16;
const tokens = (() => {
  const rng = new Rng(5);
  const ids = [0];
  for (let i = 1; i < 200; i++) ids.push(rng.random() < 0.8 ? (5 * ids[i - 1]! + 3) % V : rng.int(V));
  return ids;
})();

/** A bigram LM on a toy stream: 4 updates per epoch, evaluation every 2, accuracies after each epoch. */
function bigramRun(W: tf.Variable, runDir: string, over: Partial<TrainerOptions<TokenBatch>>): Trainer<TokenBatch> {
  const train = new SlidingWindowLoader(new SlidingWindowDataset(tokens.slice(0, 136), 8, 8), {
    batchSize: 4,
    shuffle: true,
    dropLast: true,
  });
  const validation = new SlidingWindowLoader(new SlidingWindowDataset(tokens.slice(136), 8, 8), {
    batchSize: 4,
    shuffle: false,
    dropLast: false,
  });
  const settings = resolveTrainSettings({
    epochs: 3,
    batch_size: 4,
    lr: 0.05,
    eval_freq: 2,
    eval_iter: 1,
    checkpoint_every: 4,
    seed: 3,
  });
  return new Trainer<TokenBatch>({
    params: [{ name: "W", variable: W }],
    loss: (b) => {
      const logits = tf.gather(W, tf.tensor2d(b.inputs, [b.batchSize, b.seqLen], "int32"));
      return sparseCrossEntropy(logits, tf.tensor2d(b.targets, [b.batchSize, b.seqLen], "int32"));
    },
    train,
    validation,
    batchTokens: (b) => b.batchSize * b.seqLen,
    settings,
    runSettings: settings,
    runDir,
    saveModel: async (dir) => writeFileSync(join(dir, "config.json"), "{}"),
    afterEpoch: (epoch) => ({ train_accuracy: 0.5 + epoch / 10, val_accuracy: 0.25 + epoch / 10, sample: "text" }),
    ...over,
    onEvent: recordTensorBoard(over.onEvent),
  });
}

test("a run that crashes after its step-4 checkpoint, tears a record and resumes: each step once, as log.jsonl says", async (t) => {
  const dir = tmp();
  const W = tf.variable(tf.zeros([V, V]));
  const stepLoss = new Map<number, number>();
  // process 1: steps 1..6 are logged, the last checkpoint is at step 4, then it dies
  await assert.rejects(
    bigramRun(W, dir, {
      onEvent: (e) => {
        if (e.kind !== "step") return;
        if (e.progress.step === 6) throw new Error("simulated crash");
        stepLoss.set(e.progress.step, e.progress.loss);
      },
    }).run(),
    /simulated crash/,
  );
  const [first] = eventFiles(dir);
  assert.ok(first && /events\.out\.tfevents\.\d{10}\.[^.]+/.test(first), first);
  const before = readEventFile(first);
  assert.deepEqual(
    before.events.filter((e) => e.scalars?.["step/loss"] !== undefined).map((e) => e.step),
    [1, 2, 3, 4, 5, 6],
  );
  // a write cut short by the crash: half a record at the end of the file
  appendFileSync(
    first,
    tfRecord(encodeEvent(Date.now() / 1000, 7, { scalars: [{ tag: "step/loss", value: 1 }] })).subarray(0, 15),
  );
  assert.equal(readEventFile(first).tornBytes, 15);

  // process 2 resumes from the step-4 checkpoint (the weights are those of step 4 again)
  await new Promise((r) => setTimeout(r, 20));
  const resumedAt = Date.now() / 1000;
  const restored = JSON.parse(readFileSync(join(dir, "trainer-state.json"), "utf8"));
  assert.equal(restored.step, 4);
  await bigramRun(W, dir, {
    resume: true,
    onEvent: (e) => e.kind === "step" && stepLoss.set(e.progress.step, e.progress.loss),
  }).run();
  W.dispose();

  const files = eventFiles(dir);
  assert.equal(files.length, 2, "a resumed run appends a new event file");
  assert.equal(files[0], first, "and it sorts after the first");
  const second = readEventFile(files[1]!).events;
  assert.deepEqual(second[0], { ...second[0]!, step: 0, fileVersion: "brain.Event:2" });
  assert.deepEqual(
    second[1],
    { ...second[1]!, step: 5, sessionStart: true },
    "START at the first step after the checkpoint",
  );

  const log = readFileSync(join(dir, "log.jsonl"), "utf8")
    .trim()
    .split("\n")
    .map((l) => JSON.parse(l) as EvalRecord | EpochRecord);
  const evals = log.filter((r): r is EvalRecord => r.type === "eval");
  const epochs = log.filter((r): r is EpochRecord => r.type === "epoch");
  assert.deepEqual(
    evals.map((r) => r.step),
    [1, 3, 5, 7, 9, 11, 12],
  );
  assert.equal(epochs.length, 3);

  const acc = accumulate(dir);
  if (!acc) {
    t.skip(NO_TENSORBOARD);
    return;
  }
  assert.equal(acc.file_version, 2);
  const series = (tag: string) => acc.scalars[tag] ?? assert.fail(`no ${tag} in ${Object.keys(acc.scalars)}`);
  assert.deepEqual(Object.keys(acc.scalars).sort(), [
    "epoch/train_accuracy",
    "epoch/val_accuracy",
    "eval/train_loss",
    "eval/val_loss",
    "step/loss",
    "step/lr",
    "step/tokens_per_second",
  ]);
  // each step once: the crashed process's steps 5 and 6 are purged, the torn record is not read
  const loss = series("step/loss");
  assert.deepEqual(
    loss.map(([s]) => s),
    [1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12],
  );
  for (const [s, wall, v] of loss) {
    assert.equal(v, Math.fround(stepLoss.get(s)!), `step ${s}`);
    assert.equal(wall >= resumedAt, s > 4, `step ${s} comes from the ${s > 4 ? "resumed" : "first"} process`);
  }
  assert.equal(series("step/lr").length, 12);
  assert.ok(series("step/tokens_per_second").every(([, , v]) => v > 0));
  // evaluations and epochs: exactly log.jsonl's records
  assert.deepEqual(
    series("eval/train_loss").map(([s, , v]) => [s, v]),
    evals.map((r) => [r.step, Math.fround(r.train_loss)]),
  );
  assert.deepEqual(
    series("eval/val_loss").map(([s, , v]) => [s, v]),
    evals.map((r) => [r.step, Math.fround(r.val_loss!)]),
  );
  assert.deepEqual(
    series("epoch/val_accuracy").map(([s, , v]) => [s, v]),
    epochs.map((r) => [r.step, Math.fround(r.val_accuracy as number)]),
  );
  assert.deepEqual(
    series("epoch/train_accuracy").map(([, , v]) => v),
    [0.5, 0.6, 0.7].map(Math.fround),
  );
  // the server TensorBoard users run: the same single pass over the steps
  const served = await servedScalars(dir, "step/loss", 12);
  assert.deepEqual(
    served.map(([s, , v]) => [s, v]),
    loss.map(([s, , v]) => [s, v]),
  );
  t.diagnostic(
    `EventAccumulator: ${Object.entries(acc.scalars)
      .map(([k, v]) => `${k} ${v.length}`)
      .join(", ")}`,
  );
});

test("a fresh run deletes the event files of an attempt that died before its first checkpoint", async () => {
  const dir = tmp();
  const W = tf.variable(tf.zeros([V, V]));
  const crashAt2 = (e: { kind: string; progress?: { step: number } }) => {
    if (e.kind === "step" && e.progress!.step === 2) throw new Error("simulated crash");
  };
  await assert.rejects(bigramRun(W, dir, { onEvent: crashAt2 }).run(), /simulated crash/);
  assert.equal(eventFiles(dir).length, 1);
  await bigramRun(W, dir, {}).run();
  W.dispose();
  const files = eventFiles(dir);
  assert.equal(files.length, 1);
  assert.equal(readEventFile(files[0]!).events.filter((e) => e.scalars?.["step/loss"] !== undefined).length, 12);
});

test("CLI: pretrain writes its scalars to RUN/tensorboard, evaluations where log.jsonl has them", async (t) => {
  const dir = tmp();
  const cfgPath = join(dir, "tiny.json");
  writeFileSync(
    cfgPath,
    JSON.stringify({
      model: {
        vocab_size: 50257,
        context_length: 16,
        emb_dim: 16,
        n_heads: 2,
        n_layers: 1,
        drop_rate: 0,
        qkv_bias: false,
      },
      train: { epochs: 1, batch_size: 4, max_length: 16, eval_freq: 2, eval_iter: 1, sample_tokens: 0 },
    }),
  );
  const text = join(dir, "text.txt");
  writeFileSync(text, readFileSync(sharedPath("datasets", "the-verdict.txt"), "utf8").slice(0, 2000));
  const out = join(dir, "run");
  const r = await runCli(
    ["pretrain", "--config", cfgPath, "--data", text, "--max-steps", "3", "--out", out, "--json"],
    {
      env: cliEnv(),
    },
  );
  assert.equal(r.code, 0, r.stderr);
  const files = eventFiles(out);
  assert.equal(files.length, 1);
  const { events, tornBytes } = readEventFile(files[0]!);
  assert.equal(tornBytes, 0);
  assert.deepEqual(
    events.filter((e) => e.scalars?.["step/loss"]).map((e) => e.step),
    [1, 2, 3],
  );
  const log = readFileSync(join(out, "log.jsonl"), "utf8")
    .trim()
    .split("\n")
    .map((l) => JSON.parse(l));
  const evalSteps = log.filter((l) => l.type === "eval").map((l) => l.step);
  assert.deepEqual(
    events.filter((e) => e.scalars?.["eval/train_loss"] !== undefined).map((e) => e.step),
    evalSteps,
  );

  const acc = accumulate(out);
  if (!acc) {
    t.skip(NO_TENSORBOARD);
    return;
  }
  assert.deepEqual(
    acc.scalars["eval/val_loss"]!.map(([s]) => s),
    evalSteps,
  );
  assert.ok(acc.scalars["step/loss"]!.every(([, , v]) => v > 9 && v < 12));
});
