import type { CommandModule } from "yargs";
import { notYet } from "./not-yet.js";

export const exportCommand: CommandModule = {
  command: "export",
  describe: "export a model to the Hugging Face format",
  handler: () => notYet("export", 4),
};
