/**
 * Opening the files llmctl is given. A path that names a directory (or a device, a socket) where a file is
 * expected is one line naming it; Node says only "EISDIR" and no path, and only at the first read.
 */
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

/** A regular file's text (UTF-8). */
export async function readTextFile(path: string, hint: PathHint = {}): Promise<string> {
  requireFile(path, hint);
  try {
    return await readFile(path, "utf8");
  } catch (err) {
    throw fileSystemError(err, path);
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
