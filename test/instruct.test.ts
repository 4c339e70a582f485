import { test } from "node:test";
import assert from "node:assert/strict";
import { mkdtemp, readFile, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { useBackend } from "../src/backend/index.js";
import { buildGPT } from "../src/model/gpt.js";
import { loadModelDir, saveModelDir } from "../src/model/model-dir.js";
import { getTokenizer } from "../src/tokenizer/index.js";
import { resolveTrainSettings } from "../src/train/settings.js";
import { InterruptedError } from "../src/errors.js";
import { loadInstructionData } from "../src/finetune/instruct-data.js";
import {
  INSTRUCT_TRAIN_DEFAULTS,
  finetuneInstruct,
  generateResponses,
  generateResponse,
  instructionBatches,
  type InstructRunInfo,
} from "../src/finetune/instruct.js";
import { sharedPath } from "./helpers/shared.js";
import { runCli } from "./helpers/cli.js";

const TINY = { vocab_size: 50257, context_length: 64, emb_dim: 16, n_heads: 2, n_layers: 1, drop_rate: 0, qkv_bias: false, tied_head: true };

/** The 14 shortest entries of the book's data (in file order): train 11, test 1, validation 2. */
async function shortEntries() {
  const all = await loadInstructionData(sharedPath("datasets", "instruction-data.json"));
  const tok = getTokenizer();
  const lengths = all.map((e) => tok.encode(e.instruction + e.input + e.output).length);
  const cutoff = [...lengths].sort((a, b) => a - b)[13];
  return all.filter((_, i) => lengths[i] <= cutoff).slice(0, 14);
}

test("a very short finetune: loss falls, the run and its responses are saved, prompt style recorded", async () => {
  await useBackend("wasm");
  const dir = await mkdtemp(join(tmpdir(), "llmctl-sft-"));
  try {
    const tok = getTokenizer();
    const entries = await shortEntries();
    const run: InstructRunInfo = { format: "llmctl-instruct-run", version: 1, data: "test", prompt_style: "phi3", mask_instruction: false, max_length: 40, base_model: "tiny" };
    // a high learning rate so a handful of steps visibly lowers the loss of a random model
    const settings = resolveTrainSettings({ ...INSTRUCT_TRAIN_DEFAULTS, batch_size: 2, lr: 5e-3, eval_freq: 1, eval_iter: 2, max_steps: 6, max_length: 40 });
    const batches = instructionBatches(entries, tok, { style: "phi3", batchSize: 2, maxLength: 40, maskInstruction: false });
    assert.deepEqual([batches.split.train.length, batches.split.test.length, batches.split.validation.length], [11, 1, 2]);
    assert.equal(batches.train.numBatches, 5, "drop_last: 11 examples make 5 batches of 2");

    const gpt = buildGPT(TINY, { seed: 7 });
    const runDir = join(dir, "run");
    const saveModel = (d: string) => saveModelDir(d, gpt, { prompt_style: run.prompt_style }).then(() => undefined);
    const result = await finetuneInstruct({ gpt, tokenizer: tok, batches, run, settings, runDir, saveModel });
    assert.equal(result.step, 6);
    const first = result.evals[0];
    const last = result.evals[result.evals.length - 1];
    assert.ok(last.train_loss < first.train_loss - 0.5, `train loss ${first.train_loss} → ${last.train_loss}`);
    assert.ok(last.val_loss !== null && first.val_loss !== null && last.val_loss < first.val_loss, `val loss ${first.val_loss} → ${last.val_loss}`);

    const meta = JSON.parse(await readFile(join(runDir, "config.json"), "utf8"));
    assert.equal(meta.prompt_style, "phi3");
    const log = (await readFile(join(runDir, "log.jsonl"), "utf8")).trim().split("\n").map((l) => JSON.parse(l));
    assert.ok(log.some((r) => r.type === "epoch" && typeof r.sample === "string"), "an epoch sample is logged");

    const r = await generateResponses(gpt, tok, batches.split.test, "phi3", { maxNewTokens: 5 });
    assert.equal(r.entries.length, 1);
    assert.equal(r.entries[0].instruction, batches.split.test[0].instruction);
    assert.equal(typeof r.entries[0].model_response, "string");
    assert.ok(!r.entries[0].model_response.includes("<|assistant|>:"));
    gpt.dispose();

    // the saved model answers through the CLI with its own prompt style
    const cli = await runCli(["instruct", "--model", runDir, "Name a color.", "--max-new-tokens", "4", "--json"], { env: { LLMCTL_BACKEND: "wasm" } });
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
  const dir = await mkdtemp(join(tmpdir(), "llmctl-sft-resume-"));
  try {
    const tok = getTokenizer();
    const entries = await shortEntries();
    const run: InstructRunInfo = { format: "llmctl-instruct-run", version: 1, data: "test", prompt_style: "alpaca", mask_instruction: true, max_length: 40, base_model: "tiny" };
    const settings = resolveTrainSettings({ ...INSTRUCT_TRAIN_DEFAULTS, batch_size: 2, eval_freq: 10, eval_iter: 1, max_steps: 4, max_length: 40 });
    const batches = instructionBatches(entries, tok, { style: "alpaca", batchSize: 2, maxLength: 40, maskInstruction: true });
    const runDir = join(dir, "run");
    const gpt = buildGPT(TINY, { seed: 7 });
    const controller = new AbortController();
    await assert.rejects(
      finetuneInstruct({
        gpt, tokenizer: tok, batches, run, settings, runDir, signal: controller.signal,
        saveModel: (d) => saveModelDir(d, gpt, { prompt_style: "alpaca" }).then(() => undefined),
        onEvent: (ev) => { if (ev.kind === "step" && ev.progress.step === 2) controller.abort(); },
      }),
      InterruptedError,
    );
    gpt.dispose();
    const state = JSON.parse(await readFile(join(runDir, "trainer-state.json"), "utf8"));
    assert.equal(state.step, 2);

    const { gpt: again } = await loadModelDir(runDir);
    const result = await finetuneInstruct({
      gpt: again, tokenizer: tok, batches, run, settings, runDir, resume: true,
      saveModel: (d) => saveModelDir(d, again, { prompt_style: "alpaca" }).then(() => undefined),
    });
    assert.equal(result.step, 4);
    again.dispose();
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
    const before = await generateResponse(gpt, tok, entry, "alpaca", 3);
    assert.equal(before.stoppedAtEos, false);
    assert.equal(before.tokens, 3);
    // make end-of-text the certain next token: the head is tied, so a token's logit is h · wte[token]; copy
    // the row of the current greedy pick (the largest, positive logit) into row 50256, scaled up 1000 times
    const { generate } = await import("../src/generate/generate.js");
    const prompt = tok.encode("Below is an instruction that describes a task. Write a response that appropriately completes the request.\n\n### Instruction:\nName a color.", { allowedSpecial: [] });
    const [top] = (await generate(gpt, prompt, { maxNewTokens: 1, temperature: 0 })).ids;
    const wte = gpt.namedWeights().get("wte.weight")!;
    const w = (await wte.read().data()).slice();
    for (let d = 0; d < TINY.emb_dim; d++) w[50256 * TINY.emb_dim + d] = w[top * TINY.emb_dim + d] * 1000;
    const { tensor } = await import("@tensorflow/tfjs");
    wte.write(tensor(w, [TINY.vocab_size, TINY.emb_dim]));
    const after = await generateResponse(gpt, tok, entry, "alpaca", 3);
    assert.deepEqual(after, { text: "", tokens: 0, stoppedAtEos: true });
  } finally {
    gpt.dispose();
  }
});
