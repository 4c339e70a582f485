// test: first backend pass only (output-directory guards: no backend work)
/**
 * Output directories: a command never writes over the input it reads (--force or not), a new run never starts
 * in a directory holding other files unless told (--force), and two processes never train in one directory.
 */
import { test, before, after } from "node:test";
import assert from "node:assert/strict";
import { spawnSync } from "node:child_process";
import { existsSync, mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { useBackend } from "../src/backend/index.js";
import { LOCK_FILE, readTrainerState } from "../src/train/run-dir.js";
import { runCli, tinyPretrainArgs } from "./helpers/cli.js";
import { saveWordModel } from "./helpers/word-model.js";

const env = { LLMCTL_BACKEND: "cpu" };
let root: string;
let model: string;

before(async () => {
  await useBackend("cpu");
  root = mkdtempSync(join(tmpdir(), "llmctl-outdir-"));
  model = join(root, "m");
  await saveWordModel(model, { contextLength: 32 });
});
after(() => rmSync(root, { recursive: true, force: true }));

const modelBytes = () => readFileSync(join(model, "model.safetensors"));

test("export --out its own source is refused, --force or not; the model is untouched", async () => {
  const before = modelBytes();
  for (const format of ["hf", "llmctl"]) {
    const r = await runCli(["export", "-m", model, "--format", format, "--out", model, "--force"], { env });
    assert.equal(r.code, 2, r.stderr);
    assert.match(r.stderr, /--out .* is --model .*, which this command reads — choose another --out/);
  }
  assert.ok(modelBytes().equals(before));
  assert.equal(JSON.parse(readFileSync(join(model, "config.json"), "utf8")).format, "llmctl-model");
});

test("pretrain --out a model directory or a directory of other files is refused unless --force", async () => {
  const before = modelBytes();
  const intoModel = await runCli([...tinyPretrainArgs(root, model), "--max-steps", "1"], { env });
  assert.equal(intoModel.code, 2, intoModel.stderr);
  assert.match(
    intoModel.stderr,
    /is not empty \(it holds .*model\.safetensors.*\) and holds no run to resume — .*--force/,
  );
  assert.ok(modelBytes().equals(before));

  const other = join(root, "other");
  mkdirSync(other);
  writeFileSync(join(other, "notes.txt"), "mine");
  const refused = await runCli([...tinyPretrainArgs(root, other), "--max-steps", "1"], { env });
  assert.equal(refused.code, 2, refused.stderr);
  assert.ok(!existsSync(join(other, "model.safetensors")));
  const forced = await runCli([...tinyPretrainArgs(root, other), "--max-steps", "1", "--force"], { env });
  assert.equal(forced.code, 0, forced.stderr);
  assert.equal(readFileSync(join(other, "notes.txt"), "utf8"), "mine");
  assert.equal((await readTrainerState(other)).step, 1);
});

test("finetune --out the base model it reads is refused, --force or not", async () => {
  const before = modelBytes();
  for (const kind of ["spam", "instruct"]) {
    const r = await runCli(["finetune", kind, "-m", model, "--out", model, "--force", "--max-steps", "1"], { env });
    assert.equal(r.code, 2, r.stderr);
    assert.match(r.stderr, /--out .* is the model this run reads — choose another --out/);
  }
  assert.ok(modelBytes().equals(before));
});

test("a run directory locked by a live process is refused; a stale lock (its process gone) is taken over", async () => {
  const out = join(root, "locked");
  const first = await runCli([...tinyPretrainArgs(root, out), "--max-steps", "1"], { env });
  assert.equal(first.code, 0, first.stderr);
  assert.ok(!existsSync(join(out, LOCK_FILE)), "the lock is released when the run ends");

  writeFileSync(join(out, LOCK_FILE), `${process.pid}\n`); // this test process: alive
  const busy = await runCli(["pretrain", "--resume", out, "--max-steps", "2"], { env });
  assert.equal(busy.code, 2, busy.stderr);
  assert.match(busy.stderr, new RegExp(`is in use by another llmctl process \\(pid ${process.pid}\\)`));
  assert.equal((await readTrainerState(out)).step, 1);

  const gone = spawnSync(process.execPath, ["-e", "console.log(process.pid)"], { encoding: "utf8" });
  writeFileSync(join(out, LOCK_FILE), gone.stdout);
  const resumed = await runCli(["pretrain", "--resume", out, "--max-steps", "2", "--json"], { env });
  assert.equal(resumed.code, 0, resumed.stderr);
  assert.equal(JSON.parse(resumed.stdout).steps, 2);
  assert.ok(!existsSync(join(out, LOCK_FILE)));
});
