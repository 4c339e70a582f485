/** Atomic file writes: write to a temporary file beside the target, fsync, then rename over it. */
import { existsSync } from "node:fs";
import { open, rename, rm, mkdir, type FileHandle } from "node:fs/promises";
import { dirname, basename, join } from "node:path";
import { fileSystemError } from "./errors.js";

/** The longest file name most file systems take (NAME_MAX), in bytes. */
const NAME_MAX = 255;

/**
 * A temporary name beside `name`: `.NAME.tmp-PID-TIME`, with NAME shortened where that would pass NAME_MAX, so
 * a final name that is legal never fails for its temporary one.
 */
function temporaryName(name: string): string {
  const suffix = `.tmp-${process.pid}-${Date.now().toString(36)}`;
  let stem = name;
  while (stem.length > 1 && Buffer.byteLength(`.${stem}${suffix}`) > NAME_MAX) stem = stem.slice(0, -1);
  return `.${stem}${suffix}`;
}

/**
 * `mkdir -p dir`, its failure a FileSystemError. Node's recursive mkdir reports ENOENT for a read-only or
 * forbidden parent, so the first missing directory is then made alone to learn the real cause.
 */
export async function makeDirectory(dir: string): Promise<void> {
  try {
    await mkdir(dir, { recursive: true });
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === "ENOENT") {
      let top = dir;
      while (!existsSync(dirname(top)) && dirname(top) !== top) top = dirname(top);
      await mkdir(top).catch((e: unknown) => {
        throw fileSystemError(e, top);
      });
    }
    throw fileSystemError(err, dir);
  }
}

/**
 * Let `write` fill a temporary file beside `path`, then fsync and rename it into place. If anything fails, the
 * temporary file is removed, `path` is left as it was, and a filesystem error (disk full, no permission, …)
 * comes back as a FileSystemError naming `path`.
 */
export async function writeFileAtomicWith(path: string, write: (fh: FileHandle) => Promise<void>): Promise<void> {
  const tmp = join(dirname(path), temporaryName(basename(path)));
  let fh: FileHandle | undefined;
  try {
    await makeDirectory(dirname(path));
    fh = await open(tmp, "w");
    await write(fh);
    await fh.sync();
    await fh.close();
    fh = undefined;
    await rename(tmp, path);
  } catch (err) {
    await fh?.close().catch(() => {}); // the write's own error is the one to report
    await rm(tmp, { force: true });
    throw fileSystemError(err, path);
  }
}

export async function writeFileAtomic(path: string, data: Uint8Array | string | Uint8Array[]): Promise<void> {
  await writeFileAtomicWith(path, async (fh) => {
    for (const part of Array.isArray(data) ? data : [data]) await fh.writeFile(part); // each call continues where the last ended
  });
}

/** Write all of `bytes` at the handle's position (one write call is limited to 2 GB and may write less). */
export async function writeAll(fh: FileHandle, bytes: Uint8Array): Promise<void> {
  const CHUNK = 1 << 30;
  let done = 0;
  while (done < bytes.length) {
    const { bytesWritten } = await fh.write(bytes, done, Math.min(CHUNK, bytes.length - done));
    done += bytesWritten;
  }
}
