import type { CommandModule } from "yargs";
import { existsSync } from "node:fs";
import { join } from "node:path";
import { UsageError } from "../../errors.js";
import { exportHuggingFace } from "../../weights/hf-export.js";
import { note, printJson, printLine, spinner, type GlobalOptions } from "../output.js";

interface ExportArgs extends GlobalOptions {
  model: string;
  format: "hf";
  out: string;
  tokenizer: boolean;
  force: boolean;
}

export const exportCommand: CommandModule<GlobalOptions, ExportArgs> = {
  command: "export",
  describe: "export a model to the Hugging Face format",
  builder: (y) =>
    y
      .option("model", {
        alias: "m",
        type: "string",
        demandOption: true,
        describe: "model directory (from pretrain, load-gpt2 or finetune instruct)",
      })
      .option("format", {
        choices: ["hf"] as const,
        default: "hf" as const,
        describe: "hf: a transformers GPT2LMHeadModel directory",
      })
      .option("out", { alias: "o", type: "string", demandOption: true, describe: "directory to write" })
      .option("tokenizer", {
        type: "boolean",
        default: true,
        describe: "also write vocab.json + merges.txt (--no-tokenizer: weights and config only)",
      })
      .option("force", { type: "boolean", default: false, describe: "overwrite an export already in --out" })
      .example(
        "$0 export --model models/gpt2-124m --out hf/gpt2-124m",
        "then in Python: GPT2LMHeadModel.from_pretrained('hf/gpt2-124m')",
      )
      .example("$0 export -m runs/tiny --out hf/tiny --no-tokenizer", "weights and config only"),
  handler: async (args) => {
    if (!args.force && existsSync(join(args.out, "model.safetensors"))) {
      throw new UsageError(
        `${args.out} already holds a model`,
        "choose another --out, or pass --force to overwrite it",
      );
    }
    const spin = spinner(`exporting ${args.model}`);
    let res;
    try {
      res = await exportHuggingFace(args.model, args.out, {
        tokenizer: args.tokenizer,
        onProgress: (p) => (spin.text = `exporting ${p.name} (${p.done}/${p.total})`),
      });
    } finally {
      spin.stop();
    }
    if (args.json) {
      printJson(res);
    } else {
      printLine(`wrote ${args.out} (${res.files.join(", ")})`);
      note(
        `load it with: GPT2LMHeadModel.from_pretrained("${args.out}")${args.tokenizer ? ` and GPT2Tokenizer.from_pretrained("${args.out}")` : ""}`,
      );
    }
  },
};
