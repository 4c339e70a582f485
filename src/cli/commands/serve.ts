import type { CommandModule } from "yargs";
import { basename, resolve } from "node:path";
import { UsageError } from "../../errors.js";
import { withLanguageModel, modelOption } from "../load-model.js";
import { modelTokenizer } from "../../tokenizer/bpe-file.js";
import { note, printJson, printLine, type GlobalOptions } from "../output.js";

interface ServeArgs extends GlobalOptions {
  model: string;
  host: string;
  port: number;
  name?: string;
  "api-key"?: string;
  cors?: string[];
}

/** Addresses only this machine reaches: anything else serves the network. */
const LOOPBACK = /^(127\.\d+\.\d+\.\d+|::1|localhost)$/;

export const serveCommand: CommandModule<GlobalOptions, ServeArgs> = {
  command: "serve",
  describe: "serve a model over an OpenAI-compatible HTTP API, with a chat page",
  builder: (y) =>
    y
      .option("model", modelOption("model directory (from pretrain, load-gpt2 or finetune)"))
      .option("host", { type: "string", default: "127.0.0.1", describe: "address to listen on" })
      .option("port", { type: "number", default: 8080, describe: "port to listen on (0 = a free one)" })
      .option("name", { type: "string", describe: "the model id clients ask for (default: the directory's name)" })
      .option("api-key", {
        type: "string",
        default: process.env.LLMCTL_API_KEY,
        defaultDescription: "$LLMCTL_API_KEY",
        describe: "require Authorization: Bearer KEY on every /v1 request (the chat page asks for it)",
      })
      .option("cors", {
        type: "string",
        array: true,
        describe: "a web origin whose pages may call the API, e.g. http://localhost:3000 (repeatable; * for any)",
      })
      .example("$0 serve --model models/instruct", "chat page at http://127.0.0.1:8080/, API at /v1")
      .example("$0 serve -m runs/tiny --port 0 --json", '{"url":"http://127.0.0.1:41234/","model":"tiny"}')
      .example(
        "LLMCTL_API_KEY=s3cret $0 serve -m models/instruct --host 0.0.0.0 --name sft",
        "open to the network, as model 'sft', for clients that send the key",
      )
      .check((a) => {
        if (!(Number.isInteger(a.port) && a.port >= 0 && a.port <= 65535))
          throw new UsageError(`--port must be an integer from 0 to 65535, got ${a.port}`);
        if (a["api-key"] !== undefined && !/^[\x21-\x7e]{8,}$/.test(a["api-key"]))
          throw new UsageError("--api-key must be at least 8 printable characters, without spaces");
        for (const origin of a.cors ?? []) {
          if (origin !== "*" && !/^https?:\/\/[^/\s]+$/.test(origin))
            throw new UsageError(
              `--cors '${origin}' is not an origin`,
              "give scheme://host[:port], e.g. http://localhost:3000",
            );
        }
        if (a.name !== undefined && !/^[\w.:-]+$/.test(a.name))
          throw new UsageError(`--name '${a.name}' must be letters, digits and . _ : - only`);
        return true;
      }),
  handler: (args) =>
    withLanguageModel(args, async ({ gpt, meta }) => {
      const modelId = args.name ?? basename(resolve(args.model)).replace(/[^\w.:-]/g, "_");
      const { startServer } = await import("../../serve/server.js");
      const { loadChatFormat } = await import("../../generate/chat-template.js");
      const tokenizer = await modelTokenizer(args.model, meta.tokenizer);
      const server = await startServer({
        gpt,
        tokenizer,
        modelId,
        promptStyle: meta.prompt_style,
        chatFormat: await loadChatFormat(args.model, tokenizer, meta.prompt_style),
        host: args.host,
        port: args.port,
        onLog: args.verbose ? note : undefined,
        apiKey: args["api-key"],
        corsOrigins: args.cors,
      });
      if (!LOOPBACK.test(args.host) && args["api-key"] === undefined) {
        note(
          `warning: serving on ${args.host}, reachable from other machines, and asking no one for a key: ` +
            "anyone who can reach this port can use the model (--api-key KEY, or LLMCTL_API_KEY, requires one)",
        );
      }
      if (args.json) printJson({ url: server.url, model: modelId });
      else
        printLine(`serving ${modelId} at ${server.url} (chat page at /, OpenAI API at ${server.url}v1; Ctrl-C stops)`);
      await new Promise<void>((done) => {
        const stop = () => {
          process.off("SIGINT", stop);
          process.off("SIGTERM", stop);
          // a second Ctrl-C while requests are being ended quits at once
          process.once("SIGINT", () => process.exit(130));
          note("shutting down");
          void server.close().then(done);
        };
        process.on("SIGINT", stop);
        process.on("SIGTERM", stop);
      });
    }),
};
