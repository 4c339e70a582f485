import { test } from "node:test";
import assert from "node:assert/strict";
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { runCli } from "./helpers/cli.js";
import { sharedPath } from "./helpers/shared.js";
import { readTokenFile } from "../src/tokenizer/token-file.js";

test("--help lists every command", async () => {
  const r = await runCli(["--help"]);
  assert.equal(r.code, 0);
  for (const c of [
    "tokenize",
    "pretrain",
    "generate",
    "load-gpt2",
    "load ", // Hugging Face Llama / Qwen3 (the space tells it from load-gpt2)
    "export",
    "finetune",
    "classify",
    "instruct",
    "chat",
    "serve",
    "evaluate",
    "info",
    "bench",
    "doctor",
  ]) {
    assert.match(r.stdout, new RegExp(`llmctl ${c}`));
  }
});

test("unknown command: usage error with a suggestion, exit 2, no stack trace", async () => {
  const r = await runCli(["tokenise", "x"]);
  assert.equal(r.code, 2);
  assert.match(r.stderr, /Did you mean tokenize/);
  assert.doesNotMatch(r.stderr, /\n\s+at /);
});

test("unknown option: exit 2, with the nearest option when one is close", async () => {
  const r = await runCli(["tokenize", "hi", "--colour"]);
  assert.equal(r.code, 2);
  assert.match(r.stderr, /Unknown argument: colour — see --help/);
  const typo = await runCli(["tokenize", "hi", "--cuont"]);
  assert.equal(typo.code, 2);
  assert.match(typo.stderr, /did you mean --count\?/);
});

test("tokenize: ids, --count, --json, --decode", async () => {
  assert.equal((await runCli(["tokenize", "Every effort moves you"])).stdout, "6109 3626 6100 345\n");
  assert.equal(
    (await runCli(["tokenize", "--file", sharedPath("datasets", "the-verdict.txt"), "--count"])).stdout,
    "5145\n",
  );
  const j = JSON.parse((await runCli(["tokenize", "Akwirw ier", "--json"])).stdout);
  assert.deepEqual(j, { count: 6, ids: [33901, 86, 343, 86, 220, 959] });
  assert.equal((await runCli(["tokenize", "--decode", "6109 3626 6100 345"])).stdout, "Every effort moves you\n");
});

test("tokenize --out writes a token file pretrain can read", async () => {
  const dir = mkdtempSync(join(tmpdir(), "llmctl-cli-"));
  try {
    const out = join(dir, "verdict.bin");
    const r = await runCli(["tokenize", "--file", sharedPath("datasets", "the-verdict.txt"), "--out", out, "--json"]);
    assert.equal(r.code, 0, r.stderr);
    assert.deepEqual(JSON.parse(r.stdout), { count: 5145, out });
    const { ids } = readTokenFile(out);
    assert.equal(ids.length, 5145);
    assert.deepEqual(Array.from(ids.subarray(0, 4)), [40, 367, 2885, 1464]);
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});

test("tokenize: missing file and bad ids are one-line errors", async () => {
  const missing = await runCli(["tokenize", "--file", "/no/such/file.txt"]);
  assert.equal(missing.code, 1);
  assert.equal(missing.stderr.trim().split("\n").length, 1);
  assert.match(missing.stderr, /file not found: \/no\/such\/file.txt/);
  const bad = await runCli(["tokenize", "--decode", "12 abc"]);
  assert.equal(bad.code, 2);
  assert.match(bad.stderr, /'abc' is not a token id/);
  const none = await runCli(["tokenize"]);
  assert.equal(none.code, 2);
});

test("bad values that used to pass: --decode non-decimal ids, --file DIR, --seed, bench --steps and --python", async () => {
  for (const [args, message] of [
    [["tokenize", "--decode", "0x10 1e3 +5"], /--decode: '0x10' is not a token id/],
    [["tokenize", "--decode", "1e3"], /--decode: '1e3' is not a token id/],
    [["tokenize", "--decode", "+5"], /--decode: '\+5' is not a token id/],
    [["tokenize", "--file", tmpdir()], /--file .* is a directory, not a file/],
    [["tokenize", "hi", "--seed", "abc"], /--seed must be an integer from 0 to 4294967295, got NaN/],
    [["tokenize", "hi", "--seed", "1e30"], /--seed must be an integer from 0 to 4294967295, got 1e\+30/],
    [["tokenize", "hi", "--seed", String(2 ** 32)], /got 4294967296/],
    [["tokenize", "hi", "--seed", "-1"], /got -1/],
    [["bench", "--steps", "0"], /--steps must be an integer ≥ 1, got 0/],
    [["bench", "--steps", "-1"], /--steps must be an integer ≥ 1, got -1/],
    [["bench", "--python", "/nonexistent/python3"], /--python \/nonexistent\/python3 does not exist/],
  ] as const) {
    const r = await runCli([...args]);
    assert.equal(r.code, 2, `${args.join(" ")}: ${r.stderr}`);
    assert.equal(r.stderr.trim().split("\n").length, 1, r.stderr);
    assert.match(r.stderr, message);
  }
  const ok = await runCli(["tokenize", "hi", "--seed", String(2 ** 32 - 1)]);
  assert.equal(ok.code, 0, ok.stderr);
});

test("doctor --json lists backends and the selected one", async () => {
  const r = await runCli(["doctor", "--json", "--no-speed"]);
  assert.equal(r.code, 0, r.stderr);
  const j = JSON.parse(r.stdout);
  const names = j.backends.map((b: { name: string }) => b.name);
  assert.deepEqual(names, ["tensorflow", "webgpu", "wasm", "cpu"]);
  for (const b of j.backends) assert.equal(typeof b.available, "boolean");
  assert.equal(j.backends.find((b: { name: string }) => b.name === "wasm").available, true);
  assert.ok(names.includes(j.selected));
});

test("--backend tensorflow: selected when doctor says it loads, else an error saying why", async () => {
  const doctor = JSON.parse((await runCli(["doctor", "--json", "--no-speed"])).stdout);
  const tensorflow = doctor.backends.find((b: { name: string }) => b.name === "tensorflow");
  const r = await runCli(["doctor", "--json", "--no-speed", "--backend", "tensorflow"]);
  if (tensorflow.available) {
    assert.equal(r.code, 0, r.stderr);
    assert.equal(JSON.parse(r.stdout).selected, "tensorflow");
  } else {
    assert.equal(r.code, 1);
    assert.match(r.stderr, /backend 'tensorflow' cannot be used: .+ — run `llmctl doctor`/);
  }
});
