import type { CommandModule } from "yargs";
import { existsSync, statSync } from "node:fs";
import { refuseWritingInputs } from "../../fs-atomic.js";
import { UsageError } from "../../errors.js";
import { END_OF_TEXT } from "../../tokenizer/index.js";
import { printJson, printLine, spinner, verbose, type GlobalOptions } from "../output.js";

interface TokenizerTrainArgs extends GlobalOptions {
  file: string;
  "vocab-size": number;
  special: string[];
  out: string;
}

const trainCommand: CommandModule<GlobalOptions, TokenizerTrainArgs> = {
  command: "train",
  describe: "train a byte-level BPE (GPT-2's pre-tokenizer) on a text file; writes Hugging Face's tokenizer.json",
  builder: (y) =>
    y
      .option("file", { alias: "f", type: "string", demandOption: true, describe: "the training text (UTF-8)" })
      .option("vocab-size", {
        alias: "n",
        type: "number",
        demandOption: true,
        describe: "tokens in all: 256 bytes + merges + the specials",
      })
      .option("special", {
        type: "string",
        array: true,
        default: [END_OF_TEXT],
        describe: "special tokens (ids last, in this order; the first ends a text)",
      })
      .option("out", {
        alias: "o",
        type: "string",
        demandOption: true,
        describe: "directory for tokenizer.json, vocab.json and merges.txt",
      })
      .example(
        "$0 tokenizer train --file the-verdict.txt --vocab-size 1000 --out tok/verdict",
        "744 merges learned from the short story",
      )
      .example('$0 tokenize --tokenizer tok/verdict "Every effort moves you"', "encode with it")
      .example(
        "$0 pretrain --config gpt2-tiny --tokenizer tok/verdict --out runs/verdict",
        "pretrain a model whose vocabulary is that tokenizer's",
      ),
  handler: async (args) => {
    const { checkBpeTrainOptions, trainBpe } = await import("../../tokenizer/bpe-train.js");
    const { writeBpeFiles } = await import("../../tokenizer/bpe-file.js");
    const { readTextFile } = await import("../../formats/file.js");
    const vocabSize = args["vocab-size"];
    checkBpeTrainOptions(vocabSize, args.special);
    if (existsSync(args.out) && !statSync(args.out).isDirectory())
      throw new UsageError(`--out ${args.out} is a file`, "give a directory for the tokenizer files");
    refuseWritingInputs([{ path: args.out, flag: "--out", directory: true }], [{ path: args.file, flag: "--file" }]);
    const text = await readTextFile(args.file, { fix: "give --file the path of a text file" });
    const spin = spinner(`training a BPE on ${args.file}`);
    const start = performance.now();
    let trained;
    try {
      trained = trainBpe(text, {
        vocabSize,
        specials: args.special,
        onProgress: (done, wanted) => (spin.text = `training a BPE on ${args.file}: ${done}/${wanted} merges`),
      });
    } finally {
      spin.stop();
    }
    const seconds = (performance.now() - start) / 1000;
    const { model, stats } = trained;
    const files = await writeBpeFiles(args.out, model);
    const size = model.tokens.length + model.specials.length;
    const bytes = Buffer.byteLength(text, "utf8");
    verbose(
      args,
      `${stats.pieces} pieces (${stats.distinctPieces} distinct) from ${bytes} bytes; ` +
        `${model.merges.length} merges in ${seconds.toFixed(2)} s (${(bytes / 1e6 / seconds).toFixed(2)} MB/s)`,
    );
    if (args.json) {
      printJson({
        out: args.out,
        files,
        vocab_size: size,
        merges: model.merges.length,
        specials: model.specials,
        bytes,
        seconds: Number(seconds.toFixed(3)),
      });
      return;
    }
    const short = size < vocabSize ? ` (every piece of the text is one token: fewer than the ${vocabSize} asked)` : "";
    printLine(`${size} tokens (${model.merges.length} merges) written to ${args.out}/tokenizer.json${short}`);
  },
};

export const tokenizerCommand: CommandModule<GlobalOptions, GlobalOptions> = {
  command: "tokenizer <action>",
  describe: "a byte-level BPE tokenizer of your own (the book's ch02 bonus, BPE from scratch)",
  builder: (y) =>
    y
      // eslint-disable-next-line @typescript-eslint/no-explicit-any
      .command(trainCommand as CommandModule<any, any>)
      .demandCommand(1, "name an action: train")
      .example(
        "$0 tokenizer train --file the-verdict.txt --vocab-size 1000 --out tok/verdict",
        "then use it with tokenize / pretrain --tokenizer tok/verdict",
      ),
  handler: () => undefined,
};
