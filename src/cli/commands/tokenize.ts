import { refuseWritingInputs } from "../../fs-atomic.js";
import type { CommandModule } from "yargs";
import { existsSync, statSync } from "node:fs";
import { getTokenizer, tokenizeFile, END_OF_TEXT, END_OF_TEXT_ID } from "../../tokenizer/index.js";
import { writeTokenFile } from "../../tokenizer/token-file.js";
import { UsageError, FileFormatError } from "../../errors.js";
import { printJson, printLine, spinner, writeIds, type GlobalOptions } from "../output.js";

interface TokenizeArgs extends GlobalOptions {
  text?: string;
  file?: string;
  count: boolean;
  decode?: string;
  out?: string;
  special: boolean;
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
      .example('$0 tokenize "Every effort moves you"', "prints 6109 3626 6100 345")
      .example("$0 tokenize --file the-verdict.txt --count", "prints 5145")
      .example('$0 tokenize --decode "6109 3626 6100 345"', "prints Every effort moves you")
      .example(
        "$0 tokenize --file corpus.txt --out corpus.bin",
        "tokenize a large corpus once for pretrain --data corpus.bin",
      )
      .check((a) => {
        const sources = [a.text !== undefined, a.file !== undefined, a.decode !== undefined].filter(Boolean).length;
        if (sources !== 1)
          throw new UsageError("give exactly one of TEXT, --file or --decode", "see `llmctl tokenize --help`");
        return true;
      }),
  handler: async (args) => {
    const tok = getTokenizer();
    if (args.decode !== undefined) {
      const ids = parseIds(args.decode);
      const text = tok.decode(ids);
      if (args.json) printJson({ count: ids.length, ids, text });
      else printLine(text);
      return;
    }
    const allowedSpecial = args.special ? [END_OF_TEXT] : [];
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
