import type { CommandModule } from "yargs";
import { UsageError } from "../../errors.js";
import { LOG_FILE, PLOT_FILE } from "../../train/run-dir.js";
import { formatPrompt } from "../../generate/prompt-style.js";
import { PROMPT_STYLES, type PromptStyle } from "../../model/model-meta.js";
import { MAX_RESPONSE_TOKENS } from "../../generate/prompt-style.js";
import { DEFAULT_BASE_MODEL, INSTRUCT_TRAIN_DEFAULTS, RESPONSES_FILE } from "../../finetune/recipes.js";
import { formatDuration, note, printJson, printLine, type GlobalOptions } from "../output.js";
import {
  loraSettings,
  withLoraFlags,
  runTrainingJob,
  trainSummary,
  trainedLine,
  withTrainingFlags,
  type LoraArgs,
  type TrainingArgs,
} from "../training.js";

interface FinetuneInstructArgs extends TrainingArgs, LoraArgs {
  model?: string;
  data?: string;
  "prompt-style"?: PromptStyle;
  "mask-instruction"?: boolean;
  "max-length"?: number;
  responses: boolean;
  "response-tokens": number;
  "max-answers"?: number;
}

export const finetuneInstructCommand: CommandModule<GlobalOptions, FinetuneInstructArgs> = {
  command: "instruct",
  describe: "finetune an instruction follower (book chapter 7)",
  builder: (y) =>
    withTrainingFlags(
      withLoraFlags(y)
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
        .option("responses", {
          type: "boolean",
          default: true,
          describe: `answer the test instructions afterwards into ${RESPONSES_FILE}`,
        })
        .option("max-answers", {
          type: "number",
          describe: "answer only the first N test instructions [default: all of them, the book's 110]",
        })
        .option("response-tokens", {
          type: "number",
          default: MAX_RESPONSE_TOKENS,
          describe: "most tokens per generated answer",
        })
        .check((a) => {
          if (a["max-answers"] !== undefined && !(Number.isInteger(a["max-answers"]) && a["max-answers"] >= 0))
            throw new UsageError(`--max-answers must be a whole number, got ${a["max-answers"]}`);
          if (!Number.isInteger(a["response-tokens"]) || a["response-tokens"] < 1)
            throw new UsageError(`--response-tokens must be a positive integer, got ${a["response-tokens"]}`);
          return true;
        }),
      INSTRUCT_TRAIN_DEFAULTS,
      "give --out DIR for the finetuned model (or --resume DIR)",
    )
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
        "$0 finetune instruct -o sft --data alpaca_data.json --max-length 512 --batch-size 4",
        "exercise 7.3: any Alpaca-format file",
      )
      .example(
        "$0 finetune instruct -o models/instruct-lora --lora 16",
        "exercise 7.4: LoRA adapters train, GPT-2 medium stays frozen",
      )
      .example("$0 finetune instruct --resume models/instruct", "continue after Ctrl-C")
      .example(
        "$0 evaluate --responses sft/instruction-data-with-response.json",
        "then score the answers with an LLM judge",
      ),
  handler: async (a) => {
    const r = await runTrainingJob(a, async (job) => {
      const { finetuneInstruct } = await import("../../finetune/instruct.js");
      return finetuneInstruct({
        ...job,
        modelDir: a.model,
        data: a.data,
        promptStyle: a["prompt-style"],
        maskInstruction: a["mask-instruction"],
        lora: loraSettings(a),
        responseTokens: a.responses && a["max-answers"] !== 0 ? a["response-tokens"] : 0,
        maxAnswers: a["max-answers"],
        train: { ...job.train, max_length: a["max-length"] },
      });
    });
    note(`model, ${LOG_FILE} and ${PLOT_FILE} in ${r.outDir}`);
    const answers = r.responses;
    if (answers) {
      note(
        `${answers.entries.length} responses (${answers.endedWithEos} ended with <|endoftext|>) in ${formatDuration(answers.seconds)} → ${answers.file}`,
      );
    }
    if (a.json) {
      printJson({
        ...trainSummary(r),
        prompt_style: r.run.prompt_style,
        mask_instruction: r.run.mask_instruction,
        train_examples: r.examples.train,
        validation_examples: r.examples.validation,
        test_examples: r.examples.test,
        initial_train_loss: r.initialLosses?.train ?? null,
        initial_val_loss: r.initialLosses?.validation ?? null,
        responses: answers && {
          file: answers.file,
          count: answers.entries.length,
          ended_with_eos: answers.endedWithEos,
          seconds: Math.round(answers.seconds * 10) / 10,
        },
      });
      return;
    }
    printLine(trainedLine(r));
    const first = answers?.entries[0];
    if (first) {
      printLine(
        `\n${formatPrompt(first, r.run.prompt_style)}\n\nCorrect response:\n>> ${first.output}\n\nModel response:\n>> ${first.model_response}`,
      );
    }
  },
};
