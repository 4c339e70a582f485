/**
 * The model directory as exporters read it: a language model's config and its weights file, opened and
 * checked (every name and shape of the parameter table) before anything is written, so a bad directory fails
 * with one line instead of leaving half an export behind.
 */
import { join } from "node:path";
import { UsageError } from "../errors.js";
import { checkWeightShapes, parameterShapes } from "../model/config.js";
import { WEIGHTS_FILE, readModelMeta, type ModelMeta } from "../model/model-meta.js";
import { readSafetensors, type SafetensorsFile } from "../formats/safetensors.js";

export interface ExportSource {
  meta: ModelMeta;
  /** open: the caller closes it */
  weights: SafetensorsFile;
  /** our name → shape of every tensor the weights hold (lm head only) */
  shapes: Map<string, number[]>;
}

/** Open MODEL_DIR's language model for `export --format FORMAT`; a classifier is refused. */
export async function openExportSource(modelDir: string, format: string): Promise<ExportSource> {
  const meta = await readModelMeta(modelDir);
  if (meta.head.kind !== "lm") {
    throw new UsageError(
      `${modelDir} is a classifier (head '${meta.head.kind}'); export --format ${format} writes language models only`,
      "export the language model the classifier was finetuned from",
    );
  }
  const path = join(modelDir, WEIGHTS_FILE);
  const weights = await readSafetensors(path);
  const shapes = parameterShapes(meta.model);
  try {
    const found = new Map([...weights.tensors].map(([name, info]) => [name, info.shape]));
    checkWeightShapes(shapes, found, path, { fix: "re-save the model directory" });
  } catch (err) {
    await weights.close();
    throw err;
  }
  return { meta, weights, shapes };
}
