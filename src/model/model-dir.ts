/**
 * The model directory: the one on-disk form of a model that pretrain, load-gpt2, finetune, generate and export
 * share. `config.json` (what the model is, ./model-meta.ts) + `model.safetensors` (F32 weights under Hugging Face
 * GPT-2 names). Documented in docs/model-directory.md.
 */
import * as tf from "@tensorflow/tfjs";
import { existsSync } from "node:fs";
import { join, resolve } from "node:path";
import { FileFormatError, UsageError } from "../errors.js";
import { writeFileAtomic } from "../fs-atomic.js";
import { readSafetensors, writeSafetensors, type SafetensorsFile } from "../formats/safetensors.js";
import { checkWeightShapes, parameterShapes } from "./config.js";
import { type GPTModel, buildGPT } from "./gpt.js";
import {
  ADAPTERS_FILE,
  CONFIG_FILE,
  WEIGHTS_FILE,
  modelMetaFor,
  readModelMeta,
  type LoraBase,
  type ModelExtras,
  type ModelMeta,
} from "./model-meta.js";
import { checkBaseShapes, checkLoraBase, openAdapters, sha256File } from "./lora.js";

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
  const entries = [...parameterShapes(meta.model, meta.head)].map(([name, shape]) => ({
    name,
    shape,
    data: () => read(name),
  }));
  await writeSafetensors(join(dir, WEIGHTS_FILE), entries, { format: "pt" }, { signal: opts.signal });
  await writeFileAtomic(join(dir, CONFIG_FILE), JSON.stringify(meta, null, 2) + "\n");
  return meta;
}

/**
 * Save a model into DIR (see writeModelDir); weights are fetched from the backend one tensor at a time. A LoRA
 * model (extra.lora names its base) writes DIR/adapters.safetensors instead: its adapters and own weights only.
 */
export async function saveModelDir(dir: string, gpt: GPTModel, extra: ModelExtras = {}): Promise<ModelMeta> {
  const named = gpt.namedWeights();
  const meta = modelMetaFor(gpt, extra);
  const read = async (v: tf.LayerVariable) => (await v.read().data()) as Float32Array;
  if (!meta.lora) return writeModelDir(dir, meta, (name) => read(named.get(name)!));
  const own = [...meta.lora.own_weights.map((n) => [n, named.get(n)!] as const), ...gpt.adapterWeights()];
  const entries = own.map(([name, v]) => ({ name, shape: v.shape as number[], data: () => read(v) }));
  await writeSafetensors(join(dir, ADAPTERS_FILE), entries, { format: "pt" });
  await writeFileAtomic(join(dir, CONFIG_FILE), JSON.stringify(meta, null, 2) + "\n");
  return meta;
}

/**
 * The identity a LoRA model over the plain model directory `dir` records: its path, the sha256 of its weights,
 * and which of `gpt`'s weights it lacks (a classifier head put on it), which the LoRA directory keeps itself.
 */
export async function loraBaseFor(dir: string, gpt: GPTModel): Promise<LoraBase> {
  const meta = await readModelMeta(dir);
  if (meta.lora)
    throw new UsageError(
      `${dir} is a LoRA model itself`,
      `merge it first (llmctl export --format llmctl --model ${dir} --out DIR), then finetune DIR`,
    );
  const path = join(dir, WEIGHTS_FILE);
  const file = await readSafetensors(path);
  try {
    const own = [...gpt.weightShapes().keys()].filter((name) => !file.tensors.has(name));
    return { base: resolve(dir), base_sha256: await sha256File(path), own_weights: own };
  } finally {
    await file.close();
  }
}

/** Load a model directory: validates config.json, then the weights' names and shapes before reading any data. */
export async function loadModelDir(dir: string): Promise<{ meta: ModelMeta; gpt: GPTModel }> {
  const meta = await readModelMeta(dir);
  if (meta.lora) return loadLoraDir(dir, meta);
  const path = join(dir, WEIGHTS_FILE);
  if (!existsSync(path))
    throw new FileFormatError(
      `${dir} has no ${WEIGHTS_FILE}`,
      "the save was interrupted or the file was removed; re-create the model directory",
    );
  const file = await readSafetensors(path);
  try {
    return await buildWithWeights(meta, (gpt) => {
      const found = new Map<string, number[]>();
      for (const [name, info] of file.tensors) found.set(name, info.shape);
      checkWeightShapes(gpt.weightShapes(), found, path);
      return { targets: gpt.namedWeights(), read: (name) => file.read(name) };
    });
  } finally {
    await file.close();
  }
}

/**
 * The one loadWeights: build the model described by `meta` without initialising it, let `plan` check it and name
 * the weights to fill and where each is read from, write them; on any failure the model is disposed.
 */
async function buildWithWeights(
  meta: ModelMeta,
  plan: (gpt: GPTModel) => {
    targets: Iterable<[string, tf.LayerVariable]>;
    read: (name: string) => Promise<Float32Array>;
  },
): Promise<{ meta: ModelMeta; gpt: GPTModel }> {
  const gpt = buildGPT(meta.model, { head: meta.head, initialize: false });
  try {
    const { targets, read } = plan(gpt);
    for (const [name, variable] of targets) {
      const data = await read(name);
      tf.tidy(() => {
        variable.write(tf.tensor(data, variable.shape as number[], "float32"));
      });
    }
    return { meta, gpt };
  } catch (err) {
    gpt.dispose();
    throw err;
  }
}

/**
 * A LoRA directory: the frozen weights from its base (after checking the base's sha256), its own weights and
 * adapters from adapters.safetensors. The model comes back as it trained: adapters on, all else frozen.
 */
async function loadLoraDir(dir: string, meta: ModelMeta): Promise<{ meta: ModelMeta; gpt: GPTModel }> {
  const lora = meta.lora!;
  const basePath = await checkLoraBase(lora, dir);
  const base = await readSafetensors(basePath);
  let own: SafetensorsFile | null = null;
  try {
    own = await openAdapters(dir, meta);
    const adapters = own;
    return await buildWithWeights(meta, (gpt) => {
      checkBaseShapes(gpt.weightShapes(), lora, base, basePath);
      gpt.addLora({ rank: lora.rank, alpha: lora.alpha });
      const from = (name: string) => (name.includes(".lora_") || lora.own_weights.includes(name) ? adapters : base);
      return { targets: [...gpt.namedWeights(), ...gpt.adapterWeights()], read: (name) => from(name).read(name) };
    });
  } finally {
    await base.close();
    await own?.close();
  }
}
