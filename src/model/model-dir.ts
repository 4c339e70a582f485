/**
 * The model directory: the one on-disk form of a model that pretrain, load-gpt2, finetune, generate and export
 * share. `config.json` (what the model is, ./model-meta.ts) + `model.safetensors` (F32 weights under Hugging Face
 * GPT-2 names). Documented in docs/model-directory.md.
 */
import * as tf from "@tensorflow/tfjs";
import { existsSync } from "node:fs";
import { join } from "node:path";
import { FileFormatError } from "../errors.js";
import { writeFileAtomic } from "../fs-atomic.js";
import { readSafetensors, writeSafetensors } from "../formats/safetensors.js";
import { checkWeightShapes, parameterShapes } from "./config.js";
import { type GPTModel, buildGPT } from "./gpt.js";
import {
  CONFIG_FILE,
  WEIGHTS_FILE,
  headSpecOf,
  modelMetaFor,
  readModelMeta,
  type ModelExtras,
  type ModelMeta,
} from "./model-meta.js";

/**
 * Write a model directory: DIR/model.safetensors then DIR/config.json, each atomically (temporary file + fsync +
 * rename), so an interrupted write leaves the previous files whole. The tensors are the parameter table of
 * `meta`'s model and head; `read(name)` is called for one tensor at a time as the writer reaches it, so peak
 * memory is one tensor, not the model.
 */
export async function writeModelDir(
  dir: string,
  meta: ModelMeta,
  read: (name: string) => Promise<Float32Array>,
  opts: { signal?: AbortSignal } = {},
): Promise<ModelMeta> {
  const entries = [...parameterShapes(meta.model, headSpecOf(meta.head))].map(([name, shape]) => ({
    name,
    shape,
    data: () => read(name),
  }));
  await writeSafetensors(join(dir, WEIGHTS_FILE), entries, { format: "pt" }, { signal: opts.signal });
  await writeFileAtomic(join(dir, CONFIG_FILE), JSON.stringify(meta, null, 2) + "\n");
  return meta;
}

/** Save a model into DIR (see writeModelDir); weights are fetched from the backend one tensor at a time. */
export async function saveModelDir(dir: string, gpt: GPTModel, extra: ModelExtras = {}): Promise<ModelMeta> {
  const named = gpt.namedWeights();
  return writeModelDir(
    dir,
    modelMetaFor(gpt, extra),
    async (name) => (await named.get(name)!.read().data()) as Float32Array,
  );
}

/** Load a model directory: validates config.json, then the weights' names and shapes before reading any data. */
export async function loadModelDir(dir: string): Promise<{ meta: ModelMeta; gpt: GPTModel }> {
  const meta = await readModelMeta(dir);
  const path = join(dir, WEIGHTS_FILE);
  if (!existsSync(path))
    throw new FileFormatError(
      `${dir} has no ${WEIGHTS_FILE}`,
      "the save was interrupted or the file was removed; re-create the model directory",
    );
  const file = await readSafetensors(path);
  try {
    const gpt = buildGPT(meta.model, { head: headSpecOf(meta.head), initialize: false });
    try {
      const found = new Map<string, number[]>();
      for (const [name, info] of file.tensors) found.set(name, info.shape);
      checkWeightShapes(gpt.weightShapes(), found, path);
      for (const [name, variable] of gpt.namedWeights()) {
        const data = await file.read(name);
        tf.tidy(() => {
          variable.write(tf.tensor(data, variable.shape as number[], "float32"));
        });
      }
      return { meta, gpt };
    } catch (err) {
      gpt.dispose();
      throw err;
    }
  } finally {
    await file.close();
  }
}
