/**
 * The child process of a backend's check (verify.ts): `node check-child.js NAME` loads NAME without its check,
 * computes, and prints the verdict as one JSON line. If the backend takes the process down, the parent says so.
 */
import { loadUnchecked } from "./index.js";
import { computeAgainstCpu, type CheckedBackend, type Verdict } from "./verify.js";

const report = (v: Verdict) => process.stdout.write(`${JSON.stringify(v)}\n`);
const firstLine = (err: unknown) => (err instanceof Error ? err.message : String(err)).split("\n")[0];
let loaded = false;
try {
  const status = await loadUnchecked(process.argv[2] as CheckedBackend);
  loaded = status.available;
  report(loaded ? await computeAgainstCpu() : { ok: false, reason: status.reason });
} catch (err) {
  report({
    ok: false,
    reason: loaded ? `it loads, but its check (a matmul and a gradient) failed: ${firstLine(err)}` : firstLine(err),
  });
}
