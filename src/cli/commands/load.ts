import { refuseWritingInputs } from "../../fs-atomic.js";
import type { CommandModule } from "yargs";
import { existsSync } from "node:fs";
import { join } from "node:path";
import { UsageError } from "../../errors.js";
import { architecture, countParameters } from "../../model/config.js";
import { note, printJson, printLine, spinner, verbose, type GlobalOptions } from "../output.js";

const mb = (bytes: number) => `${(bytes / 1e6).toFixed(1)} MB`;

interface LoadArgs extends GlobalOptions {
  from?: string;
  "model-id"?: string;
  out: string;
  force: boolean;
}

export const loadCommand: CommandModule<GlobalOptions, LoadArgs> = {
  command: "load",
  describe: "convert a Hugging Face Llama or Qwen3 checkpoint into an llmctl model",
  builder: (y) =>
    y
      .option("from", {
        type: "string",
        describe: "checkpoint directory: config.json + model.safetensors (or shards + model.safetensors.index.json)",
      })
      .option("model-id", {
        type: "string",
        describe:
          "a Hugging Face model id (ORG/NAME) to download into the llmctl cache and convert (resumes; LLMCTL_GPT2_MIRROR replaces huggingface.co)",
      })
      .option("out", {
        alias: "o",
        type: "string",
        demandOption: true,
        describe: "model directory to write (config.json + model.safetensors + the tokenizer files)",
      })
      .option("force", { type: "boolean", default: false, describe: "overwrite a model already in --out" })
      .example("$0 load --from ~/hf/Llama-3.2-1B --out models/llama-3.2-1b", "F32, F16 or BF16 weights, as float32")
      .example("$0 load --model-id Qwen/Qwen3-0.6B --out models/qwen3-0.6b", "download from Hugging Face, then convert")
      .example("$0 load --from ~/hf/Qwen3-0.6B --out models/qwen3-0.6b", "Qwen3: Llama plus per-head q/k norm"),
  handler: async (args) => {
    const modelId = args["model-id"];
    if (args.from !== undefined && modelId !== undefined)
      throw new UsageError(
        "--from and --model-id cannot be used together",
        "pass --from DIR for a checkpoint on disk, or --model-id ORG/NAME to download one",
      );
    if (args.from === undefined && modelId === undefined)
      throw new UsageError("load needs --from DIR or --model-id ORG/NAME", "pass one of them (see llmctl load --help)");
    const { parseModelId, hfModelCacheDir } = await import("../../weights/hf-download.js");
    if (modelId !== undefined) parseModelId(modelId);
    const from = args.from ?? hfModelCacheDir(modelId!);
    refuseWritingInputs(
      [{ path: args.out, flag: "--out", directory: true }],
      [{ path: from, flag: args.from !== undefined ? "--from" : "--model-id" }],
    );
    if (!args.force && existsSync(join(args.out, "model.safetensors")))
      throw new UsageError(
        `${args.out} already holds a model`,
        "choose another --out, or pass --force to overwrite it",
      );
    const started = performance.now();
    const { openLlamaCheckpoint, writeModelDirFromLlama } = await import("../../weights/hf-llama.js");
    const ac = new AbortController();
    const onSigint = () => ac.abort();
    process.on("SIGINT", onSigint);
    if (modelId !== undefined) {
      const { fetchHfModel } = await import("../../weights/hf-download.js");
      const spin = spinner(`downloading ${modelId}`);
      try {
        await fetchHfModel(modelId, {
          signal: ac.signal,
          onProgress: (p) => {
            spin.text = `downloading ${p.file} (${p.index + 1}/${p.count}) ${mb(p.received)}${p.total ? ` / ${mb(p.total)} (${Math.floor((100 * p.received) / p.total)}%)` : ""}`;
          },
        });
      } catch (err) {
        process.off("SIGINT", onSigint);
        throw err;
      } finally {
        spin.stop();
      }
      verbose(args, `cached in ${from}`);
    }
    const ck = await openLlamaCheckpoint(from);
    const spin = spinner(`converting ${from}`);
    let result;
    try {
      result = await writeModelDirFromLlama(ck, args.out, {
        signal: ac.signal,
        onTensor: (name, done, total) => (spin.text = `converting ${name} (${done}/${total})`),
      });
    } finally {
      spin.stop();
      process.off("SIGINT", onSigint);
      await ck.close();
    }
    const c = result.meta.model;
    const parameters = countParameters(c);
    if (args.json) {
      printJson({
        out: args.out,
        ...(modelId !== undefined ? { model_id: modelId, cached: from } : {}),
        model_type: ck.modelType,
        config: c,
        parameters,
        copied: result.copied,
        seconds: Number(((performance.now() - started) / 1000).toFixed(2)),
      });
      return;
    }
    const a = architecture(c);
    printLine(
      `wrote ${args.out}: ${ck.modelType} (${c.n_layers} layers, emb_dim ${c.emb_dim}, ${c.n_heads} heads, ${a.nKvHeads} key/value heads, ` +
        `head_dim ${a.headDim}, context ${c.context_length}), ${parameters.toLocaleString("en-US")} parameters, ${c.tied_head ? "tied head" : "untied head"}`,
    );
    printLine(`kept ${result.copied.join(", ")}`);
    note(`try: llmctl generate --model ${args.out} --prompt "Every effort moves you" --temperature 0`);
  },
};
