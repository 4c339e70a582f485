import { withAnswerFlags } from "../answer-flags.js";
import type { CommandModule } from "yargs";
import { UsageError } from "../../errors.js";
import { withLanguageModel, modelOption } from "../load-model.js";
import { modelTokenizer } from "../../tokenizer/bpe-file.js";
import { DEFAULT_PROMPT_STYLE } from "../../generate/prompt-style.js";
import { note, printJson, printLine, type GlobalOptions } from "../output.js";

interface InstructArgs extends GlobalOptions {
  model: string;
  instruction?: string;
  input?: string;
  "max-new-tokens": number;
  temperature: number;
  "top-k"?: number;
}

export const instructCommand: CommandModule<GlobalOptions, InstructArgs> = {
  command: "instruct [instruction]",
  describe: "answer an instruction with an instruction-finetuned model",
  builder: (y) =>
    withAnswerFlags(y)
      .positional("instruction", { type: "string", describe: "what the model should do" })
      .option("model", modelOption("model directory from `llmctl finetune instruct`"))
      .option("input", {
        alias: "i",
        type: "string",
        default: "",
        describe: "the text the instruction is about (the Alpaca 'input')",
      })

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
  handler: (args) =>
    withLanguageModel(args, async ({ gpt, meta }) => {
      const style = meta.prompt_style ?? DEFAULT_PROMPT_STYLE;
      if (!meta.prompt_style)
        note(`${args.model} has no prompt_style in its config.json (not instruction-finetuned?); using ${style}`);
      const { generateResponse } = await import("../../generate/responses.js");
      const max = args["max-new-tokens"];
      const entry = { instruction: args.instruction!, input: args.input ?? "" };
      const tokenizer = await modelTokenizer(args.model, meta.tokenizer);
      const answer = (onText?: (text: string) => void) =>
        generateResponse(gpt, tokenizer, entry, style, {
          maxNewTokens: max,
          temperature: args.temperature,
          topK: args["top-k"],
          seed: args.seed,
          withHeader: true,
          onText,
        });
      if (args.json) {
        const r = await answer();
        printJson({ ...entry, response: r.text, tokens: r.tokens, stopped: r.stoppedAtEos });
        return;
      }
      const r = await answer((text) => process.stdout.write(text));
      printLine();
      if (!r.stoppedAtEos) note(`(stopped at ${max} tokens without <|endoftext|>)`);
    }),
};
