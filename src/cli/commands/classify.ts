import { decodeUtf8, readTextFile } from "../../formats/file.js";
import type { CommandModule } from "yargs";
import { selectBackend } from "../backend.js";
import { FileFormatError, UsageError } from "../../errors.js";
import { loadModelShowingProgress, modelOption } from "../load-model.js";
import { modelTokenizer } from "../../tokenizer/bpe-file.js";
import { checkPooling } from "../../model/model-meta.js";
import { printJson, printLine, spinner, type GlobalOptions } from "../output.js";

interface ClassifyArgs extends GlobalOptions {
  model: string;
  text?: string[];
  file?: string;
  "batch-size": number;
}

async function readTexts(file: string): Promise<string[]> {
  let content: string;
  // yargs hands `--file -` over as an empty string
  if (file === "-" || file === "") {
    const chunks: Buffer[] = [];
    for await (const c of process.stdin) chunks.push(c as Buffer);
    content = decodeUtf8(Buffer.concat(chunks), "the standard input");
  } else {
    content = await readTextFile(file, { missing: `file not found: ${file}`, fix: "check the --file path" });
  }
  if (content.includes("\0"))
    throw new FileFormatError(
      `${file || "the standard input"} holds binary data, not lines of text`,
      "give a text file, one text per line",
    );
  // one text per line; blank lines separate nothing and are skipped
  return content.split(/\r?\n/).filter((l) => l.trim() !== "");
}

export const classifyCommand: CommandModule<GlobalOptions, ClassifyArgs> = {
  command: "classify [text..]",
  describe: "classify texts as spam / not spam with a finetuned model",
  builder: (y) =>
    y
      .positional("text", { type: "string", array: true, describe: "texts to classify (quote each one)" })
      .option("model", modelOption("a classifier directory written by `llmctl finetune spam`"))
      .option("file", {
        alias: "f",
        type: "string",
        describe: "classify each non-blank line of this file ('-' reads stdin)",
      })
      .option("batch-size", { alias: "b", type: "number", default: 8, describe: "texts per forward pass" })
      .example(
        '$0 classify -m models/spam "You are a winner you have been specially selected to receive $1000 cash or a $2000 award."',
        "the book's first example: spam",
      )
      .example(
        '$0 classify -m models/spam "Hey, just wanted to check if we\'re still on for dinner tonight? Let me know!"',
        "the book's second: not spam",
      )
      .example(
        "$0 classify -m models/spam --file messages.txt --json",
        'one line per text; prints [{"text","label","probability"}]',
      )
      .check((a) => {
        if (!Number.isInteger(a["batch-size"]) || a["batch-size"] < 1)
          throw new UsageError(`--batch-size must be a positive integer, got ${a["batch-size"]}`);
        return true;
      }),
  handler: async (args) => {
    const texts = (args.text ?? []).map(String);
    if (args.file !== undefined) texts.push(...(await readTexts(args.file)));
    if (texts.length === 0)
      throw new UsageError(
        "nothing to classify",
        'give texts as arguments or --file FILE, e.g. llmctl classify -m DIR "Win a prize now"',
      );
    const empty = texts.findIndex((t) => t.trim() === "");
    if (empty >= 0) throw new UsageError(`text ${empty + 1} is empty`, "give non-empty texts");

    const { readModelMeta } = await import("../../model/model-meta.js");
    const meta = await readModelMeta(args.model);
    if (meta.head.kind !== "classifier") {
      throw new UsageError(
        `${args.model} is a language model, not a classifier`,
        meta.lora
          ? // a LoRA model is no base for another finetune: it is merged first
            `merge it (llmctl export --format llmctl --model ${args.model} --out MERGED), then finetune a classifier: llmctl finetune spam --model MERGED --out DIR`
          : `finetune one first: llmctl finetune spam --model ${args.model} --out DIR`,
      );
    }
    const head = meta.head;
    await selectBackend(args);
    const { gpt } = await loadModelShowingProgress(args.model);
    const { classLabels, classifyTexts } = await import("../../generate/classify.js");
    try {
      const labels = classLabels(head);
      const progress = spinner(`classifying ${texts.length} texts`);
      let results;
      try {
        results = await classifyTexts(gpt, await modelTokenizer(args.model, meta.tokenizer), texts, {
          labels,
          pool: checkPooling(head.pool ?? "last"),
          maxLength: head.max_length,
          batchSize: args["batch-size"],
          onProgress: (done, total) => (progress.text = `classifying: ${done}/${total}`),
        });
      } finally {
        progress.stop();
      }
      if (args.json) {
        printJson(results.map((r) => ({ text: r.text, label: r.label, probability: r.probability })));
      } else {
        const width = Math.max(...results.map((r) => r.label.length));
        for (const r of results) {
          const shown = r.text.length > 70 ? r.text.slice(0, 69) + "…" : r.text;
          printLine(`${r.label.padEnd(width)}  ${r.probability.toFixed(3)}  ${JSON.stringify(shown)}`);
        }
      }
    } finally {
      gpt.dispose();
    }
  },
};
