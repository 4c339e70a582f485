/**
 * The book's chapter 6 data pipeline for the UCI SMS Spam Collection: read the tab-separated file the way
 * pandas does, balance the classes (`create_balanced_dataset`), shuffle and split 70/10/20 (`random_split`),
 * write/read `train.csv` / `validation.csv` / `test.csv`. The texts become padded token id rows in
 * generate/classify.ts (`SpamDataset`), as `classify` reads them.
 *
 * Labels are class ids: 0 = ham ("not spam"), 1 = spam, as the book's `map({"ham": 0, "spam": 1})`.
 */
import { readTextFile } from "../formats/file.js";
import { existsSync } from "node:fs";
import { join } from "node:path";
import { parse as parseCsv } from "csv-parse/sync";
import { stringify as stringifyCsv } from "csv-stringify/sync";
import { NumpyRandomState } from "../data/numpy-random.js";
import { FileFormatError, UsageError } from "../errors.js";
import { makeDirectory, writeFileAtomic } from "../fs-atomic.js";

export interface SmsMessage {
  /** 0 = ham, 1 = spam */
  label: number;
  text: string;
}

export interface SpamSplit {
  train: SmsMessage[];
  validation: SmsMessage[];
  test: SmsMessage[];
}

export const SPLIT_FILES = { train: "train.csv", validation: "validation.csv", test: "test.csv" } as const;

/**
 * Parse delimited text exactly as Python's `csv` module (and pandas' C parser) do with their defaults:
 * quotechar `"`, doublequote on, no escape char, not strict. The rules that matter:
 *
 * - a quote opens a quoted field only as the field's first character; anywhere else it is a literal;
 * - inside a quoted field, delimiters and newlines are literal and `""` is one quote;
 * - a closing quote followed by anything but a delimiter or line end does not end the field: the quotes are
 *   dropped and the rest of the field is read as unquoted text (`"Hi" there` → `Hi there`).
 *
 * The SMS Spam Collection depends on this: the message on physical line 5082 starts with `"` and the next
 * quote comes at the start of line 5084's message, so lines 5082–5084 become one row and the book (pandas
 * `read_csv(sep="\t", header=None)`) gets 5,572 rows (4,825 ham, 747 spam), not the file's 5,574 lines.
 *
 * Why not csv-parse here: its `relax_quotes` reproduces the row structure but keeps the quotes in the last
 * rule's case (`"Hi" there` stays as is), which changes the text, and so the tokens, of ten messages. We use
 * csv-parse/csv-stringify for the split CSVs we write ourselves, which are plain RFC 4180.
 *
 * Blank lines are skipped (pandas' `skip_blank_lines`). End of input inside a quoted field is an error.
 */
export function parsePythonCsv(text: string, delimiter = "\t"): string[][] {
  const rows: string[][] = [];
  let row: string[] = [];
  let field = "";
  type State = "startRecord" | "startField" | "inField" | "inQuoted" | "quoteInQuoted";
  let state = "startRecord" as State;
  let line = 1; // physical line, for error messages
  let quotedFrom = 0;
  const endRecord = () => {
    row.push(field);
    rows.push(row);
    row = [];
    field = "";
    state = "startRecord";
  };
  for (let i = 0; i < text.length; i++) {
    const c = text[i];
    const eol = c === "\n" || c === "\r";
    if (c === "\n") line++;
    // \r\n ends a record as one terminator; inside quotes both characters are kept
    if (c === "\r" && text[i + 1] === "\n" && state !== "inQuoted") {
      i++;
      line++;
    }
    if (state === "startRecord") {
      if (eol) continue; // a blank line
      state = "startField";
    }
    switch (state) {
      case "startField":
        if (eol) endRecord();
        else if (c === '"') {
          state = "inQuoted";
          quotedFrom = line;
        } else if (c === delimiter) row.push("");
        else {
          field += c;
          state = "inField";
        }
        break;
      case "inField":
        if (eol) endRecord();
        else if (c === delimiter) {
          row.push(field);
          field = "";
          state = "startField";
        } else field += c;
        break;
      case "inQuoted":
        if (c === '"') state = "quoteInQuoted";
        else field += c;
        break;
      case "quoteInQuoted":
        if (c === '"') {
          field += c;
          state = "inQuoted";
        } else if (c === delimiter) {
          row.push(field);
          field = "";
          state = "startField";
        } else if (eol) endRecord();
        else {
          field += c;
          state = "inField";
        }
        break;
    }
  }
  if (state === "inQuoted") {
    throw new FileFormatError(`unterminated quoted field starting on line ${quotedFrom}`, "check the file's quotes");
  }
  if (state !== "startRecord") endRecord();
  return rows;
}

/** Parse the SMS Spam Collection (`ham|spam<TAB>text` per record) into labelled messages. */
export function parseSmsSpamCollection(content: string, source = "SMSSpamCollection"): SmsMessage[] {
  const rows = parsePythonCsv(content, "\t");
  if (rows.length === 0)
    throw new FileFormatError(`${source} is empty`, "pass the UCI SMSSpamCollection file with --data");
  return rows.map((r, i) => {
    const label = r[0] === "ham" ? 0 : r[0] === "spam" ? 1 : -1;
    if (r.length !== 2 || label < 0) {
      throw new FileFormatError(
        `${source}: record ${i + 1} is not "ham|spam<TAB>text" (found ${JSON.stringify(r.join("\t").slice(0, 60))})`,
        "pass the UCI SMSSpamCollection file with --data",
      );
    }
    return { label, text: r[1] };
  });
}

export async function readSmsSpamCollection(path: string): Promise<SmsMessage[]> {
  const content = await readTextFile(path, { fix: "check the --data path" });
  return parseSmsSpamCollection(content, path);
}

/** `{ham, spam}` counts. */
export function labelCounts(messages: SmsMessage[]): { ham: number; spam: number } {
  let spam = 0;
  for (const m of messages) spam += m.label;
  return { ham: messages.length - spam, spam };
}

/** What draws the book's samples: `permutation(n)` of 0..n-1 (NumPy's RandomState, as pandas' `sample` uses). */
export interface Permuter {
  permutation(n: number): Int32Array;
}

/**
 * The book's `create_balanced_dataset`: `df[ham].sample(num_spam, random_state=123)`, the first num_spam of a
 * permutation of the ham messages (in sampled order), followed by all spam messages in file order.
 */
export function balanceSpam(messages: SmsMessage[], rng: Permuter): SmsMessage[] {
  const ham = messages.filter((m) => m.label === 0);
  const spam = messages.filter((m) => m.label === 1);
  if (spam.length === 0 || ham.length < spam.length) {
    throw new UsageError(
      `cannot balance ${ham.length} ham and ${spam.length} spam messages`,
      "the data needs at least as many ham as spam messages, and some spam",
    );
  }
  const order = rng.permutation(ham.length);
  const sample = Array.from(order.subarray(0, spam.length), (i) => ham[i]);
  return [...sample, ...spam];
}

/**
 * The book's `random_split`: `df.sample(frac=1, random_state=123)` (a permutation of all rows), then cut at
 * int(n·train) and int(n·train) + int(n·validation); the rest is the test set. 1,494 balanced messages → 1,045 /
 * 149 / 300.
 */
export function randomSplit(messages: SmsMessage[], rng: Permuter, trainFrac = 0.7, validationFrac = 0.1): SpamSplit {
  if (!(trainFrac > 0 && validationFrac >= 0 && trainFrac + validationFrac < 1)) {
    throw new UsageError(
      `bad split fractions ${trainFrac} / ${validationFrac}`,
      "train > 0, validation ≥ 0, and together < 1",
    );
  }
  const shuffled = Array.from(rng.permutation(messages.length), (i) => messages[i]);
  const trainEnd = Math.floor(shuffled.length * trainFrac);
  const validationEnd = trainEnd + Math.floor(shuffled.length * validationFrac);
  return {
    train: shuffled.slice(0, trainEnd),
    validation: shuffled.slice(trainEnd, validationEnd),
    test: shuffled.slice(validationEnd),
  };
}

/**
 * Balance then split, each step with its own NumPy RandomState seeded `seed`, as the book's pandas code does
 * (it seeds both with 123): with the UCI file this is the book's split, row for row.
 */
export function makeSpamSplit(messages: SmsMessage[], seed = 123): SpamSplit {
  return randomSplit(balanceSpam(messages, new NumpyRandomState(seed)), new NumpyRandomState(seed));
}

/** Write `train.csv`, `validation.csv`, `test.csv` (header `Label,Text`, as the book's `to_csv`) into `dir`. */
export async function writeSplitCsvs(dir: string, split: SpamSplit): Promise<void> {
  await makeDirectory(dir);
  for (const part of ["train", "validation", "test"] as const) {
    const records = split[part].map((m) => [m.label, m.text]);
    await writeFileAtomic(
      join(dir, SPLIT_FILES[part]),
      stringifyCsv(records, { header: true, columns: ["Label", "Text"] }),
    );
  }
}

function parseSplitCsv(path: string, content: string): SmsMessage[] {
  let records: string[][];
  try {
    records = parseCsv(content, { relax_column_count: false, skip_empty_lines: true }) as string[][];
  } catch (err) {
    throw new FileFormatError(
      `${path} is not a valid CSV: ${(err as Error).message}`,
      "rebuild the split (omit --split-dir)",
      { cause: err },
    );
  }
  const [header, ...rows] = records;
  if (!header || header.length !== 2 || header[0] !== "Label" || header[1] !== "Text") {
    throw new FileFormatError(
      `${path} does not start with the header Label,Text`,
      "rebuild the split (omit --split-dir)",
    );
  }
  return rows.map((r, i) => {
    if (r[0] !== "0" && r[0] !== "1") {
      throw new FileFormatError(
        `${path}: row ${i + 2} has label ${JSON.stringify(r[0])}, expected 0 or 1`,
        "rebuild the split (omit --split-dir)",
      );
    }
    return { label: Number(r[0]), text: r[1] };
  });
}

/**
 * Read a split written by `writeSplitCsvs` (or the book's own CSVs): from --split-dir, or from a run directory
 * being resumed (`from: "run"`), which says so when a file is missing.
 */
export async function readSplitCsvs(dir: string, from: "--split-dir" | "run" = "--split-dir"): Promise<SpamSplit> {
  const out: Partial<SpamSplit> = {};
  for (const part of ["train", "validation", "test"] as const) {
    const path = join(dir, SPLIT_FILES[part]);
    if (!existsSync(path)) {
      throw new FileFormatError(
        from === "run"
          ? `${path} is missing: the run's split is incomplete, so it cannot be resumed`
          : `${path} not found`,
        from === "run"
          ? `put the file back, or start a new run (with --split-dir ${dir} if its other files are the split you want)`
          : `--split-dir needs ${Object.values(SPLIT_FILES).join(", ")}`,
      );
    }
    out[part] = parseSplitCsv(path, await readTextFile(path));
    if (out[part].length === 0)
      throw new FileFormatError(`${path} has no rows`, "rebuild the split (omit --split-dir)");
  }
  return out as SpamSplit;
}
