// test: first backend pass only (filesystem faults: the writers, not the backend, are under test)
/**
 * Filesystem faults reach the user as one line naming the path and the fix, exit 1, with nothing half-written
 * left: a full disk (a small tmpfs; mounting needs root, the tests skip and say so without it), a read-only file
 * system, a directory or a file where the other is wanted, names too long.
 */
import { test, before, after } from "node:test";
import assert from "node:assert/strict";
import { spawnSync } from "node:child_process";
import { existsSync, mkdtempSync, readFileSync, readdirSync, rmSync, statfsSync, writeFileSync } from "node:fs";
import { mkdir } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { readTrainerState } from "../src/train/run-dir.js";
import { runCli, type CliResult, tinyPretrainArgs } from "./helpers/cli.js";
import { sharedPath } from "./helpers/shared.js";

const env = { LLMCTL_BACKEND: "cpu" };
let root: string;
const mounts: string[] = [];

before(() => {
  root = mkdtempSync(join(tmpdir(), "llmctl-fs-"));
});
after(() => {
  for (const m of mounts) spawnSync("umount", [m]);
  rmSync(root, { recursive: true, force: true });
});

/** A fresh tmpfs of `mb` MB (read-only with `ro`), or null where mounting is refused. */
function tmpfs(name: string, mb: number, ro = false): string | null {
  const dir = join(root, name);
  rmSync(dir, { recursive: true, force: true });
  spawnSync("mkdir", ["-p", dir]);
  const r = spawnSync("mount", ["-t", "tmpfs", "-o", `size=${mb}m${ro ? ",ro" : ""}`, "tmpfs", dir]);
  if (r.status !== 0) return null;
  mounts.push(dir);
  return dir;
}
const canMount = (() => {
  const probe = mkdtempSync(join(tmpdir(), "llmctl-fs-probe-"));
  const ok = spawnSync("mount", ["-t", "tmpfs", "-o", "size=1m", "tmpfs", probe]).status === 0;
  if (ok) spawnSync("umount", [probe]);
  rmSync(probe, { recursive: true, force: true });
  return ok;
})();
const noMount = canMount ? false : "mounting a tmpfs was refused (needs root): the disk-full tests need one";

/** Fill `dir`'s file system until `leaveMb` MB are free. */
function fill(dir: string, leaveMb: number): string {
  const s = statfsSync(dir);
  const bytes = Number(s.bavail) * Number(s.bsize) - leaveMb * 2 ** 20;
  const path = join(dir, "filler");
  if (bytes > 0) writeFileSync(path, Buffer.alloc(bytes));
  return path;
}

/** Every name under `dir` (recursively) that is a temporary or staging leftover. */
function leftovers(dir: string): string[] {
  return (readdirSync(dir, { recursive: true }) as string[]).filter((p) => /(^|\/)\.[^/]*(tmp|stage)/.test(p));
}

/** One line on stderr that names `path` and the fix, exit 1, and never "unexpected". */
function assertOneLine(r: CliResult, message: RegExp): void {
  assert.equal(r.code, 1, r.stderr);
  assert.doesNotMatch(r.stderr, /unexpected|please report/);
  const lines = r.stderr.trim().split("\n");
  assert.match(lines[lines.length - 1], new RegExp(`^llmctl: ${message.source} — \\S`));
}

const FULL = /no space left on the device writing \S+/;

const SAVED_ALONE =
  /no space left on the device writing \S+: the final checkpoint \(model and optimizer state\) did not fit, the trained model of step \d+ alone did and is in \S+ \(-m \S+ uses it; it cannot be resumed\)/;

test(
  "disk full at the final save: the model alone is saved and loads; one line whose advice (--force) then works",
  { skip: noMount },
  async () => {
    const disk = tmpfs("full-pretrain", 32)!;
    const filler = fill(disk, 12); // the model fits, the optimizer's moments do not
    const out = join(disk, "run");
    const r = await runCli([...tinyPretrainArgs(root, out), "--max-steps", "2"], { env });
    assertOneLine(r, SAVED_ALONE);
    assert.match(
      r.stderr,
      new RegExp(`writing ${out}/.*is in ${out} .*— to train further, free space and start again with --force`),
    );
    assert.deepEqual(leftovers(disk), []);
    assert.ok(!existsSync(join(out, "trainer-state.json")));
    const gen = await runCli(["generate", "-m", out, "-p", "Every effort", "-n", "2", "--temperature", "0"], { env });
    assert.equal(gen.code, 0, gen.stderr);
    rmSync(filler);
    const again = await runCli([...tinyPretrainArgs(root, out), "--max-steps", "2", "--force"], { env });
    assert.equal(again.code, 0, again.stderr);
    assert.equal((await readTrainerState(out)).step, 2);
  },
);

test(
  "disk full: --resume in place keeps the previous checkpoint, and the run resumes once space is freed",
  { skip: noMount },
  async () => {
    const disk = tmpfs("full-resume", 48)!;
    const out = join(disk, "run");
    const first = await runCli([...tinyPretrainArgs(root, out), "--max-steps", "1"], { env });
    assert.equal(first.code, 0, first.stderr);
    const weights = readFileSync(join(out, "model.safetensors"));
    const filler = fill(disk, 8);

    const full = await runCli(["pretrain", "--resume", out, "--max-steps", "3"], { env });
    assertOneLine(full, SAVED_ALONE);
    assert.match(
      full.stderr,
      new RegExp(`— ${out} keeps the resumable checkpoint of step 1 \\(--resume ${out} once there is space\\)`),
    );
    assert.ok(existsSync(join(out, "model-step-3", "model.safetensors")), "the trained model, beside the checkpoint");
    assert.deepEqual(leftovers(disk), []);
    assert.equal((await readTrainerState(out)).step, 1, "the previous checkpoint is intact");
    assert.ok(readFileSync(join(out, "model.safetensors")).equals(weights));

    rmSync(filler);
    const resumed = await runCli(["pretrain", "--resume", out, "--max-steps", "3", "--json"], { env });
    assert.equal(resumed.code, 0, resumed.stderr);
    assert.equal(JSON.parse(resumed.stdout).steps, 3);
  },
);

test(
  "disk full: load-gpt2 and tokenize --out fail with one line; an existing --out file is left as it was",
  { skip: noMount },
  async () => {
    const disk = tmpfs("full-small", 4)!;
    const tokens = join(disk, "t.bin");
    const first = await runCli(["tokenize", "Every effort moves you", "--out", tokens], { env });
    assert.equal(first.code, 0, first.stderr);
    const before = readFileSync(tokens);
    fill(disk, 0);

    assertOneLine(await runCli(["tokenize", "Every effort moves you, and more", "--out", tokens], { env }), FULL);
    assert.ok(readFileSync(tokens).equals(before));
    assertOneLine(
      await runCli(["load-gpt2", "--from", sharedPath("fixtures", "gpt2-tiny", "hf"), "--out", join(disk, "m")], {
        env,
      }),
      FULL,
    );
    assert.deepEqual(leftovers(disk), []);
  },
);

test("a read-only file system: one line, exit 1", { skip: noMount }, async () => {
  const disk = tmpfs("ro", 1, true)!;
  assertOneLine(
    await runCli(["tokenize", "hi", "--out", join(disk, "t.bin")], { env }),
    /\S+ is on a read-only file system/,
  );
  assertOneLine(
    await runCli(["load-gpt2", "--from", sharedPath("fixtures", "gpt2-tiny", "hf"), "--out", join(disk, "m")], { env }),
    /\S+ is on a read-only file system/,
  );
});

test("tokenize --out an existing directory, or under a file: one line, exit 1, nothing left beside it", async () => {
  const dir = join(root, "outdir");
  await mkdir(dir);
  assertOneLine(await runCli(["tokenize", "hi", "--out", dir], { env }), new RegExp(`${dir} is a directory`));
  assert.deepEqual(leftovers(root), []);
  const file = join(root, "a-file");
  writeFileSync(file, "");
  assertOneLine(
    await runCli(["tokenize", "hi", "--out", join(file, "t.bin")], { env }),
    /\S+: a part of the path is a file, not a directory/,
  );
});

test("a 254-character --out name works (its temporary name is no longer); 256 characters is one line, exit 1", async () => {
  const long = join(root, "t".repeat(250) + ".bin");
  const ok = await runCli(["tokenize", "hi", "--out", long], { env });
  assert.equal(ok.code, 0, ok.stderr);
  assert.ok(existsSync(long));
  assertOneLine(
    await runCli(["tokenize", "hi", "--out", join(root, "t".repeat(252) + ".bin")], { env }),
    /\S+: a name in the path is too long/,
  );
  assert.deepEqual(leftovers(root), []);
});
