/**
 * The book's three datasets by name, fetched once into the cache and verified by sha256.
 *
 * Where the bytes come from, in order (docs/datasets.md):
 *   1. the cache, `$LLMCTL_CACHE/datasets/<file>` (default ~/.cache/llmctl), if its sha256 is right;
 *   2. `$LLMCTL_DATA_MIRROR` when set — a directory or a base URL holding the plain file names — and nothing
 *      else: a mirror is an explicit choice, so its failure is reported, not papered over;
 *   3. otherwise the canonical URLs the book downloads from (for sms-spam the UCI zip, then the book's
 *      backup copy of it, unpacked here);
 *   4. and only if all of those fail, `../shared/datasets` next to the repository when it exists (the
 *      offline workspace this project is developed in), with a note saying so.
 * Every source is checked against the same sha256, so which one served the bytes cannot change them.
 */
import { createHash } from "node:crypto";
import { existsSync, readFileSync, statSync } from "node:fs";
import { readFile, rm } from "node:fs/promises";
import { dirname, join, posix, resolve } from "node:path";
import { fileURLToPath, pathToFileURL } from "node:url";
import { FileFormatError, NetworkError, UsageError } from "../errors.js";
import { writeFileAtomic } from "../fs-atomic.js";
import { cacheRoot, download, sha256File, type DownloadOptions } from "./download.js";
import { readZip } from "./zip.js";

export type DatasetName = "the-verdict" | "sms-spam" | "instruction-data";

export interface DatasetInfo {
  name: DatasetName;
  /** File name in the cache and in mirrors. */
  file: string;
  bytes: number;
  sha256: string;
  /** Canonical sources, tried in order. */
  urls: readonly string[];
  /** When the URLs serve a ZIP archive: the member to unpack (its sha256 is the one checked). */
  zipMember?: string;
  format: string;
  license: string;
}

/** Sizes and checksums from ../shared/datasets/SOURCES.md (checked with sha256sum). */
export const DATASETS: Readonly<Record<DatasetName, DatasetInfo>> = {
  "the-verdict": {
    name: "the-verdict",
    file: "the-verdict.txt",
    bytes: 20_479,
    sha256: "b41e41a68f0398a3154ae69e2e4c0e2694e17fe0d66730536837f1b01935b31f",
    urls: ["https://raw.githubusercontent.com/rasbt/LLMs-from-scratch/main/ch02/01_main-chapter-code/the-verdict.txt"],
    format: "plain text, ASCII, 20,479 characters (5,145 GPT-2 tokens)",
    license: "public domain (Edith Wharton, 1908)",
  },
  "sms-spam": {
    name: "sms-spam",
    file: "SMSSpamCollection",
    bytes: 477_907,
    sha256: "7d039a24a6083ed9ef0f806ebad56bbb976e3aeb8de05669173bfdc4996c239d",
    urls: [
      "https://archive.ics.uci.edu/static/public/228/sms+spam+collection.zip",
      "https://f001.backblazeb2.com/file/LLMs-from-scratch/sms%2Bspam%2Bcollection.zip",
    ],
    zipMember: "SMSSpamCollection",
    format: "UTF-8 lines `label<TAB>text`, label ham|spam, 5,574 lines",
    license: "CC BY 4.0 (Almeida & Gómez Hidalgo, UCI ML Repository, doi:10.24432/C5CC84)",
  },
  "instruction-data": {
    name: "instruction-data",
    file: "instruction-data.json",
    bytes: 203_524,
    sha256: "7e09a9af353722ca15c18bc580f093f9c39d3178335a75177319cb1e1d163944",
    urls: [
      "https://raw.githubusercontent.com/rasbt/LLMs-from-scratch/main/ch07/01_main-chapter-code/instruction-data.json",
    ],
    format: "JSON array of 1,100 {instruction, input, output} objects",
    license: "Apache-2.0 (Sebastian Raschka, LLMs-from-scratch)",
  },
};

export const DATASET_NAMES = Object.keys(DATASETS) as DatasetName[];

export function isDatasetName(name: string): name is DatasetName {
  return Object.hasOwn(DATASETS, name);
}

export function datasetInfo(name: string): DatasetInfo {
  if (!isDatasetName(name)) {
    throw new UsageError(`unknown dataset '${name}'`, `use one of: ${DATASET_NAMES.join(", ")}`);
  }
  return DATASETS[name];
}

/** The repository root: the nearest ancestor of this module with llmctl's package.json. */
function repoRoot(): string | undefined {
  let dir = dirname(fileURLToPath(import.meta.url));
  for (;;) {
    const pkg = join(dir, "package.json");
    if (existsSync(pkg)) {
      try {
        if ((JSON.parse(readFileSync(pkg, "utf8")) as { name?: string }).name === "llmctl") return dir;
      } catch {
        // not ours; keep climbing
      }
    }
    const up = dirname(dir);
    if (up === dir) return undefined;
    dir = up;
  }
}

/** `<repo>/../shared/datasets`, the last-resort source when the network fails (see the module comment). */
export function defaultFallbackDir(): string | undefined {
  const root = repoRoot();
  return root ? join(root, "..", "shared", "datasets") : undefined;
}

export interface FetchDatasetOptions {
  /** Bytes so far and the total when known, for the file being fetched. */
  onProgress?: (received: number, total?: number) => void;
  /** Which source is used and which failed — for --verbose. */
  onNote?: (message: string) => void;
  signal?: AbortSignal;
  /** Cache root; default $LLMCTL_CACHE, else ~/.cache/llmctl. Files go to `<cacheDir>/datasets/`. */
  cacheDir?: string;
  /** A directory or base URL; default $LLMCTL_DATA_MIRROR. An empty string means no mirror. */
  mirror?: string;
  /** Searched when every URL fails; default `<repo>/../shared/datasets`; null turns it off. */
  fallbackDir?: string | null;
  /** Replace the canonical URLs (tests; a local proxy). */
  urls?: readonly string[];
  /** Retry and timeout settings passed to download(). */
  download?: Pick<DownloadOptions, "retries" | "timeoutMs" | "retryDelayMs">;
}

function fixFor(info: DatasetInfo): string {
  return `set LLMCTL_DATA_MIRROR to a directory or base URL that holds ${info.file}, or pass --data FILE`;
}

/** The URL of `file` in a mirror given as a directory (path or file: URL) or an http(s) base URL. */
export function mirrorUrl(mirror: string, file: string): string {
  if (/^https?:\/\//i.test(mirror)) {
    const base = mirror.endsWith("/") ? mirror : mirror + "/";
    return new URL(encodeURIComponent(file), base).href;
  }
  const dir = mirror.startsWith("file:") ? fileURLToPath(mirror) : resolve(mirror);
  let isDir = false;
  try {
    isDir = statSync(dir).isDirectory();
  } catch {
    // reported below
  }
  if (!isDir) {
    throw new NetworkError(
      `LLMCTL_DATA_MIRROR=${mirror} is neither an existing directory nor an http(s) URL`,
      `point it at a directory or base URL that holds ${DATASET_NAMES.map((n) => DATASETS[n].file).join(", ")}, or unset it`,
    );
  }
  return pathToFileURL(join(dir, file)).href;
}

/**
 * Make dataset `name` available locally and return the path of the verified file (always inside the
 * cache, whatever the source). Throws NetworkError naming the source and the fix when no source works.
 */
export async function fetchDataset(name: string, opts: FetchDatasetOptions = {}): Promise<string> {
  const info = datasetInfo(name);
  const note = opts.onNote ?? (() => {});
  const dir = join(opts.cacheDir ?? cacheRoot(), "datasets");
  const dest = join(dir, info.file);

  if (existsSync(dest)) {
    if ((await sha256File(dest)) === info.sha256) {
      note(`${name}: using cached ${dest}`);
      return dest;
    }
    note(`${name}: cached ${dest} has the wrong sha256; fetching it again`);
    await rm(dest, { force: true });
  }

  const common: DownloadOptions = {
    ...opts.download,
    onProgress: opts.onProgress,
    signal: opts.signal,
  };
  const verified: DownloadOptions = { ...common, sha256: info.sha256, expectedSize: info.bytes, fix: fixFor(info) };

  const mirror = opts.mirror ?? process.env.LLMCTL_DATA_MIRROR ?? "";
  if (mirror !== "") {
    const source = mirrorUrl(mirror, info.file);
    note(`${name}: fetching ${source} (LLMCTL_DATA_MIRROR)`);
    await download(source, dest, {
      ...verified,
      fix: `LLMCTL_DATA_MIRROR=${mirror} must be a directory or base URL that holds ${info.file}; fix or unset it, or pass --data FILE`,
    });
    return dest;
  }

  const failures: string[] = [];
  for (const url of opts.urls ?? info.urls) {
    note(`${name}: downloading ${url}`);
    try {
      if (info.zipMember) await fetchZipMember(url, dir, dest, info, { ...common, fix: fixFor(info) });
      else await download(url, dest, verified);
      return dest;
    } catch (err) {
      if (!(err instanceof NetworkError || err instanceof FileFormatError)) throw err;
      failures.push(err.message);
      note(`${name}: ${err.message}`);
    }
  }

  const fallbackDir = opts.fallbackDir === undefined ? defaultFallbackDir() : opts.fallbackDir;
  const local = fallbackDir ? join(fallbackDir, info.file) : undefined;
  if (local && existsSync(local)) {
    note(`${name}: the download failed; using the local copy ${local}`);
    try {
      await download(pathToFileURL(local).href, dest, verified);
      return dest;
    } catch (err) {
      if (!(err instanceof NetworkError)) throw err;
      failures.push(err.message);
    }
  }

  const more =
    failures.length > 1
      ? ` (and ${failures.length - 1} more source${failures.length > 2 ? "s" : ""} failed; --verbose lists them)`
      : "";
  throw new NetworkError(`could not fetch dataset ${name}: ${failures[0] ?? "no source to try"}${more}`, fixFor(info));
}

/** Download a ZIP, unpack `info.zipMember`, check its sha256, write it to `dest`; the archive is deleted. */
async function fetchZipMember(
  url: string,
  dir: string,
  dest: string,
  info: DatasetInfo,
  opts: DownloadOptions,
): Promise<void> {
  // One archive name per URL, so a partial download from one source is never resumed from another.
  const zipPath = join(dir, `${info.name}-${createHash("sha256").update(url).digest("hex").slice(0, 12)}.zip`);
  await download(url, zipPath, opts); // the archive's own checksum is not published; its member's is
  try {
    const entries = readZip(await readFile(zipPath), url);
    const entry = entries.find((e) => posix.basename(e.name) === info.zipMember);
    if (!entry) {
      throw new NetworkError(
        `${url} has no member ${info.zipMember} (it holds: ${entries.map((e) => e.name).join(", ") || "nothing"})`,
        opts.fix,
      );
    }
    const data = entry.read();
    const got = createHash("sha256").update(data).digest("hex");
    if (got !== info.sha256) {
      throw new NetworkError(
        `checksum mismatch for ${info.zipMember} in ${url}: expected sha256 ${info.sha256}, got ${got} (nothing was kept)`,
        opts.fix,
      );
    }
    await writeFileAtomic(dest, data);
  } finally {
    await rm(zipPath, { force: true });
  }
}

/**
 * What `--data X` (or another flag's, `flag`) means on every command: an existing file path wins; otherwise X
 * must be a dataset name, fetched as above. Returns a local file path; the command checks the format it expects.
 */
export async function resolveDataPath(
  nameOrFile: string,
  opts: FetchDatasetOptions & { flag?: string } = {},
): Promise<string> {
  const flag = opts.flag ?? "--data";
  const path = resolve(nameOrFile);
  if (existsSync(path)) {
    if (statSync(path).isDirectory())
      throw new UsageError(`${flag} ${nameOrFile} is a directory`, "pass a data file or a dataset name");
    return path;
  }
  if (isDatasetName(nameOrFile)) return fetchDataset(nameOrFile, opts);
  throw new UsageError(
    `${flag} ${nameOrFile}: no such file, and not a dataset name`,
    `pass an existing file or one of: ${DATASET_NAMES.join(", ")}`,
  );
}
