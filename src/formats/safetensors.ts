/**
 * safetensors: an 8-byte little-endian header length N, N bytes of JSON, then raw little-endian tensor bytes.
 * The JSON maps each tensor name to `{dtype, shape, data_offsets: [begin, end]}` (offsets relative to the first
 * byte after the header) plus an optional `"__metadata__": {string: string}`.
 * Spec: https://github.com/huggingface/safetensors (README, "Format").
 *
 * The reader validates the header the way the reference implementation does (length bounds, JSON, known dtype,
 * size = dtype size × element count, offsets in range, tensors tiling the data section with no overlap and no
 * gap) and then reads one tensor at a time from a file handle, so a 6 GB checkpoint never sits in one buffer.
 * The writer takes tensors lazily for the same reason: it needs every name and shape up front (they go in the
 * header), but each tensor's values only when it is its turn to be written.
 */
import { openFile, readFully } from "./file.js";
import type { FileHandle } from "node:fs/promises";
import { FileFormatError, InterruptedError } from "../errors.js";
import { writeAll, writeFileAtomicWith } from "../fs-atomic.js";
import { LITTLE_ENDIAN, decodeFloat, encodeFloat, numElements, type FloatDtype } from "./float.js";

export type SafetensorsDtype =
  | "F64"
  | "F32"
  | "F16"
  | "BF16"
  | "I64"
  | "I32"
  | "I16"
  | "I8"
  | "U64"
  | "U32"
  | "U16"
  | "U8"
  | "BOOL"
  | "F8_E4M3"
  | "F8_E5M2";

/** Bytes per element of each dtype the format defines. */
export const DTYPE_SIZE: Readonly<Record<SafetensorsDtype, number>> = {
  F64: 8,
  F32: 4,
  F16: 2,
  BF16: 2,
  I64: 8,
  I32: 4,
  I16: 2,
  I8: 1,
  U64: 8,
  U32: 4,
  U16: 2,
  U8: 1,
  BOOL: 1,
  F8_E4M3: 1,
  F8_E5M2: 1,
};

/** The dtypes `read()` turns into float32. */
const FLOAT_DTYPES = new Set<SafetensorsDtype>(["F64", "F32", "F16", "BF16"] satisfies FloatDtype[]);

/** The reference implementation refuses headers above 100 MB; so do we (a corrupt length must not allocate GBs). */
export const MAX_HEADER_BYTES = 100_000_000;

export interface TensorInfo {
  dtype: SafetensorsDtype;
  shape: number[];
  /** [begin, end) in bytes, relative to the start of the data section. */
  offsets: [number, number];
}

export interface SafetensorsEntry {
  name: string;
  shape: number[];
  /** The values (row-major), or a function producing them when the writer reaches this tensor. */
  data: Float32Array | (() => Float32Array | Promise<Float32Array>);
}

function formatError(path: string, problem: string): FileFormatError {
  return new FileFormatError(
    `${path} is not a valid safetensors file: ${problem}`,
    "re-download or re-create the file (it may be truncated or corrupt)",
  );
}

/** An open safetensors file. Tensors are read on demand; call close() when done. */
export class SafetensorsFile {
  readonly path: string;
  readonly tensors: Map<string, TensorInfo>;
  readonly metadata: Record<string, string>;
  /** Absolute file offset of the data section (8 + header length). */
  readonly dataStart: number;
  private fh: FileHandle | undefined;

  constructor(
    path: string,
    fh: FileHandle,
    tensors: Map<string, TensorInfo>,
    metadata: Record<string, string>,
    dataStart: number,
  ) {
    this.path = path;
    this.fh = fh;
    this.tensors = tensors;
    this.metadata = metadata;
    this.dataStart = dataStart;
  }

  info(name: string): TensorInfo {
    const info = this.tensors.get(name);
    if (!info)
      throw new FileFormatError(
        `${this.path} has no tensor named '${name}'`,
        "check the tensor name (see `llmctl info`)",
      );
    return info;
  }

  /** The raw little-endian bytes of one tensor. */
  async readBytes(name: string): Promise<Uint8Array> {
    const info = this.info(name);
    const bytes = new Uint8Array(info.offsets[1] - info.offsets[0]);
    await this.readInto(bytes, this.dataStart + info.offsets[0]);
    return bytes;
  }

  /** One tensor as float32 (F32 as is; F16, BF16 and F64 converted), row-major. */
  async read(name: string): Promise<Float32Array> {
    const info = this.info(name);
    if (!FLOAT_DTYPES.has(info.dtype)) {
      throw new FileFormatError(
        `${this.path}: tensor '${name}' has dtype ${info.dtype}, not a floating-point type`,
        "only F32, F16, BF16 and F64 tensors can be read as weights",
      );
    }
    const n = numElements(info.shape);
    const start = this.dataStart + info.offsets[0];
    if (info.dtype === "F32" && LITTLE_ENDIAN) {
      // Read straight into the result's memory: no second copy of a 300 MB embedding.
      const out = new Float32Array(n);
      await this.readInto(new Uint8Array(out.buffer), start);
      return out;
    }
    const bytes = new Uint8Array(info.offsets[1] - info.offsets[0]);
    await this.readInto(bytes, start);
    return decodeFloat(info.dtype as FloatDtype, bytes, n);
  }

  private async readInto(target: Uint8Array, position: number): Promise<void> {
    if (!this.fh) throw new FileFormatError(`${this.path} was already closed`, "open it again with readSafetensors()");
    await readFully(this.fh, target, position, (at) => formatError(this.path, `unexpected end of file at byte ${at}`));
  }

  async close(): Promise<void> {
    const fh = this.fh;
    this.fh = undefined;
    await fh?.close();
  }
}

/** Parse and validate the header; leaves the file open for reading tensors. */
export async function readSafetensors(path: string): Promise<SafetensorsFile> {
  const fh = await openFile(path);
  try {
    const { size } = await fh.stat();
    const { tensors, metadata, dataStart } = await parseHeader(path, fh, size);
    return new SafetensorsFile(path, fh, tensors, metadata, dataStart);
  } catch (err) {
    await fh.close();
    throw err;
  }
}

async function parseHeader(path: string, fh: FileHandle, fileSize: number) {
  if (fileSize < 8) throw formatError(path, `file is ${fileSize} bytes, shorter than the 8-byte header length`);
  const lenBuf = Buffer.alloc(8);
  await fh.read(lenBuf, 0, 8, 0);
  const headerLen = lenBuf.readBigUInt64LE(0);
  if (headerLen > BigInt(MAX_HEADER_BYTES))
    throw formatError(path, `header length ${headerLen} exceeds the ${MAX_HEADER_BYTES}-byte limit`);
  const n = Number(headerLen);
  if (8 + n > fileSize)
    throw formatError(path, `header length ${n} runs past the end of the ${fileSize}-byte file (truncated?)`);
  if (n < 2) throw formatError(path, `header length ${n} is too small for a JSON object`);
  const headerBuf = Buffer.alloc(n);
  await fh.read(headerBuf, 0, n, 8);
  let text: string;
  try {
    text = new TextDecoder("utf-8", { fatal: true }).decode(headerBuf);
  } catch {
    throw formatError(path, "header is not valid UTF-8");
  }
  if (!text.startsWith("{")) throw formatError(path, "header does not start with '{'");
  let json: unknown;
  try {
    json = JSON.parse(text);
  } catch (err) {
    throw formatError(path, `header is not valid JSON (${(err as Error).message})`);
  }
  if (typeof json !== "object" || json === null || Array.isArray(json))
    throw formatError(path, "header is not a JSON object");
  // JSON.parse keeps the last of two equal keys; a reader that keeps the first would see other tensors
  const duplicate = duplicateKey(text);
  if (duplicate !== undefined) throw formatError(path, `header has the key ${JSON.stringify(duplicate)} twice`);

  const dataStart = 8 + n;
  const dataSize = fileSize - dataStart;
  const tensors = new Map<string, TensorInfo>();
  let metadata: Record<string, string> = {};
  for (const [name, raw] of Object.entries(json as Record<string, unknown>)) {
    if (name === "__metadata__") {
      metadata = validateMetadata(path, raw);
      continue;
    }
    tensors.set(name, validateEntry(path, name, raw));
  }

  // Tensors must tile the data section exactly: sorted by offset, each begins where the previous ended.
  const byOffset = [...tensors.entries()].sort(
    (a, b) => a[1].offsets[0] - b[1].offsets[0] || a[1].offsets[1] - b[1].offsets[1],
  );
  let expected = 0;
  for (const [name, info] of byOffset) {
    const [begin] = info.offsets;
    if (begin < expected)
      throw formatError(
        path,
        `tensor '${name}' at bytes [${info.offsets.join(", ")}) overlaps the previous tensor (which ends at ${expected})`,
      );
    if (begin > expected)
      throw formatError(
        path,
        `gap in the data section: bytes ${expected}..${begin} belong to no tensor (before '${name}')`,
      );
    expected = info.offsets[1];
  }
  if (expected > dataSize) {
    throw formatError(
      path,
      `the tensors need ${expected} data bytes but the file has only ${dataSize} after the header (truncated)`,
    );
  }
  if (expected < dataSize) throw formatError(path, `${dataSize - expected} trailing bytes after the last tensor`);
  return { tensors, metadata, dataStart };
}

/** The first key that appears twice in one object of a valid JSON text, or undefined. */
function duplicateKey(text: string): string | undefined {
  const objects: (Set<string> | null)[] = []; // per open bracket: the object's keys so far, null for an array
  let expectKey = false;
  for (let i = 0; i < text.length; i++) {
    const c = text[i];
    if (c === '"') {
      let end = i + 1;
      while (text[end] !== '"') end += text[end] === "\\" ? 2 : 1;
      if (expectKey) {
        const keys = objects[objects.length - 1]!;
        const key = JSON.parse(text.slice(i, end + 1)) as string;
        if (keys.has(key)) return key;
        keys.add(key);
        expectKey = false;
      }
      i = end;
    } else if (c === "{") {
      objects.push(new Set());
      expectKey = true;
    } else if (c === "[") {
      objects.push(null);
    } else if (c === "}" || c === "]") {
      objects.pop();
    } else if (c === ",") {
      expectKey = objects[objects.length - 1] != null;
    }
  }
  return undefined;
}

function validateMetadata(path: string, raw: unknown): Record<string, string> {
  if (typeof raw !== "object" || raw === null || Array.isArray(raw))
    throw formatError(path, "__metadata__ is not an object");
  for (const [k, v] of Object.entries(raw)) {
    if (typeof v !== "string") throw formatError(path, `__metadata__ value for '${k}' is not a string`);
  }
  return raw as Record<string, string>;
}

function validateEntry(path: string, name: string, raw: unknown): TensorInfo {
  const bad = (what: string) => formatError(path, `tensor '${name}': ${what}`);
  if (typeof raw !== "object" || raw === null || Array.isArray(raw)) throw bad("entry is not an object");
  const { dtype, shape, data_offsets: offsets } = raw as Record<string, unknown>;
  if (typeof dtype !== "string" || !(dtype in DTYPE_SIZE)) throw bad(`unknown dtype ${JSON.stringify(dtype)}`);
  if (!Array.isArray(shape) || !shape.every((d) => Number.isSafeInteger(d) && d >= 0)) {
    throw bad(`shape ${JSON.stringify(shape)} is not a list of non-negative integers`);
  }
  if (!Array.isArray(offsets) || offsets.length !== 2 || !offsets.every((o) => Number.isSafeInteger(o) && o >= 0)) {
    throw bad(`data_offsets ${JSON.stringify(offsets)} is not a pair of non-negative integers`);
  }
  const [begin, end] = offsets as [number, number];
  if (end < begin) throw bad(`data_offsets [${begin}, ${end}] end before they begin`);
  const want = numElements(shape) * DTYPE_SIZE[dtype as SafetensorsDtype];
  if (end - begin !== want) {
    throw bad(`holds ${end - begin} bytes but ${dtype} ${JSON.stringify(shape)} needs ${want}`);
  }
  return { dtype: dtype as SafetensorsDtype, shape: shape as number[], offsets: [begin, end] };
}

/** The header bytes for these entries (all F32), padded with spaces so the data starts 8-byte aligned. */
export function encodeHeader(
  entries: readonly { name: string; shape: readonly number[] }[],
  metadata?: Record<string, string>,
): { header: Uint8Array; offsets: Map<string, [number, number]> } {
  const header: Record<string, unknown> = {};
  if (metadata && Object.keys(metadata).length > 0) header.__metadata__ = metadata;
  const offsets = new Map<string, [number, number]>();
  let pos = 0;
  for (const e of entries) {
    const end = pos + numElements(e.shape) * 4;
    header[e.name] = { dtype: "F32", shape: [...e.shape], data_offsets: [pos, end] };
    offsets.set(e.name, [pos, end]);
    pos = end;
  }
  const json = Buffer.from(JSON.stringify(header), "utf8");
  const padded = Math.ceil(json.length / 8) * 8;
  const out = new Uint8Array(8 + padded).fill(0x20);
  new DataView(out.buffer).setBigUint64(0, BigInt(padded), true);
  out.set(json, 8);
  return { header: out, offsets };
}

/**
 * Write F32 tensors in sorted-name order, atomically (temporary file + fsync + rename). Each entry's data may
 * be a function: it is called only when that tensor is written, and its result can be dropped right after,
 * so peak memory is one tensor, not the model.
 */
export async function writeSafetensors(
  path: string,
  entries: Iterable<SafetensorsEntry> | AsyncIterable<SafetensorsEntry>,
  metadata?: Record<string, string>,
  opts: { signal?: AbortSignal } = {},
): Promise<void> {
  const list: SafetensorsEntry[] = [];
  for await (const e of entries) list.push(e);
  list.sort((a, b) => (a.name < b.name ? -1 : a.name > b.name ? 1 : 0));
  for (let i = 0; i < list.length; i++) {
    const e = list[i]!;
    if (e.name === "__metadata__")
      throw new FileFormatError("'__metadata__' cannot be a tensor name", "rename the tensor");
    if (i > 0 && list[i - 1]!.name === e.name)
      throw new FileFormatError(`tensor '${e.name}' is given twice`, "give each tensor a unique name");
    if (!e.shape.every((d) => Number.isSafeInteger(d) && d >= 0)) {
      throw new FileFormatError(
        `tensor '${e.name}' has an invalid shape ${JSON.stringify(e.shape)}`,
        "use non-negative integer dimensions",
      );
    }
  }
  const { header } = encodeHeader(list, metadata);

  await writeFileAtomicWith(path, async (fh) => {
    await writeAll(fh, header);
    for (const e of list) {
      // Checked between tensors: an interrupted write removes its temporary file and leaves `path` as it was.
      if (opts.signal?.aborted) throw new InterruptedError(`writing ${path} was interrupted`, "run the command again");
      const data = typeof e.data === "function" ? await e.data() : e.data;
      const n = numElements(e.shape);
      if (data.length !== n) {
        throw new FileFormatError(
          `tensor '${e.name}' has ${data.length} values but shape ${JSON.stringify(e.shape)} needs ${n}`,
          "pass data matching the shape",
        );
      }
      await writeAll(fh, encodeFloat("F32", data));
    }
  });
}

/** Read every tensor of a file as float32 (convenience for small files and tests). */
export async function readAllSafetensors(
  path: string,
): Promise<{ tensors: Map<string, { shape: number[]; data: Float32Array }>; metadata: Record<string, string> }> {
  const file = await readSafetensors(path);
  try {
    const tensors = new Map<string, { shape: number[]; data: Float32Array }>();
    for (const [name, info] of file.tensors) tensors.set(name, { shape: info.shape, data: await file.read(name) });
    return { tensors, metadata: file.metadata };
  } finally {
    await file.close();
  }
}
