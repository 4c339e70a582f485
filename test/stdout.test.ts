// test: first backend pass only (how results reach stdout: pipes and devices, not the backend)
/**
 * Results on stdout: a reader that closes the pipe early (`| head`) ends the command quietly with exit 0; a
 * stdout that cannot be written (`> /dev/full`, a full disk) fails it with one line, exit 1.
 */
import { test, before, after } from "node:test";
import assert from "node:assert/strict";
import { spawnSync } from "node:child_process";
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { useBackend } from "../src/backend/index.js";
import { REPO_ROOT, sharedPath } from "./helpers/shared.js";
import { saveWordModel } from "./helpers/word-model.js";

let root: string;
let model: string;
let bigText: string;

before(async () => {
  await useBackend("cpu");
  root = mkdtempSync(join(tmpdir(), "llmctl-stdout-"));
  model = join(root, "m");
  await saveWordModel(model, { contextLength: 64 });
  bigText = join(root, "big.txt");
  writeFileSync(bigText, readFileSync(sharedPath("datasets", "the-verdict.txt"), "utf8").repeat(10)); // ids: ~250 KB
});
after(() => rmSync(root, { recursive: true, force: true }));

const quote = (s: string) => `'${s.replace(/'/g, `'\\''`)}'`;

/** Run `llmctl ARGS REDIRECT` in a shell; the exit status is llmctl's, not the pipe's last command's. */
function shell(args: string[], redirect: string) {
  const llmctl = [process.execPath, join(REPO_ROOT, "bin", "llmctl"), ...args].map(quote).join(" ");
  const r = spawnSync("bash", ["-c", `${llmctl} ${redirect}; exit "\${PIPESTATUS[0]}"`], {
    encoding: "utf8",
    env: { ...process.env, LLMCTL_BACKEND: "cpu" },
  });
  return { code: r.status, stdout: r.stdout, stderr: r.stderr };
}

const commands = () => [
  ["tokenize", "--file", bigText],
  ["generate", "-m", model, "-p", "Hi", "-n", "200", "-t", "0"],
  ["info", model],
];

test("a pipe closed early (| head -c 3) ends tokenize and generate quietly, exit 0", () => {
  for (const args of commands().slice(0, 2)) {
    const r = shell(args, "| head -c 3");
    assert.equal(r.code, 0, `${args[0]}: ${r.stderr}`);
    assert.equal(r.stdout.length, 3);
    assert.doesNotMatch(r.stderr, /EPIPE|Error|at /, args[0]);
  }
});

test("a stdout that cannot be written (> /dev/full) fails tokenize, generate and info: one line, exit 1", () => {
  for (const args of commands()) {
    const r = shell(args, "> /dev/full");
    assert.equal(r.code, 1, `${args[0]}: ${r.stderr}`);
    assert.match(
      r.stderr.trim().split("\n").pop()!,
      /^llmctl: no space left on the device writing the standard output — /,
    );
  }
});

test("tokenize's ids are streamed: 90M ids (540 MB of text, past V8's longest string) reach the stream whole", async () => {
  const { writeIds } = await import("../src/cli/output.js");
  const { Writable } = await import("node:stream");
  const n = 90_000_000;
  const ids = new Uint32Array(n).fill(50256);
  let bytes = 0;
  let tail = "";
  const sink = new Writable({
    write(chunk: Buffer, _enc, done) {
      bytes += chunk.length;
      tail = (tail + chunk.toString()).slice(-12);
      done();
    },
  });
  await writeIds(ids, { json: false, out: sink });
  assert.equal(bytes, n * 6, "'50256' and a space or the newline per id");
  assert.equal(tail, "50256 50256\n");
  bytes = 0;
  await writeIds(ids.subarray(0, 3), { json: true, out: sink });
  assert.equal(tail, "256,50256]}\n");
});
