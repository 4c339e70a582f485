/**
 * Chapter 7's instruction finetuning: the whole pretrained model is trained on formatted
 * {instruction, input, output} examples with the ordinary next-token loss (padding, and optionally the
 * prompt, ignored), then answers every test instruction so the responses can be judged.
 *
 * `finetuneInstruct()` is the whole job, in the shape of src/train/run.ts; the loop itself is the shared
 * Trainer. This module supplies its batches, a per-epoch sample, and the answers afterwards.
 */
import { existsSync } from "node:fs";
import { join, resolve } from "node:path";
import type { GPTModel, LoraSettings } from "../model/gpt.js";
import { saveModelDir } from "../model/model-dir.js";
import type { TokenBatch } from "../data/sliding-window.js";
import { resolveDataPath } from "../data/datasets.js";
import { Rng } from "../data/rng.js";
import { languageModelLoss, meanLoss } from "../train/loss.js";
import { namedParameters } from "../train/adamw.js";
import type { JobRecord } from "../train/run-dir.js";
import type { LoraUse } from "../train/preflight.js";
import { runJob, type JobEvent, type JobOptions, type JobResult, type JobRun } from "../train/run.js";
import { getTokenizer, type Tokenizer } from "../tokenizer/index.js";
import { UsageError } from "../errors.js";
import { writeFileAtomic } from "../fs-atomic.js";
import { generateResponse, generateResponses, type ResponsesResult } from "../generate/responses.js";
import { DEFAULT_PROMPT_STYLE, MAX_RESPONSE_TOKENS, checkPromptStyle } from "../generate/prompt-style.js";
import { InstructionDataset, InstructionLoader } from "./collate.js";
import {
  loadInstructionData,
  splitInstructionData,
  type InstructionRecord,
  type InstructionSplit,
} from "../data/instruction-data.js";
import type { PromptStyle } from "../model/model-meta.js";
import { DEFAULT_BASE_MODEL, INSTRUCT_TRAIN_DEFAULTS, RESPONSES_FILE } from "./recipes.js";
import { loadFinetuneModel } from "./base-model.js";

/** What an instruct run records (trainer-state.json's `job`): how it was set up, so --resume rebuilds the same batches. */
export interface InstructRecord extends JobRecord {
  task: "finetune instruct";
  data: string;
  prompt_style: PromptStyle;
  mask_instruction: boolean;
  /** collate truncation (tokens); the model's context unless set */
  max_length: number;
  base_model: string;
  /** appendix E / exercise 7.4: LoRA adapters trained instead of the whole model */
  lora?: LoraSettings;
}

export interface InstructionBatches {
  split: InstructionSplit<InstructionRecord>;
  train: InstructionLoader;
  validation: InstructionLoader;
  /** tokens of the longest training example incl. its end-of-text (what max_length must hold to see it whole) */
  longestExample: number;
}

/** Split, tokenize and batch the data as the book: train shuffled with drop_last, validation in order. */
export function instructionBatches(
  entries: readonly InstructionRecord[],
  tokenizer: Tokenizer,
  opts: { style: PromptStyle; batchSize: number; maxLength: number; maskInstruction: boolean },
): InstructionBatches {
  const split = splitInstructionData(entries);
  if (split.train.length < opts.batchSize) {
    throw new UsageError(
      `${entries.length} entries give ${split.train.length} training examples, fewer than one batch of ${opts.batchSize}`,
      "lower --batch-size or give more data (85% of the entries train)",
    );
  }
  const collate = { maxLength: opts.maxLength, maskInstruction: opts.maskInstruction };
  const trainSet = new InstructionDataset(split.train, tokenizer, opts.style);
  const valSet = new InstructionDataset(split.validation, tokenizer, opts.style);
  return {
    split,
    train: new InstructionLoader(trainSet, { ...collate, batchSize: opts.batchSize, shuffle: true, dropLast: true }),
    validation: new InstructionLoader(valSet, { ...collate, batchSize: opts.batchSize }),
    longestExample: Math.max(trainSet.longestExample, valSet.longestExample),
  };
}

export interface FinetuneInstructOptions extends JobOptions {
  /** a new run's base model directory (a language model); default DEFAULT_BASE_MODEL, the book's GPT-2 medium */
  modelDir?: string;
  /** Alpaca-format JSON/JSONL ({instruction, input, output}) or a dataset name; default instruction-data */
  data?: string;
  /** default alpaca, the book's */
  promptStyle?: PromptStyle;
  /** train only on the responses (exercise 7.2) */
  maskInstruction?: boolean;
  /** afterwards, answer the test instructions into RESPONSES_FILE with at most this many tokens each (0: none) */
  responseTokens?: number;
  /** answer only the first N test instructions (default: all, the book's 110) */
  maxAnswers?: number;
  /** train LoRA adapters (exercise 7.4) instead of every weight */
  lora?: LoraSettings;
}

export interface FinetuneInstructResult extends JobResult {
  run: InstructRecord;
  examples: { train: number; validation: number; test: number };
  /** the losses before finetuning, which the book prints to show the drop (a new run only) */
  initialLosses: { train: number; validation: number } | null;
  responses: (ResponsesResult & { file: string }) | null;
}

/**
 * The book's chapter 7 as one job: load-or-resume → finetune the whole model → answer the test instructions.
 * A new run records its data, prompt style, masking and max length (InstructRecord); --resume reads them.
 */
export function finetuneInstruct(opts: FinetuneInstructOptions): Promise<FinetuneInstructResult> {
  return runJob<TokenBatch, InstructRecord, Omit<FinetuneInstructResult, keyof JobResult>>(opts, {
    task: "finetune instruct",
    newRun: {
      base: INSTRUCT_TRAIN_DEFAULTS,
      where: "finetune instruct",
      force: opts.force,
      inputs: [opts.modelDir ?? DEFAULT_BASE_MODEL],
    },
    sources: { model: opts.modelDir, data: opts.data },
    given: { prompt_style: opts.promptStyle, mask_instruction: opts.maskInstruction, lora: opts.lora },
    start: (run) => startInstruct(opts, run),
  });
}

async function startInstruct(opts: FinetuneInstructOptions, run: JobRun<InstructRecord>) {
  const { settings, saved, resume, emit, outDir } = run;
  if (saved) checkPromptStyle(saved.prompt_style);
  const modelDir = resume ? outDir : (opts.modelDir ?? DEFAULT_BASE_MODEL);
  if (!resume && opts.modelDir === undefined && !existsSync(modelDir)) {
    throw new UsageError(
      `no --model given, and the default base model ${DEFAULT_BASE_MODEL} (GPT-2 medium, as the book) is not there`,
      `run \`llmctl load-gpt2 --size 355M --out ${DEFAULT_BASE_MODEL}\`, or pass --model DIR`,
    );
  }
  const { gpt, meta, loraBase } = await loadFinetuneModel(modelDir, run, {
    lora: opts.lora,
    prepare: (lm, meta) => {
      if (meta.head.kind !== "lm")
        throw new UsageError(
          `${modelDir} is a classifier; instruction finetuning needs a language model`,
          "pass a model directory from pretrain or load-gpt2",
        );
      return lm;
    },
  });
  const record = saved ?? (await newRecord(opts, modelDir, settings.max_length ?? gpt.config.context_length, emit));
  if (record.max_length < 2 || record.max_length > gpt.config.context_length) {
    throw new UsageError(
      `--max-length must be an integer from 2 to the model's context (${gpt.config.context_length}), got ${record.max_length}`,
    );
  }
  settings.max_length = record.max_length;
  settings.data = record.data;

  const tokenizer = getTokenizer();
  const batches = instructionBatches(await loadInstructionData(record.data), tokenizer, {
    style: record.prompt_style,
    batchSize: settings.batch_size,
    maxLength: record.max_length,
    maskInstruction: record.mask_instruction,
  });
  const { split } = batches;
  emit({
    kind: "data",
    source: record.data,
    unit: "examples",
    train: split.train.length,
    validation: split.validation.length,
    test: split.test.length,
    trainBatches: batches.train.numBatches,
    validationBatches: batches.validation.numBatches,
  });
  emit({
    kind: "notice",
    text: `prompt style ${record.prompt_style}${record.mask_instruction ? ", instruction masked" : ""}`,
  });
  if (batches.longestExample > record.max_length) {
    emit({
      kind: "notice",
      text: `the longest example has ${batches.longestExample} tokens; examples are truncated to ${record.max_length}`,
    });
  }

  const loss = languageModelLoss(gpt);
  let initialLosses: FinetuneInstructResult["initialLosses"] = null;

  const source = resume ? meta.source : `finetune instruct of ${record.base_model}`;
  // as the book: after each epoch, answer the first validation instruction (its start_context)
  const sampleEntry = split.validation[0] ?? split.train[0];
  return {
    gpt,
    source: modelDir,
    record,
    lora: (gpt.lora !== null ? "training" : "possible") as LoraUse,
    length: Math.min(batches.longestExample, record.max_length),
    params: namedParameters(gpt),
    loss,
    train: batches.train,
    validation: batches.validation,
    saveModel: async (dir: string) => {
      await saveModelDir(dir, gpt, {
        prompt_style: record.prompt_style,
        ...(source ? { source } : {}),
        ...(loraBase ? { lora: loraBase } : {}),
      });
    },
    beforeTraining: async () => {
      if (resume) return;
      // the book prints the losses before finetuning; they make the drop visible
      const order = batches.train.epochOrder(new Rng(settings.seed));
      initialLosses = {
        train: await meanLoss(batches.train, loss, settings.eval_iter, order),
        validation: await meanLoss(batches.validation, loss, settings.eval_iter),
      };
      emit({
        kind: "notice",
        text: `initial losses: train ${initialLosses.train.toFixed(3)}, validation ${initialLosses.validation.toFixed(3)}`,
      });
    },
    afterEpoch: async () => {
      const r = await generateResponse(gpt, tokenizer, sampleEntry, record.prompt_style, {
        maxNewTokens: settings.sample_tokens,
      });
      return { sample: r.text };
    },
    finish: async () => {
      const responseTokens = opts.responseTokens ?? MAX_RESPONSE_TOKENS;
      const responses =
        responseTokens > 0 && split.test.length > 0
          ? await answerTestSet(gpt, split.test.slice(0, opts.maxAnswers ?? split.test.length), record.prompt_style, {
              outDir,
              signal: opts.signal,
              responseTokens,
              emit,
            })
          : null;
      const examples = { train: split.train.length, validation: split.validation.length, test: split.test.length };
      return { run: record, examples, initialLosses, responses };
    },
  };
}

/** A new run's setup: the data resolved (a dataset name is fetched), the style, the masking, the max length. */
async function newRecord(
  opts: FinetuneInstructOptions,
  modelDir: string,
  maxLength: number,
  emit: (e: JobEvent) => void,
): Promise<InstructRecord> {
  return {
    task: "finetune instruct",
    data: await resolveDataPath(opts.data ?? "instruction-data", {
      onNote: (text) => emit({ kind: "notice", text, detail: true }),
    }),
    prompt_style: opts.promptStyle ?? DEFAULT_PROMPT_STYLE,
    mask_instruction: opts.maskInstruction ?? false,
    max_length: maxLength,
    base_model: resolve(modelDir),
    ...(opts.lora ? { lora: opts.lora } : {}),
  };
}

/** The book's closing step: answer every test instruction, into RESPONSES_FILE in the run directory. */
async function answerTestSet(
  gpt: GPTModel,
  entries: readonly InstructionRecord[],
  style: PromptStyle,
  opts: { outDir: string; responseTokens: number; signal?: AbortSignal; emit: (e: JobEvent) => void },
): Promise<ResponsesResult & { file: string }> {
  const started = performance.now();
  const what = "answering the test instructions";
  opts.emit({ kind: "progress", what, done: 0, total: entries.length, seconds: 0 });
  const r = await generateResponses(gpt, getTokenizer(), entries, style, {
    maxNewTokens: opts.responseTokens,
    signal: opts.signal,
    onProgress: (done, total) =>
      opts.emit({ kind: "progress", what, done, total, seconds: (performance.now() - started) / 1000 }),
  });
  const file = join(opts.outDir, RESPONSES_FILE);
  await writeFileAtomic(file, JSON.stringify(r.entries, null, 4) + "\n");
  return { ...r, file };
}
