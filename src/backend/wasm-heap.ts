/**
 * wasm's heap: how big it can be, and what happens when it runs out anyway. Upstream cause:
 * @tensorflow/tfjs-backend-wasm 4.22 is wasm32, its heap at most 4 GB, and Emscripten answers a failed allocation
 * with abort() ("Aborted(). Build with -sASSERTIONS for more info.") or, inside XNNPACK, with a trap ("memory
 * access out of bounds"). The module is dead after either: nothing more can be computed or saved in that process.
 * The pre-flights (train/preflight.ts, generate/fit.ts) refuse or adapt what they know will not fit; this names
 * what they missed in one line.
 */
import { BackendError } from "../errors.js";

/** wasm32's address space: the most the wasm backend's heap can grow to */
export const WASM_HEAP_BYTES = 4 * 2 ** 30;

const WASM_ABORT = /^Aborted\(\)|memory access out of bounds/;

/** A WebAssembly abort or trap as llmctl's one-line error; anything else as it is. */
export function wasmHeapError(thrown: unknown): unknown {
  const e = thrown as Error | undefined;
  if (!(e instanceof WebAssembly.RuntimeError) || !WASM_ABORT.test(e.message)) return thrown;
  return new BackendError(
    `the wasm backend ran out of its 4 GB heap (${e.message.split(".")[0]}), so the process could go no further`,
    "run it on the tensorflow backend (llmctl setup tensorflow, then --backend tensorflow); a training run can " +
      "also take a smaller step: --lora RANK, a smaller --batch-size with --grad-accum, a smaller --max-length",
    { cause: e },
  );
}
