import type { CommandModule } from "yargs";
import type { BackendStatus, CudaStatus } from "../../backend/index.js";
import type { AdapterReport } from "../../backend/webgpu.js";
import { printJson, printLine, type GlobalOptions } from "../output.js";

interface DoctorArgs extends GlobalOptions {
  speed: boolean;
}

/** Matmul throughput for ~`seconds` on the currently selected backend. */
async function matmulGflops(seconds: number): Promise<number> {
  const tf = await import("@tensorflow/tfjs");
  const [m, k, n] = [512, 768, 3072];
  const a = tf.randomNormal([m, k]);
  const b = tf.randomNormal([k, n]);
  tf.tidy(() => tf.matMul(a, b)).dispose(); // warm-up (kernel compilation, allocation)
  let runs = 0;
  const start = performance.now();
  while (performance.now() - start < seconds * 1000) {
    const c = tf.matMul(a, b);
    await c.data();
    c.dispose();
    runs++;
  }
  const elapsed = (performance.now() - start) / 1000;
  a.dispose();
  b.dispose();
  return (2 * m * k * n * runs) / elapsed / 1e9;
}

function cudaLine(c: CudaStatus): string {
  const build =
    c.cuda_build === undefined
      ? "CUDA build not recorded (this setup:tensorflow cache predates it: delete ~/.cache/llmctl/tensorflow and re-run setup)"
      : c.cuda_build
        ? `built for CUDA ${c.cuda_version}, cuDNN ${c.cudnn_version}`
        : "built without CUDA (CPU wheel)";
  return `GPU device: ${c.gpu_device ? "yes" : "none"} in TensorFlow's device list; ${build}`;
}

function adapterLines(a: AdapterReport): string[] {
  return [
    `adapter: ${a.description || a.device} (vendor ${a.vendor || "?"}, architecture ${a.architecture || "?"})` +
      (a.software ? ": a software adapter, slower than wasm; `auto` does not choose it" : ""),
    `limits: ${Object.entries(a.limits)
      .map(([k, v]) => `${k} ${v}`)
      .join(", ")}`,
    `features: ${a.features.join(" ")}`,
  ];
}

export const doctorCommand: CommandModule<GlobalOptions, DoctorArgs> = {
  command: "doctor",
  describe: "list the TF.js backends: installed, loadable, version, speed",
  builder: (y) =>
    y
      .option("speed", {
        type: "boolean",
        default: true,
        describe: "measure matmul GFLOP/s on each backend (~2 s each)",
      })
      .example("$0 doctor", "which backends load here, and how fast they are")
      .example("$0 doctor --json --no-speed", "the same as JSON, without the speed test")
      .example("$0 doctor --bf16", "the tensorflow backend's matmul speed with bfloat16 matmuls"),
  handler: async (args) => {
    const { backendThreads, bf16MatmulsAvailable, cpuBf16Support, probeBackends, useBackend } =
      await import("../../backend/index.js");
    const selected = (await useBackend(args.backend, { bf16: args.bf16 })).name;
    const backends: (BackendStatus & { threads?: number; matmul_gflops?: number })[] = await probeBackends({
      bf16: args.bf16,
    });
    for (const b of backends) {
      if (!b.available) continue;
      await useBackend(b.name);
      b.threads = await backendThreads(b.name);
      if (args.speed) b.matmul_gflops = Number((await matmulGflops(2)).toFixed(2));
    }
    if (args.json) {
      printJson({ backends, selected, cpu_bf16: cpuBf16Support() ?? "unknown" });
      return;
    }
    for (const b of backends) {
      const state = b.available ? "ok" : b.installed ? "installed, not loadable" : "not installed";
      const extra = [
        b.version && `v${b.version}`,
        b.library_version && `libtensorflow ${b.library_version}`,
        b.threads !== undefined && `${b.threads} thread(s)`,
        b.matmul_gflops !== undefined && `${b.matmul_gflops} GFLOP/s matmul${b.bf16 ? " (bf16)" : ""}`,
        b.reason,
      ].filter(Boolean);
      printLine(`${b.name.padEnd(11)} ${state.padEnd(24)} ${extra.join(", ")}`);
      if (b.cuda) printLine(`${"".padEnd(12)}${cudaLine(b.cuda)}`);
      if (b.adapter) for (const line of adapterLines(b.adapter)) printLine(`${"".padEnd(12)}${line}`);
    }
    printLine(`selected: ${selected}`);
    const bf16 = cpuBf16Support();
    if (bf16MatmulsAvailable()) printLine(`bfloat16 matmuls: ${bf16} (--bf16 with the tensorflow backend)`);
    else if (bf16 === "AVX512-BF16")
      printLine("bfloat16: AVX512-BF16 without AMX, which oneDNN's --bf16 mode does not use");
  },
};
