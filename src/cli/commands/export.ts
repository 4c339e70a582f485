import type { CommandModule } from "yargs";
import { modelOption } from "../load-model.js";
import { existsSync } from "node:fs";
import { dirname, join } from "node:path";
import { refuseWritingInputs } from "../../fs-atomic.js";
import { loraBaseDir } from "../../model/lora.js";
import { readModelMeta } from "../../model/model-meta.js";
import { UsageError } from "../../errors.js";
import { GGUF_DTYPES, type GgufDtype } from "../../formats/gguf.js";
import { interruptOnSignals, note, printJson, printLine, spinner, type GlobalOptions } from "../output.js";

interface ExportArgs extends GlobalOptions {
  model: string;
  format: "hf" | "gguf" | "llmctl";
  out: string;
  dtype?: GgufDtype;
  tokenizer: boolean;
  force: boolean;
}

export const exportCommand: CommandModule<GlobalOptions, ExportArgs> = {
  command: "export",
  describe: "export a model to the Hugging Face format, or to GGUF for llama.cpp and Ollama",
  builder: (y) =>
    y
      .option(
        "model",
        modelOption("model directory (from pretrain, load-gpt2 or finetune; LoRA adapters are merged in)"),
      )
      .option("format", {
        choices: ["hf", "gguf", "llmctl"] as const,
        default: "hf" as const,
        describe:
          "hf: a transformers directory (GPT2LMHeadModel, LlamaForCausalLM, Qwen3ForCausalLM); gguf: one file for llama.cpp / Ollama; llmctl: a plain model directory (LoRA adapters merged in)",
      })
      .option("out", {
        alias: "o",
        type: "string",
        demandOption: true,
        describe: "directory to write (hf), or the .gguf file (gguf; a Modelfile is written beside it)",
      })
      .option("dtype", {
        choices: GGUF_DTYPES,
        describe: "gguf: how the matrices are stored (default f32; norms, biases and positions stay f32)",
      })
      .option("tokenizer", {
        type: "boolean",
        default: true,
        describe: "hf: also write vocab.json + merges.txt (--no-tokenizer: weights and config only)",
      })
      .option("force", { type: "boolean", default: false, describe: "overwrite an export already in --out" })
      .example(
        "$0 export --model models/gpt2-124m --out hf/gpt2-124m",
        "then in Python: GPT2LMHeadModel.from_pretrained('hf/gpt2-124m')",
      )
      .example("$0 export -m runs/tiny --out hf/tiny --no-tokenizer", "weights and config only")
      .example(
        "$0 export -m models/gpt2-124m --format gguf --dtype f16 --out gguf/gpt2-124m.gguf",
        "then: llama-cli -m gguf/gpt2-124m.gguf, or ollama create gpt2-124m -f gguf/Modelfile",
      )
      .example(
        "$0 export -m models/spam-lora --format llmctl --out models/spam-merged",
        "a LoRA run as a plain model directory that loads without its base",
      ),
  handler: async (args) => {
    await refuseExportOverInputs(args);
    if (args.format === "gguf") return exportGgufCommand(args);
    if (args.dtype !== undefined)
      throw new UsageError("--dtype applies to --format gguf", `leave it out for --format ${args.format} (float32)`);
    if (args.format === "llmctl") return exportModelDirCommand(args);
    const taken = HF_FILES.filter((f) => existsSync(join(args.out, f)));
    if (!args.force && taken.length > 0) {
      throw new UsageError(
        `${args.out} already holds ${taken.join(", ")}, which the export would replace`,
        "choose another --out, or pass --force to overwrite them",
      );
    }
    const { exportHuggingFace } = await import("../../weights/hf-export.js");
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
        `load it with: ${(res.config.architectures as string[] | undefined)?.[0] ?? "GPT2LMHeadModel"}.from_pretrained("${args.out}")${args.tokenizer ? ` and AutoTokenizer.from_pretrained("${args.out}")` : ""}`,
      );
    }
  },
};

/** What `export --format hf` writes into its directory (weights/hf-export.ts). */
const HF_FILES = [
  "config.json",
  "special_tokens_map.json",
  "chat_template.jinja",
  "generation_config.json",
  "model.safetensors",
  "vocab.json",
  "merges.txt",
  "tokenizer.json",
  "tokenizer_config.json",
];

/**
 * The export reads the model directory and, for a LoRA model, its base: --out may be neither, nor hold either
 * (`--force` or not), and a GGUF's Modelfile may not land on them either.
 */
async function refuseExportOverInputs(args: ExportArgs): Promise<void> {
  const inputs = [{ path: args.model, flag: "--model" }];
  try {
    const meta = await readModelMeta(args.model);
    if (meta.lora) inputs.push({ path: loraBaseDir(meta.lora, args.model), flag: "its LoRA base" });
  } catch {
    // a model directory that does not read is reported by the export itself
  }
  const outputs =
    args.format === "gguf"
      ? [
          { path: args.out, flag: "--out" },
          { path: join(dirname(args.out), "Modelfile"), flag: "the Modelfile beside --out" },
        ]
      : [{ path: args.out, flag: "--out", directory: true }];
  refuseWritingInputs(outputs, inputs);
}

async function exportModelDirCommand(args: ExportArgs): Promise<void> {
  if (!args.force && existsSync(join(args.out, "config.json")))
    throw new UsageError(`${args.out} already holds a model`, "choose another --out, or pass --force to overwrite it");
  const { exportModelDir } = await import("../../weights/export-source.js");
  const spin = spinner(`exporting ${args.model}`);
  let res;
  try {
    res = await exportModelDir(args.model, args.out, {
      onProgress: (p) => (spin.text = `exporting ${p.name} (${p.done}/${p.total})`),
    });
  } finally {
    spin.stop();
  }
  if (args.json) printJson(res);
  else printLine(`wrote ${args.out} (${res.tensors} tensors${res.merged ? ", LoRA adapters merged" : ""})`);
}

async function exportGgufCommand(args: ExportArgs): Promise<void> {
  if (!args.tokenizer)
    throw new UsageError("a GGUF file always carries its tokenizer", "leave out --no-tokenizer for --format gguf");
  const modelfile = join(dirname(args.out), "Modelfile");
  if (!args.force && existsSync(args.out))
    throw new UsageError(`${args.out} already exists`, "choose another --out, or pass --force to overwrite it");
  if (!args.force && existsSync(modelfile))
    throw new UsageError(
      `${modelfile} already exists, and the export writes an Ollama Modelfile beside ${args.out}`,
      "choose an --out in another directory, or pass --force to overwrite the Modelfile too",
    );
  const { exportGguf } = await import("../../weights/gguf-export.js");
  const spin = spinner(`exporting ${args.model}`);
  const interrupt = interruptOnSignals(
    (sig) => `\n${sig === "Ctrl-C" ? "" : `${sig}: `}stopping the export (${sig} again to quit at once)…`,
  );
  let res;
  try {
    res = await exportGguf(args.model, args.out, {
      dtype: args.dtype,
      signal: interrupt.signal,
      onProgress: (p) => (spin.text = `exporting ${p.name} (${p.done}/${p.total})`),
    });
  } finally {
    interrupt.release();
    spin.stop();
  }
  if (res.f16_fallback.length > 0) {
    note(
      `note: ${res.f16_fallback.length} matrices are F16, not Q8_0 (their rows are not a multiple of 32 long): ${res.f16_fallback.join(", ")}`,
    );
  }
  if (args.json) {
    printJson(res);
    return;
  }
  printLine(
    `wrote ${res.out} (${res.dtype}, ${res.tensors} tensors, ${(res.bytes / 1e6).toFixed(1)} MB) and ${res.modelfile}`,
  );
  note(
    `run it: llama-cli -m ${res.out} -c ${res.context_length}   (llama.cpp stops hard past ${res.context_length} positions)`,
  );
  printLine(`ollama create ${res.ollama_name} -f ${res.modelfile}`);
}
