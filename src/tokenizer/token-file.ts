/**
 * The token file (`llmctl tokenize --out F.bin`), read directly by `pretrain --data F.bin`.
 *
 * Layout (little-endian), documented in docs/token-file.md:
 *   bytes 0..7    magic "LLMCTLTK"
 *   bytes 8..11   uint32 format version (1)
 *   bytes 12..15  uint32 bytes per id (2 = uint16 when the vocabulary fits, else 4 = uint32)
 *   bytes 16..23  uint64 number of ids
 *   bytes 24..27  uint32 vocabulary size
 *   bytes 28..31  reserved, zero
 *   bytes 32..    the ids
 */
import { requireFile } from "../formats/file.js";
import { openSync, readSync, closeSync, readFileSync, fstatSync } from "node:fs";
import { FileFormatError } from "../errors.js";
import { writeFileAtomic } from "../fs-atomic.js";

const MAGIC = "LLMCTLTK";
export const TOKEN_FILE_HEADER_BYTES = 32;

function header(count: number, itemSize: number, vocabSize: number): Buffer {
  const h = Buffer.alloc(TOKEN_FILE_HEADER_BYTES);
  h.write(MAGIC, 0, "latin1");
  h.writeUInt32LE(1, 8);
  h.writeUInt32LE(itemSize, 12);
  h.writeBigUInt64LE(BigInt(count), 16);
  h.writeUInt32LE(vocabSize, 24);
  return h;
}

/** The ids at the file's width, without a copy when they already have it. */
function body(ids: ArrayLike<number>, itemSize: number): Uint8Array {
  const typed =
    itemSize === 2
      ? ids instanceof Uint16Array
        ? ids
        : Uint16Array.from(ids)
      : ids instanceof Uint32Array
        ? ids
        : Uint32Array.from(ids);
  return new Uint8Array(typed.buffer, typed.byteOffset, typed.byteLength);
}

export function encodeTokenFile(ids: ArrayLike<number>, vocabSize: number): Buffer {
  const itemSize = vocabSize <= 65536 ? 2 : 4;
  return Buffer.concat([header(ids.length, itemSize, vocabSize), body(ids, itemSize)]);
}

export async function writeTokenFile(path: string, ids: ArrayLike<number>, vocabSize: number): Promise<void> {
  const itemSize = vocabSize <= 65536 ? 2 : 4;
  await writeFileAtomic(path, [header(ids.length, itemSize, vocabSize), body(ids, itemSize)]);
}

/**
 * Is this a token file: does it start with the token-file magic, or is it named `.bin` (what `tokenize --out`
 * writes, so a damaged magic is reported by readTokenFile rather than the bytes trained on as text)?
 */
export function isTokenFile(path: string): boolean {
  requireFile(path, { fix: "check the --data path" });
  if (path.endsWith(".bin")) return true;
  const fd = openSync(path, "r");
  try {
    const head = Buffer.alloc(8);
    return readSync(fd, head, 0, 8, 0) === 8 && head.toString("latin1") === MAGIC;
  } finally {
    closeSync(fd);
  }
}

export function readTokenFile(path: string): { ids: Uint16Array | Uint32Array; vocabSize: number } {
  const fd = openSync(path, "r");
  const size = fstatSync(fd).size;
  closeSync(fd);
  if (size < TOKEN_FILE_HEADER_BYTES)
    throw new FileFormatError(`${path}: too short to be a token file`, "re-create it with `llmctl tokenize --out`");
  const buf = readFileSync(path);
  if (buf.toString("latin1", 0, 8) !== MAGIC)
    throw new FileFormatError(
      `${path}: not an llmctl token file (bad magic)`,
      "re-create it with `llmctl tokenize --out`",
    );
  const version = buf.readUInt32LE(8);
  if (version !== 1)
    throw new FileFormatError(
      `${path}: token file version ${version} is not supported`,
      "re-create it with this llmctl",
    );
  const itemSize = buf.readUInt32LE(12);
  const count = Number(buf.readBigUInt64LE(16));
  const vocabSize = buf.readUInt32LE(24);
  if ((itemSize !== 2 && itemSize !== 4) || TOKEN_FILE_HEADER_BYTES + count * itemSize !== size) {
    throw new FileFormatError(
      `${path}: token file is truncated or corrupt (header says ${count} ids of ${itemSize} bytes, file has ${size} bytes)`,
      "re-create it with `llmctl tokenize --out`",
    );
  }
  // Copy into an aligned array (the Buffer pool offset is not guaranteed to be 2- or 4-aligned).
  const bytes = buf.subarray(TOKEN_FILE_HEADER_BYTES);
  const ids = itemSize === 2 ? new Uint16Array(count) : new Uint32Array(count);
  new Uint8Array(ids.buffer).set(bytes);
  const bad = firstIdOutside(ids, vocabSize);
  if (bad >= 0)
    throw new FileFormatError(
      `${path}: token id ${ids[bad]} at position ${bad} is outside the file's vocabulary of ${vocabSize}`,
      "the file is corrupt; re-create it with `llmctl tokenize --out`",
    );
  return { ids, vocabSize };
}

/** The position of the first id ≥ vocabSize, or -1: an id past the embedding table fails deep inside a gather. */
export function firstIdOutside(ids: ArrayLike<number>, vocabSize: number): number {
  for (let i = 0; i < ids.length; i++) if (ids[i] >= vocabSize) return i;
  return -1;
}
