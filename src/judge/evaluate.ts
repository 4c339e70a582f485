/**
 * The book's LLM-as-judge evaluation (chapter 7, `generate_model_scores`): ask a larger model to score each
 * response 0–100 against the reference output, keep the integer replies, average them.
 */
import { FileFormatError } from "../errors.js";
import { loadInstructionData, type InstructionRecord } from "../data/instruction-data.js";
import { formatPrompt } from "../generate/prompt-style.js";

/** Anything that answers a chat message: the Ollama client, or a stand-in. */
export interface Judge {
  chat(content: string): Promise<string>;
}

export const RESPONSE_KEY = "model_response";

/**
 * The book's judge prompt, word for word. The entry is always shown in the Alpaca format, whatever style the
 * model was trained with: the judge reads a task description, not the model's template.
 */
export function judgePrompt(entry: InstructionRecord, responseKey = RESPONSE_KEY): string {
  return (
    `Given the input \`${formatPrompt(entry, "alpaca")}\` ` +
    `and correct output \`${entry.output}\`, ` +
    `score the model response \`${String(entry[responseKey])}\`` +
    ` on a scale from 0 to 100, where 100 is the best score. ` +
    `Respond with the integer number only.`
  );
}

/** A reply that is an integer 0–100 and nothing else (surrounding whitespace allowed, as Python's int()). */
export function parseScore(reply: string): number | undefined {
  const m = /^\s*\+?(\d{1,3})\s*$/.exec(reply);
  if (!m) return undefined;
  const n = Number(m[1]);
  return n <= 100 ? n : undefined;
}

export interface EntryScore {
  index: number;
  /** the score, absent when the reply was not an integer 0–100 */
  score?: number;
  /** the judge's reply when it could not be used */
  reply?: string;
}

export interface EvaluationResult {
  scored: number;
  skipped: number;
  /** mean of the scores; null when nothing could be scored */
  average: number | null;
  entries: EntryScore[];
}

export interface EvaluateOptions {
  responseKey?: string;
  /** requests in flight at once */
  concurrency?: number;
  onProgress?: (done: number, total: number, last: EntryScore) => void;
}

/** Read a responses file (the `instruction-data-with-response.json` that `finetune instruct` writes). */
export async function loadResponses(path: string, responseKey = RESPONSE_KEY): Promise<InstructionRecord[]> {
  const entries = await loadInstructionData(path, "--responses");
  entries.forEach((e, i) => {
    if (typeof e[responseKey] !== "string") {
      throw new FileFormatError(
        `entry ${i} of ${path} has no "${responseKey}" text`,
        "evaluate the file that `llmctl finetune instruct` writes (instruction-data-with-response.json)",
      );
    }
  });
  return entries;
}

/**
 * Score every entry. As the book's `ollama_evaluate.py`, an empty response scores 0 without asking the
 * judge. A reply that is not an integer is kept in the result and left out of the average. A network
 * failure (after the client's retries) stops the run: the remaining scores would all fail the same way.
 */
export async function scoreResponses(
  entries: readonly InstructionRecord[],
  judge: Judge,
  opts: EvaluateOptions = {},
): Promise<EvaluationResult> {
  const key = opts.responseKey ?? RESPONSE_KEY;
  const concurrency = Math.max(1, Math.floor(opts.concurrency ?? 1));
  const results: EntryScore[] = new Array(entries.length);
  let next = 0;
  let done = 0;
  let failed = false;
  const worker = async () => {
    while (!failed && next < entries.length) {
      const index = next++;
      const entry = entries[index];
      let result: EntryScore;
      if (String(entry[key]) === "") {
        result = { index, score: 0 };
      } else {
        let reply: string;
        try {
          reply = await judge.chat(judgePrompt(entry, key));
        } catch (err) {
          failed = true;
          throw err;
        }
        const score = parseScore(reply);
        result = score === undefined ? { index, reply } : { index, score };
      }
      results[index] = result;
      opts.onProgress?.(++done, entries.length, result);
    }
  };
  await Promise.all(Array.from({ length: Math.min(concurrency, Math.max(1, entries.length)) }, worker));
  const scores = results.filter((r) => r.score !== undefined).map((r) => r.score as number);
  return {
    scored: scores.length,
    skipped: results.length - scores.length,
    average: scores.length > 0 ? scores.reduce((a, b) => a + b, 0) / scores.length : null,
    entries: results,
  };
}
