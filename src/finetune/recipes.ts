/**
 * The book's recipes for chapters 6 and 7 and the choices they offer, apart from the code that runs them, so
 * the CLI can show them in --help (and check them) without loading TF.js.
 */
import { ConfigError, UsageError } from "../errors.js";
import type { TrainSettings } from "../train/settings.js";
import type { Pooling } from "../model/model-meta.js";

/**
 * What finetuning updates (the rest stays frozen, bit for bit):
 * - `head`: only the new classifier head;
 * - `last-block` (the book's choice): the last transformer block, the final LayerNorm and the head;
 * - `last-2-blocks`: the last two blocks, the final LayerNorm and the head;
 * - `all`: every weight, embeddings included.
 */
export const TRAINABLE_SCOPES = ["head", "last-block", "last-2-blocks", "all"] as const;
export type TrainableScope = (typeof TRAINABLE_SCOPES)[number];

export function checkScope(scope: string): TrainableScope {
  if (!(TRAINABLE_SCOPES as readonly string[]).includes(scope)) {
    throw new UsageError(`unknown trainable scope '${scope}'`, `use one of ${TRAINABLE_SCOPES.join(", ")}`);
  }
  return scope as TrainableScope;
}

/** The book's chapter 6 recipe: AdamW 5e-5, weight decay 0.1, 5 epochs, batch 8, eval every 50 steps over 5 batches. */
export const SPAM_TRAIN_DEFAULTS: Partial<TrainSettings> = {
  epochs: 5,
  batch_size: 8,
  lr: 5e-5,
  weight_decay: 0.1,
  eval_freq: 50,
  eval_iter: 5,
  seed: 123,
};

/** What a spam run writes besides the model and the checkpoint. */
export const ACCURACY_FILE = "accuracy.json";
export const ACCURACY_PLOT_FILE = "accuracy.svg";

/** The book's classifier: the last block and the head trained, the last position classifying, no dropout. */
export const SPAM_DEFAULTS = {
  trainable: "last-block" as TrainableScope,
  pool: "last" as Pooling,
  /** the book loads GPT-2 with drop_rate 0.0 for classification */
  dropRate: 0,
};

/** The book's base model for chapter 7: GPT-2 medium (355M), where `llmctl load-gpt2 --size 355M` puts it. */
export const DEFAULT_BASE_MODEL = "models/gpt2-355m";

/** The book's recipe (chapter 7): AdamW 5e-5, weight decay 0.1, 2 epochs, batch 8, eval every 5 steps over 5 batches. */
export const INSTRUCT_TRAIN_DEFAULTS: Partial<TrainSettings> = {
  epochs: 2,
  batch_size: 8,
  lr: 5e-5,
  weight_decay: 0.1,
  eval_freq: 5,
  eval_iter: 5,
  seed: 123,
};

/** The file the book writes after finetuning: the test entries with the model's answers. */
export const RESPONSES_FILE = "instruction-data-with-response.json";

/**
 * Both finetunes feed the model GPT-2 token ids, and every batch holds 50256 (end of text, and the padding): a
 * model with a smaller vocabulary would fail deep in a gather. Checked once, when the model is loaded.
 */
export function requireGpt2Vocabulary(vocabSize: number, modelDir: string, gpt2VocabSize = 50257): void {
  if (vocabSize >= gpt2VocabSize) return;
  throw new ConfigError(
    `${modelDir} has a vocabulary of ${vocabSize} ids, but finetuning feeds it GPT-2 token ids up to ${gpt2VocabSize - 1} (50256, end of text, pads every batch)`,
    `finetune a model with vocab_size ${gpt2VocabSize}: one pretrained with a GPT-2 config (e.g. --config gpt2-tiny), or from load-gpt2`,
  );
}
