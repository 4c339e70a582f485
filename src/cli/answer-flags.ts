import type { Argv } from "yargs";
import { MAX_RESPONSE_TOKENS } from "../generate/prompt-style.js";

/** The flags of commands that answer (instruct, chat): how long an answer may be and how it is sampled. */
export interface AnswerFlags {
  "max-new-tokens": number;
  temperature: number;
  "top-k"?: number;
}

export function withAnswerFlags<T>(y: Argv<T>): Argv<T & AnswerFlags> {
  return y
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
    .option("top-k", { alias: "k", type: "number", describe: "sample only among the k most likely tokens" });
}
