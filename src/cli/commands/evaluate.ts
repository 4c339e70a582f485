import type { CommandModule } from "yargs";
import { notYet } from "./not-yet.js";

export const evaluateCommand: CommandModule = {
  command: "evaluate",
  describe: "score responses with an LLM judge through Ollama",
  handler: () => notYet("evaluate", 8),
};
