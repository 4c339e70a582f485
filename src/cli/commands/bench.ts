import type { CommandModule } from "yargs";
import { existsSync } from "node:fs";
import { selectBackend } from "../backend.js";
import { loadConfigFile } from "../../model/config.js";
import { LlmctlError, UsageError } from "../../errors.js";
import type { BenchRecord, BenchShape } from "../../bench/bench.js";
import type { LlamaCppRecord } from "../../bench/llama-cpp.js";
import { note, printJson, printLine, spinner, verbose, type GlobalOptions } from "../output.js";

interface BenchArgs extends GlobalOptions {
  config: string[];
  steps: number;
  torch: boolean;
  python?: string;
  "llama-cpp": boolean;
  "reference-threads"?: number;
}

const DEFAULT_CONFIGS = ["gpt2-tiny", "gpt2-124m-ch05"];

interface Variant {
  backend: string;
  bf16: boolean;
}

/**
 * What is measured when --backend is not given: tensorflow, tensorflow with --bf16 when the CPU has bfloat16
 * instructions, and wasm (cpu is left out: minutes per 124M step). With --bf16, only tensorflow with it.
 */
async function variants(a: BenchArgs): Promise<Variant[]> {
  if (a.backend !== "auto") return [{ backend: a.backend, bf16: a.bf16 }];
  if (a.bf16) return [{ backend: "tensorflow", bf16: true }];
  const { bf16MatmulsAvailable } = await import("../../backend/index.js");
  return [
    { backend: "tensorflow", bf16: false },
    ...(bf16MatmulsAvailable() ? [{ backend: "tensorflow", bf16: true }] : []),
    { backend: "wasm", bf16: false },
  ];
}

function shapeOf(name: string): BenchShape {
  const { model, train } = loadConfigFile(name);
  const batch = typeof train.batch_size === "number" ? train.batch_size : 2;
  const context = typeof train.max_length === "number" ? train.max_length : model.context_length;
  return { model: name.replace(/\.json$/, "").replace(/^.*\//, ""), cfg: model, batch, context };
}

/** One (backend, config) pair in a fresh process, so its peak RSS is its own. */
async function benchChild(v: Variant, config: string, steps: number): Promise<BenchRecord | string> {
  const args = [
    process.argv[1],
    "bench",
    "--backend",
    v.backend,
    "--config",
    config,
    "--steps",
    String(steps),
    "--json",
    "--no-torch",
    "--no-llama-cpp",
  ];
  if (v.bf16) args.push("--bf16");
  const { runProgram: run } = await import("../../run-program.js");
  const { code, stdout, stderr } = await run(process.execPath, args);
  const line = stdout.trim().split("\n").pop() ?? "";
  if (code === 0 && line.startsWith("{")) return JSON.parse(line) as BenchRecord;
  return stderr.trim().split("\n").filter(Boolean).pop() ?? `exit code ${code}`;
}

function human(r: BenchRecord): string {
  const vs = r.vs_reference as Record<string, number> | undefined;
  const ratio = vs ? ` (${vs.train}× / ${vs.generate}× / ${vs.generate_no_cache}× PyTorch)` : "";
  return (
    `${(r.backend + (r.precision === "bf16" ? " bf16" : "")).padEnd(25)} ${r.model.padEnd(16)} train ${r.train_tokens_per_second} tok/s, generate ${r.generate_tokens_per_second} tok/s ` +
    `(no cache ${r.generate_tokens_per_second_no_cache}), peak RSS ${r.peak_rss_mb} MB, ${r.threads === undefined ? "" : `${r.threads} thread(s), `}load ${r.load_average}/${r.cores}${ratio}`
  );
}

export const benchCommand: CommandModule<GlobalOptions, BenchArgs> = {
  command: "bench",
  describe: "measure training and generation speed",
  builder: (y) =>
    y
      .option("config", {
        alias: "c",
        type: "string",
        array: true,
        default: DEFAULT_CONFIGS,
        describe: "configs to measure (their model and batch shape)",
      })
      .option("steps", { type: "number", default: 3, describe: "timed training steps (after one warm-up step)" })
      .option("torch", {
        type: "boolean",
        default: true,
        describe: "also run ../shared/bench/torch_ref.py on the same shapes (--no-torch to skip)",
      })
      .option("python", {
        type: "string",
        describe: "python with PyTorch for the reference (default /usr/bin/python3)",
      })
      .option("llama-cpp", {
        type: "boolean",
        default: true,
        describe:
          "also time llama.cpp's generation (F32, F16) on the same weights when node-llama-cpp is installed (--no-llama-cpp to skip)",
      })
      .option("reference-threads", {
        type: "number",
        describe:
          "threads PyTorch and llama.cpp get, default 2 (their threads spin at barriers: on a busy machine fewer can be faster)",
      })
      .check((a) => {
        if (!(Number.isInteger(a.steps) && a.steps >= 1))
          throw new UsageError(`--steps must be an integer ≥ 1, got ${a.steps}`);
        // a python named by path that is not there is a typo, not a machine without PyTorch
        if (a.python !== undefined && a.python.includes("/") && !existsSync(a.python))
          throw new UsageError(`--python ${a.python} does not exist`, "give the path of a python with torch");
        const n = a["reference-threads"];
        if (n !== undefined && !(Number.isInteger(n) && n >= 1))
          throw new UsageError(`--reference-threads must be an integer ≥ 1, got ${n}`);
        return true;
      })
      .example("$0 bench --json", "every backend that loads × gpt2-tiny and the 124M ch05 setting, plus PyTorch")
      .example("$0 bench --backend wasm --config gpt2-tiny", "one backend, one model, measured in this process")
      .example("$0 bench --bf16", "tensorflow with bfloat16 matmuls against PyTorch's bf16 autocast"),
  handler: async (a) => {
    const { benchShape, ratios } = await import("../../bench/bench.js");
    const configs = a.config;
    // one backend and one config: measure here (this process's peak RSS is the measurement's)
    if (a.backend !== "auto" && configs.length === 1) {
      const shape = shapeOf(configs[0]);
      await selectBackend(a);
      const spin = spinner(`benchmarking ${shape.model} on ${a.backend}`);
      let rec: BenchRecord;
      try {
        rec = await benchShape(shape, { trainSteps: a.steps, bf16: a.bf16, onProgress: (t) => (spin.text = t) });
      } finally {
        spin.stop();
      }
      const ref = a.torch ? await reference(a, shape, a.bf16) : undefined;
      if (ref) {
        rec.reference = ref.backend;
        rec.vs_reference = ratios(rec, ref);
      }
      for (const r of ref ? [rec, ref] : [rec]) {
        if (a.json) printJson(r);
        else printLine(human(r));
      }
      if (a["llama-cpp"]) await llamaCpp(a, shape);
      return;
    }
    const todo = await variants(a);
    for (const config of configs) {
      const shape = shapeOf(config);
      // each precision is compared with PyTorch at the same precision (fp32, or bf16 autocast), run once
      const refs = new Map<boolean, BenchRecord | undefined>();
      let measured = 0;
      for (const v of todo) {
        const label = `${v.backend}${v.bf16 ? " --bf16" : ""}`;
        const spin = spinner(`benchmarking ${shape.model} on ${label}`);
        const rec = await benchChild(v, config, a.steps);
        spin.stop();
        if (typeof rec === "string") {
          note(`${label}: skipped (${rec.replace(/^llmctl: /, "")})`);
          continue;
        }
        measured += 1;
        if (a.torch && !refs.has(v.bf16)) refs.set(v.bf16, await reference(a, shape, v.bf16));
        const ref = refs.get(v.bf16);
        if (ref) {
          rec.reference = ref.backend;
          rec.vs_reference = ratios(rec, ref);
        }
        if (a.json) printJson(rec);
        else printLine(human(rec));
      }
      for (const ref of refs.values()) {
        if (!ref) continue;
        if (a.json) printJson(ref);
        else printLine(human(ref));
      }
      if (a["llama-cpp"] && measured > 0) {
        // the weights are built here with llmctl's initialisation, on the default backend
        await selectBackend({ ...a, bf16: false });
        await llamaCpp(a, shape);
      }
      if (measured === 0)
        throw new LlmctlError(
          `no backend could be benchmarked for ${shape.model}`,
          "run `llmctl doctor` to see which backends load",
        );
    }
  },
};

async function reference(a: BenchArgs, shape: BenchShape, bf16: boolean): Promise<BenchRecord | undefined> {
  const { benchTorch, pythonHasTorch, torchRefPath } = await import("../../bench/bench.js");
  const script = torchRefPath();
  if (!script) {
    verbose(a, "PyTorch reference skipped: ../shared/bench/torch_ref.py not found (set LLMCTL_TORCH_REF)");
    return undefined;
  }
  const python = a.python ?? "/usr/bin/python3";
  if (!(await pythonHasTorch(python))) {
    note(`PyTorch reference skipped: ${python} has no torch (apt-get install -y python3-torch libopenblas0-pthread)`);
    return undefined;
  }
  const spin = spinner(`PyTorch${bf16 ? " bf16" : ""} reference for ${shape.model}`);
  try {
    return await benchTorch(python, script, shape, { bf16, steps: a.steps, threads: a["reference-threads"] });
  } catch (err) {
    note(`PyTorch reference failed: ${(err as Error).message}`);
    return undefined;
  } finally {
    spin.stop();
  }
}

/** llama.cpp's generation records for this shape, or a note saying why there are none. */
async function llamaCpp(a: BenchArgs, shape: BenchShape): Promise<void> {
  const spin = spinner(`llama.cpp reference for ${shape.model}`);
  let res: LlamaCppRecord[] | string;
  try {
    const { benchLlamaCpp } = await import("../../bench/llama-cpp.js");
    res = await benchLlamaCpp(shape, { threads: a["reference-threads"], onProgress: (t) => (spin.text = t) });
  } catch (err) {
    res = `failed: ${(err as Error).message}`;
  } finally {
    spin.stop();
  }
  if (typeof res === "string") {
    note(`llama.cpp reference skipped: ${res}`);
    return;
  }
  for (const r of res) {
    if (a.json) printJson(r);
    else
      printLine(
        `${`llama.cpp ${r.precision}`.padEnd(25)} ${r.model.padEnd(16)} generate ${r.generate_tokens_per_second} tok/s (${r.threads} threads, load ${r.load_average}/${r.cores}; ${r.path})`,
      );
  }
}
