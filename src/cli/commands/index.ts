import type { CommandModule } from "yargs";
import { tokenizeCommand } from "./tokenize.js";
import { tokenizerCommand } from "./tokenizer.js";
import { pretrainCommand } from "./pretrain.js";
import { generateCommand } from "./generate.js";
import { loadGpt2Command } from "./load-gpt2.js";
import { loadCommand } from "./load.js";
import { exportCommand } from "./export.js";
import { finetuneCommand } from "./finetune.js";
import { classifyCommand } from "./classify.js";
import { instructCommand } from "./instruct.js";
import { chatCommand } from "./chat.js";
import { serveCommand } from "./serve.js";
import { evaluateCommand } from "./evaluate.js";
import { infoCommand } from "./info.js";
import { benchCommand } from "./bench.js";
import { doctorCommand } from "./doctor.js";
import { setupCommand } from "./setup.js";
import { inspectCommand } from "./inspect.js";

// eslint-disable-next-line @typescript-eslint/no-explicit-any
export const commands: CommandModule<any, any>[] = [
  tokenizeCommand,
  tokenizerCommand,
  pretrainCommand,
  generateCommand,
  loadGpt2Command,
  loadCommand,
  exportCommand,
  finetuneCommand,
  classifyCommand,
  instructCommand,
  chatCommand,
  serveCommand,
  evaluateCommand,
  infoCommand,
  inspectCommand,
  benchCommand,
  doctorCommand,
  setupCommand,
];
