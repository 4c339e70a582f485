/** Atomic file writes: write to a temporary file beside the target, fsync, then rename over it. */
import { open, rename, rm, mkdir, type FileHandle } from "node:fs/promises";
import { dirname, basename, join } from "node:path";

/**
 * Let `write` fill a temporary file beside `path`, then fsync and rename it into place. If `write` throws, the
 * temporary file is removed and `path` is left as it was.
 */
export async function writeFileAtomicWith(path: string, write: (fh: FileHandle) => Promise<void>): Promise<void> {
  await mkdir(dirname(path), { recursive: true });
  const tmp = join(dirname(path), `.${basename(path)}.tmp-${process.pid}-${Date.now()}`);
  const fh = await open(tmp, "w");
  try {
    await write(fh);
    await fh.sync();
  } catch (err) {
    await fh.close();
    await rm(tmp, { force: true });
    throw err;
  }
  await fh.close();
  await rename(tmp, path);
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
