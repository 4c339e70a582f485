/**
 * The model directory as exporters read it: its config and its weights, opened and checked (every name and
 * shape of the parameter table) before anything is written, so a bad directory fails with one line instead of
 * leaving half an export behind. A LoRA model reads as the plain model it merges into (../model/lora.ts).
 */
import { readFile } from "node:fs/promises";
import { join } from "node:path";
import { UsageError } from "../errors.js";
import { writeFileAtomic } from "../fs-atomic.js";
import { TOKENIZER_FILE } from "../tokenizer/bpe-file.js";
import { readModelMeta } from "../model/model-meta.js";
import { openModelWeights, type ModelWeights } from "../model/lora.js";

/**
 * Open MODEL_DIR for `export --format FORMAT`; a classifier is refused unless `classifiers` (the llmctl format
 * writes any model). The caller closes it.
 */
export async function openExportSource(
  modelDir: string,
  format: string,
  opts: { classifiers?: boolean } = {},
): Promise<ModelWeights> {
  const meta = await readModelMeta(modelDir);
  if (meta.head.kind !== "lm" && !opts.classifiers) {
    throw new UsageError(
      `${modelDir} is a classifier (head '${meta.head.kind}'); export --format ${format} writes language models only`,
      "export the language model the classifier was finetuned from",
    );
  }
  const family = meta.model.family ?? "gpt2";
  const families = format === "llmctl" ? null : ["gpt2", "llama", "qwen3"];
  if (families && !families.includes(family)) {
    throw new UsageError(
      `${modelDir} is a ${family} model; export --format ${format} writes ${families.join(", ")} models only`,
      "export it with --format llmctl",
    );
  }
  return openModelWeights(modelDir, meta);
}

/**
 * `export --format llmctl`: MODEL_DIR as a plain model directory in OUT (a LoRA model's adapters merged into
 * its weights, so it loads without its base), written one tensor at a time.
 */
export async function exportModelDir(
  modelDir: string,
  outDir: string,
  opts: { onProgress?: (p: { done: number; total: number; name: string }) => void } = {},
): Promise<{ out: string; tensors: number; merged: boolean }> {
  const src = await openExportSource(modelDir, "llmctl", { classifiers: true });
  try {
    const { writeModelDir } = await import("../model/model-dir.js");
    let done = 0;
    // the model's own tokenizer first: a config.json naming tokenizer.json never stands without it
    if (src.meta.tokenizer === TOKENIZER_FILE)
      await writeFileAtomic(join(outDir, TOKENIZER_FILE), await readFile(join(modelDir, TOKENIZER_FILE)));
    await writeModelDir(outDir, src.meta, async (name) => {
      const data = await src.read(name);
      opts.onProgress?.({ done: ++done, total: src.shapes.size, name });
      return data;
    });
    return { out: outDir, tensors: src.shapes.size, merged: src.merged };
  } finally {
    await src.close();
  }
}
