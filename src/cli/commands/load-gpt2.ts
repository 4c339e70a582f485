import { refuseWritingInputs } from "../../fs-atomic.js";
import type { CommandModule } from "yargs";
import { existsSync } from "node:fs";
import { join } from "node:path";
import { FileFormatError, UsageError } from "../../errors.js";
import { countParameters } from "../../model/config.js";
import { GPT2_HPARAMS, GPT2_SIZES, type Gpt2Size } from "../../weights/gpt2-sizes.js";
import { fetchGpt2, type Gpt2Source } from "../../weights/gpt2-download.js";
import { note, printJson, printLine, spinner, verbose, type GlobalOptions } from "../output.js";

interface LoadGpt2Args extends GlobalOptions {
  size?: Gpt2Size;
  source: Gpt2Source;
  from?: string;
  out: string;
  heads?: number;
  force: boolean;
}

const mb = (n: number) => `${(n / 1e6).toFixed(1)} MB`;

export const loadGpt2Command: CommandModule<GlobalOptions, LoadGpt2Args> = {
  command: "load-gpt2",
  describe: "convert OpenAI's GPT-2 weights into an llmctl model",
  builder: (y) =>
    y
      .option("size", {
        choices: GPT2_SIZES,
        describe: "which GPT-2 to download (default 124M); with --from, checked against the files",
      })
      .option("source", {
        choices: ["openai", "hf"] as const,
        default: "openai" as const,
        describe: "download OpenAI's TensorFlow checkpoint or Hugging Face's safetensors",
      })
      .option("from", {
        type: "string",
        describe: "convert local files instead: an OpenAI checkpoint dir, a Hugging Face dir or a .safetensors file",
      })
      .option("out", {
        alias: "o",
        type: "string",
        demandOption: true,
        describe: "model directory to write (config.json + model.safetensors)",
      })
      .option("heads", {
        type: "number",
        describe: "attention heads, for a bare .safetensors whose width is not a multiple of 64",
      })
      .option("force", { type: "boolean", default: false, describe: "overwrite a model already in --out" })
      .example(
        "$0 load-gpt2 --out models/gpt2-124m",
        "download OpenAI's 124M checkpoint (~500 MB, cached) and convert it",
      )
      .example(
        "$0 load-gpt2 --size 355M --source hf --out models/gpt2-355m",
        "the same from Hugging Face's model.safetensors",
      )
      .example(
        "$0 load-gpt2 --from ~/gpt2/124M --out models/gpt2-124m",
        "convert files you already have (hparams.json + model.ckpt.*)",
      )
      .example('$0 generate --model models/gpt2-124m --prompt "Every effort moves" --temperature 0', "then use it")
      .check((a) => {
        if (a.heads !== undefined && (!Number.isInteger(a.heads) || a.heads <= 0))
          throw new UsageError(`--heads must be a positive integer, got ${a.heads}`);
        return true;
      }),
  handler: async (args) => {
    if (args.from !== undefined) {
      refuseWritingInputs([{ path: args.out, flag: "--out", directory: true }], [{ path: args.from, flag: "--from" }]);
    }
    if (!args.force && existsSync(join(args.out, "model.safetensors"))) {
      throw new UsageError(
        `${args.out} already holds a model`,
        "choose another --out, or pass --force to overwrite it",
      );
    }
    // Ctrl-C: a download keeps its part file (the next run resumes), a conversion removes its temporary file.
    const ac = new AbortController();
    const onSigint = () => ac.abort();
    process.on("SIGINT", onSigint);
    try {
      await loadGpt2(args, ac.signal);
    } finally {
      process.off("SIGINT", onSigint);
    }
  },
};

async function loadGpt2(args: LoadGpt2Args, signal: AbortSignal): Promise<void> {
  const started = performance.now();
  const { gpt2Config, openGpt2Checkpoint, writeModelDirFromCheckpoint } = await import("../../weights/gpt2.js");
  let path = args.from;
  let source: string;
  let cacheDir: string | undefined;
  if (path === undefined) {
    const size = args.size ?? "124M";
    const spin = spinner(`downloading GPT-2 ${size} from ${args.source}`);
    try {
      path = cacheDir = await fetchGpt2(size, args.source, {
        signal,
        onProgress: (p) => {
          spin.text = `downloading ${p.file} (${p.index + 1}/${p.count}) ${mb(p.received)}${p.total ? ` / ${mb(p.total)} (${Math.floor((100 * p.received) / p.total)}%)` : ""}`;
        },
      });
    } finally {
      spin.stop();
    }
    verbose(args, `cached in ${path}`);
    source = `${args.source === "openai" ? "openai" : "huggingface"} gpt2-${size}`;
  } else {
    source = path;
  }

  let ck;
  try {
    ck = await openGpt2Checkpoint(path, { nHeads: args.heads });
  } catch (err) {
    // A cached download that does not parse will not get better by running again: say where it is.
    if (cacheDir && err instanceof FileFormatError)
      throw new FileFormatError(err.message, `delete ${cacheDir} and run the command again to re-download`, {
        cause: err,
      });
    throw err;
  }
  try {
    if (args.size !== undefined) {
      const want = gpt2Config(GPT2_HPARAMS[args.size]);
      const got = ck.config;
      if (want.emb_dim !== got.emb_dim || want.n_layers !== got.n_layers || want.n_heads !== got.n_heads) {
        throw new UsageError(
          `${path} holds a model with emb_dim ${got.emb_dim}, ${got.n_layers} layers, ${got.n_heads} heads, not GPT-2 ${args.size}`,
          "drop --size, or point --from at the right files",
        );
      }
    }
    if (args.from !== undefined)
      source = `${ck.format === "openai" ? "openai" : "huggingface"} checkpoint ${args.from}`;
    const spin = spinner(`converting ${path}`);
    let meta;
    try {
      meta = await writeModelDirFromCheckpoint(ck, args.out, {
        source,
        signal,
        onProgress: (p) =>
          (spin.text = `converting ${p.name} (${p.done}/${p.total}, ${Math.floor((100 * p.bytes) / p.totalBytes)}%)`),
      });
    } catch (err) {
      if (cacheDir && err instanceof FileFormatError)
        throw new FileFormatError(err.message, `delete ${cacheDir} and run the command again to re-download`, {
          cause: err,
        });
      throw err;
    } finally {
      spin.stop();
    }
    const parameters = countParameters(meta.model);
    const seconds = (performance.now() - started) / 1000;
    if (args.json) {
      printJson({
        out: args.out,
        format: ck.format,
        source,
        config: meta.model,
        parameters,
        seconds: Number(seconds.toFixed(2)),
      });
    } else {
      const c = meta.model;
      printLine(
        `wrote ${args.out}: GPT-2 (${c.n_layers} layers, emb_dim ${c.emb_dim}, ${c.n_heads} heads, context ${c.context_length}), ` +
          `${parameters.toLocaleString("en-US")} parameters, ${c.tied_head ? "tied head" : "untied head"}${c.qkv_bias ? ", qkv bias" : ""}`,
      );
      note(`try: llmctl generate --model ${args.out} --prompt "Every effort moves" --temperature 0`);
    }
  } finally {
    await ck.close();
  }
}
