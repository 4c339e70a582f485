// test: first backend pass only (tokenizers involve no tensors)
/**
 * `llmctl tokenize --bench`: every implementation that ran gives the-verdict's 5,145 tokens, the same ids as the
 * reference (Python tiktoken when it ran, else js-tiktoken). The Python rows run exactly when the interpreter
 * ($LLMCTL_PYTHON, default python3) has their packages, and say why otherwise. Times are not asserted beyond > 0.
 */
import { test } from "node:test";
import assert from "node:assert/strict";
import { spawnSync } from "node:child_process";
import type { TokenizerBenchResult } from "../src/tokenizer/bench.js";
import { runCli } from "./helpers/cli.js";
import { sharedPath } from "./helpers/shared.js";

const PYTHON = process.env.LLMCTL_PYTHON ?? "python3";

function pythonHas(modules: string): boolean {
  return spawnSync(PYTHON, ["-c", `import ${modules}`], { stdio: "ignore" }).status === 0;
}

async function bench(env: NodeJS.ProcessEnv = {}): Promise<TokenizerBenchResult> {
  const verdict = sharedPath("datasets", "the-verdict.txt");
  const r = await runCli(["tokenize", "--bench", "--json", "--repeats", "2", "--file", verdict], { env });
  assert.equal(r.code, 0, r.stderr);
  return JSON.parse(r.stdout) as TokenizerBenchResult;
}

function checkRan(result: TokenizerBenchResult): void {
  assert.equal(result.bytes, 20_479);
  assert.equal(result.repeats, 2);
  const references = result.rows.filter((r) => r.reference);
  assert.equal(references.length, 1);
  assert.equal(result.reference, references[0].name);
  for (const row of result.rows.filter((r) => r.skipped === undefined)) {
    assert.equal(row.tokens, 5145, row.name);
    assert.equal(row.matches_reference, true, row.name);
    assert.ok(row.ms! > 0 && row.mb_per_s! > 0, row.name);
  }
  assert.deepEqual(
    result.book.map((b) => b.ms),
    [0.9, 3.77, 9.37],
  );
}

test("tokenize --bench: 5,145 tokens and the reference's ids from every implementation that ran", async () => {
  const result = await bench();
  checkRan(result);
  const row = (prefix: string) => result.rows.find((r) => r.name.startsWith(prefix));
  for (const name of ["js-tiktoken", "llmctl (cold piece cache)", "llmctl (warm piece cache)"]) {
    assert.equal(row(name)?.skipped, undefined, name);
  }
  const tiktoken = row("tiktoken")!;
  const hf = row("GPT2TokenizerFast")!;
  assert.ok(tiktoken && hf, "both Python rows are listed");
  const hasTiktoken = pythonHas("tiktoken");
  assert.equal(tiktoken.skipped === undefined, hasTiktoken, tiktoken.skipped);
  assert.equal(hf.skipped === undefined, pythonHas("transformers, tokenizers"), hf.skipped);
  if (!hasTiktoken) assert.match(tiktoken.skipped!, /tiktoken/);
  // the reference is Python tiktoken when it ran, else js-tiktoken
  assert.equal(result.reference, hasTiktoken ? tiktoken.name : row("js-tiktoken")!.name);
});

test("tokenize --bench: without a Python, its rows are skipped with the reason and js-tiktoken is the reference", async () => {
  const result = await bench({ LLMCTL_PYTHON: "/nonexistent/python3" });
  checkRan(result);
  const skipped = result.rows.filter((r) => r.skipped !== undefined);
  assert.deepEqual(
    skipped.map((r) => r.name),
    ["tiktoken (Python)", "GPT2TokenizerFast (Python)"],
  );
  for (const r of skipped) assert.match(r.skipped!, /\/nonexistent\/python3 could not be started/);
  assert.match(result.reference, /^js-tiktoken/);
});

test("tokenize --bench --file with a missing file: one line, non-zero exit", async () => {
  const r = await runCli(["tokenize", "--bench", "--file", "/nonexistent/the-verdict.txt"]);
  assert.notEqual(r.code, 0);
  assert.equal(r.stdout, "");
  assert.equal(r.stderr.trim().split("\n").length, 1, r.stderr);
  assert.match(r.stderr, /\/nonexistent\/the-verdict\.txt does not exist/);
});
