import { test, before, after } from "node:test";
import assert from "node:assert/strict";
import { mkdtemp, readFile, rm } from "node:fs/promises";
import { existsSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { useBackend } from "../src/backend/index.js";
import type { GPTConfig } from "../src/model/config.js";
import { loadModelDir } from "../src/model/model-dir.js";
import { getTokenizer } from "../src/tokenizer/index.js";
import { finetuneSpam, type AccuracyReport } from "../src/finetune/spam.js";
import type { JobEvent } from "../src/train/run.js";
import { SPAM_LABELS, classifyTexts } from "../src/generate/classify.js";
import { readSplitCsvs } from "../src/finetune/spam-data.js";
import { runCli } from "./helpers/cli.js";
import { saveNewModel, tinyConfig } from "./helpers/tiny-config.js";
import { interruptAtStep } from "./helpers/interrupt.js";
import { writeSmallSplit } from "./helpers/spam-split.js";

// GPT-2's vocabulary (the SMS texts use it), otherwise as small as a GPT gets
const CFG: GPTConfig = tinyConfig({ vocab_size: 50257, context_length: 24, drop_rate: 0.1 });

let root: string;
let lmDir: string;
let smallSplit: string;

before(async () => {
  // wasm: the pure-JS cpu backend takes ~0.2 s per forward even at this size; exactness here is same-backend only
  await useBackend("wasm");
  root = await mkdtemp(join(tmpdir(), "llmctl-spam-e2e-"));
  lmDir = join(root, "lm");
  await saveNewModel(lmDir, CFG, 11);
  // a small split of the real data keeps the resume test's three runs short
  smallSplit = await writeSmallSplit(root, { train: 48, validation: 16, test: 16 }, "small-split");
});

after(async () => {
  await rm(root, { recursive: true, force: true });
});

const TRAIN = { epochs: 2, batch_size: 8, lr: 1e-3, eval_freq: 2, eval_iter: 2, max_steps: 3 };
const RUN = { trainable: "all" as const, pool: "last-nonpad" as const, train: TRAIN };

test("finetune spam end to end on a small split of the real data: classifier dir, accuracy.json that classify reproduces", async () => {
  const out = join(root, "clf");
  const events: JobEvent[] = [];
  const result = await finetuneSpam({
    modelDir: lmDir,
    outDir: out,
    splitDir: smallSplit,
    ...RUN,
    onEvent: (e) => events.push(e),
  });

  assert.equal(result.train.step, 3);
  assert.equal(result.maxLength, 24); // the longest training text is longer than the context: cut to it
  const data = events.find((e) => e.kind === "data");
  assert.deepEqual(data && [data.train, data.validation, data.test], [48, 16, 16]);
  const steps = events.filter((e) => e.kind === "step");
  assert.equal(steps.length, 3);
  assert.ok(
    steps.every((s) => s.progress.accuracy !== undefined && s.progress.accuracy >= 0 && s.progress.accuracy <= 1),
  );

  for (const f of [
    "config.json",
    "model.safetensors",
    "train.csv",
    "validation.csv",
    "test.csv",
    "accuracy.json",
    "accuracy.svg",
    "loss.svg",
    "log.jsonl",
    "trainer-state.json",
  ]) {
    assert.ok(existsSync(join(out, f)), f);
  }
  // the one run record: the job's choices beside the train settings, in the checkpoint
  const { job } = JSON.parse(await readFile(join(out, "trainer-state.json"), "utf8"));
  assert.equal(job.task, "finetune spam");
  assert.equal(job.pool, "last-nonpad");
  assert.equal(job.max_length, 24);
  const config = JSON.parse(await readFile(join(out, "config.json"), "utf8"));
  assert.deepEqual(config.head, {
    kind: "classifier",
    num_classes: 2,
    labels: ["not spam", "spam"],
    pool: "last-nonpad",
    max_length: 24,
  });
  assert.equal(config.model.drop_rate, 0); // the book finetunes without dropout

  const report = JSON.parse(await readFile(join(out, "accuracy.json"), "utf8")) as AccuracyReport;
  assert.deepEqual(report.examples, { train: 48, validation: 16, test: 16 });
  assert.equal(report.test_accuracy, result.accuracy.test);

  // the reused split is copied into the run directory unchanged
  for (const f of ["train.csv", "validation.csv", "test.csv"]) {
    assert.equal(await readFile(join(out, f), "utf8"), await readFile(join(smallSplit, f), "utf8"), f);
  }
  // classify, through its own code path, gets the same test accuracy from the saved directory
  const split = await readSplitCsvs(out);
  const { meta, gpt } = await loadModelDir(out);
  try {
    const head = meta.head.kind === "classifier" ? meta.head : assert.fail("not a classifier");
    const preds = await classifyTexts(
      gpt,
      getTokenizer(),
      split.test.map((m) => m.text),
      { labels: SPAM_LABELS, pool: head.pool!, maxLength: head.max_length, batchSize: 32 },
    );
    const correct = preds.filter((p, i) => p.label === SPAM_LABELS[split.test[i].label]).length;
    assert.equal(correct / split.test.length, report.test_accuracy);
    assert.ok(preds.every((p) => p.probability >= 0.5 && p.probability <= 1));
  } finally {
    gpt.dispose();
  }

  // the CLI reads the same directory
  const cli = await runCli([
    "classify",
    "--model",
    out,
    "--json",
    "--backend",
    "cpu",
    split.test[0].text,
    split.test[1].text,
  ]);
  assert.equal(cli.code, 0, cli.stderr);
  const rows = JSON.parse(cli.stdout) as { text: string; label: string; probability: number }[];
  assert.deepEqual(
    rows.map((r) => r.text),
    [split.test[0].text, split.test[1].text],
  );
  assert.ok(rows.every((r) => (SPAM_LABELS as readonly string[]).includes(r.label)));
});

test("Ctrl-C then resume finishes with the same weights as an uninterrupted run", async () => {
  const whole = join(root, "whole");
  const parted = join(root, "parted");
  // 48 examples = 6 batches per epoch: 9 steps run through an epoch boundary, the interrupt lands mid-epoch
  const run = {
    train: { ...TRAIN, max_steps: 9 },
    splitDir: smallSplit,
    trainable: "last-block" as const,
    pool: "last" as const,
  };
  const whole_ = await finetuneSpam({ modelDir: lmDir, outDir: whole, ...run });
  assert.equal(whole_.epochs.length, 1);
  await interruptAtStep(4, (stop) =>
    finetuneSpam({
      modelDir: lmDir,
      outDir: parted,
      ...run,
      ...stop,
    }),
  );
  // resuming takes the run's own settings (trainable, pool, split, lr…) from the directory
  const resumed = await finetuneSpam({ outDir: parted, resume: true });
  assert.equal(resumed.train.step, 9);
  assert.deepEqual(resumed.epochs, whole_.epochs);
  const a = await readFile(join(whole, "model.safetensors"));
  const b = await readFile(join(parted, "model.safetensors"));
  assert.ok(a.equals(b), "weights differ after resume");
  const accA = JSON.parse(await readFile(join(whole, "accuracy.json"), "utf8"));
  const accB = JSON.parse(await readFile(join(parted, "accuracy.json"), "utf8"));
  assert.deepEqual(accB, accA);
});
