import type { CommandModule } from "yargs";
import { existsSync } from "node:fs";
import { readFile } from "node:fs/promises";
import { join, resolve } from "node:path";
import { selectBackend } from "../backend.js";
import { Rng } from "../../data/rng.js";
import { resolveDataPath } from "../../data/datasets.js";
import { FileFormatError, UsageError } from "../../errors.js";
import { writeFileAtomic } from "../../fs-atomic.js";
import { loadModelDir, saveModelDir } from "../../model/model-dir.js";
import { getTokenizer } from "../../tokenizer/index.js";
import { readTrainerState, TRAINER_STATE_FILE } from "../../train/checkpoint.js";
import { resolveTrainSettings, type TrainSettings } from "../../train/settings.js";
import { meanLoss, LOG_FILE, PLOT_FILE, type TrainEvent } from "../../train/trainer.js";
import { loadInstructionData } from "../../finetune/instruct-data.js";
import { PROMPT_STYLES, checkPromptStyle, formatPrompt } from "../../finetune/prompt-style.js";
import {
  INSTRUCT_RUN_FILE,
  INSTRUCT_TRAIN_DEFAULTS,
  MAX_RESPONSE_TOKENS,
  RESPONSES_FILE,
  finetuneInstruct,
  generateResponses,
  instructionBatches,
  instructionLoss,
  type InstructRunInfo,
} from "../../finetune/instruct.js";
import {
  formatDuration,
  interruptOnCtrlC,
  note,
  printJson,
  printLine,
  spinner,
  stepLine,
  verbose,
  type GlobalOptions,
} from "../output.js";

/** The book's base model for chapter 7: GPT-2 medium (355M), where `llmctl load-gpt2 --size 355M` puts it. */
export const DEFAULT_BASE_MODEL = "models/gpt2-355m";

interface FinetuneInstructArgs extends GlobalOptions {
  model?: string;
  out?: string;
  data?: string;
  epochs?: number;
  "batch-size"?: number;
  lr?: number;
  "weight-decay"?: number;
  "prompt-style"?: string;
  "mask-instruction"?: boolean;
  "max-length"?: number;
  "eval-freq"?: number;
  "eval-iter"?: number;
  "max-steps"?: number;
  "checkpoint-every"?: number;
  responses: boolean;
  "response-tokens": number;
  resume?: string;
}

async function readRunInfo(dir: string): Promise<InstructRunInfo> {
  const path = join(dir, INSTRUCT_RUN_FILE);
  if (!existsSync(path)) {
    throw new FileFormatError(
      `${dir} has no ${INSTRUCT_RUN_FILE}, so it is not a \`finetune instruct\` run`,
      "pass the --out directory of an earlier `llmctl finetune instruct`",
    );
  }
  let info: InstructRunInfo;
  try {
    info = JSON.parse(await readFile(path, "utf8")) as InstructRunInfo;
  } catch (err) {
    throw new FileFormatError(`${path} is not valid JSON: ${(err as Error).message}`, "start a new run");
  }
  if (info.format !== "llmctl-instruct-run" || info.version !== 1)
    throw new FileFormatError(`${path} is not an llmctl instruct run (version 1)`, "start a new run");
  checkPromptStyle(info.prompt_style);
  return info;
}

/** The book's progress line: "Ep 1 (Step 000005): Train loss 2.633, Val loss 2.622". */
function evalLine(e: Extract<TrainEvent, { kind: "eval" }>["record"], epochs: number): string {
  const val = e.val_loss === null ? "" : `, Val loss ${e.val_loss.toFixed(3)}`;
  // the closing evaluation runs after the last epoch has ended: it still belongs to that epoch
  return `Ep ${Math.min(e.epoch + 1, epochs)} (Step ${String(e.step - 1).padStart(6, "0")}): Train loss ${e.train_loss.toFixed(3)}${val}`;
}

export const finetuneInstructCommand: CommandModule<GlobalOptions, FinetuneInstructArgs> = {
  command: "instruct",
  describe: "finetune an instruction follower (book chapter 7)",
  builder: (y) =>
    y
      .option("model", {
        alias: "m",
        type: "string",
        describe: `base model directory [default: ${DEFAULT_BASE_MODEL}, the book's GPT-2 medium from \`llmctl load-gpt2 --size 355M --out ${DEFAULT_BASE_MODEL}\`]`,
      })
      .option("out", {
        alias: "o",
        type: "string",
        describe: "run directory: the finetuned model, checkpoints, log, plot, responses",
      })
      .option("data", {
        alias: "d",
        type: "string",
        describe:
          "Alpaca-format JSON/JSONL ({instruction, input, output}) or a dataset name [default: instruction-data]",
      })
      .option("epochs", {
        type: "number",
        describe: `passes over the training data [default: ${INSTRUCT_TRAIN_DEFAULTS.epochs}]`,
      })
      .option("batch-size", {
        alias: "b",
        type: "number",
        describe: `examples per batch [default: ${INSTRUCT_TRAIN_DEFAULTS.batch_size}]`,
      })
      .option("lr", { type: "number", describe: `AdamW learning rate [default: ${INSTRUCT_TRAIN_DEFAULTS.lr}]` })
      .option("weight-decay", {
        type: "number",
        describe: `AdamW weight decay [default: ${INSTRUCT_TRAIN_DEFAULTS.weight_decay}]`,
      })
      .option("prompt-style", {
        choices: PROMPT_STYLES,
        describe: "prompt template (alpaca: the book; phi3: exercise 7.1) [default: alpaca]",
      })
      .option("mask-instruction", {
        type: "boolean",
        describe: "train only on the responses: ignore the prompt's targets (exercise 7.2)",
      })
      .option("max-length", {
        type: "number",
        describe: "truncate examples to this many tokens [default: the model's context]",
      })
      .option("eval-freq", {
        type: "number",
        describe: `evaluate every N steps [default: ${INSTRUCT_TRAIN_DEFAULTS.eval_freq}]`,
      })
      .option("eval-iter", {
        type: "number",
        describe: `batches per evaluation [default: ${INSTRUCT_TRAIN_DEFAULTS.eval_iter}]`,
      })
      .option("max-steps", { type: "number", describe: "stop after this many optimizer steps" })
      .option("checkpoint-every", {
        type: "number",
        describe: "save a resumable checkpoint every N steps [default: at the end and on Ctrl-C]",
      })
      .option("responses", {
        type: "boolean",
        default: true,
        describe: `answer the test instructions afterwards into ${RESPONSES_FILE}`,
      })
      .option("response-tokens", {
        type: "number",
        default: MAX_RESPONSE_TOKENS,
        describe: "most tokens per generated answer",
      })
      .option("resume", { type: "string", describe: "continue the interrupted run in this directory" })
      .example(
        `$0 load-gpt2 --size 355M --out ${DEFAULT_BASE_MODEL}`,
        "once: the book's base model, GPT-2 medium (355M)",
      )
      .example(
        "$0 finetune instruct --out models/instruct",
        "the book's chapter 7 run: 2 epochs, then answers to the 110 test instructions",
      )
      .example(
        "$0 finetune instruct -m runs/tiny -o sft-phi3 --prompt-style phi3 --mask-instruction",
        "exercises 7.1 and 7.2 on another base",
      )
      .example(
        "$0 finetune instruct -o sft --data alpaca_data.json --max-length 512 -b 4",
        "exercise 7.3: any Alpaca-format file",
      )
      .example("$0 finetune instruct --resume models/instruct", "continue after Ctrl-C")
      .example(
        "$0 evaluate --responses sft/instruction-data-with-response.json",
        "then score the answers with an LLM judge",
      )
      .check((a) => {
        if (a.resume === undefined && a.out === undefined) {
          throw new UsageError(
            "give --out DIR for the finetuned model (or --resume DIR)",
            "see `llmctl finetune instruct --help`",
          );
        }
        if (
          a.resume !== undefined &&
          (a.model !== undefined ||
            a.data !== undefined ||
            a["prompt-style"] !== undefined ||
            a["mask-instruction"] !== undefined ||
            a["max-length"] !== undefined)
        ) {
          throw new UsageError(
            "--resume continues a run as it was set up",
            "drop --model, --data, --prompt-style, --mask-instruction and --max-length, or start a new run",
          );
        }
        if (!Number.isInteger(a["response-tokens"]) || a["response-tokens"] < 1)
          throw new UsageError(`--response-tokens must be a positive integer, got ${a["response-tokens"]}`);
        return true;
      }),
  handler: async (args) => {
    await selectBackend(args);
    const tokenizer = getTokenizer();
    const resume = args.resume !== undefined;
    const runDir = resolve(args.resume ?? args.out!);

    let run: InstructRunInfo;
    let settings: TrainSettings;
    const overrides: Partial<TrainSettings> = {
      epochs: args.epochs,
      batch_size: args["batch-size"],
      lr: args.lr,
      weight_decay: args["weight-decay"],
      eval_freq: args["eval-freq"],
      eval_iter: args["eval-iter"],
      max_steps: args["max-steps"],
      checkpoint_every: args["checkpoint-every"],
      seed: args.seed,
    };
    const spin = spinner(resume ? `loading ${runDir}` : `loading ${args.model ?? DEFAULT_BASE_MODEL}`);
    let loaded;
    try {
      if (resume) {
        run = await readRunInfo(runDir);
        const state = await readTrainerState(runDir);
        // the saved settings define the run; only the length of it (epochs, max steps) may change
        settings = resolveTrainSettings(
          state.settings as unknown as Record<string, unknown>,
          { epochs: args.epochs, max_steps: args["max-steps"] },
          `${runDir}/${TRAINER_STATE_FILE}`,
        );
        loaded = await loadModelDir(runDir);
      } else {
        if (existsSync(join(runDir, TRAINER_STATE_FILE))) {
          throw new UsageError(
            `${runDir} already holds a training run`,
            `continue it with --resume ${args.out}, or choose another --out`,
          );
        }
        const modelDir = args.model ?? DEFAULT_BASE_MODEL;
        if (args.model === undefined && !existsSync(modelDir)) {
          throw new UsageError(
            `no --model given, and the default base model ${DEFAULT_BASE_MODEL} (GPT-2 medium, as the book) is not there`,
            `run \`llmctl load-gpt2 --size 355M --out ${DEFAULT_BASE_MODEL}\`, or pass --model DIR`,
          );
        }
        loaded = await loadModelDir(modelDir);
        const style = checkPromptStyle(args["prompt-style"] ?? "alpaca");
        const maxLength = args["max-length"] ?? loaded.gpt.config.context_length;
        if (!Number.isInteger(maxLength) || maxLength < 2 || maxLength > loaded.gpt.config.context_length) {
          throw new UsageError(
            `--max-length must be an integer from 2 to the model's context (${loaded.gpt.config.context_length}), got ${maxLength}`,
          );
        }
        run = {
          format: "llmctl-instruct-run",
          version: 1,
          data: await resolveDataPath(args.data ?? "instruction-data", { onNote: (m) => verbose(args, m) }),
          prompt_style: style,
          mask_instruction: args["mask-instruction"] ?? false,
          max_length: maxLength,
          base_model: resolve(modelDir),
        };
        settings = resolveTrainSettings(
          { ...INSTRUCT_TRAIN_DEFAULTS, max_length: maxLength, data: run.data },
          overrides,
          "finetune instruct",
        );
      }
    } finally {
      spin.stop();
    }
    const { gpt, meta } = loaded;
    if (meta.head.kind !== "lm") {
      gpt.dispose();
      throw new UsageError(
        `${resume ? runDir : run.base_model} is a classifier; instruction finetuning needs a language model`,
        "pass a model directory from pretrain or load-gpt2",
      );
    }

    const entries = await loadInstructionData(run.data);
    const batches = instructionBatches(entries, tokenizer, {
      style: run.prompt_style,
      batchSize: settings.batch_size,
      maxLength: run.max_length,
      maskInstruction: run.mask_instruction,
    });
    const { split } = batches;
    note(
      `data: ${run.data} — train ${split.train.length}, validation ${split.validation.length}, test ${split.test.length} (prompt style ${run.prompt_style}${run.mask_instruction ? ", instruction masked" : ""})`,
    );
    if (batches.longestExample > run.max_length) {
      note(
        `note: the longest example has ${batches.longestExample} tokens; examples are truncated to ${run.max_length}`,
      );
    }
    const source = resume ? meta.source : `finetune instruct of ${run.base_model}`;
    const saveModel = async (dir: string) => {
      await saveModelDir(dir, gpt, { prompt_style: run.prompt_style, ...(source ? { source } : {}) });
      await writeFileAtomic(join(dir, INSTRUCT_RUN_FILE), JSON.stringify(run, null, 2) + "\n");
    };

    let initial: { train: number; val: number } | undefined;
    if (!resume) {
      // the book prints the losses before finetuning; they make the drop visible
      const loss = (b: Parameters<typeof instructionLoss>[1]) => instructionLoss(gpt, b, { training: false });
      const order = batches.train.epochOrder(new Rng(settings.seed));
      initial = {
        train: meanLoss(batches.train, loss, settings.eval_iter, order),
        val: meanLoss(batches.validation, loss, settings.eval_iter),
      };
      note(`initial losses: train ${initial.train.toFixed(3)}, validation ${initial.val.toFixed(3)}`);
    }

    const interrupt = interruptOnCtrlC("\nstopping at the next step boundary (Ctrl-C again to quit at once)…");
    const progress = spinner("finetuning");
    try {
      const result = await finetuneInstruct({
        gpt,
        tokenizer,
        batches,
        run,
        settings,
        runDir,
        saveModel,
        resume,
        signal: interrupt.signal,
        onEvent: (ev) => {
          if (ev.kind === "step") {
            const p = ev.progress;
            progress.text = stepLine(p, [`${Math.round(p.tokensPerSecond)} tok/s`]);
          } else if (ev.kind === "eval") {
            progress.clear();
            note(evalLine(ev.record, settings.epochs));
          } else if (ev.kind === "epoch") {
            progress.clear();
            if (typeof ev.record.sample === "string")
              note(`epoch ${ev.record.epoch + 1} sample: ${JSON.stringify(ev.record.sample)}`);
          } else if (ev.kind === "checkpoint") {
            verbose(args, `checkpoint at step ${ev.step} → ${ev.dir}`);
          }
        },
      });
      progress.stop();
      const t = result;
      note(
        `finetuned in ${formatDuration(t.seconds)} (${Math.round(t.tokensPerSecond)} tok/s); model, ${LOG_FILE} and ${PLOT_FILE} in ${runDir}`,
      );

      let responses: { file: string; count: number; endedWithEos: number; seconds: number } | undefined;
      if (args.responses && split.test.length > 0) {
        const gen = spinner(`answering ${split.test.length} test instructions`);
        try {
          const r = await generateResponses(gpt, tokenizer, split.test, run.prompt_style, {
            maxNewTokens: args["response-tokens"],
            signal: interrupt.signal,
            onProgress: (done, total) => (gen.text = `answering test instructions: ${done}/${total}`),
          });
          const file = join(runDir, RESPONSES_FILE);
          await writeFileAtomic(file, JSON.stringify(r.entries, null, 4) + "\n");
          responses = { file, count: r.entries.length, endedWithEos: r.endedWithEos, seconds: r.seconds };
        } finally {
          gen.stop();
        }
        note(
          `${responses.count} responses (${responses.endedWithEos} ended with <|endoftext|>) in ${formatDuration(responses.seconds)} → ${responses.file}`,
        );
        if (!args.json) {
          const first = JSON.parse(await readFile(responses.file, "utf8"))[0];
          printLine(
            `${formatPrompt(first, run.prompt_style)}\n\nCorrect response:\n>> ${first.output}\n\nModel response:\n>> ${first.model_response}`,
          );
        }
      }
      const summary = {
        out: runDir,
        prompt_style: run.prompt_style,
        mask_instruction: run.mask_instruction,
        train_examples: split.train.length,
        validation_examples: split.validation.length,
        test_examples: split.test.length,
        steps: t.step,
        initial_train_loss: initial?.train ?? null,
        initial_val_loss: initial?.val ?? null,
        train_loss: t.trainLoss,
        val_loss: t.valLoss,
        seconds: Math.round(t.seconds * 10) / 10,
        tokens_per_second: Math.round(t.tokensPerSecond),
        responses: responses
          ? {
              file: responses.file,
              count: responses.count,
              ended_with_eos: responses.endedWithEos,
              seconds: Math.round(responses.seconds * 10) / 10,
            }
          : null,
      };
      if (args.json) printJson(summary);
      else if (t.valLoss !== null)
        printLine(`final losses: train ${t.trainLoss?.toFixed(3)}, validation ${t.valLoss.toFixed(3)}`);
    } finally {
      progress.stop();
      interrupt.release();
      gpt.dispose();
    }
  },
};
