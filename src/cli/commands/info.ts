import type { CommandModule } from "yargs";
import { existsSync, statSync } from "node:fs";
import { join } from "node:path";
import { architecture, loadConfigFile } from "../../model/config.js";
import { summarize } from "../../model/summary.js";
import { printJson, printLine, type GlobalOptions } from "../output.js";

interface InfoArgs extends GlobalOptions {
  target: string;
}

const fmt = (n: number) => n.toLocaleString("en-US");

export const infoCommand: CommandModule<GlobalOptions, InfoArgs> = {
  command: "info <target>",
  describe: "show a model's layers, parameter count and size (from a config or a model directory)",
  builder: (y) =>
    y
      .positional("target", {
        type: "string",
        demandOption: true,
        describe: "a config file, a bundled config name, or a model directory",
      })
      .example("$0 info gpt2-124m", "163,009,536 parameters, 621.83 MB in fp32 (no weights are allocated)")
      .example("$0 info configs/gpt2-tiny.json --json", '{"parameters": ..., "fp32_mb": ...}')
      .example("$0 info runs/tiny", "the model directory written by pretrain"),
  handler: async (args) => {
    const target = args.target;
    const isDir = existsSync(target) && statSync(target).isDirectory();
    const { readModelMeta, WEIGHTS_FILE } = await import("../../model/model-meta.js");
    // Only shapes are needed: neither a config nor a model directory's weights are loaded.
    const { model, head, kind, meta } = isDir
      ? await readModelMeta(target).then((m) => ({
          model: m.model,
          head: m.head,
          kind: "model-dir" as const,
          meta: m,
        }))
      : {
          model: loadConfigFile(target).model,
          head: { kind: "lm" as const },
          kind: "config" as const,
          meta: undefined,
        };
    const s = summarize(model, head);
    const weightsBytes =
      isDir && existsSync(join(target, WEIGHTS_FILE)) ? statSync(join(target, WEIGHTS_FILE)).size : undefined;
    if (args.json) {
      printJson({
        path: target,
        kind,
        parameters: s.parameters,
        fp32_bytes: s.fp32_bytes,
        fp32_mb: s.fp32_mb,
        config: model,
        head: meta ? meta.head : { kind: "lm" },
        ...(meta?.source ? { source: meta.source } : {}),
        ...(meta?.prompt_style ? { prompt_style: meta.prompt_style } : {}),
        ...(meta?.lora ? { lora: meta.lora } : {}),
        ...(weightsBytes !== undefined ? { weights_file_bytes: weightsBytes } : {}),
        layers: s.layers,
      });
      return;
    }
    const rows = s.layers.map((l) => [l.name, l.type, `[${l.output_shape.join(", ")}]`, fmt(l.parameters)]);
    const header = ["layer", "type", "output shape", "parameters"];
    // a reduce, not Math.max(...rows): a model of many layers would overflow the stack with its arguments
    const widths = header.map((h, i) => rows.reduce((w, r) => Math.max(w, r[i].length), h.length));
    const line = (r: string[]) => r.map((c, i) => (i === 3 ? c.padStart(widths[i]) : c.padEnd(widths[i]))).join("  ");
    printLine(`${target} (${kind === "config" ? "config" : "model directory"})`);
    printLine(
      `vocab ${model.vocab_size}, context ${model.context_length}, emb ${model.emb_dim}, ${model.n_layers} layers, ${model.n_heads} heads, ` +
        `drop ${model.drop_rate}, qkv_bias ${model.qkv_bias}, head ${head.kind === "classifier" ? `classifier (${head.num_classes} classes)` : model.tied_head ? "tied" : "untied"}`,
    );
    if (model.family !== undefined && model.family !== "gpt2") {
      const a = architecture(model);
      printLine(
        `${model.family}: ${a.norm} (eps ${a.normEps}), ${a.mlp} (hidden ${a.hiddenDim}), ${a.positions === "rope" ? `RoPE θ ${a.ropeTheta}${a.ropeScaling ? " with llama3 scaling" : ""}` : "learned positions"}, ` +
          `${a.nKvHeads} key/value heads, head_dim ${a.headDim}${a.qkNorm ? ", q/k norm" : ""}${a.attentionBias ? ", attention bias" : ""}`,
      );
    }
    if (meta?.source) printLine(`source: ${meta.source}`);
    if (meta?.lora)
      printLine(
        `LoRA rank ${meta.lora.rank}, alpha ${meta.lora.alpha}, over ${meta.lora.base} (sha256 ${meta.lora.base_sha256.slice(0, 12)}…)`,
      );
    printLine();
    printLine(line(header));
    printLine(widths.map((w) => "-".repeat(w)).join("  "));
    for (const r of rows) printLine(line(r));
    printLine();
    printLine(`parameters: ${fmt(s.parameters)}`);
    printLine(`fp32 size:  ${s.fp32_mb.toFixed(2)} MB`);
    if (weightsBytes !== undefined) printLine(`weights file: ${(weightsBytes / 2 ** 20).toFixed(2)} MB`);
  },
};
