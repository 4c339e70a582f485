/**
 * A GGUF v3 reader for the tests: it validates the layout as llama.cpp's ggml/src/gguf.cpp does (each offset the
 * previous tensor's padded end, types, counts, names) and reads one tensor at a time, so the tests can check what
 * src/formats/gguf.ts writes. llmctl itself only writes GGUF.
 */
import type { FileHandle } from "node:fs/promises";
import { openFile, readFully } from "../../src/formats/file.js";
import { FileFormatError } from "../../src/errors.js";
import { decodeFloat, halfToFloat, numElements } from "../../src/formats/float.js";
import {
  GGML_TYPES,
  GGML_TYPE_BY_ID,
  GGUF_MAGIC,
  GGUF_VERSION,
  MAX_DIMS,
  SCALAR_SIZE,
  VALUE_TYPES,
  alignmentOf,
  fitsType,
  padTo,
  tensorBytes,
  type GgmlType,
  type GgufScalarType,
  type GgufValue,
} from "../../src/formats/gguf.js";

type Scalar = number | bigint | boolean | string;

/** How each numeric GGUF scalar is read (little-endian). */
const READ_SCALAR: Record<Exclude<GgufScalarType, "string" | "bool">, (b: Buffer, at: number) => Scalar> = {
  uint8: (b, at) => b.readUInt8(at),
  int8: (b, at) => b.readInt8(at),
  uint16: (b, at) => b.readUInt16LE(at),
  int16: (b, at) => b.readInt16LE(at),
  uint32: (b, at) => b.readUInt32LE(at),
  int32: (b, at) => b.readInt32LE(at),
  float32: (b, at) => b.readFloatLE(at),
  float64: (b, at) => b.readDoubleLE(at),
  uint64: (b, at) => b.readBigUInt64LE(at),
  int64: (b, at) => b.readBigInt64LE(at),
};

/** Q8_0 bytes → float32 values (d × q, as ggml's dequantize_row_q8_0). */
export function dequantizeQ8_0(bytes: Uint8Array, n: number): Float32Array {
  const { blockSize, blockBytes } = GGML_TYPES.Q8_0;
  const view = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  const qs = new Int8Array(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  const out = new Float32Array(n);
  for (let b = 0; b < n / blockSize; b++) {
    const d = halfToFloat(view.getUint16(b * blockBytes, true));
    for (let j = 0; j < blockSize; j++) out[b * blockSize + j] = d * qs[b * blockBytes + 2 + j]!;
  }
  return out;
}

function decodeTensor(type: GgmlType, bytes: Uint8Array, n: number): Float32Array {
  return type === "Q8_0" ? dequantizeQ8_0(bytes, n) : decodeFloat(type, bytes, n);
}

export interface GgufTensorInfo {
  type: GgmlType;
  /** row-major (the file's ne, reversed) */
  shape: number[];
  /** bytes from the start of the data section */
  offset: number;
  /** bytes of data (without the padding after it) */
  size: number;
}

function formatError(path: string, problem: string): FileFormatError {
  return new FileFormatError(
    `${path} is not a valid GGUF file: ${problem}`,
    "re-export or re-download the file (it may be truncated or corrupt)",
  );
}

/** Sequential little-endian reads from a file through a buffer that is refilled as the cursor moves on. */
class FileCursor {
  private buf = Buffer.alloc(0);
  private bufStart = 0;
  pos = 0;

  constructor(
    private readonly fh: FileHandle,
    readonly path: string,
    readonly size: number,
  ) {}

  private async need(n: number): Promise<number> {
    if (this.pos + n > this.size)
      throw formatError(this.path, `unexpected end of file at byte ${this.pos} (truncated?)`);
    if (this.pos + n > this.bufStart + this.buf.length) {
      const want = Math.min(Math.max(n, 1 << 20), this.size - this.pos);
      this.buf = Buffer.alloc(want);
      await this.fh.read(this.buf, 0, want, this.pos);
      this.bufStart = this.pos;
    }
    const at = this.pos - this.bufStart;
    this.pos += n;
    return at;
  }

  async u32(): Promise<number> {
    const at = await this.need(4); // before touching this.buf: need() may replace it
    return this.buf.readUInt32LE(at);
  }

  /** A u64 that must fit a JavaScript number (counts, lengths, dimensions, offsets). */
  async size64(what: string): Promise<number> {
    const at = await this.need(8);
    const v = this.buf.readBigUInt64LE(at);
    if (v > BigInt(Number.MAX_SAFE_INTEGER)) throw formatError(this.path, `${what} ${v} is out of range`);
    return Number(v);
  }

  async string(what: string): Promise<string> {
    const n = await this.size64(`${what} length`);
    const at = await this.need(n);
    try {
      return new TextDecoder("utf-8", { fatal: true }).decode(this.buf.subarray(at, at + n));
    } catch {
      throw formatError(this.path, `${what} is not valid UTF-8`);
    }
  }

  async scalar(type: GgufScalarType, key: string): Promise<Scalar> {
    if (type === "string") return this.string(`the string value of '${key}'`);
    const at = await this.need(SCALAR_SIZE[type]);
    if (type === "bool") {
      const v = this.buf.readUInt8(at);
      if (v > 1) throw formatError(this.path, `'${key}': bool value ${v} is neither 0 nor 1`);
      return v === 1;
    }
    return READ_SCALAR[type](this.buf, at);
  }

  async valueType(key: string): Promise<(typeof VALUE_TYPES)[number]> {
    const id = await this.u32();
    const type = VALUE_TYPES[id];
    if (type === undefined) throw formatError(this.path, `'${key}' has unknown value type ${id}`);
    return type;
  }

  async value(key: string): Promise<GgufValue> {
    const type = await this.valueType(key);
    if (type !== "array") return { type, value: await this.scalar(type, key) };
    const itemType = await this.valueType(key);
    if (itemType === "array") throw formatError(this.path, `'${key}' is an array of arrays`);
    const n = await this.size64(`'${key}' array length`);
    // every item takes at least one byte (a string at least its 8-byte length): a corrupt count fails here
    if (n * (itemType === "string" ? 8 : SCALAR_SIZE[itemType]) > this.size - this.pos)
      throw formatError(this.path, `'${key}' claims ${n} items, more than the file holds`);
    const items: Scalar[] = new Array(n);
    for (let i = 0; i < n; i++) items[i] = await this.scalar(itemType, key);
    return { type, itemType, value: items };
  }
}

/** An open GGUF file: metadata and tensor table parsed, tensors read on demand; call close() when done. */
export class GgufFile {
  private fh: FileHandle | undefined;

  constructor(
    readonly path: string,
    fh: FileHandle,
    readonly version: number,
    readonly alignment: number,
    readonly metadata: ReadonlyMap<string, GgufValue>,
    readonly tensors: ReadonlyMap<string, GgufTensorInfo>,
    /** absolute file offset of the data section */
    readonly dataStart: number,
  ) {
    this.fh = fh;
  }

  info(name: string): GgufTensorInfo {
    const info = this.tensors.get(name);
    if (!info) throw new FileFormatError(`${this.path} has no tensor named '${name}'`, "check the tensor name");
    return info;
  }

  /** One tensor as row-major float32 (F16, BF16 converted, Q8_0 dequantized). */
  async read(name: string): Promise<Float32Array> {
    const info = this.info(name);
    if (!this.fh) throw new FileFormatError(`${this.path} was already closed`, "open it again with readGguf()");
    const bytes = new Uint8Array(info.size);
    await readFully(this.fh, bytes, this.dataStart + info.offset, () =>
      formatError(this.path, `tensor '${name}' is cut short`),
    );
    return decodeTensor(info.type, bytes, numElements(info.shape));
  }

  async close(): Promise<void> {
    const fh = this.fh;
    this.fh = undefined;
    await fh?.close();
  }
}

/** Parse and validate a GGUF v3 file's header, metadata and tensor table; leaves it open for reading tensors. */
export async function readGguf(path: string): Promise<GgufFile> {
  const fh = await openFile(path);
  try {
    const cur = new FileCursor(fh, path, (await fh.stat()).size);
    if ((await cur.u32()) !== GGUF_MAGIC) throw formatError(path, 'it does not start with "GGUF"');
    const version = await cur.u32();
    if (version !== GGUF_VERSION)
      throw formatError(path, `version ${version} (this reader reads version ${GGUF_VERSION})`);
    const tensorCount = await cur.size64("tensor count");
    const kvCount = await cur.size64("metadata count");
    // a tensor entry takes at least 8 + 4 + 8 + 4 + 8 bytes, a metadata entry 8 + 4 + 1
    if (tensorCount * 32 + kvCount * 13 > cur.size) throw formatError(path, "the counts exceed the file's size");
    const metadata = new Map<string, GgufValue>();
    for (let i = 0; i < kvCount; i++) {
      const key = await cur.string(`metadata key ${i}`);
      if (metadata.has(key)) throw formatError(path, `metadata key '${key}' appears twice`);
      metadata.set(key, await cur.value(key));
    }
    const align = alignmentOf(metadata);
    if (align === undefined) throw formatError(path, "general.alignment is not a uint32 power of two");
    const tensors = new Map<string, GgufTensorInfo>();
    let expected = 0;
    for (let i = 0; i < tensorCount; i++) {
      const name = await cur.string(`tensor name ${i}`);
      if (tensors.has(name)) throw formatError(path, `tensor '${name}' appears twice`);
      const nDims = await cur.u32();
      if (nDims < 1 || nDims > MAX_DIMS) throw formatError(path, `tensor '${name}' has ${nDims} dimensions`);
      const ne: number[] = [];
      for (let d = 0; d < nDims; d++) ne.push(await cur.size64(`tensor '${name}' dimension`));
      if (!ne.every((d) => d > 0)) throw formatError(path, `tensor '${name}' has an empty dimension`);
      const typeId = await cur.u32();
      const type = GGML_TYPE_BY_ID.get(typeId);
      if (!type) throw formatError(path, `tensor '${name}' has ggml type ${typeId}, which this reader does not decode`);
      const shape = ne.reverse();
      if (!fitsType(type, shape)) throw formatError(path, `tensor '${name}': rows are not whole ${type} blocks`);
      const offset = await cur.size64(`tensor '${name}' offset`);
      if (offset !== expected)
        throw formatError(path, `tensor '${name}' is at data offset ${offset}, expected ${expected}`);
      const size = tensorBytes(type, shape);
      tensors.set(name, { type, shape, offset, size });
      expected += padTo(size, align);
    }
    const dataStart = padTo(cur.pos, align);
    if (dataStart + expected > cur.size)
      throw formatError(
        path,
        `the tensors need ${expected} data bytes from byte ${dataStart} but the file has ${cur.size} (truncated)`,
      );
    return new GgufFile(path, fh, version, align, metadata, tensors, dataStart);
  } catch (err) {
    await fh.close();
    throw err;
  }
}
