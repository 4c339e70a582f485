/**
 * A backend is usable only once it has computed right. Loading is not enough: on Node 23+ tfjs-node 4.22 loads,
 * registers and then fails its first op; a corrupt or half-built addon can fail to load, or take the process down.
 * So each native or compiled backend (tensorflow, webgpu, wasm) is tried once in a child process: a matmul and a
 * gradient, compared with the pure-JS cpu backend. A crash there costs the child, not the command. The verdict is
 * kept per install (versions, Node, the addon's size and mtime) in `$LLMCTL_CACHE/backend-checks.json`, so a
 * command pays for the check only after something changed.
 */
import { spawnSync } from "node:child_process";
import { createHash } from "node:crypto";
import { readFileSync, statSync, realpathSync, readdirSync } from "node:fs";
import { createRequire } from "node:module";
import { dirname, join } from "node:path";
import { fileURLToPath } from "node:url";
import * as tf from "@tensorflow/tfjs";
import { cacheRoot } from "../data/download.js";
import { writeFileAtomic } from "../fs-atomic.js";

export type CheckedBackend = "tensorflow" | "webgpu" | "wasm";

export interface Verdict {
  ok: boolean;
  /** why not, one line */
  reason?: string;
  /** the largest |difference| from cpu, when it computed */
  max_error?: number;
}

/** The largest difference from cpu that still counts as the same result (float32 sums in another order). */
const TOLERANCE = 1e-4;
const CHILD_TIMEOUT_MS = 120_000;

const require = createRequire(import.meta.url);

/** Fixed inputs: a [4, 8] · [8, 3] product, and the gradient of sum(tanh(a·b)²) with respect to b. */
function problem(): { a: tf.Tensor2D; b: tf.Tensor2D } {
  const values = (n: number, seed: number) => Array.from({ length: n }, (_, i) => Math.sin(seed * (i + 1)) * 0.8);
  return { a: tf.tensor2d(values(32, 1.3), [4, 8]), b: tf.tensor2d(values(24, 2.9), [8, 3]) };
}

async function compute(): Promise<number[]> {
  const { a, b } = problem();
  const product = tf.matMul(a, b);
  const grad = tf.grad((w: tf.Tensor) => tf.tanh(tf.matMul(a, w)).square().sum())(b);
  const out = [...(await product.data()), ...(await grad.data())];
  tf.dispose([a, b, product, grad]);
  return out;
}

/**
 * Runs the check on the active backend and on cpu, in this process: in the child that `verdictFor` starts
 * (check-child.ts), after it has loaded the backend.
 */
export async function computeAgainstCpu(): Promise<Verdict> {
  const got = await compute();
  const backend = tf.getBackend();
  await tf.setBackend("cpu");
  const want = await compute();
  await tf.setBackend(backend);
  const maxError = Math.max(...got.map((g, i) => (Number.isFinite(g) ? Math.abs(g - want[i]) : Infinity)));
  if (!(maxError <= TOLERANCE)) {
    return { ok: false, max_error: maxError, reason: `computed wrong results (max |difference from cpu| ${maxError})` };
  }
  return { ok: true, max_error: maxError };
}

/** What the verdict depends on: llmctl's TF.js, Node, the package's version and its native files' size and mtime. */
export function installKey(name: CheckedBackend, packages: string[]): string {
  // llmctl's own backend code too: what it does before a backend loads (node-compat.ts) is part of the verdict
  const here = fileURLToPath(new URL(".", import.meta.url));
  const ownCode = readdirSync(here)
    .filter((f) => f.endsWith(".js"))
    .map((f) => statSync(join(here, f)).mtimeMs);
  const parts: unknown[] = [name, process.version, process.platform, process.arch, tf.version_core, ownCode];
  for (const pkg of packages) {
    try {
      const dir = dirname(require.resolve(`${pkg}/package.json`));
      parts.push(dir, (JSON.parse(readFileSync(join(dir, "package.json"), "utf8")) as { version: string }).version);
      for (const file of nativeFiles(dir)) {
        const s = statSync(file);
        parts.push(file, s.size, s.mtimeMs);
      }
    } catch {
      parts.push(pkg, "unresolved");
    }
  }
  // a GPU adapter comes and goes with drivers (Vulkan's ICD files) and device nodes, not with a package
  if (name === "webgpu") parts.push(...["/usr/share/vulkan/icd.d", "/etc/vulkan/icd.d", "/dev/dri"].map(listing));
  return createHash("sha256").update(JSON.stringify(parts)).digest("hex").slice(0, 32);
}

function listing(dir: string): string[] {
  try {
    return readdirSync(dir).sort();
  } catch {
    return [];
  }
}

/** The package's own .node and .wasm files, and the libraries they link (libtensorflow through deps/lib). */
function nativeFiles(dir: string, depth = 0): string[] {
  const found: string[] = [];
  let entries;
  try {
    entries = readdirSync(dir, { withFileTypes: true });
  } catch {
    return found;
  }
  for (const e of entries) {
    const path = join(dir, e.name);
    if (e.isDirectory() && depth < 4 && e.name !== "node_modules" && e.name !== "include") {
      found.push(...nativeFiles(path, depth + 1));
    } else if (/\.(node|wasm)$|\.so(\.\d+)*$/.test(e.name) || (e.isSymbolicLink() && e.name === "lib")) {
      let real = path;
      try {
        real = realpathSync(path);
      } catch {
        // a dangling link (libtensorflow's cache deleted) is part of the key as it is
      }
      if (e.isSymbolicLink() && e.name === "lib") found.push(...nativeFiles(real, depth + 1));
      else found.push(real);
    }
  }
  return found.sort();
}

function checksFile(): string {
  return join(cacheRoot(), "backend-checks.json");
}

function readChecks(): Record<string, Verdict> {
  try {
    return JSON.parse(readFileSync(checksFile(), "utf8")) as Record<string, Verdict>;
  } catch {
    return {};
  }
}

/** Best effort: an unwritable cache only means the next command checks again. */
async function saveCheck(key: string, verdict: Verdict): Promise<void> {
  const checks = { ...readChecks(), [key]: verdict };
  await writeFileAtomic(checksFile(), JSON.stringify(checks, null, 1)).catch(() => {
    // nothing to do: the check is repeated next time
  });
}

/** The verdict on a backend for this install: cached, or found now by a child process. */
export async function verdictFor(
  name: CheckedBackend,
  packages: string[],
  opts: { fresh?: boolean } = {},
): Promise<Verdict> {
  const key = installKey(name, packages);
  if (!opts.fresh) {
    const cached = readChecks()[key];
    if (cached) return cached;
  }
  const verdict = checkInChild(name);
  await saveCheck(key, verdict);
  return verdict;
}

function checkInChild(name: CheckedBackend): Verdict {
  const script = fileURLToPath(new URL("./check-child.js", import.meta.url));
  const run = spawnSync(process.execPath, [script, name], {
    encoding: "utf8",
    timeout: CHILD_TIMEOUT_MS,
    env: { ...process.env, TF_CPP_MIN_LOG_LEVEL: process.env.TF_CPP_MIN_LOG_LEVEL ?? "2" },
    maxBuffer: 16 << 20,
  });
  const line = run.stdout?.split("\n").find((l) => l.startsWith("{"));
  if (line) return JSON.parse(line) as Verdict;
  if (run.error) return { ok: false, reason: `its check did not finish: ${run.error.message}` };
  const lastErr = run.stderr
    ?.split("\n")
    .map((l) => l.trim())
    .filter(Boolean)
    .pop();
  const how = run.signal ? `was killed by ${run.signal}` : `exited with ${run.status}`;
  return { ok: false, reason: `its check ${how}${lastErr ? `: ${lastErr.slice(0, 200)}` : ""}` };
}
