/**
 * A finetune's model, as both chapter 6 and 7 jobs load it: a model directory that takes GPT-2 token ids; on a
 * new run a plain (not LoRA) model, made ready by the job (`prepare`: spam puts its head on), then given its LoRA
 * adapters with their base recorded. A resumed run's directory holds all of that already (its meta.lora).
 */
import type { GPTModel, LoraSettings } from "../model/gpt.js";
import { loadModelDir, loraBaseFor } from "../model/model-dir.js";
import type { LoraBase, ModelMeta } from "../model/model-meta.js";
import type { JobRecord } from "../train/run-dir.js";
import type { JobRun } from "../train/run.js";
import { UsageError } from "../errors.js";
import { requireGpt2Vocabulary } from "./recipes.js";

export async function loadFinetuneModel(
  dir: string,
  run: JobRun<JobRecord>,
  opts: { lora?: LoraSettings; prepare?: (gpt: GPTModel, meta: ModelMeta) => GPTModel },
): Promise<{ gpt: GPTModel; meta: ModelMeta; loraBase?: LoraBase }> {
  run.emit({ kind: "status", text: `loading ${dir}` });
  const { meta, gpt: loaded } = await loadModelDir(dir);
  let gpt = loaded;
  try {
    if (meta.tokenizer !== "gpt2")
      throw new UsageError(
        `${dir} has its own tokenizer (tokenizer.json); the finetunes read GPT-2 tokens`,
        "finetune a model with GPT-2's tokenizer (load-gpt2, or pretrain without --tokenizer)",
      );
    requireGpt2Vocabulary(gpt.config.vocab_size, dir);
    if (!run.resume && meta.lora)
      throw new UsageError(
        `${dir} is a LoRA model`,
        `merge it into a plain model directory first (llmctl export --format llmctl --model ${dir} --out DIR)`,
      );
    if (!run.resume && opts.prepare) gpt = opts.prepare(loaded, meta);
  } catch (err) {
    loaded.dispose();
    throw err;
  }
  if (gpt !== loaded) loaded.dispose();
  run.own(gpt);
  if (run.resume || !opts.lora) return { gpt, meta, loraBase: meta.lora };
  const loraBase = await loraBaseFor(dir, gpt);
  gpt.addLora(opts.lora, run.settings.seed);
  return { gpt, meta, loraBase };
}
