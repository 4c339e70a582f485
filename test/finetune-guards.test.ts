// test: first backend pass only (refusals before any training step; nothing computed depends on the backend)
import { test, before } from "node:test";
import assert from "node:assert/strict";
import { mkdir, mkdtemp, readFile, readdir, rm, writeFile } from "node:fs/promises";
import { existsSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { useBackend } from "../src/backend/index.js";
import { runCli } from "./helpers/cli.js";
import { sharedPath } from "./helpers/shared.js";
import { saveNewModel, tinyConfig } from "./helpers/tiny-config.js";

let root: string;
let smallVocab: string;
/** the gpt2-tiny fixture as a model directory: GPT-2's vocabulary, read by every test below that finetunes */
let base: string;
const env = { env: { LLMCTL_BACKEND: "wasm", LLMCTL_DATA_MIRROR: sharedPath("datasets") } };

before(async () => {
  await useBackend("cpu");
  root = await mkdtemp(join(tmpdir(), "llmctl-finetune-guards-"));
  smallVocab = join(root, "vocab-1000");
  await saveNewModel(
    smallVocab,
    tinyConfig({ vocab_size: 1000, context_length: 32, emb_dim: 8, n_layers: 1, tied_head: true }),
  );
  base = join(root, "gpt2-tiny");
  const loaded = await runCli(["load-gpt2", "--from", sharedPath("fixtures", "gpt2-tiny", "hf"), "--out", base]);
  assert.equal(loaded.code, 0, loaded.stderr);
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
  const r = await runCli(
    ["finetune", "spam", "--model", base, "--out", join(root, "alpha"), "--lora", "2", "--lora-alpha", "1e30"].concat([
      "--max-steps",
      "3",
      "--batch-size",
      "2",
    ]),
    env,
  );
  assert.equal(r.code, 1, r.stderr);
  const errors = r.stderr.split("\n").filter((l) => l.startsWith("llmctl:"));
  assert.equal(errors.length, 1, r.stderr);
  assert.match(errors[0], /not finite.*lower --lora-alpha \(1e\+30 scales the adapters by alpha\/rank = 5\.00e\+29/);
  assert.doesNotMatch(errors[0], /learning rate/);
});

test("resume messages: a setting the run never had, the other finetune's run, a run that lost its split; classify on a LoRA LM", async () => {
  const run = join(root, "spam-run");
  const first = await runCli(
    ["finetune", "spam", "--model", base, "--out", run, "--max-steps", "1", "--batch-size", "2"],
    env,
  );
  assert.equal(first.code, 0, first.stderr);
  const lines = (r: { stderr: string }) => r.stderr.split("\n").filter((l) => l.startsWith("llmctl:"));

  const lora = await runCli(["finetune", "spam", "--resume", run, "--lora", "4"], env);
  assert.equal(lora.code, 2, lora.stderr);
  assert.match(lines(lora)[0], /--lora 4 \(alpha 4\): the run was started without it/);
  assert.doesNotMatch(lora.stderr, /undefined/);

  const wrongJob = await runCli(["finetune", "instruct", "--resume", run], env);
  assert.equal(wrongJob.code, 1, wrongJob.stderr);
  assert.match(
    lines(wrongJob)[0],
    /is a `finetune spam` run, not a `finetune instruct` one — resume it with llmctl finetune spam --resume/,
  );
  const asPretrain = await runCli(["pretrain", "--resume", run], env);
  assert.equal(asPretrain.code, 1, asPretrain.stderr);
  assert.match(lines(asPretrain)[0], /is a `finetune spam` run, not a `pretrain` one/);

  // a run saved before the record moved into trainer-state.json: its instruct-run.json says whose it is
  const earlier = join(root, "instruct-earlier");
  await mkdir(earlier);
  await writeFile(join(earlier, "instruct-run.json"), "{}");
  const state = JSON.parse(await readFile(join(run, "trainer-state.json"), "utf8"));
  delete state.job;
  await writeFile(join(earlier, "trainer-state.json"), JSON.stringify(state));
  const earlierJob = await runCli(["finetune", "spam", "--resume", earlier], env);
  assert.equal(earlierJob.code, 1, earlierJob.stderr);
  assert.match(
    lines(earlierJob)[0],
    /is a `finetune instruct` run, not a `finetune spam` one — resume it with llmctl finetune instruct --resume/,
  );
  assert.doesNotMatch(earlierJob.stderr, /ENOENT/);

  await rm(join(run, "test.csv"));
  const lost = await runCli(["finetune", "spam", "--resume", run, "--max-steps", "2"], env);
  assert.equal(lost.code, 1, lost.stderr);
  assert.match(lines(lost)[0], /test\.csv is missing: the run's split is incomplete, so it cannot be resumed/);

  const loraLm = join(root, "lora-lm");
  await mkdir(loraLm);
  const meta = JSON.parse(await readFile(join(base, "config.json"), "utf8")) as Record<string, unknown>;
  meta.lora = { rank: 2, alpha: 2, base, base_sha256: "0".repeat(64), own_weights: [] };
  await writeFile(join(loraLm, "config.json"), JSON.stringify(meta));
  const clf = await runCli(["classify", "-m", loraLm, "hello"], env);
  assert.equal(clf.code, 2, clf.stderr);
  assert.match(
    lines(clf)[0],
    /merge it \(llmctl export --format llmctl --model .* --out MERGED\), then finetune a classifier/,
  );
});

test("the closing work is bounded and visible: --max-answers and --max-scored, progress with ETA on stderr under --json", async () => {
  const instruct = join(root, "instruct-bounded");
  const i = await runCli(
    ["finetune", "instruct", "-m", base, "--out", instruct, "--max-steps", "1", "--batch-size", "2"].concat([
      "--max-answers",
      "3",
      "--response-tokens",
      "4",
      "--json",
    ]),
    env,
  );
  assert.equal(i.code, 0, i.stderr);
  const answers = JSON.parse(
    await readFile(join(instruct, "instruction-data-with-response.json"), "utf8"),
  ) as unknown[];
  assert.equal(answers.length, 3);
  assert.match(i.stderr, /answering the test instructions: 3\/3 in /);

  const spam = join(root, "spam-bounded");
  const s = await runCli(
    [
      "finetune",
      "spam",
      "-m",
      base,
      "--out",
      spam,
      "--max-steps",
      "1",
      "--batch-size",
      "2",
      "--max-scored",
      "8",
      "--json",
    ],
    env,
  );
  assert.equal(s.code, 0, s.stderr);
  for (const set of ["train", "validation", "test"])
    assert.match(s.stderr, new RegExp(`scoring the ${set} set: 4/4 in `));
  const report = JSON.parse(await readFile(join(spam, "accuracy.json"), "utf8")) as { max_scored: number };
  assert.equal(report.max_scored, 8);
  const bad = await runCli(["finetune", "spam", "-m", base, "--out", join(root, "x"), "--max-scored", "0"], env);
  assert.equal(bad.code, 2);
});

test("the run directory is locked before anything is written into it; a refused new run leaves no directory", async () => {
  const busy = join(root, "busy");
  await mkdir(busy);
  await writeFile(join(busy, ".llmctl.lock"), `${process.pid}\n`); // this test process: alive
  const r = await runCli(["finetune", "spam", "--model", base, "--out", busy, "--max-steps", "1"], env);
  assert.equal(r.code, 2, r.stderr);
  assert.match(r.stderr, /is in use by another llmctl process/);
  assert.deepEqual(await readdir(busy), [".llmctl.lock"], "no split CSVs written past the lock");

  const fresh = join(root, "never-made");
  const refused = await runCli(["finetune", "spam", "--model", smallVocab, "--out", fresh, "--max-steps", "1"], env);
  assert.equal(refused.code, 1, refused.stderr);
  assert.ok(!existsSync(fresh), "the directory the lock made is gone again");
});
