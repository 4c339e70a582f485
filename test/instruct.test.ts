import { test } from "node:test";
import assert from "node:assert/strict";
import { mkdtemp, readFile, rm, writeFile } from "node:fs/promises";
import { existsSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { useBackend } from "../src/backend/index.js";
import { buildGPT } from "../src/model/gpt.js";
import { loadModelDir } from "../src/model/model-dir.js";
import { getTokenizer } from "../src/tokenizer/index.js";
import { loadInstructionData } from "../src/data/instruction-data.js";
import { finetuneInstruct, instructionBatches } from "../src/finetune/instruct.js";
import { generateResponses, generateResponse } from "../src/generate/responses.js";
import { sharedPath } from "./helpers/shared.js";
import { runCli } from "./helpers/cli.js";
import { saveNewModel, tinyConfig } from "./helpers/tiny-config.js";
import { interruptAtStep } from "./helpers/interrupt.js";

const TINY = tinyConfig({ vocab_size: 50257, context_length: 64, n_layers: 1, tied_head: true });

/** The 14 shortest entries of the book's data (in file order): train 11, test 1, validation 2. */
async function shortEntries() {
  const all = await loadInstructionData(sharedPath("datasets", "instruction-data.json"));
  const tok = getTokenizer();
  const lengths = all.map((e) => tok.encode(e.instruction + e.input + e.output).length);
  const cutoff = [...lengths].sort((a, b) => a - b)[13];
  return all.filter((_, i) => lengths[i] <= cutoff).slice(0, 14);
}

/** A new directory holding the short instruction data and a tiny base model (seed 7). */
async function dataAndBase(prefix: string): Promise<{ dir: string; data: string; base: string }> {
  const dir = await mkdtemp(join(tmpdir(), prefix));
  const data = join(dir, "data.json");
  await writeFile(data, JSON.stringify(await shortEntries()));
  const base = join(dir, "base");
  await saveNewModel(base, TINY, 7);
  return { dir, data, base };
}

test("a very short finetune: loss falls, the run and its responses are saved, prompt style recorded", async () => {
  await useBackend("wasm");
  const dir = await mkdtemp(join(tmpdir(), "llmctl-sft-"));
  try {
    const tok = getTokenizer();
    const entries = await shortEntries();
    const data = join(dir, "data.json");
    await writeFile(data, JSON.stringify(entries));
    const base = join(dir, "base");
    await saveNewModel(base, TINY, 7);
    const batches = instructionBatches(entries, tok, {
      style: "phi3",
      batchSize: 2,
      maxLength: 40,
      maskInstruction: false,
    });
    assert.deepEqual(
      [batches.split.train.length, batches.split.test.length, batches.split.validation.length],
      [11, 1, 2],
    );
    assert.equal(batches.train.numBatches, 5, "drop_last: 11 examples make 5 batches of 2");

    const runDir = join(dir, "run");
    // a high learning rate so a handful of steps visibly lowers the loss of a random model
    const result = await finetuneInstruct({
      modelDir: base,
      outDir: runDir,
      data,
      promptStyle: "phi3",
      train: { batch_size: 2, lr: 5e-3, eval_freq: 1, eval_iter: 2, max_steps: 6, max_length: 40 },
      responseTokens: 0,
    });
    assert.equal(result.train.step, 6);
    const first = result.train.evals[0];
    const last = result.train.evals[result.train.evals.length - 1];
    assert.ok(last.train_loss < first.train_loss - 0.5, `train loss ${first.train_loss} → ${last.train_loss}`);
    assert.ok(
      last.val_loss !== null && first.val_loss !== null && last.val_loss < first.val_loss,
      `val loss ${first.val_loss} → ${last.val_loss}`,
    );

    const meta = JSON.parse(await readFile(join(runDir, "config.json"), "utf8"));
    assert.equal(meta.prompt_style, "phi3");
    const log = (await readFile(join(runDir, "log.jsonl"), "utf8"))
      .trim()
      .split("\n")
      .map((l) => JSON.parse(l));
    assert.ok(
      log.some((r) => r.type === "epoch" && typeof r.sample === "string"),
      "an epoch sample is logged",
    );

    const { gpt } = await loadModelDir(runDir);
    const r = await generateResponses(gpt, tok, batches.split.test, "phi3", { maxNewTokens: 5 });
    assert.equal(r.entries.length, 1);
    assert.equal(r.entries[0].instruction, batches.split.test[0].instruction);
    assert.equal(typeof r.entries[0].model_response, "string");
    assert.ok(!r.entries[0].model_response.includes("<|assistant|>:"));
    gpt.dispose();

    // the saved model answers through the CLI with its own prompt style
    const cli = await runCli(["instruct", "--model", runDir, "Name a color.", "--max-new-tokens", "4", "--json"], {
      env: { LLMCTL_BACKEND: "wasm" },
    });
    assert.equal(cli.code, 0, cli.stderr);
    const answer = JSON.parse(cli.stdout);
    assert.equal(answer.instruction, "Name a color.");
    assert.ok(answer.tokens <= 4);
    assert.doesNotMatch(cli.stderr, /no prompt_style/);
  } finally {
    await rm(dir, { recursive: true, force: true });
  }
});

test("Ctrl-C during finetuning saves a checkpoint that --resume finishes", async () => {
  await useBackend("wasm");
  const { dir, data, base } = await dataAndBase("llmctl-sft-resume-");
  try {
    const runDir = join(dir, "run");
    await interruptAtStep(2, (stop) =>
      finetuneInstruct({
        modelDir: base,
        outDir: runDir,
        data,
        maskInstruction: true,
        train: { batch_size: 2, eval_freq: 10, eval_iter: 1, max_steps: 4, max_length: 40 },
        responseTokens: 0,
        ...stop,
      }),
    );
    const state = JSON.parse(await readFile(join(runDir, "trainer-state.json"), "utf8"));
    assert.equal(state.step, 2);

    const result = await finetuneInstruct({ outDir: runDir, resume: true, responseTokens: 0 });
    assert.equal(result.train.step, 4);
  } finally {
    await rm(dir, { recursive: true, force: true });
  }
});

test("a test answer stops at end-of-text, which is not part of the response", async () => {
  await useBackend("wasm");
  const gpt = buildGPT(TINY, { seed: 3 });
  const tok = getTokenizer();
  const entry = { instruction: "Name a color.", input: "" };
  try {
    const before = await generateResponse(gpt, tok, entry, "alpaca", { maxNewTokens: 3 });
    assert.equal(before.stoppedAtEos, false);
    assert.equal(before.tokens, 3);
    // make end-of-text the certain next token: the head is tied, so a token's logit is h · wte[token]; copy
    // the row of the current greedy pick (the largest, positive logit) into row 50256, scaled up 1000 times
    const { generate } = await import("../src/generate/generate.js");
    const prompt = tok.encode(
      "Below is an instruction that describes a task. Write a response that appropriately completes the request.\n\n### Instruction:\nName a color.",
      { allowedSpecial: [] },
    );
    const [top] = (await generate(gpt, prompt, { maxNewTokens: 1, temperature: 0 })).ids;
    const wte = gpt.namedWeights().get("wte.weight")!;
    const w = (await wte.read().data()).slice();
    for (let d = 0; d < TINY.emb_dim; d++) w[50256 * TINY.emb_dim + d] = w[top * TINY.emb_dim + d] * 1000;
    const { tensor } = await import("@tensorflow/tfjs");
    wte.write(tensor(w, [TINY.vocab_size, TINY.emb_dim]));
    const after = await generateResponse(gpt, tok, entry, "alpaca", { maxNewTokens: 3 });
    assert.deepEqual(after, { text: "", tokens: 0, stoppedAtEos: true });
  } finally {
    gpt.dispose();
  }
});

test("llmctl finetune instruct: a short run through the CLI, then --resume of the finished run", async () => {
  await useBackend("wasm");
  const { dir, data, base } = await dataAndBase("llmctl-sft-cli-");
  try {
    const out = join(dir, "sft");
    const env = { env: { LLMCTL_BACKEND: "wasm" } };
    const common = ["--batch-size", "2", "--eval-iter", "1", "--response-tokens", "3", "--json"];
    const r = await runCli(
      [
        "finetune",
        "instruct",
        "--model",
        base,
        "--out",
        out,
        "--data",
        data,
        "--max-steps",
        "2",
        "--max-length",
        "32",
        "--prompt-style",
        "phi3",
        "--mask-instruction",
        ...common,
      ],
      env,
    );
    assert.equal(r.code, 0, r.stderr);
    const summary = JSON.parse(r.stdout);
    assert.equal(summary.steps, 2);
    assert.equal(summary.train_examples, 11);
    assert.equal(summary.test_examples, 1);
    assert.equal(summary.validation_examples, 2);
    assert.equal(summary.prompt_style, "phi3");
    assert.equal(summary.mask_instruction, true);
    assert.ok(Number.isFinite(summary.initial_val_loss) && Number.isFinite(summary.val_loss));
    assert.equal(summary.responses.count, 1);
    assert.match(r.stderr, /train 11, validation 2, test 1/);
    const responses = JSON.parse(await readFile(join(out, "instruction-data-with-response.json"), "utf8"));
    assert.equal(responses.length, 1);
    assert.equal(typeof responses[0].model_response, "string");
    assert.equal(JSON.parse(await readFile(join(out, "config.json"), "utf8")).prompt_style, "phi3");
    for (const f of ["log.jsonl", "loss.svg", "trainer-state.json", "optimizer.safetensors"])
      assert.ok(existsSync(join(out, f)), f);
    const { job } = JSON.parse(await readFile(join(out, "trainer-state.json"), "utf8"));
    assert.deepEqual([job.task, job.prompt_style, job.mask_instruction], ["finetune instruct", "phi3", true]);

    // a second run into the same directory is refused; --resume picks up the saved setup
    const again = await runCli(["finetune", "instruct", "--model", base, "--out", out, "--data", data], env);
    assert.equal(again.code, 2);
    assert.match(again.stderr, /already holds a training run/);
    const resumed = await runCli(["finetune", "instruct", "--resume", out, "--max-steps", "3", ...common], env);
    assert.equal(resumed.code, 0, resumed.stderr);
    assert.equal(JSON.parse(resumed.stdout).steps, 3);
    assert.equal(JSON.parse(resumed.stdout).prompt_style, "phi3");
  } finally {
    await rm(dir, { recursive: true, force: true });
  }
});

test("llmctl finetune instruct: clear errors for bad arguments and data", async () => {
  const dir = await mkdtemp(join(tmpdir(), "llmctl-sft-err-"));
  try {
    const noOut = await runCli(["finetune", "instruct", "--model", dir]);
    assert.equal(noOut.code, 2);
    assert.match(noOut.stderr, /give --out DIR/);
    const noModel = await runCli(["finetune", "instruct", "--out", join(dir, "o")], { cwd: dir });
    assert.equal(noModel.code, 2);
    assert.match(
      noModel.stderr,
      /default base model models\/gpt2-355m \(GPT-2 medium, as the book\) is not there — run `llmctl load-gpt2 --size 355M/,
    );
    const both = await runCli(["finetune", "instruct", "--resume", dir, "--model", dir]);
    assert.equal(both.code, 2);
    assert.match(both.stderr, /--resume continues a run/);
    const base = join(dir, "base");
    await saveNewModel(base, TINY, 7);
    const bad = join(dir, "bad.jsonl");
    await writeFile(bad, '{"instruction":"a","input":"","output":"b"}\n{"instruction":"c","input":""}\n');
    const r = await runCli(["finetune", "instruct", "--model", base, "--out", join(dir, "o"), "--data", bad], {
      env: { LLMCTL_BACKEND: "wasm" },
    });
    assert.equal(r.code, 1);
    assert.match(r.stderr, /entry 1 \(line 2\) of .*bad\.jsonl: "output" must be a string/);
  } finally {
    await rm(dir, { recursive: true, force: true });
  }
});
