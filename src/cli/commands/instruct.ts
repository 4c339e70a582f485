import type { CommandModule } from "yargs";
import { selectBackend } from "../backend.js";
import { UsageError } from "../../errors.js";
import { loadModelShowingProgress } from "../load-model.js";
import type { GPTModel } from "../../model/gpt.js";
import { getTokenizer, type Tokenizer } from "../../tokenizer/index.js";
import { generateText } from "../../generate/generate-text.js";
import { DEFAULT_PROMPT_STYLE, extractResponse, type PromptStyle } from "../../finetune/prompt-style.js";
import { answerPromptIds, MAX_RESPONSE_TOKENS } from "../../finetune/instruct.js";
import { note, printJson, printLine, type GlobalOptions } from "../output.js";

interface InstructArgs extends GlobalOptions {
  model: string;
  instruction?: string;
  input?: string;
  "max-new-tokens": number;
  temperature: number;
  "top-k"?: number;
}

interface Answer {
  response: string;
  tokens: number;
  /** true when the model ended its answer with <|endoftext|>, false when it hit the token limit */
  stopped: boolean;
}

interface Sampling {
  maxNewTokens: number;
  temperature: number;
  topK?: number;
  seed?: number;
}

/**
 * Answer one instruction, calling `onText` with each piece of text as soon as it is whole (tokens can end
 * mid-character). The prompt ends with the style's response header, so the answer starts at once.
 */
async function answer(
  gpt: GPTModel,
  tok: Tokenizer,
  style: PromptStyle,
  instruction: string,
  input: string,
  s: Sampling,
  onText?: (text: string) => void,
): Promise<Answer> {
  const prompt = answerPromptIds(tok, { instruction, input }, style);
  const r = await generateText(gpt, tok, prompt, {
    maxNewTokens: s.maxNewTokens,
    temperature: s.temperature,
    topK: s.topK ?? null,
    seed: s.seed,
    trimStart: true, // the book strips whitespace from answers
    onText,
  });
  const stopped = r.finishReason === "stop";
  return { response: extractResponse(r.text, style), tokens: stopped ? r.tokens - 1 : r.tokens, stopped };
}

export const instructCommand: CommandModule<GlobalOptions, InstructArgs> = {
  command: "instruct [instruction]",
  describe: "answer an instruction with an instruction-finetuned model",
  builder: (y) =>
    y
      .positional("instruction", { type: "string", describe: "what the model should do" })
      .option("model", {
        alias: "m",
        type: "string",
        demandOption: true,
        describe: "model directory from `llmctl finetune instruct`",
      })
      .option("input", {
        alias: "i",
        type: "string",
        default: "",
        describe: "the text the instruction is about (the Alpaca 'input')",
      })
      .option("max-new-tokens", {
        alias: "n",
        type: "number",
        default: MAX_RESPONSE_TOKENS,
        describe: "most tokens in an answer",
      })
      .option("temperature", {
        alias: "t",
        type: "number",
        default: 0,
        describe: "0 = greedy (the book's choice for answers); higher samples",
      })
      .option("top-k", { alias: "k", type: "number", describe: "sample only among the k most likely tokens" })
      .example(
        '$0 instruct -m sft "Rewrite the sentence using a simile." --input "The car is very fast."',
        "streams e.g. The car is as fast as a bullet.",
      )
      .example(
        "$0 instruct -m sft \"Name the author of 'Pride and Prejudice'.\" --json",
        "prints {instruction, input, response, tokens, stopped}",
      )
      .example("$0 chat -m sft", "a conversation in the terminal (llmctl chat)")
      .check((a) => {
        if (a.instruction === undefined || a.instruction.trim() === "") {
          throw new UsageError(
            "give an INSTRUCTION",
            'e.g. llmctl instruct -m sft "Name three primary colors."; for a conversation, llmctl chat -m sft',
          );
        }
        if (!Number.isInteger(a["max-new-tokens"]) || a["max-new-tokens"] < 1)
          throw new UsageError(`--max-new-tokens must be a positive integer, got ${a["max-new-tokens"]}`);
        return true;
      }),
  handler: async (args) => {
    await selectBackend(args);
    const loaded = await loadModelShowingProgress(args.model);
    const { gpt, meta } = loaded;
    try {
      if (meta.head.kind !== "lm")
        throw new UsageError(
          `${args.model} is a classifier`,
          "use `llmctl classify` for it, or give an instruction-finetuned model",
        );
      const style = meta.prompt_style ?? DEFAULT_PROMPT_STYLE;
      if (!meta.prompt_style)
        note(`${args.model} has no prompt_style in its config.json (not instruction-finetuned?); using ${style}`);
      const tok = getTokenizer();
      const max = args["max-new-tokens"];
      const sampling: Sampling = {
        maxNewTokens: max,
        temperature: args.temperature,
        topK: args["top-k"],
        seed: args.seed,
      };

      const instruction = args.instruction!;
      const input = args.input ?? "";
      if (args.json) {
        printJson({ instruction, input, ...(await answer(gpt, tok, style, instruction, input, sampling)) });
        return;
      }
      const r = await answer(gpt, tok, style, instruction, input, sampling, (text) => process.stdout.write(text));
      printLine();
      if (!r.stopped) note(`(stopped at ${max} tokens without <|endoftext|>)`);
    } finally {
      gpt.dispose();
    }
  },
};
