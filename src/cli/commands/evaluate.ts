import type { CommandModule } from "yargs";
import { basename, dirname, join } from "node:path";
import { refuseWritingInputs, writeFileAtomic } from "../../fs-atomic.js";
import { LlmctlError, UsageError } from "../../errors.js";
import { DEFAULT_JUDGE_MODEL, DEFAULT_JUDGE_URL, JUDGE_OPTIONS, OllamaClient } from "../../judge/ollama.js";
import { loadResponses, scoreResponses, RESPONSE_KEY } from "../../judge/evaluate.js";
import { note, printJson, printLine, spinner, type GlobalOptions } from "../output.js";

interface EvaluateArgs extends GlobalOptions {
  responses: string;
  "judge-url": string;
  "judge-model": string;
  timeout: number;
  "max-time": number;
  concurrency: number;
  retries: number;
  key: string;
  out?: string;
}

const MAX_TIMER_MS = 2 ** 31 - 1;

/** instruction-data-with-response.json → instruction-data-with-response.scores.json */
function defaultScoresPath(responses: string): string {
  const name = basename(responses).replace(/\.jsonl?$/i, "");
  return join(dirname(responses), `${name}.scores.json`);
}

export const evaluateCommand: CommandModule<GlobalOptions, EvaluateArgs> = {
  command: "evaluate",
  describe: "score responses with an LLM judge through Ollama",
  builder: (y) =>
    y
      .option("responses", {
        alias: "r",
        type: "string",
        demandOption: true,
        describe: "JSON/JSONL with instruction, input, output and model_response (written by finetune instruct)",
      })
      .option("judge-url", { type: "string", default: DEFAULT_JUDGE_URL, describe: "Ollama server" })
      .option("judge-model", { type: "string", default: DEFAULT_JUDGE_MODEL, describe: "Ollama model that scores" })
      .option("concurrency", { alias: "c", type: "number", default: 1, describe: "requests in flight at once" })
      .option("retries", {
        type: "number",
        default: 2,
        describe: "retries per request after a dropped connection or server error",
      })
      .option("timeout", {
        type: "number",
        default: 300,
        describe: "seconds a request may go without a byte from the judge before it counts as failed",
      })
      .option("max-time", {
        type: "number",
        default: 900,
        describe: "seconds a request may take in all, however steadily the judge sends",
      })
      .option("key", { type: "string", default: RESPONSE_KEY, describe: "the field holding the response to score" })
      .option("out", {
        alias: "o",
        type: "string",
        describe: "where to save the scores (default: RESPONSES.scores.json)",
      })
      .example(
        "$0 evaluate --responses sft/instruction-data-with-response.json",
        "score each test response 0-100, print the average",
      )
      .example(
        "$0 evaluate -r responses.json --judge-model llama3.1 --concurrency 2 --json",
        'prints {"scored":110,"skipped":0,"average":...}',
      )
      .epilogue("Needs a running Ollama (`ollama serve`) with the judge model pulled (`ollama pull llama3`).")
      .check((a) => {
        if (!Number.isInteger(a.concurrency) || a.concurrency < 1)
          throw new UsageError(`--concurrency must be a positive integer, got ${a.concurrency}`);
        if (!Number.isInteger(a.retries) || a.retries < 0)
          throw new UsageError(`--retries must be a whole number, got ${a.retries}`);
        // Node's timers hold at most 2^31 - 1 ms (24.8 days); a longer one fires at once, with a warning
        for (const flag of ["timeout", "max-time"] as const) {
          const v = a[flag];
          if (!(v > 0 && v * 1000 <= MAX_TIMER_MS))
            throw new UsageError(
              `--${flag} must be a positive number of seconds up to ${Math.floor(MAX_TIMER_MS / 1000)} (24.8 days), got ${v}`,
            );
        }
        return true;
      }),
  handler: async (args) => {
    const out = args.out ?? defaultScoresPath(args.responses);
    refuseWritingInputs([{ path: out, flag: "--out" }], [{ path: args.responses, flag: "--responses" }]);
    const entries = await loadResponses(args.responses, args.key);
    const client = new OllamaClient({
      url: args["judge-url"],
      model: args["judge-model"],
      attempts: args.retries + 1,
      timeoutMs: args.timeout * 1000,
      maxTimeMs: args["max-time"] * 1000,
    });
    const spin = spinner(`scoring ${entries.length} responses with ${client.model}`);
    const start = performance.now();
    let result;
    try {
      result = await scoreResponses(entries, client, {
        responseKey: args.key,
        concurrency: args.concurrency,
        onProgress: (done, total, last) => {
          spin.text = `scoring responses: ${done}/${total}`;
          if (last.score === undefined) {
            spin.clear();
            note(`entry ${last.index}: could not convert score: ${JSON.stringify(last.reply)}`);
          } else if (args.verbose) {
            spin.clear();
            note(`entry ${last.index}: ${last.score}`);
          }
        },
      });
    } finally {
      spin.stop();
    }
    const seconds = (performance.now() - start) / 1000;
    const average = result.average === null ? null : Math.round(result.average * 100) / 100;
    const saved = {
      responses: args.responses,
      judge: { url: client.url.origin, model: client.model, options: JUDGE_OPTIONS },
      scored: result.scored,
      skipped: result.skipped,
      average: result.average,
      seconds: Math.round(seconds * 10) / 10,
      entries: result.entries,
    };
    await writeFileAtomic(out, JSON.stringify(saved, null, 2) + "\n");
    if (args.json) {
      printJson({ scored: result.scored, skipped: result.skipped, average: result.average });
    } else {
      printLine(`Number of scores: ${result.scored} of ${entries.length}`);
      printLine(`Average score: ${average === null ? "n/a (nothing could be scored)" : average.toFixed(2)}`);
      note(`scores saved to ${out}`);
    }
    if (result.scored === 0 && entries.length > 0) {
      throw new LlmctlError(
        `none of the ${entries.length} responses could be scored: the judge's replies held no score from 0 to 100 (they are in ${out})`,
        `check that --judge-model ${client.model} follows the scoring prompt, or try a larger judge`,
      );
    }
  },
};
