/**
 * GGUF, the one-file model format of ggml and llama.cpp (version 3, little-endian):
 *
 *   header    "GGUF", u32 version, u64 tensor count, u64 metadata count
 *   metadata  count × (string key, u32 value type, value)
 *   tensors   count × (string name, u32 n_dims, u64 ne[n_dims], u32 ggml type, u64 offset)
 *   padding   zeros up to the alignment (metadata general.alignment, default 32)
 *   data      the tensors; each offset (from here) is where the previous tensor ended, padded to the alignment
 *
 * A string is a u64 byte length and UTF-8 bytes without a terminator; an array is a u32 item type, a u64 count
 * and the items (arrays of arrays are not read by llama.cpp, so not here either). `ne` lists dimensions fastest
 * first, the reverse of a row-major shape: shapes in this module are row-major (numpy's order, as gguf-py
 * takes them) and reversed only on the wire, so a [rows, cols] matrix is ne = {cols, rows}.
 * Spec: ggml's docs/gguf.md; the reader that decides is llama.cpp's ggml/src/gguf.cpp, which insists on
 * each offset being exactly the previous tensor's padded end.
 *
 * The writer streams like the safetensors one: names, shapes and types up front (they are the header), each
 * tensor's values only when its turn comes, written atomically. (The tests read the files back with a reader
 * that validates the layout as gguf.cpp does: test/helpers/gguf-reader.ts.)
 */
import { FileFormatError, InterruptedError } from "../errors.js";
import { writeAll, writeFileAtomicWith } from "../fs-atomic.js";
import { encodeFloat, floatToHalf, numElements } from "./float.js";

export const GGUF_VERSION = 3;
export const GGUF_DEFAULT_ALIGNMENT = 32;
/** "GGUF" read as a little-endian u32. */
export const GGUF_MAGIC = 0x46554747;
/** ggml's GGML_MAX_DIMS and GGML_MAX_NAME (which counts the terminating NUL). */
export const MAX_DIMS = 4;
const MAX_NAME_BYTES = 63;

/** Metadata value types, by their number in the file; "array" (9) holds items of one of the others. */
export const VALUE_TYPES = [
  "uint8",
  "int8",
  "uint16",
  "int16",
  "uint32",
  "int32",
  "float32",
  "bool",
  "string",
  "array",
  "uint64",
  "int64",
  "float64",
] as const;
export type GgufScalarType = Exclude<(typeof VALUE_TYPES)[number], "array">;
type Scalar = number | bigint | boolean | string;

export type GgufValue =
  { type: GgufScalarType; value: Scalar } | { type: "array"; itemType: GgufScalarType; value: readonly Scalar[] };

export const SCALAR_SIZE: Readonly<Record<Exclude<GgufScalarType, "string">, number>> = {
  uint8: 1,
  int8: 1,
  uint16: 2,
  int16: 2,
  uint32: 4,
  int32: 4,
  float32: 4,
  bool: 1,
  uint64: 8,
  int64: 8,
  float64: 8,
};

const INT_RANGE: Partial<Record<GgufScalarType, [number, number]>> = {
  uint8: [0, 0xff],
  int8: [-0x80, 0x7f],
  uint16: [0, 0xffff],
  int16: [-0x8000, 0x7fff],
  uint32: [0, 0xffffffff],
  int32: [-0x80000000, 0x7fffffff],
};

/** The ggml tensor types llmctl writes: id in the file, elements per block, bytes per block. */
export type GgmlType = "F32" | "F16" | "BF16" | "Q8_0";
export const GGML_TYPES: Readonly<Record<GgmlType, { id: number; blockSize: number; blockBytes: number }>> = {
  F32: { id: 0, blockSize: 1, blockBytes: 4 },
  F16: { id: 1, blockSize: 1, blockBytes: 2 },
  Q8_0: { id: 8, blockSize: 32, blockBytes: 34 },
  BF16: { id: 30, blockSize: 1, blockBytes: 2 },
};
export const GGML_TYPE_BY_ID = new Map(Object.entries(GGML_TYPES).map(([name, t]) => [t.id, name as GgmlType]));

/** The same types as `llmctl export --dtype` spells them (and llama.cpp's file names do). */
export const GGUF_DTYPES = ["f32", "f16", "bf16", "q8_0"] as const;
export type GgufDtype = (typeof GGUF_DTYPES)[number];

/** Q8_0 quantizes blocks of this many consecutive values of a row: rows must be a multiple of it long. */
export const Q8_0_BLOCK = GGML_TYPES.Q8_0.blockSize;

/** Whether a tensor of this row-major shape can be stored as `type` (block types need whole blocks per row). */
export function fitsType(type: GgmlType, shape: readonly number[]): boolean {
  return (shape.at(-1) ?? 1) % GGML_TYPES[type].blockSize === 0;
}

/** Bytes of a tensor of this type and row-major shape. */
export function tensorBytes(type: GgmlType, shape: readonly number[]): number {
  const t = GGML_TYPES[type];
  return (numElements(shape) / t.blockSize) * t.blockBytes;
}

export const padTo = (n: number, alignment: number) => Math.ceil(n / alignment) * alignment;

/**
 * Q8_0 as ggml's reference quantize_row_q8_0: per block of 32, scale d = max|x| / 127 (stored as F16) and
 * 32 int8 values round(x / d), rounding halves away from zero like C's roundf.
 */
export function quantizeQ8_0(values: Float32Array): Uint8Array {
  const { blockSize, blockBytes } = GGML_TYPES.Q8_0;
  if (values.length % blockSize !== 0) throw new Error(`quantizeQ8_0: ${values.length} values is not whole blocks`);
  const blocks = values.length / blockSize;
  const out = new Uint8Array(blocks * blockBytes);
  const view = new DataView(out.buffer);
  const qs = new Int8Array(out.buffer);
  for (let b = 0; b < blocks; b++) {
    const first = b * blockSize;
    let amax = 0;
    for (let j = 0; j < blockSize; j++) amax = Math.max(amax, Math.abs(values[first + j]!));
    const d = Math.fround(amax / 127);
    const id = d ? Math.fround(1 / d) : 0;
    view.setUint16(b * blockBytes, floatToHalf(d), true);
    for (let j = 0; j < blockSize; j++) {
      const x = Math.fround(values[first + j]! * id);
      qs[b * blockBytes + 2 + j] = Math.sign(x) * Math.round(Math.abs(x));
    }
  }
  return out;
}

function encodeTensor(type: GgmlType, values: Float32Array): Uint8Array {
  return type === "Q8_0" ? quantizeQ8_0(values) : encodeFloat(type, values);
}

// ---- Writer ----

export interface GgufTensorEntry {
  /** at most 63 bytes of UTF-8 (ggml's name limit) */
  name: string;
  /** row-major, 1 to 4 dimensions */
  shape: readonly number[];
  type: GgmlType;
  /** the values (row-major float32), or a function producing them when the writer reaches this tensor */
  data: Float32Array | (() => Float32Array | Promise<Float32Array>);
}

function invalid(problem: string): FileFormatError {
  return new FileFormatError(`cannot write GGUF: ${problem}`, "fix the metadata or tensor list given to writeGguf");
}

/** Little-endian bytes appended piece by piece (the header and metadata: a few MB at most). */
class ByteWriter {
  private readonly parts: Uint8Array[] = [];
  length = 0;

  private push(bytes: Uint8Array): void {
    this.parts.push(bytes);
    this.length += bytes.length;
  }

  private fixed(size: number, set: (view: DataView) => void): void {
    const bytes = new Uint8Array(size);
    set(new DataView(bytes.buffer));
    this.push(bytes);
  }

  u32(n: number): void {
    this.fixed(4, (v) => v.setUint32(0, n, true));
  }

  u64(n: number | bigint): void {
    this.fixed(8, (v) => v.setBigUint64(0, BigInt(n), true));
  }

  string(s: string): void {
    const bytes = Buffer.from(s, "utf8");
    this.u64(bytes.length);
    this.push(bytes);
  }

  scalar(type: GgufScalarType, value: Scalar, key: string): void {
    const bad = () => invalid(`'${key}': ${JSON.stringify(String(value))} is not a valid ${type}`);
    if (type === "string") {
      if (typeof value !== "string") throw bad();
      this.string(value);
      return;
    }
    if (type === "bool") {
      if (typeof value !== "boolean") throw bad();
      this.fixed(1, (v) => v.setUint8(0, value ? 1 : 0));
      return;
    }
    if (type === "uint64" || type === "int64") {
      if (typeof value !== "bigint" && !(typeof value === "number" && Number.isSafeInteger(value))) throw bad();
      const big = BigInt(value);
      if (type === "uint64" ? big < 0n || big >= 1n << 64n : big < -(1n << 63n) || big >= 1n << 63n) throw bad();
      this.fixed(8, (v) => (type === "uint64" ? v.setBigUint64(0, big, true) : v.setBigInt64(0, big, true)));
      return;
    }
    if (typeof value !== "number") throw bad();
    if (type === "float32") return this.fixed(4, (v) => v.setFloat32(0, value, true));
    if (type === "float64") return this.fixed(8, (v) => v.setFloat64(0, value, true));
    const [lo, hi] = INT_RANGE[type]!;
    if (!Number.isInteger(value) || value < lo || value > hi) throw bad();
    this.fixed(SCALAR_SIZE[type], (v) => {
      if (type === "uint8") v.setUint8(0, value);
      else if (type === "int8") v.setInt8(0, value);
      else if (type === "uint16") v.setUint16(0, value, true);
      else if (type === "int16") v.setInt16(0, value, true);
      else if (type === "uint32") v.setUint32(0, value, true);
      else v.setInt32(0, value, true);
    });
  }

  value(key: string, v: GgufValue): void {
    this.u32(VALUE_TYPES.indexOf(v.type));
    if (v.type !== "array") return this.scalar(v.type, v.value, key);
    this.u32(VALUE_TYPES.indexOf(v.itemType));
    this.u64(v.value.length);
    for (const item of v.value) this.scalar(v.itemType, item, key);
  }

  padTo(alignment: number): void {
    const pad = padTo(this.length, alignment) - this.length;
    if (pad > 0) this.push(new Uint8Array(pad));
  }

  bytes(): Uint8Array {
    return Buffer.concat(this.parts);
  }
}

/** general.alignment: a uint32 power of two, the default when absent, undefined when it is something else. */
export function alignmentOf(metadata: ReadonlyMap<string, GgufValue>): number | undefined {
  const v = metadata.get("general.alignment");
  if (v === undefined) return GGUF_DEFAULT_ALIGNMENT;
  const n = v.value;
  return v.type === "uint32" && typeof n === "number" && n > 0 && (n & (n - 1)) === 0 ? n : undefined;
}

function checkTensor(e: GgufTensorEntry): void {
  if (Buffer.byteLength(e.name, "utf8") > MAX_NAME_BYTES)
    throw invalid(`tensor name '${e.name}' is longer than ${MAX_NAME_BYTES} bytes`);
  if (e.shape.length < 1 || e.shape.length > MAX_DIMS || !e.shape.every((d) => Number.isSafeInteger(d) && d > 0))
    throw invalid(`tensor '${e.name}' has shape ${JSON.stringify(e.shape)}: 1 to ${MAX_DIMS} positive dimensions`);
  if (!(e.type in GGML_TYPES)) throw invalid(`tensor '${e.name}' has unknown type ${JSON.stringify(e.type)}`);
  if (!fitsType(e.type, e.shape))
    throw invalid(
      `tensor '${e.name}' [${e.shape.join(", ")}] cannot be ${e.type}: rows must be a multiple of ${GGML_TYPES[e.type].blockSize} long`,
    );
}

/**
 * Write a GGUF v3 file atomically (temporary file + fsync + rename). Metadata is written in the order given,
 * tensors too. Each tensor's data may be a function, called only when that tensor is written, so peak memory
 * is one tensor (and its encoded bytes), not the model. Returns the file's size.
 */
export async function writeGguf(
  path: string,
  metadata: ReadonlyMap<string, GgufValue>,
  tensors: readonly GgufTensorEntry[],
  opts: { signal?: AbortSignal } = {},
): Promise<{ bytes: number }> {
  const alignment = alignmentOf(metadata);
  if (alignment === undefined) throw invalid("general.alignment must be a uint32 power of two");
  const names = new Set<string>();
  for (const e of tensors) {
    checkTensor(e);
    if (names.has(e.name)) throw invalid(`tensor '${e.name}' is given twice`);
    names.add(e.name);
  }
  const head = new ByteWriter();
  head.u32(GGUF_MAGIC);
  head.u32(GGUF_VERSION);
  head.u64(tensors.length);
  head.u64(metadata.size);
  for (const [key, v] of metadata) {
    head.string(key);
    head.value(key, v);
  }
  let offset = 0;
  for (const e of tensors) {
    head.string(e.name);
    head.u32(e.shape.length);
    for (const d of [...e.shape].reverse()) head.u64(d);
    head.u32(GGML_TYPES[e.type].id);
    head.u64(offset);
    offset += padTo(tensorBytes(e.type, e.shape), alignment);
  }
  head.padTo(alignment);
  const headerBytes = head.length;
  const zeros = new Uint8Array(alignment);

  await writeFileAtomicWith(path, async (fh) => {
    await writeAll(fh, head.bytes());
    for (const e of tensors) {
      // Checked between tensors: an interrupted write removes its temporary file and leaves `path` as it was.
      if (opts.signal?.aborted) throw new InterruptedError(`writing ${path} was interrupted`, "run the command again");
      const values = typeof e.data === "function" ? await e.data() : e.data;
      if (values.length !== numElements(e.shape))
        throw invalid(`tensor '${e.name}' has ${values.length} values but shape [${e.shape.join(", ")}]`);
      const bytes = encodeTensor(e.type, values);
      await writeAll(fh, bytes);
      await writeAll(fh, zeros.subarray(0, padTo(bytes.length, alignment) - bytes.length));
    }
  });
  return { bytes: headerBytes + offset };
}
