// test: first backend pass only (runs wasm itself, to its heap's end)
/**
 * When the wasm heap runs out anyway (the pre-flight estimates; a real allocation decides), the real trap reaches
 * the user as one line with the ways out, not "unexpected error".
 */
import { test } from "node:test";
import assert from "node:assert/strict";
import * as tf from "@tensorflow/tfjs";
import { useBackend } from "../src/backend/index.js";
import { wasmHeapError } from "../src/backend/wasm-heap.js";
import { BackendError, errorLine } from "../src/errors.js";

test("wasm's heap running out (a real trap, 1 GB tensors kept until the 4 GB heap ends) is one line naming the ways out", async () => {
  await useBackend("wasm");
  const kept: tf.Tensor[] = [];
  let thrown: unknown;
  try {
    for (let i = 0; i < 8; i++) kept.push(tf.add(tf.zeros([256, 1024, 1024]), 1));
  } catch (err) {
    thrown = err;
  }
  assert.ok(thrown instanceof WebAssembly.RuntimeError, `the heap ran out with a WebAssembly trap: ${String(thrown)}`);
  const err = wasmHeapError(thrown);
  assert.ok(err instanceof BackendError);
  assert.match(
    errorLine(err),
    /^the wasm backend ran out of its 4 GB heap \((memory access out of bounds|Aborted\(\))\), so the process could go no further — run it on the tensorflow backend \(llmctl setup tensorflow, then --backend tensorflow\); a training run can also take a smaller step: --lora RANK/,
  );
  const other = new RangeError("Invalid typed array length");
  assert.equal(wasmHeapError(other), other, "other errors pass through as they are");
});
