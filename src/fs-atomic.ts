/**
 * Atomic file writes: write to a temporary file beside the target, fsync, then rename over it. Only a regular file
 * (or a name not yet taken) is replaced that way. A character device or a FIFO (/dev/null, /dev/stdout, a named
 * pipe a reader waits on) is written in place, as a shell's `>` would; a directory, block device or socket is
 * refused. A symbolic link is followed: the file it names is replaced, the link stays.
 */
import { existsSync, readdirSync, realpathSync, rmSync, statSync, type Stats } from "node:fs";
import { lstat, open, realpath, rename, rm, mkdir, stat, type FileHandle } from "node:fs/promises";
import { basename, dirname, join, resolve, sep } from "node:path";
import { FileSystemError, UsageError, fileSystemError } from "./errors.js";

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

/** `.NAME.tmp-PID-…` (NAME possibly shortened): the temporary files of some process, and which one. */
const TEMPORARY = /^\..+\.tmp-(\d+)-[0-9a-z]+$/;

function processAlive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch (err) {
    return (err as NodeJS.ErrnoException).code === "EPERM";
  }
}

/**
 * Removes the temporary files a killed llmctl left in `dir` (kill -9, a power cut): those whose process is gone.
 * Every atomic write sweeps its own directory, so a rerun cleans up after the run that died.
 */
export function removeStaleTemporaries(dir: string): void {
  let names: string[];
  try {
    names = readdirSync(dir);
  } catch {
    return;
  }
  for (const name of names) {
    const m = TEMPORARY.exec(name);
    if (m && Number(m[1]) !== process.pid && !processAlive(Number(m[1]))) rmSync(join(dir, name), { force: true });
  }
}

/** The temporary files being written now, removed if the process is ended by a signal (removeTemporariesNow). */
const active = new Set<string>();

/** Synchronously removes the temporary files of writes in progress: for a signal's last moment. */
export function removeTemporariesNow(): void {
  for (const tmp of active) rmSync(tmp, { force: true });
  active.clear();
}

type Target = { kind: "file"; path: string } | { kind: "in place"; path: string };

/** How `path` is to be written: replaced atomically (a regular file, or nothing yet), or written in place. */
async function writeTarget(path: string): Promise<Target> {
  let real = path;
  if ((await lstat(path).catch(() => undefined))?.isSymbolicLink()) {
    real = await realpath(path).catch(() => path); // a dangling link is replaced like a missing file
  }
  const s = await stat(real).catch(() => undefined);
  if (!s || s.isFile()) return { kind: "file", path: real };
  if (s.isCharacterDevice() || s.isFIFO()) return { kind: "in place", path: real };
  if (s.isDirectory()) {
    throw new FileSystemError(`${path} is a directory`, "give a file's path, not a directory's");
  }
  throw new FileSystemError(
    `${path} is ${s.isBlockDevice() ? "a block device" : "a socket"}, not a file llmctl writes`,
    "give the path of a file (a character device such as /dev/null, or a FIFO, is written in place)",
  );
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
 * Let `fill` write into `dir`; a directory it had to create is removed again when it fails, so a conversion that
 * fails (a CRC mismatch, Ctrl-C) leaves no trace. An existing directory is left as `fill` left it.
 */
export async function fillDirectory<T>(dir: string, fill: () => Promise<T>): Promise<T> {
  const created = !existsSync(dir);
  try {
    return await fill();
  } catch (err) {
    if (created) await rm(dir, { recursive: true, force: true });
    throw err;
  }
}

/**
 * Let `write` fill a temporary file beside `path`, then fsync and rename it into place. If anything fails, the
 * temporary file is removed, `path` is left as it was, and a filesystem error (disk full, no permission, …)
 * comes back as a FileSystemError naming `path`.
 */
export async function writeFileAtomicWith(path: string, write: (fh: FileHandle) => Promise<void>): Promise<void> {
  const target = await writeTarget(path);
  if (target.kind === "in place") return writeInPlace(target.path, write);
  const dir = dirname(target.path);
  const tmp = join(dir, temporaryName(basename(target.path)));
  let fh: FileHandle | undefined;
  try {
    await makeDirectory(dir);
    removeStaleTemporaries(dir);
    active.add(tmp);
    fh = await open(tmp, "w");
    await write(fh);
    await fh.sync();
    await fh.close();
    fh = undefined;
    await rename(tmp, target.path);
  } catch (err) {
    await fh?.close().catch(() => {}); // the write's own error is the one to report
    await rm(tmp, { force: true });
    throw fileSystemError(err, path);
  } finally {
    active.delete(tmp);
  }
}

/** A device or FIFO: opened for writing as it is (a FIFO waits for its reader, as with a shell's `>`). */
async function writeInPlace(path: string, write: (fh: FileHandle) => Promise<void>): Promise<void> {
  let fh: FileHandle | undefined;
  try {
    fh = await open(path, "w");
    await write(fh);
    await fh.close();
  } catch (err) {
    await fh?.close().catch(() => {});
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

/** A path a command reads or writes, and the flag that named it (for the message). */
export interface NamedPath {
  path: string;
  flag: string;
}

/** The real path of `path`, or of its parent joined with its name when it does not exist yet. */
function realPathOf(path: string): string {
  try {
    return realpathSync(path);
  } catch {
    const parent = dirname(resolve(path));
    return parent === resolve(path) ? parent : join(realPathOf(parent), basename(path));
  }
}

const within = (inner: string, outer: string) =>
  inner === outer || inner.startsWith(outer.endsWith(sep) ? outer : outer + sep);

/**
 * No command writes over what it reads, `--force` or not. An output file may not be an input (by real path, so
 * links and `..` do not hide it; by inode, so hard links do not either), nor an existing file inside an input
 * directory; an output directory may not be an input or hold one. Throws a UsageError naming both flags.
 */
export function refuseWritingInputs(outputs: (NamedPath & { directory?: boolean })[], inputs: NamedPath[]): void {
  for (const out of outputs) {
    const o = realPathOf(out.path);
    const oStat = statIfAny(o);
    for (const input of inputs) {
      const i = realPathOf(input.path);
      const iStat = statIfAny(i);
      const sameFile = o === i || (oStat && iStat && oStat.dev === iStat.dev && oStat.ino === iStat.ino);
      const clash = out.directory
        ? within(i, o)
        : sameFile || (iStat?.isDirectory() === true && within(o, i) && oStat?.isFile() === true);
      if (clash) {
        const what = sameFile
          ? `is ${input.flag} ${input.path}`
          : out.directory
            ? `holds ${input.flag} ${input.path}`
            : `is inside ${input.flag} ${input.path}`;
        throw new UsageError(
          `${out.flag} ${out.path} ${what}, which this command reads`,
          `choose another ${out.flag}: writing there would destroy the input, --force or not`,
        );
      }
    }
  }
}

function statIfAny(path: string): Stats | undefined {
  try {
    return statSync(path);
  } catch {
    return undefined;
  }
}
