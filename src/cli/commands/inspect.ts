import type { Argv, CommandModule } from "yargs";
import { UsageError } from "../../errors.js";
import { selectBackend } from "../backend.js";
import { loadModelShowingProgress, modelOption } from "../load-model.js";
import { printJson, printLine, type GlobalOptions } from "../output.js";
import { getTokenizer, type Tokenizer } from "../../tokenizer/index.js";
import { modelTokenizer } from "../../tokenizer/bpe-file.js";
import type { GPTModel } from "../../model/gpt.js";

interface ModelViewArgs extends GlobalOptions {
  model: string;
  prompt: string;
}

/** A token as people read it in a table: quoted, with newlines spelled out. */
const quoted = (text: string) => JSON.stringify(text);

function table(header: string[], rows: string[][], alignRight: number[] = []): string[] {
  const widths = header.map((h, i) => rows.reduce((w, r) => Math.max(w, r[i].length), h.length));
  const line = (r: string[]) =>
    r
      .map((c, i) => (alignRight.includes(i) ? c.padStart(widths[i]) : c.padEnd(widths[i])))
      .join("  ")
      .trimEnd();
  return [line(header), ...rows.map(line)];
}

/** A vector as PyTorch prints a long one: the first and last three values. */
function vector(v: number[]): string {
  const f = (x: number) => x.toFixed(4).padStart(7);
  return v.length <= 8
    ? `[${v.map(f).join(",")}]`
    : `[${v.slice(0, 3).map(f).join(",")}, …,${v.slice(-3).map(f).join(",")}]`;
}

function modelViewOptions<T>(y: Argv<T>) {
  return y
    .option("model", modelOption("model directory (from pretrain, load-gpt2 or finetune)"))
    .option("prompt", { alias: "p", type: "string", demandOption: true, describe: "the text to look at" });
}

/** Load the model, encode the prompt (which must fit the context), run `view`, dispose the model. */
async function withPrompt<R>(
  args: ModelViewArgs,
  view: (gpt: GPTModel, tok: Tokenizer, ids: number[]) => R | Promise<R>,
  opts: { languageModel?: boolean } = {},
): Promise<R> {
  if (args.prompt.length === 0)
    throw new UsageError("the prompt is empty", 'give some text, e.g. --prompt "Every effort moves you"');
  await selectBackend(args);
  const loaded = await loadModelShowingProgress(args.model);
  try {
    if (opts.languageModel) {
      const { requireLanguageModel } = await import("../../generate/generate.js");
      requireLanguageModel(loaded.gpt, args.model);
    }
    const tok = await modelTokenizer(args.model, loaded.meta.tokenizer);
    const ids = tok.encode(args.prompt);
    const ctx = loaded.gpt.config.context_length;
    if (ids.length > ctx)
      throw new UsageError(
        `the prompt has ${ids.length} tokens, more than the model's context of ${ctx}`,
        `shorten it to at most ${ctx} tokens`,
      );
    return await view(loaded.gpt, tok, ids);
  } finally {
    loaded.gpt.dispose();
  }
}

interface WindowsArgs extends GlobalOptions {
  file: string;
  "max-length": number;
  stride: number;
  "batch-size": number;
  batches: number;
}

const windowsCommand: CommandModule<GlobalOptions, WindowsArgs> = {
  command: "windows",
  describe: "chapter 2's dataloader: batches of input and target token ids, with their text",
  builder: (y) =>
    y
      .option("file", {
        alias: "f",
        type: "string",
        default: "the-verdict",
        describe: "a text file, or a dataset name (fetched like pretrain --data)",
      })
      .option("max-length", { type: "number", default: 4, describe: "tokens per window" })
      .option("stride", { type: "number", default: 1, describe: "tokens between the starts of windows" })
      .option("batch-size", { type: "number", default: 1, describe: "windows per batch" })
      .option("batches", { type: "number", default: 1, describe: "how many batches to show, from the first" })
      .example("$0 inspect windows --max-length 4 --stride 1", "the book's first batch: [[40, 367, 2885, 1464]] → …")
      .example("$0 inspect windows --batch-size 8 --max-length 4 --stride 4", "the book's 8×4 batch"),
  handler: async (args) => {
    const { resolveDataPath } = await import("../../data/datasets.js");
    const { readTextFile } = await import("../../formats/file.js");
    const { windowBatches } = await import("../../inspect/dataloader.js");
    const path = await resolveDataPath(args.file, { flag: "--file" });
    const tok = getTokenizer();
    const text = await readTextFile(path);
    if (text.length === 0) throw new UsageError(`${args.file} is empty`, "give a file with some text");
    const view = windowBatches(tok.encode(text), tok, {
      maxLength: args["max-length"],
      stride: args.stride,
      batchSize: args["batch-size"],
      batches: args.batches,
    });
    if (args.json) return printJson({ file: path, ...view });
    printLine(
      `${args.file}: ${view.tokens} tokens, ${view.windows} windows of ${args["max-length"]} (stride ${args.stride}), ` +
        `${view.batches_per_epoch} batches of ${args["batch-size"]} per epoch`,
    );
    view.batches.forEach((b, k) => {
      printLine();
      printLine(`batch ${k + 1}: inputs and targets [${b.inputs.length}, ${args["max-length"]}]`);
      const rows = b.inputs.map((input, r) => [
        String(r),
        input.join(" "),
        b.targets[r].join(" "),
        quoted(b.input_text[r]),
        quoted(b.target_text[r]),
      ]);
      for (const l of table(["row", "input ids", "target ids", "input text", "target text"], rows)) printLine(`  ${l}`);
    });
  },
};

const embeddingsCommand: CommandModule<GlobalOptions, ModelViewArgs> = {
  command: "embeddings",
  describe: "chapter 2's input embeddings: token + position embeddings and their sum, with shapes",
  builder: (y) =>
    modelViewOptions(y).example(
      '$0 inspect embeddings -m models/gpt2-124m -p "Every effort moves you"',
      "4 tokens → [4, 768] token, position and input embeddings",
    ),
  handler: async (args) => {
    const { embeddingsView } = await import("../../inspect/embeddings.js");
    const view = await withPrompt(args, (gpt, tok, ids) => embeddingsView(gpt, tok, ids));
    if (args.json) return printJson(view);
    const { shapes } = view;
    const [T, D] = shapes.input_embeddings;
    printLine(`${T} tokens`);
    const rows = view.ids.map((id, t) => [String(t), String(id), quoted(view.tokens[t])]);
    for (const l of table(["position", "id", "token"], rows, [0, 1])) printLine(`  ${l}`);
    const matrix = (title: string, m: number[][]) => {
      printLine();
      printLine(title);
      m.forEach((row, t) => printLine(`  ${String(t).padStart(3)}  ${vector(row)}`));
    };
    matrix(`token embeddings: wte [${shapes.wte.join(", ")}] at the ids → [${T}, ${D}]`, view.token_embeddings);
    matrix(
      `position embeddings: wpe [${shapes.wpe.join(", ")}] rows 0..${T - 1} → [${T}, ${D}]`,
      view.position_embeddings,
    );
    matrix(`input embeddings = token + position → [${T}, ${D}] (what block 0 sees)`, view.input_embeddings);
    printLine();
    printLine(
      `an embedding lookup is a one-hot product: onehot(ids) [${view.one_hot.shape.join(", ")}] · wte ` +
        `[${shapes.wte.join(", ")}] = wte[ids], max |difference| ${view.one_hot.max_abs_difference}`,
    );
  },
};

interface AttentionArgs extends ModelViewArgs {
  layer: number;
  head?: number;
  out?: string;
}

const attentionCommand: CommandModule<GlobalOptions, AttentionArgs> = {
  command: "attention",
  describe: "chapter 3's causal attention weights of a layer, per head (a heatmap with --out FILE.svg)",
  builder: (y) =>
    modelViewOptions(y)
      .option("layer", { alias: "l", type: "number", default: 0, describe: "the transformer block, from 0" })
      .option("head", { type: "number", describe: "one head, from 0 (default: every head)" })
      .option("out", { alias: "o", type: "string", describe: "write the heatmaps to this SVG file" })
      .example(
        '$0 inspect attention -m models/gpt2-124m -p "Every effort moves you" --layer 5 --out attention.svg',
        "12 heatmaps, one per head, tokens on both axes",
      )
      .example('$0 inspect attention -m models/gpt2-124m -p "Hello" --head 0 --json', "the weights [1, T, T]"),
  handler: async (args) => {
    if (args.out !== undefined && !args.out.toLowerCase().endsWith(".svg"))
      throw new UsageError(`--out ${args.out} is not an .svg file`, "name the picture FILE.svg");
    const { attentionView } = await import("../../inspect/attention.js");
    const view = await withPrompt(args, (gpt, tok, ids) =>
      attentionView(gpt, tok, ids, { layer: args.layer, head: args.head }),
    );
    if (args.out !== undefined) {
      const { heatmapGridSvg, tokenLabel } = await import("../../plot/heatmap.js");
      const { writeFileAtomic } = await import("../../fs-atomic.js");
      const labels = view.tokens.map(tokenLabel);
      await writeFileAtomic(
        args.out,
        heatmapGridSvg({
          title: `attention weights, layer ${view.layer} (rows: queries, columns: keys)`,
          rowLabels: labels,
          columnLabels: labels,
          maps: view.heads.map((h, i) => ({ title: `head ${h}`, values: view.weights[i] })),
        }),
      );
    }
    if (args.json) return printJson({ ...view, ...(args.out !== undefined ? { svg: args.out } : {}) });
    view.heads.forEach((h, i) => {
      printLine(`layer ${view.layer}, head ${h} (rows: queries, columns: keys; each row sums to 1)`);
      const labels = view.tokens.map(quoted);
      const rows = view.weights[i].map((row, q) => [labels[q], ...row.map((v, k) => (k <= q ? v.toFixed(2) : ""))]);
      for (const l of table(
        ["", ...labels],
        rows,
        labels.map((_, k) => k + 1),
      ))
        printLine(`  ${l}`);
      printLine();
    });
    if (args.out !== undefined) printLine(`heatmaps written to ${args.out}`);
  },
};

interface NextArgs extends GlobalOptions {
  model?: string;
  prompt?: string;
  temperature: number;
  "top-k"?: number;
  top: number;
  "book-example": boolean;
}

const nextCommand: CommandModule<GlobalOptions, NextArgs> = {
  command: "next",
  describe: "the next-token predictions at every position, and the last one's after temperature and top-k",
  builder: (y) =>
    y
      .option("model", {
        ...modelOption("model directory (from pretrain, load-gpt2 or finetune)"),
        demandOption: false,
      })
      .option("prompt", { alias: "p", type: "string", describe: "the text to look at" })
      .option("temperature", { alias: "t", type: "number", default: 1, describe: "scales the last position's logits" })
      .option("top-k", { type: "number", describe: "keep only the k most likely tokens at the last position" })
      .option("top", { type: "number", default: 5, describe: "how many likely tokens to list per position" })
      .option("book-example", {
        type: "boolean",
        default: false,
        describe: "chapter 5's 9-word vocabulary and fixed logits instead of a model",
      })
      .example('$0 inspect next -m models/gpt2-124m -p "Every effort moves you"', "each position's 5 likeliest next")
      .example("$0 inspect next --book-example --temperature 5 --top-k 3", "the book's toy distribution, reshaped")
      .check((a) => {
        if (
          a["book-example"]
            ? a.model !== undefined || a.prompt !== undefined
            : a.model === undefined || a.prompt === undefined
        )
          throw new UsageError(
            "give --model and --prompt, or --book-example alone",
            "see `llmctl inspect next --help`",
          );
        return true;
      }),
  handler: async (args) => {
    const { checkSamplingOptions } = await import("../../generate/sampler.js");
    const { BOOK_TOY_LOGITS, BOOK_TOY_VOCAB, lastPositionView, nextTokenView } =
      await import("../../inspect/next-token.js");
    const sampling = { temperature: args.temperature, topK: args["top-k"] ?? null };
    checkSamplingOptions(sampling);
    if (!(Number.isInteger(args.top) && args.top >= 1))
      throw new UsageError(`--top must be an integer ≥ 1, got ${args.top}`);
    const view = args["book-example"]
      ? {
          positions: [],
          last: lastPositionView(BOOK_TOY_LOGITS, (id) => BOOK_TOY_VOCAB[id], {
            ...sampling,
            show: BOOK_TOY_VOCAB.length,
          }),
        }
      : await withPrompt(
          args as NextArgs & ModelViewArgs,
          (gpt, tok, ids) => nextTokenView(gpt, tok, ids, { ...sampling, top: args.top }),
          { languageModel: true },
        );
    if (args.json) return printJson(view);
    if (view.positions.length > 0) {
      printLine("each position's output scores the token after it:");
      const rows = view.positions.map((p) => [
        String(p.position),
        quoted(p.token),
        p.next.map((n) => `${quoted(n.token)} ${n.probability.toFixed(3)}`).join(", "),
      ]);
      for (const l of table(["position", "token", `its ${args.top} likeliest next tokens`], rows, [0]))
        printLine(`  ${l}`);
      printLine();
    }
    const { last } = view;
    const t = last.temperature;
    const stage = last.top_k != null ? `top-${last.top_k}, T=${t}` : `T=${t}`;
    printLine(
      args["book-example"]
        ? "the book's chapter 5 example: the next-token logits over a 9-word vocabulary"
        : `the last position, where the next token is drawn:`,
    );
    const rows = last.rows.map((r) => [
      quoted(r.token),
      r.logit.toFixed(2),
      r.softmax.toFixed(4),
      r.tempered.toFixed(4),
      r.sampled_from.toFixed(4),
    ]);
    for (const l of table(["token", "logit", "softmax", `T=${t}`, stage], rows, [1, 2, 3, 4])) printLine(`  ${l}`);
  },
};

export const inspectCommand: CommandModule<GlobalOptions, GlobalOptions> = {
  command: "inspect <view>",
  describe: "look inside: the dataloader's windows, embeddings, attention weights, next-token probabilities",
  builder: (y) =>
    y
      // eslint-disable-next-line @typescript-eslint/no-explicit-any
      .command(windowsCommand as CommandModule<any, any>)
      // eslint-disable-next-line @typescript-eslint/no-explicit-any
      .command(embeddingsCommand as CommandModule<any, any>)
      // eslint-disable-next-line @typescript-eslint/no-explicit-any
      .command(attentionCommand as CommandModule<any, any>)
      // eslint-disable-next-line @typescript-eslint/no-explicit-any
      .command(nextCommand as CommandModule<any, any>)
      .demandCommand(1, "name a view: windows, embeddings, attention or next")
      .example("$0 inspect windows --batch-size 8 --max-length 4 --stride 4", "chapter 2")
      .example('$0 inspect attention -m models/gpt2-124m -p "Every effort moves you" --out a.svg', "chapter 3")
      .example('$0 inspect next -m models/gpt2-124m -p "Every effort moves you"', "chapters 4 and 5"),
  handler: () => undefined,
};
