import type { CommandModule } from "yargs";
import { selectBackend } from "../backend.js";
import { UsageError } from "../../errors.js";
import { loadModelShowingProgress, modelOption } from "../load-model.js";
import { END_OF_TEXT } from "../../tokenizer/index.js";
import { modelTokenizer } from "../../tokenizer/bpe-file.js";
import { checkSamplingOptions } from "../../generate/sampler.js";
import { TextStream } from "../../generate/text-stream.js";
import { note, printJson, verbose, type GlobalOptions } from "../output.js";

interface GenerateArgs extends GlobalOptions {
  model: string;
  prompt: string;
  "max-new-tokens": number;
  temperature: number;
  "top-k"?: number;
  "top-p"?: number;
  "stop-at-eos": boolean;
  cache: boolean;
  chat: boolean;
}

export const generateCommand: CommandModule<GlobalOptions, GenerateArgs> = {
  command: "generate",
  describe: "generate text from a model, streamed token by token",
  builder: (y) =>
    y
      .option("model", modelOption("model directory (from pretrain, load-gpt2 or finetune)"))
      .option("prompt", { alias: "p", type: "string", demandOption: true, describe: "text to continue" })
      .option("max-new-tokens", { alias: "n", type: "number", default: 50, describe: "tokens to generate" })
      .option("temperature", { alias: "t", type: "number", default: 1, describe: "0 = greedy; higher = more varied" })
      .option("top-k", { type: "number", describe: "sample only among the k most likely tokens (1 = greedy)" })
      .option("top-p", {
        type: "number",
        describe: "sample only among the most likely tokens whose probability reaches p",
      })
      .option("stop-at-eos", { type: "boolean", default: false, describe: `stop at ${END_OF_TEXT}` })
      .option("chat", {
        type: "boolean",
        default: false,
        describe:
          "the prompt is a user's message in the model's chat template (its own Hugging Face one, else llmctl's), " +
          "ending with the header of the reply",
      })
      .option("cache", {
        type: "boolean",
        default: true,
        describe: "reuse attention keys/values (--no-cache recomputes the window per token)",
      })
      .example(
        '$0 generate --model runs/tiny --prompt "Every effort moves you"',
        "50 sampled tokens (temperature 1, seed 123)",
      )
      .example(
        '$0 generate -m models/gpt2-124m -p "Every effort moves you" --temperature 1.4 --top-k 25 --seed 123',
        "the book's ch05 sampling settings",
      )
      .example(
        '$0 generate -m models/qwen -p "What is 2+2?" --chat --json',
        "the prompt as the model's chat template puts a user's message; prompt_ids are its ids",
      )
      .example(
        '$0 generate -m runs/tiny -p "Every effort moves you" -t 0 --json',
        '{"prompt_ids":[...],"ids":[...],"text":"...","tokens_per_second":...}',
      ),
  handler: async (args) => {
    if (args.prompt.length === 0)
      throw new UsageError("the prompt is empty", 'give some text, e.g. --prompt "Every effort moves you"');
    const maxNew = args["max-new-tokens"];
    if (!(Number.isInteger(maxNew) && maxNew >= 0))
      throw new UsageError(`--max-new-tokens must be an integer ≥ 0, got ${maxNew}`);
    const sampling = { temperature: args.temperature, topK: args["top-k"] ?? null, topP: args["top-p"] ?? null };
    checkSamplingOptions(sampling);

    await selectBackend(args);
    const loaded = await loadModelShowingProgress(args.model);
    const { gpt } = loaded;
    const { generate, requireLanguageModel } = await import("../../generate/generate.js");
    const { modelChatPrompt } = await import("../../generate/chat-template.js");
    try {
      requireLanguageModel(gpt);
      const tok = await modelTokenizer(args.model, loaded.meta.tokenizer);
      const chat = args.chat
        ? await modelChatPrompt(args.model, tok, [{ role: "user", content: args.prompt }], loaded.meta.prompt_style)
        : undefined;
      const promptIds = chat?.ids ?? tok.encode(args.prompt);
      if (promptIds.length > gpt.config.context_length) {
        note(
          `the prompt has ${promptIds.length} tokens; the model sees its last ${gpt.config.context_length} (its context)`,
        );
      }
      const stream = new TextStream((ids) => tok.decode(ids));
      if (!args.json && !args.chat) process.stdout.write(args.prompt);
      const result = await generate(gpt, promptIds, {
        ...sampling,
        maxNewTokens: maxNew,
        // a chat reply ends at the model's stop ids (its EOS and end-of-turn tokens), as transformers' generate does
        eosId: [...(args["stop-at-eos"] ? [tok.endOfTextId] : []), ...(chat?.stopIds ?? [])],
        useCache: args.cache,
        seed: args.seed ?? 123,
        vocabLimit: tok.vocabSize,
        onToken: args.json ? undefined : (id) => process.stdout.write(stream.push(id)),
      });
      const text = tok.decode(result.ids);
      if (args.json) {
        printJson({
          ...(chat ? { prompt: chat.text } : {}),
          prompt_ids: promptIds,
          ids: result.ids,
          text,
          tokens_per_second: Math.round(result.tokensPerSecond * 100) / 100,
        });
      } else {
        process.stdout.write(stream.flush() + "\n");
      }
      verbose(
        args,
        `${result.ids.length} tokens in ${result.seconds.toFixed(2)} s (${result.tokensPerSecond.toFixed(1)} tokens/s, ${args.cache ? "KV cache" : "no cache"})`,
      );
    } finally {
      gpt.dispose();
    }
  },
};
