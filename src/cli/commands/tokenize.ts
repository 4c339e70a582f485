import { refuseWritingInputs } from "../../fs-atomic.js";
import type { CommandModule } from "yargs";
import { existsSync, statSync } from "node:fs";
import { getTokenizer, tokenizeFile, END_OF_TEXT, END_OF_TEXT_ID, type Tokenizer } from "../../tokenizer/index.js";
import { writeTokenFile } from "../../tokenizer/token-file.js";
import { UsageError, FileFormatError } from "../../errors.js";
import { printJson, printLine, spinner, verbose, writeIds, type GlobalOptions } from "../output.js";

interface TokenizeArgs extends GlobalOptions {
  text?: string;
  file?: string;
  count: boolean;
  decode?: string;
  out?: string;
  special: boolean;
  tokenizer?: string;
  bench: boolean;
  repeats: number;
}

function parseIds(text: string): number[] {
  const parts = text.split(/[\s,[\]]+/).filter(Boolean);
  return parts.map((p) => {
    // decimal digits only: Number() would also take "0x10", "1e3" and "+5"
    const n = /^\d+$/.test(p) ? Number(p) : NaN;
    if (!Number.isSafeInteger(n))
      throw new UsageError(
        `--decode: '${p}' is not a token id`,
        'pass ids separated by spaces, e.g. --decode "6109 3626"',
      );
    return n;
  });
}

export const tokenizeCommand: CommandModule<GlobalOptions, TokenizeArgs> = {
  command: "tokenize [text]",
  describe: "turn text into GPT-2 token ids (or ids back into text)",
  builder: (y) =>
    y
      .positional("text", { type: "string", describe: "text to tokenize (or use --file)" })
      .option("file", { alias: "f", type: "string", describe: "tokenize a text file (streamed; any size)" })
      .option("count", { type: "boolean", default: false, describe: "print only the number of tokens" })
      .option("decode", { type: "string", describe: 'decode space-separated ids, e.g. "6109 3626 6100 345"' })
      .option("out", {
        alias: "o",
        type: "string",
        describe: "write the ids to a token file (.bin) that pretrain reads",
      })
      .option("special", {
        type: "boolean",
        default: true,
        describe: `encode ${END_OF_TEXT} as its id ${END_OF_TEXT_ID} (--no-special: as ordinary text)`,
      })
      .option("tokenizer", {
        type: "string",
        describe: "a tokenizer directory from `llmctl tokenizer train` instead of GPT-2's (its specials encode)",
      })
      .option("bench", {
        type: "boolean",
        default: false,
        describe:
          "time BPE implementations on --file (default the-verdict): js-tiktoken, llmctl's, and Python tiktoken / GPT2TokenizerFast when $LLMCTL_PYTHON (or python3) has them",
      })
      .option("repeats", { type: "number", default: 10, describe: "--bench: timed encodes per implementation" })
      .example('$0 tokenize "Every effort moves you"', "prints 6109 3626 6100 345")
      .example("$0 tokenize --file the-verdict.txt --count", "prints 5145")
      .example('$0 tokenize --decode "6109 3626 6100 345"', "prints Every effort moves you")
      .example(
        "$0 tokenize --file corpus.txt --out corpus.bin",
        "tokenize a large corpus once for pretrain --data corpus.bin",
      )
      .example('$0 tokenize --tokenizer tok/verdict "Every effort moves you"', "with your own BPE (tokenizer train)")
      .example("$0 tokenize --bench", "the book's ch02 BPE comparison on the-verdict (ms, MB/s, ids vs tiktoken's)")
      .check((a) => {
        if (a.bench) {
          if (a.text !== undefined || a.decode !== undefined || a.out !== undefined || a.tokenizer !== undefined)
            throw new UsageError(
              "--bench takes no TEXT, --decode, --out or --tokenizer (it times GPT-2's BPE)",
              "give --file F, or nothing for the-verdict",
            );
          if (!Number.isInteger(a.repeats) || a.repeats < 1)
            throw new UsageError(`--repeats ${a.repeats} is not a positive integer`, "e.g. --repeats 10");
          return true;
        }
        const sources = [a.text !== undefined, a.file !== undefined, a.decode !== undefined].filter(Boolean).length;
        if (sources !== 1)
          throw new UsageError("give exactly one of TEXT, --file or --decode", "see `llmctl tokenize --help`");
        return true;
      }),
  handler: async (args) => {
    if (args.bench) return benchCommand(args);
    const tok: Tokenizer =
      args.tokenizer === undefined
        ? getTokenizer()
        : await (await import("../../tokenizer/bpe-file.js")).loadTokenizerDir(args.tokenizer);
    if (args.decode !== undefined) {
      const ids = parseIds(args.decode);
      const text = tok.decode(ids);
      if (args.json) printJson({ count: ids.length, ids, text });
      else printLine(text);
      return;
    }
    // undefined: the tokenizer's own specials (GPT-2's is END_OF_TEXT)
    const allowedSpecial = args.special ? undefined : [];
    let ids: ArrayLike<number>;
    if (args.file !== undefined) {
      if (args.out) refuseWritingInputs([{ path: args.out, flag: "--out" }], [{ path: args.file, flag: "--file" }]);
      if (!existsSync(args.file)) throw new FileFormatError(`file not found: ${args.file}`, "check the path");
      if (!statSync(args.file).isFile())
        throw new UsageError(`--file ${args.file} is a directory, not a file`, "give the path of a text file");
      const total = statSync(args.file).size;
      const spin = spinner(`tokenizing ${args.file}`);
      const start = performance.now();
      try {
        ids = await tokenizeFile(args.file, {
          allowedSpecial,
          tokenizer: tok,
          onProgress: (read) =>
            (spin.text = `tokenizing ${args.file}: ${((100 * read) / Math.max(total, 1)).toFixed(0)}%`),
        });
      } finally {
        spin.stop();
      }
      if (args.verbose) {
        const s = (performance.now() - start) / 1000;
        process.stderr.write(
          `${ids.length} tokens from ${total} bytes in ${s.toFixed(2)} s (${(total / 1e6 / s).toFixed(2)} MB/s)\n`,
        );
      }
    } else {
      ids = tok.encode(args.text ?? "", { allowedSpecial });
    }
    if (args.out) {
      await writeTokenFile(args.out, ids, tok.vocabSize);
    }
    if (args.count) {
      if (args.json) printJson({ count: ids.length });
      else printLine(String(ids.length));
    } else if (args.out) {
      if (args.json) printJson({ count: ids.length, out: args.out });
      else printLine(`${ids.length} tokens written to ${args.out}`);
    } else {
      await writeIds(ids, { json: args.json });
    }
  },
};

/** `tokenize --bench`: the book's ch02 comparison of BPE implementations, as a table or --json. */
async function benchCommand(args: TokenizeArgs): Promise<void> {
  const { fetchDataset } = await import("../../data/datasets.js");
  const { readTextFile } = await import("../../formats/file.js");
  const { benchTokenizers } = await import("../../tokenizer/bench.js");
  const path = args.file ?? (await fetchDataset("the-verdict", { onNote: (text) => verbose(args, text) }));
  const text = await readTextFile(path, { fix: "give --file the path of a text file" });
  const spin = spinner("timing tokenizers");
  let result;
  try {
    result = await benchTokenizers(text, args.file ?? "the-verdict", {
      repeats: args.repeats,
      onStage: (name) => (spin.text = `timing ${name}`),
    });
  } finally {
    spin.stop();
  }
  if (args.json) return printJson(result);

  printLine(
    `${result.file}: ${result.bytes} bytes; median of ${result.repeats} encodes after one warm-up (load ${result.load_average} on ${result.cores} cores); ids compared with ${result.reference}'s`,
  );
  const header = ["implementation", "ms", "MB/s", "tokens", "ids"];
  const cells = result.rows.map((r) =>
    r.skipped !== undefined
      ? [r.name, "-", "-", "-", `skipped: ${r.skipped}`]
      : [
          r.name,
          r.ms!.toFixed(2),
          r.mb_per_s!.toFixed(1),
          String(r.tokens),
          r.reference ? "reference" : r.matches_reference ? "same" : "DIFFERENT",
        ],
  );
  const widths = header.map((h, i) => cells.reduce((w, c) => Math.max(w, i === 4 ? 0 : c[i].length), h.length));
  const line = (c: string[]) =>
    c.map((x, i) => (i === 0 || i === 4 ? x.padEnd(widths[i]) : x.padStart(widths[i]))).join("  ");
  printLine(line(header).trimEnd());
  for (const c of cells) printLine(line(c).trimEnd());
  printLine();
  for (const r of result.rows) if (r.note && r.skipped === undefined) printLine(`${r.name}: ${r.note}`);
  printLine(
    `the book's figures (its author's machine, the-verdict): ${result.book.map((b) => `${b.name} ${b.ms.toFixed(2)} ms`).join(", ")}`,
  );
}
