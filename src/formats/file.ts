/**
 * Opening the files llmctl is given. A path that names a directory (or a device, a socket) where a file is
 * expected is one line naming it; Node says only "EISDIR" and no path, and only at the first read.
 */
import { isUtf8 } from "node:buffer";
import { statSync, type Stats } from "node:fs";
import { open, readFile, type FileHandle } from "node:fs/promises";
import { FileFormatError, fileSystemError } from "../errors.js";

/** What to tell the user when the path is wrong: the default names no flag. */
export interface PathHint {
  /** the fix for a path that does not exist or is not a file */
  fix?: string;
  /** the message for a missing file (default "PATH does not exist") */
  missing?: string;
}

function kind(s: Stats): string {
  return s.isDirectory() ? "a directory" : s.isFIFO() ? "a FIFO" : s.isSocket() ? "a socket" : "a device";
}

/** Throws a one-line error unless `path` is a regular file (links followed). */
export function requireFile(path: string, hint: PathHint = {}): void {
  let s: Stats;
  try {
    s = statSync(path);
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === "ENOENT") {
      throw new FileFormatError(hint.missing ?? `${path} does not exist`, hint.fix ?? "check the path", { cause: err });
    }
    throw fileSystemError(err, path);
  }
  if (!s.isFile()) throw new FileFormatError(`${path} is ${kind(s)}, not a file`, hint.fix ?? "give a file's path");
}

/** A regular file, opened for reading. */
export async function openFile(path: string, hint: PathHint = {}): Promise<FileHandle> {
  requireFile(path, hint);
  try {
    return await open(path, "r");
  } catch (err) {
    throw fileSystemError(err, path);
  }
}

/**
 * A regular file's text. It must be UTF-8: text in another encoding (Latin-1, Windows-1252) would otherwise
 * turn into U+FFFD replacement characters unnoticed, and be trained on. A byte-order mark is dropped.
 */
export async function readTextFile(path: string, hint: PathHint = {}): Promise<string> {
  requireFile(path, hint);
  let bytes: Buffer;
  try {
    bytes = await readFile(path);
  } catch (err) {
    throw fileSystemError(err, path);
  }
  return decodeUtf8(bytes, path);
}

/** A file holding one JSON object; anything else (bad JSON, an array, a number) is one line naming the file. */
export async function readJsonObject(path: string, hint: PathHint = {}): Promise<Record<string, unknown>> {
  const text = await readTextFile(path, hint);
  try {
    const v = JSON.parse(text) as unknown;
    if (typeof v !== "object" || v === null || Array.isArray(v)) throw new Error("not an object");
    return v as Record<string, unknown>;
  } catch (err) {
    throw new FileFormatError(
      `${path} is not a valid JSON object (${(err as Error).message})`,
      "fix or re-download it",
    );
  }
}

/** Offset of the first byte that does not belong to a well-formed UTF-8 sequence, or -1 (RFC 3629). */
export function firstInvalidUtf8(b: Uint8Array): number {
  for (let i = 0; i < b.length;) {
    const c = b[i];
    const need =
      c < 0x80 ? 0 : c >= 0xc2 && c <= 0xdf ? 1 : c >= 0xe0 && c <= 0xef ? 2 : c >= 0xf0 && c <= 0xf4 ? 3 : -1;
    if (need < 0 || i + need >= b.length + (need === 0 ? 1 : 0)) return i;
    // the second byte's range excludes overlong forms, surrogates and code points past U+10FFFF
    const lo = c === 0xe0 ? 0xa0 : c === 0xf0 ? 0x90 : 0x80;
    const hi = c === 0xed ? 0x9f : c === 0xf4 ? 0x8f : 0xbf;
    for (let k = 1; k <= need; k++) {
      const x = b[i + k];
      if (x < (k === 1 ? lo : 0x80) || x > (k === 1 ? hi : 0xbf)) return i;
    }
    i += need + 1;
  }
  return -1;
}

/** UTF-8 bytes as text, refused with the offset of the first bad byte; a leading byte-order mark is dropped. */
export function decodeUtf8(bytes: Uint8Array, path: string): string {
  if (!isUtf8(bytes)) {
    // the native check says whether; the offset for the message is found only then
    const bad = Math.max(0, firstInvalidUtf8(bytes));
    throw notUtf8(path, bad, bytes[bad]);
  }
  const text = Buffer.from(bytes.buffer, bytes.byteOffset, bytes.length).toString("utf8");
  return text.charCodeAt(0) === 0xfeff ? text.slice(1) : text;
}

export function notUtf8(path: string, offset: number, byte: number): FileFormatError {
  return new FileFormatError(
    `${path} is not UTF-8 text: byte ${offset} (0x${byte.toString(16).padStart(2, "0")}) starts no valid UTF-8 character`,
    "convert it to UTF-8 first (e.g. iconv -f latin1 -t utf-8 FILE > FILE.utf8)",
  );
}

/**
 * Fill `target` from `fh` at `position`, in reads of at most 1 GB (Node reads at most 2 GB per call). A file
 * that ends first throws `cutShort(at)`, `at` being where it ended.
 */
export async function readFully(
  fh: FileHandle,
  target: Uint8Array,
  position: number,
  cutShort: (at: number) => Error,
): Promise<void> {
  const CHUNK = 1 << 30;
  for (let done = 0; done < target.length;) {
    const { bytesRead } = await fh.read(target, done, Math.min(CHUNK, target.length - done), position + done);
    if (bytesRead === 0) throw cutShort(position + done);
    done += bytesRead;
  }
}

/** A regular file's bytes. */
export async function readBytesFile(path: string, hint: PathHint = {}): Promise<Buffer> {
  requireFile(path, hint);
  try {
    return await readFile(path);
  } catch (err) {
    throw fileSystemError(err, path);
  }
}
