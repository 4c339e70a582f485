/**
 * The model's layer table computed from the config alone (no weights allocated), as `llmctl info` prints it.
 * It lists the same layers, in the same order, with the same parameter counts as `buildGPT(cfg).model.summary()`.
 */
import { type GPTConfig, type HeadSpec, countParameters } from "./config.js";

export interface LayerRow {
  name: string;
  type: string;
  /** B and T stand for the batch and sequence dimensions */
  output_shape: (string | number)[];
  parameters: number;
}

export interface ModelSummary {
  layers: LayerRow[];
  parameters: number;
  fp32_bytes: number;
  /** mebibytes (2^20 bytes), as the book's "621.83 MB" */
  fp32_mb: number;
}

export function summarize(cfg: GPTConfig, head: HeadSpec = { kind: "lm" }): ModelSummary {
  const D = cfg.emb_dim;
  const V = cfg.vocab_size;
  const tied = countParameters({ ...cfg, n_layers: 0 }, head);
  const blockParams =
    (countParameters(cfg, head) - countParameters({ ...cfg, n_layers: 0 }, head)) / Math.max(cfg.n_layers, 1);
  const layers: LayerRow[] = [
    { name: "embedding", type: "GPTEmbedding", output_shape: ["B", "T", D], parameters: (V + cfg.context_length) * D },
  ];
  for (let i = 0; i < cfg.n_layers; i++) {
    layers.push({ name: `h_${i}`, type: "TransformerBlock", output_shape: ["B", "T", D], parameters: blockParams });
  }
  layers.push({ name: "ln_f", type: "LayerNorm", output_shape: ["B", "T", D], parameters: 2 * D });
  const headParams = tied - (V + cfg.context_length) * D - 2 * D;
  layers.push(
    head.kind === "classifier"
      ? { name: "score", type: "ClassifierHead", output_shape: ["B", "T", head.numClasses], parameters: headParams }
      : {
          name: "lm_head",
          type: cfg.tied_head ? "LMHead (tied to wte)" : "LMHead",
          output_shape: ["B", "T", V],
          parameters: headParams,
        },
  );
  const parameters = layers.reduce((a, l) => a + l.parameters, 0);
  const fp32Bytes = parameters * 4;
  return { layers, parameters, fp32_bytes: fp32Bytes, fp32_mb: Math.round((fp32Bytes / 2 ** 20) * 100) / 100 };
}
