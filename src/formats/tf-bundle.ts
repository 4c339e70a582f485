/**
 * TensorFlow checkpoint V2 ("tensor bundle") reader: `<prefix>.index` + `<prefix>.data-00000-of-0000N`.
 * Format (tensorflow/core/util/tensor_bundle/tensor_bundle.{h,cc}, tensorflow/core/protobuf/tensor_bundle.proto):
 *
 * - the `.index` file is a LevelDB table (see leveldb-table.ts). Its first key is "" and holds a
 *   BundleHeaderProto {num_shards = 1, endianness = 2 (LITTLE 0 | BIG 1), version = 3 (VersionDef)};
 *   every other key is a tensor name whose value is a BundleEntryProto {dtype = 1, shape = 2
 *   (TensorShapeProto: repeated dim = 2 {size = 1}), shard_id = 3, offset = 4, size = 5, crc32c = 6 (fixed32,
 *   masked), slices = 7};
 * - the `.data` shards hold the raw tensor bytes at those offsets, not necessarily in key order;
 * - numeric tensors are stored as their in-memory little-endian bytes; DT_STRING tensors as one varint64 length
 *   per element, a masked CRC32C of the lengths (each as a little-endian uint32, uint64 when > 4 GB), then the
 *   bytes. The entry's crc32c covers the bytes (for strings: the lengths as integers, the length checksum and
 *   the string bytes).
 *
 * Every table block checksum and every tensor checksum is verified; tensors are read one at a time.
 */
import { openFile, readBytesFile, readFully } from "./file.js";
import { open, stat, writeFile, type FileHandle } from "node:fs/promises";
import { makeDirectory } from "../fs-atomic.js";
import { dirname } from "node:path";
import { FileFormatError } from "../errors.js";
import { crc32cExtend, maskCrc, unmaskCrc } from "./crc32c.js";
import { compareBytes, readTable, writeTable, type Table } from "./leveldb-table.js";
import {
  decodeMessage,
  fixed32Field,
  int64Field,
  intField,
  messageFields,
  readVarint,
  type ProtoField,
} from "./protobuf.js";
import { LITTLE_ENDIAN, decodeFloat, numElements, type FloatDtype } from "./float.js";

/**
 * TensorFlow DataType enum (tensorflow/core/framework/types.proto) with element sizes (0 = variable size) and, for
 * the types read with their natural element type, the typed array over their little-endian bytes.
 */
export const TF_DTYPES: Readonly<
  Record<number, { name: string; size: number; array?: (buf: ArrayBuffer) => TensorValues }>
> = {
  1: { name: "DT_FLOAT", size: 4, array: (b) => new Float32Array(b) },
  2: { name: "DT_DOUBLE", size: 8, array: (b) => new Float64Array(b) },
  3: { name: "DT_INT32", size: 4, array: (b) => new Int32Array(b) },
  4: { name: "DT_UINT8", size: 1, array: (b) => new Uint8Array(b) },
  5: { name: "DT_INT16", size: 2, array: (b) => new Int16Array(b) },
  6: { name: "DT_INT8", size: 1, array: (b) => new Int8Array(b) },
  7: { name: "DT_STRING", size: 0 },
  8: { name: "DT_COMPLEX64", size: 8 },
  9: { name: "DT_INT64", size: 8, array: (b) => new BigInt64Array(b) },
  10: { name: "DT_BOOL", size: 1, array: (b) => new Uint8Array(b) },
  14: { name: "DT_BFLOAT16", size: 2 },
  17: { name: "DT_UINT16", size: 2, array: (b) => new Uint16Array(b) },
  18: { name: "DT_COMPLEX128", size: 16 },
  19: { name: "DT_HALF", size: 2 },
  22: { name: "DT_UINT32", size: 4, array: (b) => new Uint32Array(b) },
  23: { name: "DT_UINT64", size: 8, array: (b) => new BigUint64Array(b) },
};
export const DT_FLOAT = 1;
export const DT_DOUBLE = 2;
export const DT_STRING = 7;
export const DT_BFLOAT16 = 14;
export const DT_HALF = 19;

/** The newest bundle format version this reader understands (kTensorBundleVersion). */
const BUNDLE_VERSION = 1;

export interface BundleHeader {
  numShards: number;
  endianness: "LITTLE" | "BIG";
  version: { producer: number; minConsumer: number; badConsumers: number[] };
}

export interface BundleEntry {
  key: string;
  dtype: number;
  dtypeName: string;
  shape: number[];
  shardId: number;
  offset: number;
  size: number;
  /** Masked CRC32C as stored. */
  crc32c: number;
}

export type TensorValues =
  | Float32Array
  | Float64Array
  | Int32Array
  | BigInt64Array
  | BigUint64Array
  | Uint8Array
  | Int8Array
  | Int16Array
  | Uint16Array
  | Uint32Array
  | Uint8Array[];

const UTF8 = new TextDecoder();

function bad(path: string, problem: string): FileFormatError {
  return new FileFormatError(
    `${path}: ${problem}`,
    "re-download or re-create the checkpoint (it may be truncated or corrupt)",
  );
}

/** `dir/model.ckpt`, `dir/model.ckpt.index` or `dir/model.ckpt.data-…` → the prefix `dir/model.ckpt`. */
export function bundlePrefix(path: string): string {
  return path.replace(/\.index$/, "").replace(/\.data-\d{5}-of-\d{5}$/, "");
}

export function shardPath(prefix: string, shard: number, numShards: number): string {
  const pad = (n: number) => String(n).padStart(5, "0");
  return `${prefix}.data-${pad(shard)}-of-${pad(numShards)}`;
}

export class TensorBundleReader {
  readonly prefix: string;
  readonly header: BundleHeader;
  /** Tensors in index (bytewise key) order. */
  readonly entries: Map<string, BundleEntry>;
  /** The decoded index table, for diagnostics. */
  readonly table: Table;
  private shards: (FileHandle | undefined)[];
  private readonly shardSizes: number[];

  private constructor(
    prefix: string,
    header: BundleHeader,
    entries: Map<string, BundleEntry>,
    table: Table,
    shards: FileHandle[],
    shardSizes: number[],
  ) {
    this.prefix = prefix;
    this.header = header;
    this.entries = entries;
    this.table = table;
    this.shards = shards;
    this.shardSizes = shardSizes;
  }

  /** Open a bundle by prefix (or the path of its .index / .data file); validates the index and every entry. */
  static async open(path: string): Promise<TensorBundleReader> {
    const prefix = bundlePrefix(path);
    const indexPath = `${prefix}.index`;
    const indexBytes: Uint8Array = await readBytesFile(indexPath, {
      fix: "pass the checkpoint prefix (e.g. dir/model.ckpt) of a TensorFlow checkpoint",
    });
    const table = readTable(indexBytes, indexPath);
    const first = table.entries[0];
    if (!first || first.key.length !== 0) throw bad(indexPath, 'the first key is not the bundle header ("")');
    const header = parseHeader(first.value, indexPath);

    const shardSizes: number[] = [];
    const shards: FileHandle[] = [];
    try {
      for (let s = 0; s < header.numShards; s++) {
        const p = shardPath(prefix, s, header.numShards);
        let size: number;
        try {
          size = (await stat(p)).size;
        } catch {
          throw new FileFormatError(
            `${p} does not exist`,
            `a checkpoint needs its .index and all ${header.numShards} .data file(s) side by side`,
          );
        }
        shardSizes.push(size);
        shards.push(await openFile(p));
      }
      const entries = new Map<string, BundleEntry>();
      for (const e of table.entries.slice(1)) {
        const key = UTF8.decode(e.key);
        entries.set(key, parseEntry(key, e.value, indexPath, header, shardSizes, prefix));
      }
      return new TensorBundleReader(prefix, header, entries, table, shards, shardSizes);
    } catch (err) {
      await Promise.all(shards.map((fh) => fh.close()));
      throw err;
    }
  }

  entry(key: string): BundleEntry {
    const e = this.entries.get(key);
    if (!e) throw new FileFormatError(`${this.prefix} has no tensor named '${key}'`, "check the variable name");
    return e;
  }

  /** The raw bytes of a tensor, checksum verified. */
  async readBytes(key: string): Promise<Uint8Array> {
    const e = this.entry(key);
    const bytes = new Uint8Array(e.size);
    await this.readInto(e, bytes);
    this.verify(e, bytes);
    return bytes;
  }

  /** A floating-point tensor (DT_FLOAT, DT_HALF, DT_BFLOAT16, DT_DOUBLE) as float32, row-major. */
  async read(key: string): Promise<Float32Array> {
    const e = this.entry(key);
    const n = numElements(e.shape);
    if (e.dtype === DT_FLOAT && LITTLE_ENDIAN) {
      const out = new Float32Array(n);
      const bytes = new Uint8Array(out.buffer);
      await this.readInto(e, bytes);
      this.verify(e, bytes);
      return out;
    }
    const kind = { [DT_DOUBLE]: "F64", [DT_HALF]: "F16", [DT_BFLOAT16]: "BF16", [DT_FLOAT]: "F32" }[e.dtype] as
      FloatDtype | undefined;
    if (!kind)
      throw new FileFormatError(
        `${this.prefix}: tensor '${key}' has dtype ${e.dtypeName}, not a floating-point type`,
        "only float tensors can be read as weights",
      );
    return decodeFloat(kind, await this.readBytes(key), n);
  }

  /** Any supported tensor with its natural element type (strings as byte arrays). */
  async readValues(key: string): Promise<TensorValues> {
    const e = this.entry(key);
    if (e.dtype === DT_STRING) return this.readStrings(key);
    if (e.dtype === DT_HALF || e.dtype === DT_BFLOAT16) return this.read(key); // as float32
    const array = TF_DTYPES[e.dtype]?.array;
    if (!array)
      throw new FileFormatError(
        `${this.prefix}: tensor '${key}' has dtype ${e.dtypeName}, which this reader cannot decode`,
        "skip this tensor",
      );
    const bytes = await this.readBytes(key);
    return array(bytes.buffer.slice(bytes.byteOffset, bytes.byteOffset + bytes.byteLength) as ArrayBuffer);
  }

  /** A DT_STRING tensor's elements as bytes; both the length checksum and the entry checksum are verified. */
  async readStrings(key: string): Promise<Uint8Array[]> {
    const e = this.entry(key);
    if (e.dtype !== DT_STRING)
      throw new FileFormatError(
        `${this.prefix}: tensor '${key}' is ${e.dtypeName}, not DT_STRING`,
        "read it with read()",
      );
    const bytes = new Uint8Array(e.size);
    await this.readInto(e, bytes);
    const n = numElements(e.shape);
    const where = `${this.prefix}: string tensor '${key}'`;
    let pos = 0;
    let crc = 0;
    const lengths: number[] = [];
    const lenBuf = new DataView(new ArrayBuffer(8));
    for (let i = 0; i < n; i++) {
      const [len, next] = readVarint(bytes, pos, where);
      pos = next;
      lengths.push(len);
      if (len <= 0xffffffff) {
        lenBuf.setUint32(0, len, true);
        crc = crc32cExtend(crc, new Uint8Array(lenBuf.buffer, 0, 4));
      } else {
        lenBuf.setBigUint64(0, BigInt(len), true);
        crc = crc32cExtend(crc, new Uint8Array(lenBuf.buffer, 0, 8));
      }
    }
    if (pos + 4 > bytes.length) throw bad(this.prefix, `string tensor '${key}': lengths run past its ${e.size} bytes`);
    const rawLengthCrc = bytes.subarray(pos, pos + 4);
    const lengthCrc = new DataView(bytes.buffer, bytes.byteOffset + pos, 4).getUint32(0, true);
    if (unmaskCrc(lengthCrc) !== crc) throw bad(this.prefix, `string tensor '${key}': length checksum mismatch`);
    crc = crc32cExtend(crc, rawLengthCrc);
    pos += 4;
    const out: Uint8Array[] = [];
    for (const len of lengths) {
      if (pos + len > bytes.length)
        throw bad(this.prefix, `string tensor '${key}': string bytes run past its ${e.size} bytes`);
      const s = bytes.subarray(pos, pos + len);
      crc = crc32cExtend(crc, s);
      out.push(s);
      pos += len;
    }
    if (pos !== bytes.length)
      throw bad(this.prefix, `string tensor '${key}': ${bytes.length - pos} unexpected trailing bytes`);
    if (maskCrc(crc) !== e.crc32c)
      throw bad(this.prefix, `checksum mismatch for tensor '${key}' (the data file is corrupt)`);
    return out;
  }

  private async readInto(e: BundleEntry, target: Uint8Array): Promise<void> {
    const fh = this.shards[e.shardId];
    if (!fh) throw new FileFormatError(`${this.prefix} was already closed`, "open it again");
    await readFully(fh, target, e.offset, () =>
      bad(shardPath(this.prefix, e.shardId, this.header.numShards), `unexpected end of file reading '${e.key}'`),
    );
  }

  private verify(e: BundleEntry, bytes: Uint8Array): void {
    const actual = crc32cExtend(0, bytes);
    if (unmaskCrc(e.crc32c) !== actual) {
      throw bad(
        shardPath(this.prefix, e.shardId, this.header.numShards),
        `checksum mismatch for tensor '${e.key}' (stored 0x${unmaskCrc(e.crc32c).toString(16)}, computed 0x${actual.toString(16)}): the data file is corrupt`,
      );
    }
  }

  async close(): Promise<void> {
    const shards = this.shards;
    this.shards = [];
    await Promise.all(shards.map((fh) => fh?.close()));
  }

  /** Sizes of the data shards, in bytes. */
  get dataSizes(): readonly number[] {
    return this.shardSizes;
  }
}

function parseHeader(value: Uint8Array, path: string): BundleHeader {
  const what = `${path} (bundle header)`;
  const f = decodeMessage(value, what);
  const numShards = intField(f, 1, what);
  const endian = intField(f, 2, what);
  const versionBytes = messageFields(f, 3, what).at(-1);
  const v: ProtoField[] = versionBytes ? decodeMessage(versionBytes, `${what} version`) : [];
  const badConsumers: number[] = [];
  for (const field of v.filter((x) => x.field === 3)) {
    if (field.wire === 0) badConsumers.push(Number(BigInt.asIntN(64, field.value)));
    else if (field.wire === 2) {
      // proto3 packs repeated int32.
      let pos = 0;
      while (pos < field.value.length) {
        const [x, next] = readVarint(field.value, pos, what);
        badConsumers.push(x);
        pos = next;
      }
    }
  }
  const header: BundleHeader = {
    numShards,
    endianness: endian === 1 ? "BIG" : "LITTLE",
    version: { producer: intField(v, 1, what), minConsumer: intField(v, 2, what), badConsumers },
  };
  if (endian !== 0 && endian !== 1) throw bad(path, `unknown endianness ${endian} in the bundle header`);
  if (header.endianness === "BIG") throw bad(path, "big-endian checkpoints are not supported");
  if (numShards < 1 || numShards > 99999) throw bad(path, `bundle header says ${numShards} shards`);
  if (header.version.minConsumer > BUNDLE_VERSION || badConsumers.includes(BUNDLE_VERSION)) {
    throw new FileFormatError(
      `${path} needs a newer tensor bundle reader (format version ${header.version.minConsumer})`,
      "re-save the checkpoint with an older TensorFlow, or convert it to safetensors",
    );
  }
  return header;
}

function parseEntry(
  key: string,
  value: Uint8Array,
  path: string,
  header: BundleHeader,
  shardSizes: number[],
  prefix: string,
): BundleEntry {
  const what = `${path} entry '${key}'`;
  const f = decodeMessage(value, what);
  const dtype = intField(f, 1, what);
  const info = TF_DTYPES[dtype];
  if (!info) throw bad(path, `tensor '${key}' has unknown or unsupported dtype ${dtype}`);
  const shapeBytes = messageFields(f, 2, what).at(-1);
  const shape: number[] = [];
  if (shapeBytes) {
    const s = decodeMessage(shapeBytes, `${what} shape`);
    if (int64Field(s, 3, what) !== 0n) throw bad(path, `tensor '${key}' has an unknown rank`);
    for (const dimBytes of messageFields(s, 2, `${what} shape`)) {
      const size = intField(decodeMessage(dimBytes, `${what} dim`), 1, what);
      if (size < 0) throw bad(path, `tensor '${key}' has an unknown dimension (${size})`);
      shape.push(size);
    }
  }
  if (messageFields(f, 7, what).length > 0) {
    throw new FileFormatError(
      `${path}: tensor '${key}' is partitioned into slices, which this reader does not support`,
      "save the variable unpartitioned",
    );
  }
  const entry: BundleEntry = {
    key,
    dtype,
    dtypeName: info.name,
    shape,
    shardId: intField(f, 3, what),
    offset: intField(f, 4, what),
    size: intField(f, 5, what),
    crc32c: fixed32Field(f, 6, what),
  };
  if (entry.shardId < 0 || entry.shardId >= header.numShards)
    throw bad(path, `tensor '${key}' is in shard ${entry.shardId} of ${header.numShards}`);
  if (entry.offset < 0 || entry.size < 0) throw bad(path, `tensor '${key}' has a negative offset or size`);
  const shardSize = shardSizes[entry.shardId]!;
  if (entry.offset + entry.size > shardSize) {
    throw bad(
      shardPath(prefix, entry.shardId, header.numShards),
      `tensor '${key}' needs bytes ${entry.offset}..${entry.offset + entry.size} but the file has ${shardSize} (truncated)`,
    );
  }
  if (info.size > 0 && entry.size !== numElements(shape) * info.size) {
    throw bad(
      path,
      `tensor '${key}' is ${entry.size} bytes but ${info.name} [${shape.join(",")}] needs ${numElements(shape) * info.size}`,
    );
  }
  return entry;
}

// ---- Writer: for tests and synthetic checkpoints (TensorFlow itself wrote the real ones). ----

function varintBytes(v: number | bigint): number[] {
  let x = BigInt.asUintN(64, BigInt(v));
  const out: number[] = [];
  while (x >= 0x80n) {
    out.push(Number(x & 0x7fn) | 0x80);
    x >>= 7n;
  }
  out.push(Number(x));
  return out;
}

/** proto3 encoding: zero scalars are omitted, embedded messages are always written. */
function protoVarint(field: number, v: number | bigint): number[] {
  return BigInt(v) === 0n ? [] : [...varintBytes(field * 8), ...varintBytes(v)];
}
function protoMessage(field: number, body: number[]): number[] {
  return [...varintBytes(field * 8 + 2), ...varintBytes(body.length), ...body];
}
function protoFixed32(field: number, v: number): number[] {
  if (v === 0) return [];
  const b = new Uint8Array(4);
  new DataView(b.buffer).setUint32(0, v, true);
  return [...varintBytes(field * 8 + 5), ...b];
}

export function encodeBundleHeader(h: { numShards: number; producer: number; minConsumer?: number }): Uint8Array {
  const version = [...protoVarint(1, h.producer), ...protoVarint(2, h.minConsumer ?? 0)];
  return Uint8Array.from([...protoVarint(1, h.numShards), ...protoMessage(3, version)]);
}

export function encodeBundleEntry(e: Omit<BundleEntry, "key" | "dtypeName">): Uint8Array {
  const shape = e.shape.flatMap((d) => protoMessage(2, protoVarint(1, d)));
  return Uint8Array.from([
    ...protoVarint(1, e.dtype),
    ...protoMessage(2, shape),
    ...protoVarint(3, e.shardId),
    ...protoVarint(4, e.offset),
    ...protoVarint(5, e.size),
    ...protoFixed32(6, e.crc32c),
  ]);
}

export interface BundleTensor {
  key: string;
  shape: number[];
  data: Float32Array | (() => Float32Array | Promise<Float32Array>);
}

/**
 * Write DT_FLOAT tensors as a single-shard bundle (`<prefix>.index` + `<prefix>.data-00000-of-00001`), data in
 * the order given, streamed one tensor at a time.
 */
export async function writeTensorBundle(
  prefix: string,
  tensors: Iterable<BundleTensor>,
  opts: { blockSize?: number } = {},
): Promise<void> {
  await makeDirectory(dirname(prefix));
  const fh = await open(shardPath(prefix, 0, 1), "w");
  const entries: { key: Uint8Array; value: Uint8Array }[] = [];
  let offset = 0;
  try {
    for (const t of tensors) {
      const data = typeof t.data === "function" ? await t.data() : t.data;
      if (data.length !== numElements(t.shape))
        throw new Error(`writeTensorBundle: '${t.key}' has ${data.length} values for shape [${t.shape}]`);
      const bytes = new Uint8Array(data.buffer, data.byteOffset, data.byteLength);
      await fh.write(bytes, 0, bytes.length);
      const crc = maskCrc(crc32cExtend(0, bytes));
      entries.push({
        key: new TextEncoder().encode(t.key),
        value: encodeBundleEntry({
          dtype: DT_FLOAT,
          shape: t.shape,
          shardId: 0,
          offset,
          size: bytes.length,
          crc32c: crc,
        }),
      });
      offset += bytes.length;
    }
  } finally {
    await fh.close();
  }
  entries.sort((a, b) => compareBytes(a.key, b.key));
  entries.unshift({ key: new Uint8Array(0), value: encodeBundleHeader({ numShards: 1, producer: 1 }) });
  await writeFile(`${prefix}.index`, writeTable(entries, opts));
}
