// test: first backend pass only (PyTorch DDP; the backends' logits are checked by model-fixture)
/**
 * The scale-out route of docs/scale-out.md, run for real: llmctl's gpt2-tiny → `export --format hf` → torchrun
 * with 2 processes on CPU (gloo) running scripts/scale-out/train_ddp.py for 2 updates → `load-gpt2 --from` →
 * llmctl's logits for the trained model equal PyTorch's. Needs $LLMCTL_PYTHON (or python3) with torch and
 * transformers.
 */
import { test, before } from "node:test";
import assert from "node:assert/strict";
import { spawnSync } from "node:child_process";
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import * as tf from "@tensorflow/tfjs";
import { useBackend } from "../src/backend/index.js";
import { loadModelDir } from "../src/model/model-dir.js";
import { runCli } from "./helpers/cli.js";
import { REPO_ROOT, sharedPath } from "./helpers/shared.js";

before(async () => {
  await useBackend("cpu");
});

const PYTHON = process.env.LLMCTL_PYTHON ?? "python3";
const SCRIPT = join(REPO_ROOT, "scripts", "scale-out", "train_ddp.py");

// PyTorch's view of the models before and after training, and the script's two ways of reading data
const PY_CHECK = `
import importlib.util, json, sys, torch
from transformers import GPT2LMHeadModel
script, hf, trained, text, token_file, cases = sys.argv[1:7]
spec = importlib.util.spec_from_file_location("train_ddp", script)
train_ddp = importlib.util.module_from_spec(spec)
spec.loader.exec_module(train_ddp)
from_text = train_ddp.load_tokens(text, hf).tolist()
from_file = train_ddp.load_tokens(token_file, hf).tolist()
logits = {}
for name, d in (("before", hf), ("after", trained)):
    model = GPT2LMHeadModel.from_pretrained(d).eval()
    with torch.no_grad():
        logits[name] = [model(torch.tensor([ids])).logits[0, -1].tolist() for ids in json.loads(cases)]
print(json.dumps({"logits": logits, "text_ids_equal_token_file": from_text == from_file, "tokens": len(from_file)}))
`;

function maxAbsDiff(a: ArrayLike<number>, b: ArrayLike<number>): number {
  assert.equal(a.length, b.length);
  let m = 0;
  for (let i = 0; i < a.length; i++) m = Math.max(m, Math.abs(a[i]! - b[i]!));
  return m;
}

test("export → torchrun DDP (2 CPU processes, gloo, 2 updates) → load-gpt2: llmctl's logits equal PyTorch's for the trained model", async (t) => {
  const probe = spawnSync(
    PYTHON,
    ["-c", "import torch, transformers, safetensors; assert torch.distributed.is_available()"],
    { encoding: "utf8" },
  );
  if (probe.status !== 0) {
    t.skip(
      `${PYTHON} with torch (distributed), transformers and safetensors is not available (pip install torch transformers safetensors; LLMCTL_PYTHON picks the interpreter)`,
    );
    return;
  }
  const dir = mkdtempSync(join(tmpdir(), "llmctl-scale-out-"));
  const at = (...p: string[]) => join(dir, ...p);
  const env = { LLMCTL_BACKEND: "cpu" };
  for (const args of [
    ["load-gpt2", "--from", sharedPath("fixtures", "gpt2-tiny", "hf"), "--out", at("model")],
    ["export", "--model", at("model"), "--format", "hf", "--out", at("hf")],
    ["tokenize", "--file", sharedPath("datasets", "the-verdict.txt"), "--out", at("corpus.bin")],
  ]) {
    const r = await runCli(args, { env });
    assert.equal(r.code, 0, `${args.join(" ")}: ${r.stderr}`);
  }

  // torch 1.13's torchrun on Python 3.11 (Debian 12) fails to parse its default --redirects/--tee ("'NoneType' object
  // has no attribute 'get'"); naming them (stderr teed, stdout left alone) works there and on later versions
  const started = Date.now();
  const run = spawnSync(
    PYTHON,
    [
      ...["-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2"],
      ...["--redirects", "2", "--tee", "2", "--log_dir", at("torchrun-logs"), SCRIPT],
      ...["--model", at("hf"), "--data", at("corpus.bin"), "--out", at("trained")],
      ...["--max-steps", "2", "--batch-size", "2", "--seed", "1"],
    ],
    { encoding: "utf8", timeout: 300_000 },
  );
  const seconds = (Date.now() - started) / 1000;
  assert.equal(run.status, 0, run.stderr.slice(-4000));
  const lines = run.stdout
    .trim()
    .split("\n")
    .map((l) => JSON.parse(l));
  const steps = lines.filter((l) => "step" in l);
  const summary = lines.at(-1);
  assert.deepEqual(
    steps.map((l) => l.step),
    [1, 2],
  );
  for (const s of steps) assert.ok(s.loss > 9 && s.loss < 12, `loss ${s.loss}`);
  assert.equal(summary.world_size, 2);
  assert.equal(summary.backend, "gloo");
  assert.equal(summary.replicas_agree, true, "both DDP replicas hold the same weights");
  assert.equal(summary.tokens, 2 * 2 * 2 * 32, "2 updates × 2 processes × 2 windows × 32 tokens");

  const back = await runCli(["load-gpt2", "--from", at("trained"), "--out", at("back")], { env });
  assert.equal(back.code, 0, back.stderr);

  const cases = [
    [6109, 3626, 6100, 345],
    [464, 1049, 286, 262, 3290, 373, 1049, 11, 290, 262, 3290],
  ];
  const py = spawnSync(
    PYTHON,
    [
      "-c",
      PY_CHECK,
      SCRIPT,
      at("hf"),
      at("trained"),
      sharedPath("datasets", "the-verdict.txt"),
      at("corpus.bin"),
      JSON.stringify(cases),
    ],
    { encoding: "utf8", maxBuffer: 256 << 20 },
  );
  assert.equal(py.status, 0, py.stderr);
  const res = JSON.parse(py.stdout.trim().split("\n").at(-1)!);
  assert.equal(res.tokens, 5145);
  assert.equal(res.text_ids_equal_token_file, true, "the script tokenizes text as llmctl does");

  const { gpt } = await loadModelDir(at("back"));
  const ours = cases.map((ids) =>
    tf.tidy(() => {
      const logits = gpt.forward(tf.tensor2d([ids], [1, ids.length], "int32"));
      return logits.slice([0, ids.length - 1, 0], [1, 1, -1]).dataSync() as Float32Array;
    }),
  );
  gpt.dispose();
  for (const [k, ids] of cases.entries()) {
    const diff = maxAbsDiff(ours[k]!, res.logits.after[k]);
    const moved = maxAbsDiff(res.logits.before[k], res.logits.after[k]);
    assert.ok(diff <= 1e-4, `case ${k} (${ids.length} tokens): llmctl vs PyTorch max |Δlogit| ${diff}`);
    assert.ok(moved > 10 * diff, `training moved the logits (${moved}) more than the comparison's error`);
    t.diagnostic(
      `case ${k}: llmctl vs PyTorch after DDP training max |Δlogit| ${diff.toExponential(2)} (training moved them ${moved.toExponential(2)})`,
    );
  }
  t.diagnostic(
    `torchrun: ${seconds.toFixed(1)} s wall; losses ${steps.map((s) => s.loss.toFixed(4)).join(", ")}; ${summary.tokens} tokens`,
  );
  rmSync(dir, { recursive: true });
});
