import { test } from "node:test";
import assert from "node:assert/strict";
import { mkdtempSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { runCli } from "./helpers/cli.js";
import { ratios, type BenchRecord } from "../src/bench/bench.js";
import { loadLlamaCpp } from "../src/bench/llama-cpp.js";
import { testBackend } from "./helpers/backend.js";
import { writeConfigFile } from "./helpers/tiny-config.js";

const KEYS = [
  "backend",
  "precision",
  "model",
  "vocab_size",
  "context",
  "emb_dim",
  "n_layers",
  "n_heads",
  "batch",
  "params",
  "train_tokens_per_second",
  "generate_tokens_per_second",
  "generate_tokens_per_second_no_cache",
  "peak_rss_mb",
  "threads",
  "load_average",
  "cores",
];

test("llmctl bench --backend cpu --config C --json prints one record with every key, on the config's shapes", async () => {
  const dir = mkdtempSync(join(tmpdir(), "llmctl-bench-"));
  const cfg = join(dir, "micro.json");
  writeConfigFile(
    cfg,
    { vocab_size: 300, context_length: 48, emb_dim: 16, n_heads: 2, n_layers: 1, drop_rate: 0.1 },
    { batch_size: 3, max_length: 40 },
  );
  const r = await runCli([
    "bench",
    "--backend",
    "cpu",
    "--config",
    cfg,
    "--steps",
    "1",
    "--no-torch",
    "--no-llama-cpp",
    "--json",
  ]);
  assert.equal(r.code, 0, r.stderr);
  const lines = r.stdout.trim().split("\n");
  assert.equal(lines.length, 1);
  const rec = JSON.parse(lines[0]) as BenchRecord;
  for (const k of KEYS) assert.ok(k in rec, `missing ${k}`);
  assert.equal(rec.backend, "cpu");
  assert.equal(rec.precision, "fp32");
  assert.equal(rec.model, "micro");
  assert.equal(rec.batch, 3);
  assert.equal(rec.context, 40);
  assert.equal(rec.vocab_size, 300);
  assert.equal(rec.threads, 1); // the JS cpu backend
  assert.ok(rec.load_average >= 0 && rec.cores >= 1, JSON.stringify(rec));
  // 300·16 + 48·16 + one block (16·48 + 16·16 + 16 + 16·64 + 64 + 64·16 + 16 + 4·16) + ln_f 32 + head 300·16
  assert.equal(
    rec.params,
    300 * 16 + 48 * 16 + (16 * 48 + 16 * 16 + 16 + 16 * 64 + 64 + 64 * 16 + 16 + 4 * 16) + 32 + 300 * 16,
  );
  for (const k of [
    "train_tokens_per_second",
    "generate_tokens_per_second",
    "generate_tokens_per_second_no_cache",
    "peak_rss_mb",
  ]) {
    assert.ok((rec[k] as number) > 0, `${k} = ${rec[k]}`);
  }
});

test("ratios are ours / reference", () => {
  const base = {
    backend: "x",
    precision: "fp32" as const,
    model: "m",
    vocab_size: 1,
    context: 1,
    emb_dim: 1,
    n_layers: 1,
    n_heads: 1,
    batch: 1,
    params: 1,
    peak_rss_mb: 1,
    threads: 1,
    load_average: 0,
    cores: 1,
  };
  const ours: BenchRecord = {
    ...base,
    train_tokens_per_second: 50,
    generate_tokens_per_second: 30,
    generate_tokens_per_second_no_cache: 10,
  };
  const ref: BenchRecord = {
    ...base,
    train_tokens_per_second: 100,
    generate_tokens_per_second: 20,
    generate_tokens_per_second_no_cache: 40,
  };
  assert.deepEqual(ratios(ours, ref), { train: 0.5, generate: 1.5, generate_no_cache: 0.25 });
});

test("--bf16 is refused on wasm and cpu with a one-line fix, exit 2", async () => {
  for (const backend of ["wasm", "cpu"]) {
    const r = await runCli(["bench", "--backend", backend, "--config", "gpt2-tiny", "--bf16", "--no-torch", "--json"]);
    assert.equal(r.code, 2, r.stderr);
    assert.match(r.stderr, new RegExp(`--bf16 needs the tensorflow backend, not ${backend}`));
    assert.equal(r.stderr.trim().split("\n").length, 1, r.stderr);
  }
});

test("bench adds llama.cpp's F32 and F16 generation on the same model when node-llama-cpp is installed, a note when not", async (t) => {
  const dir = mkdtempSync(join(tmpdir(), "llmctl-bench-llama-"));
  const cfg = join(dir, "gpt2-vocab.json");
  writeConfigFile(
    cfg,
    { vocab_size: 50257, context_length: 48, emb_dim: 32, n_heads: 2, n_layers: 1, drop_rate: 0 },
    { batch_size: 1, max_length: 16 },
  );
  const args = [
    ...["bench", "--backend", testBackend(), "--config", cfg, "--steps", "1", "--no-torch", "--json"],
    ...["--reference-threads", "1"],
  ];
  const without = await runCli(args, { env: { LLMCTL_NODE_LLAMA_CPP: dir } });
  assert.equal(without.code, 0, without.stderr);
  assert.equal(without.stdout.trim().split("\n").length, 1);
  assert.match(without.stderr, /llama\.cpp reference skipped: node-llama-cpp is not installed/);

  const runtime = await loadLlamaCpp();
  if ("missing" in runtime) {
    t.skip(`${runtime.missing}; .ci/run installs it`);
    return;
  }
  await runtime.llama.dispose();
  const r = await runCli(args);
  assert.equal(r.code, 0, r.stderr);
  const [ours, ...llama] = r.stdout
    .trim()
    .split("\n")
    .map((l) => JSON.parse(l) as Record<string, unknown>);
  assert.equal(ours!.backend, testBackend());
  assert.deepEqual(
    llama.map((x) => [x.engine, x.precision, x.model, x.params, x.threads, x.prompt_tokens, x.generated_tokens]),
    [
      ["llama.cpp", "f32", "gpt2-vocab", ours!.params, 1, 8, 32],
      ["llama.cpp", "f16", "gpt2-vocab", ours!.params, 1, 8, 32],
    ],
  );
  for (const x of llama) {
    assert.match(String(x.path), /^node-llama-cpp \d+\.\d+\.\d+ \(llama\.cpp .*prebuilt CPU binary\)$/);
    assert.ok((x.generate_tokens_per_second as number) > 0);
    assert.ok((x.load_average as number) >= 0 && (x.cores as number) >= 1, JSON.stringify(x));
  }
});

test("the PyTorch reference runs with --python, on --steps and --reference-threads, and its engine and path are recorded", async () => {
  const dir = mkdtempSync(join(tmpdir(), "llmctl-bench-ref-"));
  // a stand-in for torch_ref.py that reports the --steps and --threads it was given, and a `torch` for the
  // python check; a python of its own that marks what it ran
  writeFileSync(join(dir, "torch.py"), "");
  writeFileSync(
    join(dir, "ref.py"),
    "import json, os, sys\n" +
      "arg = lambda k: int(sys.argv[sys.argv.index(k) + 1])\n" +
      "print(json.dumps({'engine': os.environ.get('WHICH_PYTHON', 'default'), 'path': 'sdpa+fused-adamw',\n" +
      "                  'params': 1, 'train_tok_s': 1, 'gen_kv_cache_tok_s': 1, 'gen_no_cache_tok_s': 1,\n" +
      "                  'train_step_s': arg('--steps'), 'threads': arg('--threads')}))\n",
  );
  const python = join(dir, "python");
  writeFileSync(python, `#!/bin/sh\nWHICH_PYTHON=stand-in exec python3 "$@"\n`, { mode: 0o755 });
  const cfg = join(dir, "micro.json");
  writeFileSync(
    cfg,
    JSON.stringify({ model: { vocab_size: 64, context_length: 8, emb_dim: 8, n_heads: 2, n_layers: 1, drop_rate: 0 } }),
  );
  const r = await runCli(
    [
      ...["bench", "--backend", "cpu", "--config", cfg, "--steps", "1", "--no-llama-cpp", "--json"],
      ...["--python", python, "--reference-threads", "3"],
    ],
    { env: { LLMCTL_TORCH_REF: join(dir, "ref.py"), PYTHONPATH: dir } },
  );
  assert.equal(r.code, 0, r.stderr);
  const ref = r.stdout
    .trim()
    .split("\n")
    .map((l) => JSON.parse(l) as BenchRecord)
    .find((rec) => rec.backend === "stand-in");
  assert.ok(ref, r.stdout);
  assert.deepEqual([ref.engine, ref.path, ref.train_step_seconds, ref.threads], ["stand-in", "sdpa+fused-adamw", 1, 3]);
  assert.ok(ref.load_average >= 0 && ref.cores >= 1, JSON.stringify(ref));
});

test("--reference-threads must be a positive integer", async () => {
  const r = await runCli(["bench", "--backend", "cpu", "--config", "gpt2-tiny", "--reference-threads", "0"]);
  assert.equal(r.code, 2, r.stderr);
  assert.match(r.stderr, /--reference-threads must be an integer ≥ 1, got 0/);
});
