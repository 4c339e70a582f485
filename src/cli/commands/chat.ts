import { withAnswerFlags } from "../answer-flags.js";
import type { CommandModule } from "yargs";
import { createInterface } from "node:readline";
import { UsageError } from "../../errors.js";
import { withLanguageModel, modelOption } from "../load-model.js";
import { modelTokenizer } from "../../tokenizer/bpe-file.js";
import { hasHfChatTemplate, loadChatFormat, type ChatMessage } from "../../generate/chat-template.js";
import { checkSamplingOptions } from "../../generate/sampler.js";
import { note, type GlobalOptions } from "../output.js";

interface ChatArgs extends GlobalOptions {
  model: string;
  system?: string;
  "max-new-tokens": number;
  temperature: number;
  "top-k"?: number;
  "top-p"?: number;
}

const HELP = "/reset starts over, /exit or Ctrl-D leaves, Ctrl-C stops an answer";

export const chatCommand: CommandModule<GlobalOptions, ChatArgs> = {
  command: "chat",
  describe: "talk with a model in the terminal, answers streamed",
  builder: (y) =>
    withAnswerFlags(y)
      .option("model", modelOption("model directory; an instruction-finetuned one answers in its prompt style"))
      .option("system", { type: "string", describe: "a system message that starts the conversation" })

      .option("top-p", {
        type: "number",
        describe: "sample only among the most likely tokens whose probability reaches p",
      })
      .example("$0 chat --model models/instruct", "type a message, Enter; /reset, /exit, Ctrl-C, Ctrl-D")
      .example('echo "Name three primary colors." | $0 chat -m models/instruct', "one answer per line of stdin")
      .check((a) => {
        if (!Number.isInteger(a["max-new-tokens"]) || a["max-new-tokens"] < 1)
          throw new UsageError(`--max-new-tokens must be a positive integer, got ${a["max-new-tokens"]}`);
        checkSamplingOptions({ temperature: a.temperature, topK: a["top-k"], topP: a["top-p"] });
        return true;
      }),
  handler: (args) =>
    withLanguageModel(args, async ({ gpt, meta }) => {
      const { generateText } = await import("../../generate/generate-text.js");
      const tokenizer = await modelTokenizer(args.model, meta.tokenizer);
      const style = meta.prompt_style;
      const chatFormat = await loadChatFormat(args.model, tokenizer, style);
      const ownTemplate = await hasHfChatTemplate(args.model);
      const context = gpt.config.context_length;
      const maxNewTokens = args["max-new-tokens"];
      const tty = process.stdin.isTTY === true;
      const start: ChatMessage[] = args.system ? [{ role: "system", content: args.system }] : [];
      let history = [...start];

      /** the prompt for the next answer, leaving out the earliest exchanges when the context cannot hold them */
      const fitPrompt = () => {
        const room = Math.min(maxNewTokens, Math.floor(context / 2));
        let prompt = chatFormat(history);
        let dropped = false;
        for (;;) {
          const first = history.findIndex((m) => m.role === "user");
          const next = history.findIndex((m, i) => i > first && m.role === "user");
          if (prompt.ids.length + room <= context || next < 0) break;
          history.splice(first, next - first);
          dropped = true;
          prompt = chatFormat(history);
        }
        if (dropped) note(`(the earliest messages were left out: the model's context is ${context} tokens)`);
        if (prompt.ids.length > context) note(`(the message is longer than the context; the model sees its end)`);
        return prompt;
      };

      const rl = createInterface({ input: process.stdin, output: process.stdout, terminal: tty, prompt: "> " });
      let answering: AbortController | null = null;
      let leaving = false;
      // Ctrl-C typed in the terminal reaches readline as a key (raw mode), a signal from elsewhere as SIGINT
      rl.on("SIGINT", () => {
        if (answering) return answering.abort();
        rl.write(null, { ctrl: true, name: "e" });
        rl.write(null, { ctrl: true, name: "u" });
        process.stdout.write("^C\n");
        note(`(${HELP})`);
        rl.prompt();
      });
      const onSignal = () => {
        if (answering) return answering.abort();
        leaving = true;
        rl.close();
      };
      process.on("SIGINT", onSignal);
      rl.on("close", () => {
        // Ctrl-D leaves at once; piped input that ends still gets answers to the lines it had sent
        if (!tty) return;
        leaving = true;
        answering?.abort();
      });

      if (tty) {
        note(
          `chatting with ${args.model} (${ownTemplate ? "its chat template" : style ? `prompt style ${style}` : "base model: plain chat template"}); ${HELP}`,
        );
        rl.prompt();
      }
      let turn = 0;
      try {
        for await (const line of rl) {
          const text = line.trim();
          if (text === "/exit") break;
          if (text === "/reset") {
            history = [...start];
            note("(new conversation)");
          } else if (text.startsWith("/")) {
            note(`unknown command ${text}: ${HELP}`);
          } else if (text !== "") {
            history.push({ role: "user", content: text });
            const prompt = fitPrompt();
            answering = new AbortController();
            const r = await generateText(gpt, tokenizer, prompt.ids, {
              temperature: args.temperature,
              topK: args["top-k"] ?? null,
              topP: args["top-p"] ?? null,
              seed: (args.seed ?? 123) + turn++,
              maxNewTokens,
              stop: prompt.stop,
              stopIds: prompt.stopIds,
              trimStart: true,
              signal: answering.signal,
              onText: (piece) => process.stdout.write(piece),
            });
            answering = null;
            process.stdout.write("\n");
            if (r.finishReason === "aborted") note("(stopped)");
            else if (r.finishReason === "length") note(`(stopped at ${maxNewTokens} tokens)`);
            history.push({ role: "assistant", content: r.text });
          }
          if (leaving) break;
          if (tty) rl.prompt();
        }
      } finally {
        process.off("SIGINT", onSignal);
        rl.close();
      }
    }),
};
