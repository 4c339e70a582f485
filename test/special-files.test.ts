// test: first backend pass only (file kinds, signals and temporary files; nothing computed depends on the backend)
import { test } from "node:test";
import assert from "node:assert/strict";
import { spawn, spawnSync } from "node:child_process";
import {
  cpSync,
  existsSync,
  lstatSync,
  mkdirSync,
  mkdtempSync,
  readdirSync,
  readFileSync,
  readlinkSync,
  statSync,
  symlinkSync,
  writeFileSync,
} from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { removeStaleTemporaries } from "../src/fs-atomic.js";
import { runCli } from "./helpers/cli.js";
import { sharedPath } from "./helpers/shared.js";

const dir = () => mkdtempSync(join(tmpdir(), "llmctl-special-"));
const isRoot = process.getuid?.() === 0;
const NOT_ROOT = "mknod needs root";

function mknod(path: string, type: "c" | "b", major: number, minor: number): void {
  const r = spawnSync("mknod", [path, type, String(major), String(minor)]);
  assert.equal(r.status, 0, `mknod ${path}: ${r.stderr}`);
}

test("a FIFO given as --out is written in place: the reader gets the token file, and the FIFO stays a FIFO", async () => {
  const d = dir();
  const fifo = join(d, "pipe");
  assert.equal(spawnSync("mkfifo", [fifo]).status, 0);
  const reader = spawn("cat", [fifo]);
  const chunks: Buffer[] = [];
  reader.stdout.on("data", (c: Buffer) => chunks.push(c));
  const done = new Promise((ok) => reader.on("close", ok));
  const r = await runCli(["tokenize", "Every effort moves you", "--out", fifo]);
  await done;
  assert.equal(r.code, 0, r.stderr);
  assert.ok(statSync(fifo).isFIFO(), "still a FIFO");
  const bytes = Buffer.concat(chunks);
  // the token file's header, then the four ids as uint16 (docs/token-file.md)
  assert.ok(bytes.length > 8, `the reader got ${bytes.length} bytes`);
  const ids = Array.from(
    new Uint16Array(bytes.buffer.slice(bytes.byteOffset + bytes.length - 8, bytes.byteOffset + bytes.length)),
  );
  assert.deepEqual(ids, [6109, 3626, 6100, 345]);
  assert.deepEqual(readdirSync(d), ["pipe"], "no temporary file beside it");
});

test("character devices are written in place: a private /dev/null takes the output, a private /dev/full is one line", async (t) => {
  if (!isRoot) return t.skip(NOT_ROOT);
  const d = dir();
  const nul = join(d, "null");
  const full = join(d, "full");
  mknod(nul, "c", 1, 3);
  mknod(full, "c", 1, 7);
  const ok = await runCli(["tokenize", "Every effort moves you", "--out", nul]);
  assert.equal(ok.code, 0, ok.stderr);
  assert.ok(statSync(nul).isCharacterDevice(), "still a character device");
  const bad = await runCli(["tokenize", "Every effort moves you", "--out", full]);
  assert.equal(bad.code, 1);
  assert.equal(bad.stderr.trim().split("\n").length, 1, bad.stderr);
  assert.match(bad.stderr, /no space left|full/i);
  assert.ok(statSync(full).isCharacterDevice(), "still a character device");
  assert.deepEqual(readdirSync(d).sort(), ["full", "null"], "no temporary files");
});

test("a block device, a socket or a directory as an output file is refused in one line and left as it was", async (t) => {
  const d = dir();
  const targets: [string, () => void][] = [["a-directory", () => mkdirSync(join(d, "a-directory"))]];
  if (isRoot) targets.push(["a-block-device", () => mknod(join(d, "a-block-device"), "b", 7, 200)]);
  else t.diagnostic(`block device: ${NOT_ROOT}`);
  for (const [name, make] of targets) {
    make();
    const before = lstatSync(join(d, name));
    const r = await runCli(["tokenize", "Every effort moves you", "--out", join(d, name)]);
    assert.equal(r.code, 1, `${name}: ${r.stderr}`);
    assert.equal(r.stderr.trim().split("\n").length, 1, r.stderr);
    assert.match(r.stderr, new RegExp(`${name} is a (directory|block device)`));
    const after = lstatSync(join(d, name));
    assert.equal(after.ino, before.ino, `${name} was replaced`);
    assert.equal(after.mode, before.mode);
  }
});

test("a symbolic link as --out: the file it names is replaced, the link stays", async () => {
  const d = dir();
  writeFileSync(join(d, "real.bin"), "old");
  symlinkSync("real.bin", join(d, "link.bin"));
  const r = await runCli(["tokenize", "Every effort moves you", "--out", join(d, "link.bin")]);
  assert.equal(r.code, 0, r.stderr);
  assert.ok(lstatSync(join(d, "link.bin")).isSymbolicLink());
  assert.equal(readlinkSync(join(d, "link.bin")), "real.bin");
  assert.notEqual(readFileSync(join(d, "real.bin"), "utf8"), "old");
});

test("temporary files of a process that is gone are removed by the next write in their directory; a live one's stay", () => {
  const d = dir();
  const dead = spawnSync(process.execPath, ["-e", "process.stdout.write(String(process.pid))"], { encoding: "utf8" });
  const gonePid = Number(dead.stdout);
  const stale = `.model.safetensors.tmp-${gonePid}-lx2a9`;
  const live = `.model.safetensors.tmp-${process.ppid}-lx2a9`;
  for (const f of [stale, live, "model.safetensors", ".hidden-but-not-ours"]) writeFileSync(join(d, f), "x");
  removeStaleTemporaries(d);
  assert.ok(!existsSync(join(d, stale)), "the dead process's temporary is removed");
  for (const f of [live, "model.safetensors", ".hidden-but-not-ours"]) assert.ok(existsSync(join(d, f)), f);
});

test("an input path that is a directory where a file belongs is one line naming it, for every reader", async () => {
  const d = dir();
  // a model directory whose model.safetensors (or config.json) is a directory
  const model = join(d, "model");
  const r0 = await runCli(["load-gpt2", "--from", sharedPath("fixtures", "gpt2-tiny", "hf"), "--out", model]);
  assert.equal(r0.code, 0, r0.stderr);
  const weightsDir = join(d, "weights-dir");
  mkdirSync(join(weightsDir, "model.safetensors"), { recursive: true });
  cpSync(join(model, "config.json"), join(weightsDir, "config.json"));
  const configDir = join(d, "config-dir");
  mkdirSync(join(configDir, "config.json"), { recursive: true });
  const folder = join(d, "folder");
  mkdirSync(folder);
  const cases: [string[], RegExp][] = [
    [["generate", "-m", weightsDir, "-p", "a", "-n", "1"], /model\.safetensors is a directory, not a file/],
    [["info", configDir], /config\.json is a directory, not a file/],
    [
      ["load-gpt2", "--from", join(weightsDir, "model.safetensors"), "--out", join(d, "o1")],
      /is neither an OpenAI checkpoint/,
    ],
    [["pretrain", "--config", folder, "--out", join(d, "o2")], /folder is a directory, not a file/],
    [["pretrain", "--config", "gpt2-tiny", "--data", folder, "--out", join(d, "o3")], /folder is a directory/],
    [["finetune", "instruct", "--model", model, "--data", folder, "--out", join(d, "o4")], /folder is a directory/],
    [["finetune", "spam", "--model", model, "--data", folder, "--out", join(d, "o5")], /folder is a directory/],
    [["classify", "-m", model, "--file", folder], /folder/],
  ];
  for (const [args, said] of cases) {
    const r = await runCli(args, { env: { LLMCTL_BACKEND: "wasm" } });
    assert.ok(r.code === 1 || r.code === 2, `${args.join(" ")}: exit ${r.code}: ${r.stderr}`);
    const errors = r.stderr.split("\n").filter((l) => l.startsWith("llmctl:"));
    assert.equal(errors.length, 1, `${args.join(" ")}: ${r.stderr}`);
    assert.match(errors[0], said, args.join(" "));
    assert.doesNotMatch(r.stderr, /unexpected|EISDIR/, args.join(" "));
  }
});

test("a stop signal during a write no handler covers: exit 128+n, one line, and the temporary file is gone", async () => {
  const d = dir();
  const child = `
    import { writeFileAtomicWith } from ${JSON.stringify(new URL("../src/fs-atomic.js", import.meta.url).href)};
    import { quitOnUnhandledSignals } from ${JSON.stringify(new URL("../src/cli/output.js", import.meta.url).href)};
    quitOnUnhandledSignals();
    await writeFileAtomicWith(${JSON.stringify(join(d, "model.safetensors"))}, async (fh) => {
      await fh.write(Buffer.alloc(1 << 20));
      process.stdout.write("writing\\n");
      setInterval(() => {}, 1000); // a long export, still writing
      await new Promise(() => {});
    });
  `;
  for (const [sig, code] of [
    ["SIGINT", 130],
    ["SIGTERM", 143],
    ["SIGHUP", 129],
  ] as const) {
    const p = spawn(process.execPath, ["--input-type=module", "-e", child], { stdio: ["ignore", "pipe", "pipe"] });
    let stderr = "";
    p.stderr.on("data", (c) => (stderr += c));
    await new Promise<void>((ok) => p.stdout.on("data", () => ok()));
    assert.equal(readdirSync(d).length, 1, "the temporary file is there while writing");
    p.kill(sig);
    const exit = await new Promise<number | null>((ok) => p.on("close", ok));
    assert.equal(exit, code, stderr);
    assert.match(
      stderr.trim(),
      new RegExp(`^llmctl: stopped by ${sig === "SIGINT" ? "Ctrl-C" : sig}; files being written were removed$`),
    );
    assert.deepEqual(readdirSync(d), [], `${sig}: nothing left`);
  }
});
