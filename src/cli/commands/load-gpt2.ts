import type { CommandModule } from "yargs";
import { notYet } from "./not-yet.js";

export const loadGpt2Command: CommandModule = {
  command: "load-gpt2",
  describe: "convert OpenAI's GPT-2 weights into an llmctl model",
  handler: () => notYet("load-gpt2", 4),
};
