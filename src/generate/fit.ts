/**
 * Before a model is loaded to run (generate, chat, instruct, serve, classify): will it fit the backend? Only wasm
 * has a limit of its own, its 4 GB heap. The weights must fit with room for a forward pass; XNNPACK's packed
 * copy of each weight, which wasm keeps between products so that every generated token reuses it, is kept only
 * where it fits beside the weights (GPT-2 774M: 2.9 GB of weights, so its packs would not). Without them each
 * product packs its weight again: slower, but the model runs.
 */
import * as tf from "@tensorflow/tfjs";
import { countParameters } from "../model/config.js";
import { readModelMeta } from "../model/model-meta.js";
import { keepPackedWeights } from "../backend/transformer-ops.js";
import { WASM_HEAP_BYTES } from "../backend/wasm-heap.js";
import { BackendError } from "../errors.js";

/** what a forward pass and loading need beside the weights: a product's operand, activations, the KV cache */
const HEADROOM = 0.5 * 2 ** 30;

const gb = (bytes: number) => `${(bytes / 2 ** 30).toFixed(1)} GB`;

/** Check the model in `dir` against the active backend before it is loaded; `notice` says what changes. */
export async function fitForInference(dir: string, notice: (text: string) => void): Promise<void> {
  if (tf.getBackend() !== "wasm") return;
  const meta = await readModelMeta(dir);
  const weights = 4 * countParameters(meta.model, meta.head);
  if (weights + HEADROOM > WASM_HEAP_BYTES)
    throw new BackendError(
      `${dir}'s weights take ${gb(weights)}: with a forward pass beside them, more than wasm's 4 GB heap`,
      "run it on the tensorflow backend (llmctl setup tensorflow, then --backend tensorflow)",
    );
  if (2 * weights + HEADROOM <= WASM_HEAP_BYTES) return;
  keepPackedWeights(false);
  notice(
    `note: ${dir}'s weights (${gb(weights)}) leave no room in wasm's 4 GB heap for their packed copies, so each ` +
      "product packs its weight again: slower (--backend tensorflow keeps them)",
  );
}
