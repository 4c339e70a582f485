/**
 * The one place that picks the TF.js backend. `auto` prefers WebGPU on a hardware adapter, then the native
 * TensorFlow addon (GPU, then CPU build) when it is installed and loads, then WebAssembly, then the pure-JS
 * cpu backend. A software WebGPU adapter (lavapipe, SwiftShader) is slower than wasm: only asked for by name.
 */
import { createRequire } from "node:module";
import { existsSync, readFileSync, readdirSync } from "node:fs";
import { join } from "node:path";
import { availableParallelism } from "node:os";
import * as tf from "@tensorflow/tfjs";
import { cacheRoot } from "../data/download.js";
import { BackendError, UsageError } from "../errors.js";
import { installFreeingBackprop } from "./backprop.js";
import { prepareNodeForTfjsNode } from "./node-compat.js";
import { BACKEND_NAMES } from "./choices.js";
import { verdictFor, type CheckedBackend } from "./verify.js";
import { WEBGPU_PACKAGES, gpuDeviceVisible, probeWebgpu, type AdapterReport } from "./webgpu.js";

export interface BackendStatus {
  name: "tensorflow" | "webgpu" | "wasm" | "cpu";
  /** npm package that provides it */
  package: string;
  installed: boolean;
  available: boolean;
  version?: string;
  /** the native library's version (libtensorflow for the tensorflow backend) */
  library_version?: string;
  /** why it cannot be used */
  reason?: string;
  /** matmuls in bfloat16 (--bf16) */
  bf16?: boolean;
  /** the WebGPU adapter (webgpu backend) */
  adapter?: AdapterReport;
  /** the tensorflow backend: whether libtensorflow lists a GPU device, and the CUDA it was built for */
  cuda?: CudaStatus;
  /** it passed the check (a matmul and a gradient equal to cpu's, in a child process; verify.ts) */
  checked?: boolean;
}

export interface CudaStatus {
  /** TensorFlow's device list (TFE_ContextListDevices) has a GPU */
  gpu_device: boolean;
  /** from the wheel's build_info.py; absent when setup:tensorflow did not record it */
  cuda_build?: boolean;
  cuda_version?: string;
  cudnn_version?: string;
}

export interface BackendOptions {
  /**
   * Called when `auto` passes over a backend that is installed but failed its check or its load, before it
   * tries the next (the CLI prints it as one stderr line).
   */
  onSkip?: (status: BackendStatus, fix: string) => void;
  /**
   * Let oneDNN run float32 matmuls in bfloat16 (AMX-BF16), as PyTorch's CPU autocast does: inputs
   * rounded to bf16, products accumulated in float32, tensors stay float32. Tensorflow backend only.
   */
  bf16?: boolean;
}

/** The CPU's bfloat16 matrix instructions: "AMX-BF16", "AVX512-BF16", "none", or undefined off Linux (unknown). */
export function cpuBf16Support(): string | undefined {
  let flags: string[];
  try {
    flags = (/^flags\s*:(.*)$/m.exec(readFileSync("/proc/cpuinfo", "utf8"))?.[1] ?? "").trim().split(/\s+/);
  } catch {
    return undefined;
  }
  if (flags.includes("amx_bf16")) return "AMX-BF16";
  if (flags.includes("avx512_bf16")) return "AVX512-BF16";
  return "none";
}

/**
 * Whether --bf16 changes anything here: oneDNN honours the bf16 math mode for float32 matmuls only on AMX. With
 * AVX512-BF16 alone it still picks its float32 kernel (ONEDNN_VERBOSE: brg_matmul:avx512_core … attr-fpmath:bf16)
 * and the results are bit-identical.
 */
export function bf16MatmulsAvailable(): boolean {
  return cpuBf16Support() === "AMX-BF16";
}

const require = createRequire(import.meta.url);
const TENSORFLOW_PACKAGES = ["@tensorflow/tfjs-node-gpu", "@tensorflow/tfjs-node"];

function packageVersion(pkg: string): string | undefined {
  try {
    return (require(`${pkg}/package.json`) as { version: string }).version;
  } catch {
    return undefined;
  }
}

function firstLine(err: unknown): string {
  const msg = err instanceof Error ? err.message : String(err);
  return msg.split("\n")[0];
}

async function loadTensorflow(bf16 = false): Promise<BackendStatus> {
  let last: BackendStatus | undefined;
  for (const pkg of TENSORFLOW_PACKAGES) {
    const version = packageVersion(pkg);
    if (!version) continue;
    try {
      // libtensorflow's C++ info logs would otherwise fill stderr
      process.env.TF_CPP_MIN_LOG_LEVEL ??= "2";
      // oneDNN reads its default math mode from the environment when it creates its first primitive
      if (bf16) process.env.ONEDNN_DEFAULT_FPMATH_MODE = "BF16";
      prepareNodeForTfjsNode();
      // Importing the addon registers the 'tensorflow' backend and makes it the active one.
      const addon = (await import(pkg)) as {
        backend(): { binding?: { TF_Version?: string }; isUsingGpuDevice?: boolean };
      };
      const library_version = addon.backend().binding?.TF_Version;
      const cuda = { gpu_device: addon.backend().isUsingGpuDevice === true, ...tensorflowBuildInfo(pkg) };
      return {
        name: "tensorflow",
        package: pkg,
        installed: true,
        available: true,
        version,
        library_version,
        bf16,
        cuda,
      };
    } catch (err) {
      last = { name: "tensorflow", package: pkg, installed: true, available: false, version, reason: firstLine(err) };
    }
  }
  return last ?? installedStatus("tensorflow")!;
}

/**
 * The CUDA and cuDNN versions libtensorflow was built for, from the wheel's tensorflow/python/platform/
 * build_info.py, which setup:tensorflow keeps beside the library (deps/lib is a link to the wheel's tensorflow/).
 */
function tensorflowBuildInfo(pkg: string): Omit<CudaStatus, "gpu_device"> {
  let text: string;
  try {
    text = readFileSync(require.resolve(`${pkg}/deps/lib/python/platform/build_info.py`), "utf8");
  } catch {
    return {};
  }
  const field = (key: string) => new RegExp(`'${key}':\\s*'?([^',}]+)'?`).exec(text)?.[1];
  return {
    cuda_build: field("is_cuda_build") === "True",
    cuda_version: field("cuda_version"),
    cudnn_version: field("cudnn_version"),
  };
}

/** Dawn's adapter, then tfjs-backend-webgpu (it registers 'webgpu' only where navigator.gpu exists). */
async function loadWebgpu(): Promise<BackendStatus> {
  const pkg = WEBGPU_PACKAGES.tfjs;
  const version = packageVersion(pkg);
  const absent = installedStatus("webgpu");
  if (absent) return absent;
  const base = { name: "webgpu" as const, package: pkg, installed: true, version };
  const probe = await probeWebgpu();
  if (!probe.ok) return { ...base, available: false, reason: probe.reason };
  try {
    await import(pkg);
    return { ...base, available: true, adapter: probe.adapter };
  } catch (err) {
    return { ...base, available: false, adapter: probe.adapter, reason: firstLine(err) };
  }
}

async function loadWasm(): Promise<BackendStatus> {
  const pkg = "@tensorflow/tfjs-backend-wasm";
  const version = packageVersion(pkg);
  try {
    await import(pkg);
    const { registerWasmKernels } = await import("./wasm-kernels.js");
    registerWasmKernels();
    return { name: "wasm", package: pkg, installed: true, available: true, version };
  } catch (err) {
    return { name: "wasm", package: pkg, installed: !!version, available: false, version, reason: firstLine(err) };
  }
}

function cpuStatus(): BackendStatus {
  return { name: "cpu", package: "@tensorflow/tfjs", installed: true, available: true, version: tf.version_core };
}

function checkBf16(choice: string): void {
  if (choice === "wasm" || choice === "cpu" || choice === "webgpu") {
    throw new UsageError(
      `--bf16 needs the tensorflow backend, not ${choice}`,
      "drop --bf16, or use --backend tensorflow (`llmctl setup tensorflow`)",
    );
  }
  if (!bf16MatmulsAvailable()) {
    throw new UsageError(
      `--bf16: oneDNN's bfloat16 matmuls need AMX-BF16, and this CPU has ${cpuBf16Support() ?? "unknown"} bfloat16 instructions, so it would change nothing`,
      "drop --bf16",
    );
  }
}

async function load(name: BackendStatus["name"], bf16: boolean): Promise<BackendStatus> {
  if (name === "tensorflow") return loadTensorflow(bf16);
  if (name === "wasm") return loadWasm();
  if (name === "webgpu") return loadWebgpu();
  const { registerCpuKernels } = await import("./cpu-kernels.js");
  registerCpuKernels();
  return cpuStatus();
}

/** The npm packages a backend's check covers (tensorflow: the CPU and GPU builds that are installed). */
function checkedPackages(name: CheckedBackend): string[] {
  if (name === "tensorflow") return TENSORFLOW_PACKAGES.filter((p) => packageVersion(p));
  if (name === "webgpu") return [WEBGPU_PACKAGES.tfjs, WEBGPU_PACKAGES.dawn];
  return ["@tensorflow/tfjs-backend-wasm"];
}

/** Whether `llmctl setup tensorflow` has built tfjs-node in its cache (scripts/setup-tensorflow.sh). */
function tensorflowBuildCached(): boolean {
  const root = process.env.LLMCTL_TF_CACHE ?? join(cacheRoot(), "tensorflow");
  try {
    return readdirSync(root).some((flavor) => existsSync(join(root, flavor, "npm-4.22.0", ".complete")));
  } catch {
    return false;
  }
}

/** Whether the backend's packages are there at all (a backend that is not installed has nothing to check). */
function installedStatus(name: CheckedBackend): BackendStatus | undefined {
  if (name === "tensorflow" && checkedPackages(name).length === 0) {
    return {
      name,
      package: TENSORFLOW_PACKAGES[1],
      installed: false,
      available: false,
      reason: tensorflowBuildCached()
        ? "@tensorflow/tfjs-node is not installed: `npm ci` or `npm install` removed what `llmctl setup tensorflow` " +
          "installed (run it again to restore it: its build is cached, it takes seconds)"
        : "@tensorflow/tfjs-node is not installed (run `llmctl setup tensorflow`)",
    };
  }
  if (name === "webgpu" && !(packageVersion(WEBGPU_PACKAGES.tfjs) && packageVersion(WEBGPU_PACKAGES.dawn))) {
    return {
      name,
      package: WEBGPU_PACKAGES.tfjs,
      installed: false,
      available: false,
      version: packageVersion(WEBGPU_PACKAGES.tfjs),
      reason: `${WEBGPU_PACKAGES.tfjs} and ${WEBGPU_PACKAGES.dawn} (optional dependencies) are not installed`,
    };
  }
  return undefined;
}

/**
 * Loads a backend once its check has passed (verify.ts): one that loads but computes wrong, throws or crashes in
 * the check is reported unavailable, with the check's reason, and never loaded into this process.
 */
async function loadChecked(name: BackendStatus["name"], bf16: boolean, fresh = false): Promise<BackendStatus> {
  if (name === "cpu") return load(name, bf16);
  const absent = installedStatus(name);
  if (absent) return absent;
  const verdict = await verdictFor(name, checkedPackages(name), { fresh });
  if (!verdict.ok) {
    const pkg = checkedPackages(name)[0];
    return {
      name,
      package: pkg,
      installed: true,
      available: false,
      version: packageVersion(pkg),
      reason: verdict.reason,
    };
  }
  return { ...(await load(name, bf16)), checked: true };
}

/** The name of the backend llmctl selected (undefined before useBackend). */
export function activeBackendName(): BackendStatus["name"] | undefined {
  return selected?.name;
}

/** Whether a tfjs-node package is there (its check aside). */
export function tensorflowInstalled(): boolean {
  return checkedPackages("tensorflow").length > 0;
}

/** Load a backend without its check: for the check's own child process (verify.ts). */
export async function loadUnchecked(name: CheckedBackend): Promise<BackendStatus> {
  const status = await load(name, false);
  if (await activate(status)) installFreeingBackprop();
  else status.available = false;
  return status;
}

/**
 * Check (anew) and load every backend that passes, and report on each (for `llmctl doctor`). Throws nothing: a
 * backend that fails says why in its status.
 */
export async function probeBackends(opts: BackendOptions = {}): Promise<BackendStatus[]> {
  const bf16 = opts.bf16 ?? false;
  return [
    await loadChecked("tensorflow", bf16, true),
    await loadChecked("webgpu", bf16, true),
    await loadChecked("wasm", bf16, true),
    cpuStatus(),
  ];
}

/** What to do about a backend that failed its check or could not load. */
export function backendFix(status: BackendStatus): string {
  if (status.name === "tensorflow") {
    return status.installed
      ? "rebuild it with `llmctl setup tensorflow --force`, or pick another with --backend"
      : "run `llmctl setup tensorflow`";
  }
  if (status.name === "webgpu") return "see docs/webgpu.md, or pick another with --backend";
  return "reinstall llmctl's dependencies (npm ci), or use --backend cpu";
}

async function activate(status: BackendStatus): Promise<boolean> {
  if (!status.available) return false;
  // Production mode: no console banners (e.g. the cpu backend's "install tfjs-node" notice) on our stdout/stderr.
  tf.enableProdMode();
  try {
    const ok = await tf.setBackend(status.name);
    if (ok) await tf.ready();
    if (!ok) status.reason = "the backend failed to initialise";
    return ok;
  } catch (err) {
    status.reason = firstLine(err);
    return false;
  }
}

let selected: BackendStatus | undefined;

/** Select and initialise a backend. Throws BackendError when an explicitly requested backend cannot load. */
export async function useBackend(
  choice: string = process.env.LLMCTL_BACKEND ?? "auto",
  opts: BackendOptions = {},
): Promise<BackendStatus> {
  if (!(BACKEND_NAMES as readonly string[]).includes(choice)) {
    throw new UsageError(`unknown backend '${choice}'`, `use one of ${BACKEND_NAMES.join(", ")}`);
  }
  const bf16 = opts.bf16 ?? false;
  if (bf16) checkBf16(choice);
  if (selected && (choice === "auto" || choice === selected.name)) {
    if (bf16 && !selected.bf16) {
      throw new BackendError(
        "--bf16 must be chosen before the tensorflow backend is first loaded: it is loaded already, without it",
        "ask for bf16 in the first useBackend call of the process (the CLI's --bf16 or LLMCTL_BF16=1 does)",
      );
    }
    return selected;
  }
  const order = bf16
    ? (["tensorflow"] as const)
    : choice === "auto"
      ? (["webgpu", "tensorflow", "wasm", "cpu"] as const)
      : [choice as BackendStatus["name"]];
  for (const name of order) {
    if (choice === "auto" && name === "webgpu" && !gpuDeviceVisible()) continue;
    const status = await loadChecked(name, bf16);
    if (choice === "auto" && status.adapter?.software) continue;
    if (await activate(status)) {
      // the model's ops save less for the backward pass; this walk frees what they save as soon as it is used
      installFreeingBackprop();
      selected = status;
      return status;
    }
    if (choice !== "auto" || bf16) {
      const fix = bf16 ? "--bf16 needs it: run `llmctl setup tensorflow`, or drop --bf16" : backendFix(status);
      throw new BackendError(`backend '${name}' cannot be used: ${status.reason}`, fix);
    }
    if (status.installed) opts.onSkip?.(status, backendFix(status));
  }
  throw new BackendError("no TF.js backend could be initialised", "run `llmctl doctor`");
}

/**
 * The threads a loaded backend computes on: TensorFlow's intra-op pool defaults to one per core, the JS cpu
 * backend runs on one, wasm on what its build was given (one in Node, see docs/performance.md); undefined for
 * webgpu, which computes on a GPU.
 */
export async function backendThreads(name: BackendStatus["name"]): Promise<number | undefined> {
  if (name === "tensorflow") return availableParallelism();
  if (name === "cpu") return 1;
  if (name === "webgpu") return undefined;
  const { getThreadsCount } = await import("@tensorflow/tfjs-backend-wasm");
  return getThreadsCount();
}
