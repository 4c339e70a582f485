/**
 * The model's layer table computed from the config alone (no weights allocated), as `llmctl info` prints it.
 * It lists the same layers, in the same order, with the same parameter counts as `buildGPT(cfg).model.summary()`.
 */
import { type GPTConfig, type HeadSpec, NAMES, architecture, parameterShapes } from "./config.js";

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
  const arch = architecture(cfg);
  const n = NAMES[arch.names];
  const normType = arch.norm === "rmsnorm" ? "RMSNorm" : "LayerNorm";
  const out = head.kind === "classifier" ? head.num_classes : cfg.vocab_size;
  const headName = head.kind === "classifier" ? "score" : "lm_head";
  const headType =
    head.kind === "classifier" ? "ClassifierHead" : cfg.tied_head ? `LMHead (tied to ${n.embed})` : "LMHead";
  const rows: [string, string, number][] = [
    [n.embed, "TokenEmbedding", D],
    ...(arch.positions === "learned" ? [["wpe", "PositionEmbedding", D] as [string, string, number]] : []),
    ...Array.from({ length: cfg.n_layers }, (_, i): [string, string, number] => [
      `${n.block}.${i}`,
      "TransformerBlock",
      D,
    ]),
    [n.lnF, normType, D],
    [headName, headType, out],
  ];
  // each layer holds the table's weights under its name: "h.3.attn.c_attn.weight" belongs to h.3
  const params = new Map(rows.map(([name]) => [name, 0]));
  for (const [weight, shape] of parameterShapes(cfg, head)) {
    const layer = weight.split(".", weight.startsWith(`${n.block}.`) ? 2 : 1).join(".");
    params.set(layer, params.get(layer)! + shape.reduce((a, b) => a * b, 1));
  }
  const layers: LayerRow[] = rows.map(([name, type, width]) => ({
    name,
    type,
    output_shape: ["B", "T", width],
    parameters: params.get(name)!,
  }));
  const parameters = layers.reduce((a, l) => a + l.parameters, 0);
  const fp32Bytes = parameters * 4;
  return { layers, parameters, fp32_bytes: fp32Bytes, fp32_mb: Math.round((fp32Bytes / 2 ** 20) * 100) / 100 };
}
