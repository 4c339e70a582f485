/**
 * The llmctl command line: parses arguments and dispatches to one module per command in ./commands.
 * Library modules never print or exit; this file turns their typed errors into one-line messages.
 */
import yargs from "yargs";
import { hideBin } from "yargs/helpers";
import { InterruptedError, LlmctlError, UsageError, errorLine, fileSystemError } from "../errors.js";
import { BACKEND_NAMES } from "../backend/choices.js";
import { wasmHeapError } from "../backend/wasm-heap.js";
import { commands } from "./commands/index.js";
import { interruptedExitCode, quitOnUnhandledSignals } from "./output.js";

/** Levenshtein distance, for "did you mean" on mistyped options. */
function editDistance(a: string, b: string): number {
  const row = Array.from({ length: b.length + 1 }, (_, j) => j);
  for (let i = 1; i <= a.length; i++) {
    let diag = row[0];
    row[0] = i;
    for (let j = 1; j <= b.length; j++) {
      const up = row[j];
      row[j] = Math.min(row[j] + 1, row[j - 1] + 1, diag + (a[i - 1] === b[j - 1] ? 0 : 1));
      diag = up;
    }
  }
  return row[b.length];
}

/** For "Unknown argument(s): x", the closest option this command knows, if one is close. */
function suggestOption(msg: string | undefined, known: string[]): string | undefined {
  const m = msg?.match(/^Unknown arguments?: (.+)$/);
  if (!m) return undefined;
  const unknown = m[1].split(", ")[0].replace(/^-+/, "");
  let best: string | undefined;
  for (const k of known) {
    const d = editDistance(unknown, k);
    if (k.length >= 4 && d <= Math.max(2, Math.floor(k.length / 3)) && (!best || d < editDistance(unknown, best)))
      best = k;
  }
  return best ? `did you mean --${best}? (see --help)` : "see --help for the options";
}

async function main(argv: string[]): Promise<number> {
  const verboseRequested = argv.includes("--verbose") || argv.includes("-v");
  const cli = yargs(argv)
    .scriptName("llmctl")
    .usage("$0 <command> [options]\n\nBuild a GPT-style language model from scratch on TensorFlow.js.")
    .option("backend", {
      choices: BACKEND_NAMES,
      default: process.env.LLMCTL_BACKEND ?? "auto",
      describe: "TF.js backend (env LLMCTL_BACKEND)",
      global: true,
    })
    .option("bf16", {
      type: "boolean",
      default: process.env.LLMCTL_BF16 === "1",
      describe: "bfloat16 matmuls on CPUs with AMX-BF16 (tensorflow backend; env LLMCTL_BF16=1)",
      global: true,
    })
    .option("seed", { type: "number", describe: "random seed, an integer 0…4294967295", global: true })
    .option("json", { type: "boolean", default: false, describe: "machine-readable output on stdout", global: true })
    .option("verbose", {
      alias: "v",
      type: "boolean",
      default: false,
      describe: "more detail, stack traces",
      global: true,
    })
    .check((a) => {
      // yargs reads --seed abc as NaN; the generators take a uint32, which 1e30 or 2^32 would silently wrap
      const seed = a.seed as number | undefined;
      if (seed !== undefined && !(Number.isInteger(seed) && seed >= 0 && seed <= 0xffffffff))
        throw new UsageError(`--seed must be an integer from 0 to 4294967295, got ${String(seed)}`);
      return true;
    })
    .command(commands)
    .demandCommand(1, "name a command (see the list above)")
    .recommendCommands()
    .strict()
    .help()
    .alias("help", "h")
    .version()
    .wrap(Math.min(110, process.stdout.columns ?? 100))
    .epilogue("Each command has its own --help with examples. Docs: README.md and docs/.")
    .fail((msg, err) => {
      if (err) throw err;
      // getOptions() is untyped in @types/yargs; during a command it lists that command's options
      const known = Object.keys(
        (cli as unknown as { getOptions(): { key: Record<string, unknown> } }).getOptions().key,
      );
      throw new UsageError(msg ?? "invalid arguments", suggestOption(msg, known) ?? "see `llmctl --help`");
    });
  try {
    await cli.parseAsync();
    return process.exitCode === undefined ? 0 : Number(process.exitCode);
  } catch (thrown) {
    // a filesystem error no writer mapped (one that names its path), or the wasm heap running out, still reaches
    // the user as one line
    const err = wasmHeapError(fileSystemError(thrown));
    if (err instanceof LlmctlError) {
      process.stderr.write(`llmctl: ${errorLine(err)}\n`);
      if (verboseRequested && err.stack) process.stderr.write(err.stack + "\n");
      return err instanceof InterruptedError ? interruptedExitCode() : err.exitCode;
    }
    const e = err as Error;
    process.stderr.write(`llmctl: unexpected error: ${e?.message ?? String(err)}\n`);
    if (verboseRequested && e?.stack) process.stderr.write(e.stack + "\n");
    else process.stderr.write("(run again with --verbose for the stack trace, and please report it)\n");
    return 1;
  }
}

/**
 * Results go to stdout, so a failed write there fails the command: one line, exit 1 (a full disk behind
 * `> FILE` must not pass for a short result). A closed pipe is the reader having had enough (`| head`): the
 * command ends quietly, as Unix tools do.
 */
process.stdout.on("error", (err: NodeJS.ErrnoException) => {
  if (err.code === "EPIPE") process.exit(0);
  const mapped = fileSystemError(err, "the standard output");
  const line = mapped instanceof LlmctlError ? errorLine(mapped) : `writing the standard output failed: ${err.message}`;
  process.stderr.write(`llmctl: ${line}\n`);
  process.exit(1);
});

quitOnUnhandledSignals();
process.exitCode = await main(hideBin(process.argv));
