/**
 * LoRA model directories (appendix E), without TF.js: a LoRA run keeps its adapters (and the frozen weights its
 * base lacks, e.g. a new classifier head) in adapters.safetensors and names its base model directory and the
 * sha256 of the base's weights in config.json, so the base is not copied. This module checks that identity and
 * merges the adapters into plain weights for the exporters: W + (alpha/rank)·A·B.
 */
import { createHash } from "node:crypto";
import { createReadStream, existsSync } from "node:fs";
import { join, resolve } from "node:path";
import { FileFormatError } from "../errors.js";
import { readSafetensors, type SafetensorsFile } from "../formats/safetensors.js";
import { type GPTConfig, checkWeightShapes, parameterShapes } from "./config.js";
import { ADAPTERS_FILE, WEIGHTS_FILE, type LoraMeta, type ModelMeta } from "./model-meta.js";

/** sha256 of a file, streamed, in hex. */
export async function sha256File(path: string): Promise<string> {
  const hash = createHash("sha256");
  for await (const chunk of createReadStream(path, { highWaterMark: 1 << 22 })) hash.update(chunk as Buffer);
  return hash.digest("hex");
}

/** The base model directory of the LoRA model in `dir`: lora.base, a relative one taken from `dir`. */
export function loraBaseDir(lora: LoraMeta, dir: string): string {
  return resolve(dir, lora.base);
}

/** The base's weights file, after checking it is the one the LoRA run was trained on. */
export async function checkLoraBase(lora: LoraMeta, dir: string): Promise<string> {
  const path = join(loraBaseDir(lora, dir), WEIGHTS_FILE);
  if (!existsSync(path))
    throw new FileFormatError(
      `${dir} is a LoRA model over ${lora.base}, which has no ${WEIGHTS_FILE} (looked for ${path})`,
      "put the base model directory back where it was trained, or edit lora.base in its config.json",
    );
  const sha = await sha256File(path);
  if (sha !== lora.base_sha256)
    throw new FileFormatError(
      `${dir} is a LoRA model over ${lora.base}, whose weights changed since (sha256 ${sha.slice(0, 12)}…, the run recorded ${lora.base_sha256.slice(0, 12)}…)`,
      "restore the base model the adapters were trained on; adapters over other weights compute something else",
    );
  return path;
}

/**
 * The adapters of a weight: `[prefix, first column]` pairs. c_attn [D,3D] has one for each of q, k and v, over
 * its column blocks; the other projections one over the whole weight; a head (PyTorch's [out,D] layout) one
 * whose product is transposed.
 */
export function adaptersOf(name: string, cfg: GPTConfig): { prefix: string; column: number }[] {
  const D = cfg.emb_dim;
  const proj = /^(h\.\d+\.(?:attn\.c_attn|attn\.c_proj|mlp\.c_fc|mlp\.c_proj))\.weight$/.exec(name);
  if (proj && proj[1].endsWith("c_attn"))
    return ["q", "k", "v"].map((part, i) => ({ prefix: `${proj[1]}.${part}`, column: i * D }));
  if (proj) return [{ prefix: proj[1], column: 0 }];
  if (name === "score.weight" || name === "lm_head.weight") return [{ prefix: name.slice(0, -7), column: 0 }];
  return [];
}

/** The adapter weights' table (name → shape) of a model with LoRA of rank `rank`. */
export function adapterShapes(meta: ModelMeta, rank: number): Map<string, number[]> {
  const cfg = meta.model;
  const out = new Map<string, number[]>();
  const D = cfg.emb_dim;
  const outDim = meta.head.kind === "classifier" ? meta.head.num_classes : cfg.vocab_size;
  const table = parameterShapes({ ...cfg, tied_head: false }, meta.head);
  for (const [name, shape] of table) {
    for (const { prefix } of adaptersOf(name, cfg)) {
      const head = name === "score.weight" || name === "lm_head.weight";
      const [inDim, cols] = head ? [D, outDim] : [shape[0], name.includes("c_attn") ? D : shape[1]];
      out.set(`${prefix}.lora_A`, [inDim, rank]).set(`${prefix}.lora_B`, [rank, cols]);
    }
  }
  return out;
}

/**
 * W with `prefix`'s adapter merged in: W[:, column…] += s·A·B for a projection [in,out], W += s·(A·B)ᵀ for a head
 * [out,D]. In place; float32 products summed in float64.
 */
function mergeInto(
  w: Float32Array,
  shape: number[],
  a: Float32Array,
  b: Float32Array,
  rank: number,
  scale: number,
  column: number,
  head: boolean,
): void {
  const inDim = head ? shape[1] : shape[0];
  const cols = b.length / rank;
  const row = new Float64Array(cols);
  for (let i = 0; i < inDim; i++) {
    row.fill(0);
    for (let r = 0; r < rank; r++) {
      const air = a[i * rank + r];
      if (air === 0) continue;
      for (let j = 0; j < cols; j++) row[j] += air * b[r * cols + j];
    }
    for (let j = 0; j < cols; j++) {
      if (head) w[j * inDim + i] += scale * row[j];
      else w[i * shape[1] + column + j] += scale * row[j];
    }
  }
}

/** What a LoRA model is once merged: a plain model (a tied head whose adapter is merged gets a weight of its own). */
export function mergedMeta(meta: ModelMeta): ModelMeta {
  if (!meta.lora) return meta;
  const { lora, ...plain } = meta;
  const untie = meta.model.tied_head && meta.head.kind === "lm";
  return {
    ...plain,
    model: untie ? { ...meta.model, tied_head: false } : meta.model,
    source: `${meta.source ?? "LoRA finetune"}, LoRA rank ${lora.rank} merged`,
  };
}

/** A model directory's weights as a plain model's, LoRA adapters merged in: what the exporters read. */
export interface ModelWeights {
  /** the plain model (mergedMeta) */
  meta: ModelMeta;
  /** name → shape of every tensor, in the plain model's parameter table */
  shapes: Map<string, number[]>;
  read(name: string): Promise<Float32Array>;
  close(): Promise<void>;
  /** LoRA adapters were merged in */
  merged: boolean;
}

/**
 * Open a model directory's weights, checked against its parameter table before anything is read. A LoRA model
 * reads its base (checked by sha256) and adapters.safetensors, and merges each adapter into its weight.
 */
export async function openModelWeights(dir: string, meta: ModelMeta): Promise<ModelWeights> {
  const plain = mergedMeta(meta);
  const shapes = parameterShapes(plain.model, plain.head);
  const fix = "re-save the model directory";
  if (!meta.lora) {
    const path = join(dir, WEIGHTS_FILE);
    if (!existsSync(path))
      throw new FileFormatError(`${dir} has no ${WEIGHTS_FILE}`, "the save was interrupted; re-create the directory");
    const file = await readSafetensors(path);
    try {
      checkWeightShapes(shapes, new Map([...file.tensors].map(([n, t]) => [n, t.shape])), path, { fix });
    } catch (err) {
      await file.close();
      throw err;
    }
    return { meta: plain, shapes, read: (name) => file.read(name), close: () => file.close(), merged: false };
  }
  const lora = meta.lora;
  const files: SafetensorsFile[] = [];
  try {
    const base = await readSafetensors(await checkLoraBase(lora, dir));
    files.push(base);
    const own = await openAdapters(dir, meta);
    files.push(own);
    const scale = lora.alpha / lora.rank;
    const table = parameterShapes(meta.model, meta.head);
    checkBaseShapes(table, lora, base, join(loraBaseDir(lora, dir), WEIGHTS_FILE));
    const read = async (name: string): Promise<Float32Array> => {
      // an untied copy of a tied head starts from the token embedding
      const from = table.has(name) ? name : "wte.weight";
      const w = Float32Array.from(lora.own_weights.includes(from) ? await own.read(from) : await base.read(from));
      const head = name === "score.weight" || name === "lm_head.weight";
      for (const { prefix, column } of adaptersOf(name, meta.model)) {
        const [a, b] = [await own.read(`${prefix}.lora_A`), await own.read(`${prefix}.lora_B`)];
        mergeInto(w, shapes.get(name)!, a, b, lora.rank, scale, column, head);
      }
      return w;
    };
    const close = async () => void (await Promise.all(files.map((f) => f.close())));
    return { meta: plain, shapes, read, close, merged: true };
  } catch (err) {
    await Promise.all(files.map((f) => f.close()));
    throw err;
  }
}

/** adapters.safetensors of a LoRA directory, checked: every adapter and own weight, nothing else. */
export async function openAdapters(dir: string, meta: ModelMeta): Promise<SafetensorsFile> {
  const lora = meta.lora!;
  const path = join(dir, ADAPTERS_FILE);
  if (!existsSync(path))
    throw new FileFormatError(`${dir} has no ${ADAPTERS_FILE}`, "the save was interrupted; resume or re-run it");
  const file = await readSafetensors(path);
  try {
    const expected = adapterShapes(meta, lora.rank);
    const table = parameterShapes(meta.model, meta.head);
    for (const name of lora.own_weights) {
      if (!table.has(name)) throw new FileFormatError(`${dir}: lora.own_weights names '${name}', not a weight`);
      expected.set(name, table.get(name)!);
    }
    checkWeightShapes(expected, new Map([...file.tensors].map(([n, t]) => [n, t.shape])), path, {
      fix: "the LoRA directory is damaged; re-run the finetuning",
    });
    return file;
  } catch (err) {
    await file.close();
    throw err;
  }
}

/** The base must hold every frozen weight the LoRA model does not keep itself, in the same shape. */
export function checkBaseShapes(
  table: Map<string, number[]>,
  lora: LoraMeta,
  base: SafetensorsFile,
  path: string,
): void {
  const needed = new Map([...table].filter(([name]) => !lora.own_weights.includes(name)));
  const found = new Map([...base.tensors].filter(([n]) => needed.has(n)).map(([n, t]) => [n, t.shape]));
  checkWeightShapes(needed, found, path, { fix: "give the base model the LoRA run was trained on" });
}
