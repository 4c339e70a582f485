/**
 * Instruction data in the Alpaca format — a JSON array (or JSON Lines) of {instruction, input, output} — and
 * the book's ordered 85 % / 10 % / 5 % split (chapter 7: train 935, test 110, validation 55 of 1,100).
 */
import { readTextFile } from "../formats/file.js";
import { FileFormatError } from "../errors.js";

/** An instruction example, the book's {instruction, input, output}. */
export interface InstructionEntry {
  instruction: string;
  input: string;
  output: string;
}

/** An entry as read from a file: the three Alpaca fields plus whatever else it carried (kept on output). */
export type InstructionRecord = InstructionEntry & Record<string, unknown>;

function checkEntry(value: unknown, where: string, fix: string): InstructionRecord {
  if (value === null || typeof value !== "object" || Array.isArray(value)) {
    throw new FileFormatError(`${where} is not an object with instruction, input and output`, fix);
  }
  const e = value as Record<string, unknown>;
  if (typeof e.instruction !== "string" || e.instruction.trim() === "") {
    throw new FileFormatError(`${where} has no "instruction" text`, fix);
  }
  // Alpaca files write an empty input as "", some drop the key; both mean "no input".
  if (e.input !== undefined && e.input !== null && typeof e.input !== "string") {
    throw new FileFormatError(`${where}: "input" must be a string, found ${typeof e.input}`, fix);
  }
  if (typeof e.output !== "string") {
    throw new FileFormatError(
      `${where}: "output" must be a string, found ${e.output === undefined ? "nothing" : typeof e.output}`,
      fix,
    );
  }
  return { ...e, instruction: e.instruction, input: (e.input as string | null | undefined) ?? "", output: e.output };
}

/** A JSON object holding the list under a key (`{"data": [...]}`) is said to be that, not "not valid JSON". */
function refuseWrappedList(text: string, source: string): void {
  let value: unknown;
  try {
    value = JSON.parse(text);
  } catch {
    return; // JSON Lines, or broken JSON: the line-by-line parse says which line
  }
  if (typeof value !== "object" || value === null || "instruction" in value) return;
  const key = Object.entries(value).find(([, v]) => Array.isArray(v))?.[0];
  throw new FileFormatError(
    key === undefined
      ? `${source} is one JSON object, not a list of entries`
      : `${source} is a JSON object with the entries under "${key}"; instruction data is the list itself`,
    key === undefined
      ? "give a JSON array of Alpaca entries, or JSON Lines"
      : `write the list alone, e.g. jq '.${key}' FILE > entries.json`,
  );
}

/**
 * Parse Alpaca-format text: a JSON array of entries, or JSON Lines (one entry per line). `source` names the
 * file in error messages; a malformed entry is named by its index (0-based, as in the book's `data[i]`).
 */
export function parseInstructionData(text: string, source = "instruction data"): InstructionRecord[] {
  const fix = "each entry needs string fields instruction, input (may be empty) and output (Alpaca format)";
  const trimmed = text.replace(/^\uFEFF/, "").trim();
  if (trimmed === "") throw new FileFormatError(`${source} is empty`, fix);
  if (trimmed.startsWith("[")) {
    let data: unknown;
    try {
      data = JSON.parse(trimmed);
    } catch (err) {
      throw new FileFormatError(
        `${source} is not valid JSON: ${(err as Error).message}`,
        "fix the file, or use JSON Lines",
      );
    }
    if (!Array.isArray(data)) throw new FileFormatError(`${source} is not a JSON array`, fix);
    return data.map((e, i) => checkEntry(e, `entry ${i} of ${source}`, fix));
  }
  if (trimmed.startsWith("{")) refuseWrappedList(trimmed, source);
  const entries: InstructionRecord[] = [];
  const lines = trimmed.split(/\r?\n/);
  for (let line = 0; line < lines.length; line++) {
    if (lines[line].trim() === "") continue;
    const where = `entry ${entries.length} (line ${line + 1}) of ${source}`;
    let value: unknown;
    try {
      value = JSON.parse(lines[line]);
    } catch (err) {
      throw new FileFormatError(
        `${where} is not valid JSON: ${(err as Error).message}`,
        "a JSON Lines file holds one JSON object per line",
      );
    }
    entries.push(checkEntry(value, where, fix));
  }
  return entries;
}

/** `flag` is the option that named `path`, for the message when it is missing. */
export async function loadInstructionData(path: string, flag = "--data"): Promise<InstructionRecord[]> {
  const text = await readTextFile(path, {
    missing: `instruction data not found: ${path}`,
    fix: `check the ${flag} path`,
  });
  return parseInstructionData(text, path);
}

export interface InstructionSplit<T> {
  train: T[];
  test: T[];
  validation: T[];
}

/**
 * The book's split, in file order with no shuffle: train = data[:int(0.85 n)], test = the next int(0.1 n),
 * validation = the rest.
 */
export function splitInstructionData<T>(data: readonly T[], trainRatio = 0.85, testRatio = 0.1): InstructionSplit<T> {
  const nTrain = Math.floor(data.length * trainRatio);
  const nTest = Math.floor(data.length * testRatio);
  return {
    train: data.slice(0, nTrain),
    test: data.slice(nTrain, nTrain + nTest),
    validation: data.slice(nTrain + nTest),
  };
}
