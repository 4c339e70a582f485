import type { CommandModule } from "yargs";
import { createInterface } from "node:readline";
import { selectBackend } from "../backend.js";
import { UsageError } from "../../errors.js";
import { loadModelShowingProgress } from "../load-model.js";
import type { GPTModel } from "../../model/gpt.js";
import { END_OF_TEXT_ID, getTokenizer, type Tokenizer } from "../../tokenizer/index.js";
import { generate } from "../../generate/generate.js";
import { TextStream } from "../../generate/text-stream.js";
import { DEFAULT_PROMPT_STYLE, extractResponse, type PromptStyle } from "../../finetune/prompt-style.js";
import { answerPromptIds, MAX_RESPONSE_TOKENS } from "../../finetune/instruct.js";
import { note, printJson, printLine, type GlobalOptions } from "../output.js";

interface InstructArgs extends GlobalOptions {
  model: string;
  instruction?: string;
  input?: string;
  chat: boolean;
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
  const stream = new TextStream((ids) => tok.decode(ids));
  const r = await generate(gpt, prompt, {
    maxNewTokens: s.maxNewTokens,
    temperature: s.temperature,
    topK: s.topK ?? null,
    seed: s.seed,
    eosId: END_OF_TEXT_ID,
    onToken: (id) => {
      if (id === END_OF_TEXT_ID) return;
      const piece = stream.push(id);
      if (piece) onText?.(piece);
    },
  });
  const tail = stream.flush();
  if (tail) onText?.(tail);
  const ids = r.stoppedAtEos ? r.ids.slice(0, -1) : r.ids;
  return { response: extractResponse(tok.decode(ids), style), tokens: ids.length, stopped: r.stoppedAtEos };
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
      .option("chat", {
        type: "boolean",
        default: false,
        describe: "keep asking: one instruction per line on stdin, until an empty line or EOF",
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
      .example("$0 instruct -m sft --chat", "an interactive loop")
      .check((a) => {
        if (!a.chat && (a.instruction === undefined || a.instruction.trim() === "")) {
          throw new UsageError(
            "give an INSTRUCTION (or --chat)",
            'e.g. llmctl instruct -m sft "Name three primary colors."',
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

      const one = async (instruction: string, input: string) => {
        if (args.json) {
          printJson({ instruction, input, ...(await answer(gpt, tok, style, instruction, input, sampling)) });
          return;
        }
        // stream, but hold back leading whitespace (the book strips it from answers)
        let started = false;
        const r = await answer(gpt, tok, style, instruction, input, sampling, (text) => {
          const out = started ? text : text.trimStart();
          if (out) {
            started = true;
            process.stdout.write(out);
          }
        });
        printLine();
        if (!r.stopped) note(`(stopped at ${max} tokens without <|endoftext|>)`);
      };

      if (!args.chat) {
        await one(args.instruction!, args.input ?? "");
        return;
      }
      if (args.instruction) await one(args.instruction, args.input ?? "");
      const rl = createInterface({
        input: process.stdin,
        output: process.stderr,
        terminal: process.stdin.isTTY === true,
      });
      const ask = () => {
        if (process.stdin.isTTY) process.stderr.write("> ");
      };
      ask();
      for await (const line of rl) {
        if (line.trim() === "") break;
        await one(line.trim(), "");
        ask();
      }
      rl.close();
    } finally {
      gpt.dispose();
    }
  },
};
