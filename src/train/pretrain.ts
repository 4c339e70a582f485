/**
 * Pretraining a GPT on raw text, as the book's ch05: split the text by characters (train_ratio), tokenize each
 * part, cut overlapping windows (max_length, stride), shuffle the training batches with drop_last, keep the
 * validation batches in order, and train next-token prediction with the shared Trainer, sampling
 * `sample_prompt` greedily after every epoch. `pretrain()` is the whole job, in the shape of src/train/run.ts.
 */
import { decodeUtf8, requireFile } from "../formats/file.js";
import { readFileSync } from "node:fs";
import { join, resolve } from "node:path";
import { SlidingWindowLoader, SlidingWindowDataset, splitText, type TokenBatch } from "../data/sliding-window.js";
import { isDatasetName, resolveDataPath } from "../data/datasets.js";
import { firstIdOutside, isTokenFile, readTokenFile } from "../tokenizer/token-file.js";
import { getTokenizer, type Tokenizer } from "../tokenizer/index.js";
import { TOKENIZER_FILE, loadTokenizerDir, modelTokenizer } from "../tokenizer/bpe-file.js";
import { writeFileAtomic } from "../fs-atomic.js";
import { ConfigError, FileFormatError, UsageError } from "../errors.js";
import { buildGPT, type GPTModel } from "../model/gpt.js";
import { loadConfigFile } from "../model/config.js";
import { loadModelDir, saveModelDir } from "../model/model-dir.js";
import { readModelMeta } from "../model/model-meta.js";
import { NonFiniteLogitsError, generate } from "../generate/generate.js";
import { languageModelLoss } from "./loss.js";
import { namedParameters } from "./adamw.js";
import { runJob, type JobEvent, type JobOptions, type JobResult } from "./run.js";
import type { JobRecord } from "./run-dir.js";
import type { TrainSettings } from "./settings.js";

export interface PretrainData {
  train: SlidingWindowLoader;
  validation: SlidingWindowLoader;
  trainTokens: number;
  validationTokens: number;
}

/** Token ids of the training and validation parts. */
export interface TokenSplit {
  train: ArrayLike<number>;
  validation: ArrayLike<number>;
}

/**
 * Read `files` and split them into training and validation tokens. Text files follow the book: the
 * characters are split at train_ratio, then each part is tokenized (several files are joined with
 * `<|endoftext|>`, the tokenizer's end of text). When any file is a token file (`llmctl tokenize --out`),
 * everything is turned into ids (joined with the end-of-text id) and the ids are split at train_ratio instead.
 * Every id must be below `vocabSize`, the model's vocabulary (by default the tokenizer's).
 */
export function readPretrainTokens(
  files: string[],
  trainRatio: number,
  vocabSize?: number,
  tok: Tokenizer = getTokenizer(),
): TokenSplit {
  if (files.length === 0)
    throw new ConfigError("no training data", "pass --data FILE (text or `llmctl tokenize --out` file)");
  for (const f of files) requireFile(f, { missing: `data file not found: ${f}`, fix: "check the --data path" });
  const tokName = tok.name === "gpt2" ? "the GPT-2 tokenizer" : `the tokenizer ${tok.name}`;
  const modelVocab = vocabSize ?? tok.vocabSize;
  const tokenFiles = files.map((f) => isTokenFile(f));
  const text = (f: string) => {
    const bytes = readFileSync(f);
    if (bytes.includes(0))
      throw new FileFormatError(`${f}: holds binary data, neither text nor a token file`, "check the --data path");
    return decodeUtf8(bytes, f);
  };
  const checked = (ids: ArrayLike<number>, where: string) => {
    const bad = firstIdOutside(ids, modelVocab);
    if (bad >= 0)
      throw new ConfigError(
        `${where} gives token id ${ids[bad]} (at position ${bad}); the model's vocabulary has ${modelVocab} ids`,
        `use a model config with vocab_size ${tok.vocabSize} (${tokName}'s)`,
      );
    return ids;
  };
  if (!tokenFiles.some(Boolean)) {
    const { train, validation } = splitText(files.map(text).join(tok.endOfText), trainRatio);
    const where = `the text of ${files.join(", ")}`;
    return { train: checked(tok.encode(train), where), validation: checked(tok.encode(validation), where) };
  }
  const parts: ArrayLike<number>[] = files.map((f, i) => {
    if (!tokenFiles[i]) return checked(tok.encode(text(f)), f);
    const { ids, vocabSize } = readTokenFile(f);
    if (vocabSize !== tok.vocabSize) {
      throw new FileFormatError(
        `${f} was tokenized for a vocabulary of ${vocabSize}, ${tokName} has ${tok.vocabSize}`,
        "re-create it with `llmctl tokenize --out`",
      );
    }
    return checked(ids, f);
  });
  const total = parts.reduce((n, p) => n + p.length, 0) + parts.length - 1;
  const all = new Uint32Array(total);
  let at = 0;
  parts.forEach((p, i) => {
    if (i > 0) all[at++] = tok.endOfTextId;
    all.set(p as ArrayLike<number>, at);
    at += p.length;
  });
  const cut = Math.floor(trainRatio * all.length);
  return { train: all.subarray(0, cut), validation: all.subarray(cut) };
}

/** The book's two loaders: train shuffled with drop_last, validation in order with every window. */
export function makePretrainLoaders(
  tokens: TokenSplit,
  s: Pick<TrainSettings, "batch_size" | "max_length" | "stride">,
  contextLength: number,
): PretrainData {
  const maxLength = s.max_length ?? contextLength;
  const stride = s.stride ?? maxLength;
  if (maxLength > contextLength) {
    throw new ConfigError(
      `max_length ${maxLength} is longer than the model's context_length ${contextLength}`,
      `set train.max_length (or --max-length) to at most ${contextLength}`,
    );
  }
  const train = new SlidingWindowLoader(new SlidingWindowDataset(tokens.train, maxLength, stride), {
    batchSize: s.batch_size,
    shuffle: true,
    dropLast: true,
  });
  const validation = new SlidingWindowLoader(new SlidingWindowDataset(tokens.validation, maxLength, stride), {
    batchSize: s.batch_size,
    shuffle: false,
    dropLast: false,
  });
  return { train, validation, trainTokens: tokens.train.length, validationTokens: tokens.validation.length };
}

/** The book's generate_and_print_sample: prompt + 50 greedy tokens, newlines shown as spaces. */
export async function epochSample(
  gpt: GPTModel,
  prompt: string,
  maxNewTokens: number,
  tok: Tokenizer = getTokenizer(),
): Promise<string> {
  const ids = tok.encode(prompt);
  if (ids.length === 0) return "";
  try {
    const { ids: next } = await generate(gpt, ids, { maxNewTokens, temperature: 0 });
    return (prompt + tok.decode(next)).replace(/\n/g, " ");
  } catch (err) {
    // weights gone non-finite: the Trainer's own check says so, with the step and what was kept
    if (err instanceof NonFiniteLogitsError) return "";
    throw err;
  }
}

export interface PretrainOptions extends JobOptions {
  /** a new run's config file or bundled name (its model, and its train section under `train`) */
  config?: string;
  /** text or token files, or dataset names, instead of the config's train.data (a new run only) */
  data?: string[];
  /**
   * a tokenizer directory (`llmctl tokenizer train --out`) instead of GPT-2's, a new run only: the model's
   * vocab_size becomes the tokenizer's, and its tokenizer.json is saved with the model
   */
  tokenizer?: string;
}

export interface PretrainResult extends JobResult {
  trainTokens: number;
  validationTokens: number;
}

/** What a pretraining run records: the config it started from. */
interface PretrainRecord extends JobRecord {
  task: "pretrain";
  config?: string;
}

/** Pretrain a GPT from a config (or continue the run in outDir): load-or-resume → train → report. */
export function pretrain(opts: PretrainOptions): Promise<PretrainResult> {
  const resume = opts.resume === true;
  const given = opts.data && opts.data.length > 0 ? opts.data : undefined;
  if (!resume && opts.config === undefined)
    throw new UsageError("give --config (or --resume DIR)", "e.g. llmctl pretrain --config gpt2-tiny --out runs/tiny");
  const config = resume ? null : loadConfigFile(opts.config!);
  // the model's own tokenizer.json, copied into every model directory the run saves
  let ownTokenizer: string | undefined;
  return runJob<TokenBatch, PretrainRecord, { trainTokens: number; validationTokens: number }>(opts, {
    task: "pretrain",
    newRun: {
      base: { ...config?.train, ...(given ? { data: given } : {}) },
      where: opts.config ?? "pretrain",
      force: opts.force,
    },
    sources: { config: opts.config, data: given, tokenizer: opts.tokenizer },
    start: async ({ settings, saved, emit, own }) => {
      // record paths absolute, so --resume from another directory reads the same files
      const absolute = (d: string) => (isDatasetName(d) ? d : resolve(d));
      if (!resume && settings.data !== null)
        settings.data = typeof settings.data === "string" ? absolute(settings.data) : settings.data.map(absolute);
      const files = await dataFiles(settings.data, emit);
      let tok: Tokenizer = getTokenizer();
      let model = config?.model;
      if (resume) {
        const meta = await readModelMeta(opts.outDir);
        tok = await modelTokenizer(opts.outDir, meta.tokenizer);
        if (meta.tokenizer === TOKENIZER_FILE) ownTokenizer = readFileSync(join(opts.outDir, TOKENIZER_FILE), "utf8");
      } else if (opts.tokenizer !== undefined) {
        const bpe = await loadTokenizerDir(opts.tokenizer);
        tok = bpe;
        ownTokenizer = readFileSync(bpe.name, "utf8");
        if (model!.vocab_size !== tok.vocabSize)
          emit({
            kind: "notice",
            text: `vocab_size ${model!.vocab_size} → ${tok.vocabSize}: the model's vocabulary is the tokenizer's (${bpe.name})`,
            detail: true,
          });
        model = { ...model!, vocab_size: tok.vocabSize };
      }
      const gpt = own(resume ? (await loadModelDir(opts.outDir)).gpt : buildGPT(model!, { seed: settings.seed }));
      const data = makePretrainLoaders(
        readPretrainTokens(files, settings.train_ratio, gpt.config.vocab_size, tok),
        settings,
        gpt.config.context_length,
      );
      emit({
        kind: "data",
        source: files.join(", "),
        unit: "tokens",
        train: data.trainTokens,
        validation: data.validationTokens,
        test: null,
        trainBatches: data.train.numBatches,
        validationBatches: data.validation.numBatches,
      });
      return {
        gpt,
        source: resume ? opts.outDir : `config ${opts.config}`,
        record: saved ?? { task: "pretrain", config: opts.config },
        lora: "no",
        length: settings.max_length ?? gpt.config.context_length,
        params: namedParameters(gpt),
        loss: languageModelLoss(gpt),
        train: data.train,
        validation: data.validation,
        saveModel: async (dir) => {
          // the tokenizer first: a config.json naming tokenizer.json never stands without it
          if (ownTokenizer !== undefined) await writeFileAtomic(join(dir, TOKENIZER_FILE), ownTokenizer);
          await saveModelDir(dir, gpt, {
            source: "llmctl pretrain",
            ...(ownTokenizer !== undefined ? { tokenizer: TOKENIZER_FILE } : {}),
          });
        },
        afterEpoch: async () =>
          settings.sample_tokens > 0
            ? { sample: await epochSample(gpt, settings.sample_prompt, settings.sample_tokens, tok) }
            : {},
        finish: async () => ({ trainTokens: data.trainTokens, validationTokens: data.validationTokens }),
      };
    },
  });
}

function dataItems(data: TrainSettings["data"]): string[] {
  if (data === null || data.length === 0)
    throw new UsageError("no training data", 'pass --data FILE, or set train.data in the config (e.g. "the-verdict")');
  return Array.isArray(data) ? data : [data];
}

/** The local files of train.data, each as `--data` means on every command (resolveDataPath: a file, else a dataset). */
async function dataFiles(data: TrainSettings["data"], emit: (e: JobEvent) => void): Promise<string[]> {
  const files: string[] = [];
  for (const item of dataItems(data)) {
    if (isDatasetName(item)) emit({ kind: "status", text: `fetching dataset ${item}` });
    files.push(await resolveDataPath(item, { onNote: (text) => emit({ kind: "notice", text, detail: true }) }));
  }
  return files;
}
