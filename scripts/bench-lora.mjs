#!/usr/bin/env node
/**
 * LoRA against full finetuning on the GPT-2 124M classifier (random weights; speed and memory do not depend on
 * them): `llmctl finetune spam --lora 16` vs `--trainable all`, each a fresh process under /usr/bin/time -v, for
 * the median ms per optimizer step (steps after the first) and the peak RSS. Runs alternate A/B/A/B per backend,
 * so load from other jobs on a shared machine falls on both; the medians over the rounds are printed as JSON.
 *
 *   node scripts/bench-lora.mjs [--backends tensorflow,wasm] [--rounds 2] [--steps 4] [--batch-size 8]
 *
 * Needs `npm run build` (and `npm run setup:tensorflow` for the tensorflow backend).
 */
import { spawnSync } from "node:child_process";
import { existsSync, mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { dirname, join } from "node:path";
import { fileURLToPath } from "node:url";
import { parseArgs } from "node:util";

const root = join(dirname(fileURLToPath(import.meta.url)), "..");
const dist = (p) => join(root, "dist", "src", p);
const { values: args } = parseArgs({
  options: {
    backends: { type: "string", default: "tensorflow,wasm" },
    rounds: { type: "string", default: "2" },
    steps: { type: "string", default: "4" },
    "batch-size": { type: "string", default: "8" },
    work: { type: "string" },
  },
});
const work = args.work ?? mkdtempSync(join(tmpdir(), "llmctl-bench-lora-"));
const lmDir = join(work, "gpt2-124m-random");
const splitDir = join(work, "split");

if (!existsSync(join(lmDir, "config.json"))) {
  const { useBackend } = await import(dist("backend/index.js"));
  const { loadConfigFile } = await import(dist("model/config.js"));
  const { buildGPT } = await import(dist("model/gpt.js"));
  const { saveModelDir } = await import(dist("model/model-dir.js"));
  const { makeSpamSplit, readSmsSpamCollection, writeSplitCsvs } = await import(dist("finetune/spam-data.js"));
  const { resolveDataPath } = await import(dist("data/datasets.js"));
  await useBackend("tensorflow");
  const gpt = buildGPT(loadConfigFile("gpt2-124m").model, { seed: 1 });
  await saveModelDir(lmDir, gpt);
  gpt.dispose();
  // a few examples: the job's closing accuracy pass over the full split would dwarf the steps measured
  const split = makeSpamSplit(await readSmsSpamCollection(await resolveDataPath("sms-spam")), 123);
  await writeSplitCsvs(splitDir, {
    train: split.train.slice(0, 8 * Number(args.steps)),
    validation: split.validation.slice(0, 8),
    test: split.test.slice(0, 8),
  });
}

const median = (xs) => xs.slice().sort((a, b) => a - b)[Math.floor(xs.length / 2)];

function finetune(backend, mode) {
  const out = join(work, `run-${backend}-${mode}`);
  rmSync(out, { recursive: true, force: true });
  const flags = mode === "lora" ? ["--lora", "16", "--lora-alpha", "16"] : ["--trainable", "all"];
  const r = spawnSync(
    "/usr/bin/time",
    [
      "-v",
      process.execPath,
      join(root, "bin", "llmctl"),
      "--backend",
      backend,
      "--verbose",
      "finetune",
      "spam",
      "-m",
      lmDir,
      "-o",
      out,
      "--split-dir",
      splitDir,
      "--max-steps",
      args.steps,
      "--batch-size",
      args["batch-size"],
      "--eval-freq",
      "100000",
      "--eval-iter",
      "1",
      "--json",
      ...flags,
    ],
    { encoding: "utf8", maxBuffer: 1 << 26 },
  );
  if (r.status !== 0) throw new Error(`${backend} ${mode} failed:\n${r.stderr}`);
  // the verbose step lines: "step 2/4 · … · 1234 ms · …"; the first step warms allocators up
  const ms = [...r.stderr.matchAll(/step (\d+)\/\d+ · .*? · (\d+) ms ·/g)]
    .filter((m) => m[1] !== "1")
    .map((m) => +m[2]);
  const rss = Number(/Maximum resident set size \(kbytes\): (\d+)/.exec(r.stderr)[1]) / 1024;
  const json = JSON.parse(r.stdout);
  rmSync(out, { recursive: true, force: true });
  return { ms: median(ms), rssMb: Math.round(rss), trainable: json.trainable_parameters };
}

const results = [];
for (const backend of args.backends.split(",")) {
  const runs = { lora: [], all: [] };
  for (let round = 0; round < Number(args.rounds); round++) {
    for (const mode of ["lora", "all"]) {
      const r = finetune(backend, mode);
      runs[mode].push(r);
      process.stderr.write(`${backend} ${mode} round ${round + 1}: ${r.ms} ms/step, peak RSS ${r.rssMb} MB\n`);
    }
  }
  for (const mode of ["lora", "all"]) {
    const rs = runs[mode];
    results.push({
      backend,
      mode,
      trainable_parameters: rs[0].trainable,
      ms_per_step_median: median(rs.map((r) => r.ms)),
      ms_per_step: rs.map((r) => r.ms),
      peak_rss_mb_median: median(rs.map((r) => r.rssMb)),
      peak_rss_mb: rs.map((r) => r.rssMb),
    });
  }
}
process.stdout.write(JSON.stringify({ batch_size: Number(args["batch-size"]), results }, null, 2) + "\n");
