/**
 * A reader for LevelDB's immutable sorted table (SSTable) format, which TensorFlow uses (its own copy, in
 * tsl/lib/io/table) for the `.index` file of a tensor bundle. Layout (leveldb doc/table_format.md):
 *
 *   [data block 0][trailer] … [data block n][trailer] [metaindex block][trailer] [index block][trailer] [footer]
 *
 * - footer (48 bytes): metaindex BlockHandle, index BlockHandle (each two varint64: offset, size), zero padding
 *   to 40 bytes, then the magic number 0xdb4775248b80fb57 as a little-endian fixed64;
 * - block trailer (5 bytes): compression type (0 none, 1 snappy), then the masked CRC32C of the block contents
 *   followed by that type byte;
 * - block: entries `varint32 shared | varint32 non_shared | varint32 value_length | key delta | value`, where a
 *   key is the first `shared` bytes of the previous key plus the delta; then `uint32 restarts[num_restarts]`
 *   (offsets of entries whose shared length is 0) and `uint32 num_restarts`;
 * - the index block maps, for each data block, a separator key (>= every key in that block) to its BlockHandle.
 *
 * TensorFlow writes bundles uncompressed, so snappy blocks are refused with a clear error. The whole index
 * file is small (a few KB for GPT-2 1558M) and read into memory.
 */
import { FileFormatError } from "../errors.js";
import { crc32cExtend, maskCrc, unmaskCrc } from "./crc32c.js";
import { readVarint } from "./protobuf.js";

export const TABLE_MAGIC = 0xdb4775248b80fb57n;
export const FOOTER_SIZE = 48;
export const BLOCK_TRAILER_SIZE = 5;

export interface BlockHandle {
  offset: number;
  size: number;
}

export interface TableEntry {
  key: Uint8Array;
  value: Uint8Array;
}

export interface Table {
  entries: TableEntry[];
  /** Every block read, with its handle and what it is, for diagnostics and tests. */
  blocks: { kind: "data" | "metaindex" | "index"; handle: BlockHandle; entries: number; restarts: number[] }[];
}

export function compareBytes(a: Uint8Array, b: Uint8Array): number {
  const n = Math.min(a.length, b.length);
  for (let i = 0; i < n; i++) if (a[i] !== b[i]) return a[i]! - b[i]!;
  return a.length - b.length;
}

function corrupt(name: string, problem: string): FileFormatError {
  return new FileFormatError(
    `${name} is not a valid table (checkpoint index): ${problem}`,
    "re-download or re-create the checkpoint (it may be truncated or corrupt)",
  );
}

function readHandle(bytes: Uint8Array, pos: number, name: string): [BlockHandle, number] {
  const [offset, p1] = readVarint(bytes, pos, `${name} block handle`);
  const [size, p2] = readVarint(bytes, p1, `${name} block handle`);
  return [{ offset, size }, p2];
}

/** Parse and verify a whole table held in memory; `name` (the file path) appears in every error. */
export function readTable(file: Uint8Array, name: string): Table {
  if (file.length < FOOTER_SIZE)
    throw corrupt(name, `file is ${file.length} bytes, shorter than the ${FOOTER_SIZE}-byte footer (truncated?)`);
  const footerStart = file.length - FOOTER_SIZE;
  const footer = file.subarray(footerStart);
  const magic = new DataView(footer.buffer, footer.byteOffset + 40, 8).getBigUint64(0, true);
  if (magic !== TABLE_MAGIC)
    throw corrupt(name, `bad magic number 0x${magic.toString(16)} in the footer (truncated or not a table)`);
  const [metaHandle, p] = readHandle(footer, 0, name);
  const [indexHandle] = readHandle(footer, p, name);

  const blocks: Table["blocks"] = [];
  const load = (kind: "data" | "metaindex" | "index", handle: BlockHandle): TableEntry[] => {
    const contents = readBlockContents(file, handle, footerStart, name, kind);
    const { entries, restarts } = parseBlock(contents, `${name} (${kind} block at offset ${handle.offset})`);
    blocks.push({ kind, handle, entries: entries.length, restarts });
    return entries;
  };

  const index = load("index", indexHandle);
  load("metaindex", metaHandle);
  const entries: TableEntry[] = [];
  for (const sep of index) {
    const [handle, end] = readHandle(sep.value, 0, name);
    if (end !== sep.value.length) throw corrupt(name, "index entry value is not a block handle");
    const blockEntries = load("data", handle);
    for (const e of blockEntries) {
      const prev = entries[entries.length - 1];
      if (prev && compareBytes(prev.key, e.key) >= 0)
        throw corrupt(name, `keys out of order at '${new TextDecoder().decode(e.key)}'`);
      if (compareBytes(e.key, sep.key) > 0)
        throw corrupt(name, `key '${new TextDecoder().decode(e.key)}' is beyond its index separator`);
      entries.push(e);
    }
  }
  // Report blocks in file order: data blocks first, then metaindex, then index.
  blocks.sort((a, b) => a.handle.offset - b.handle.offset);
  return { entries, blocks };
}

function readBlockContents(
  file: Uint8Array,
  handle: BlockHandle,
  limit: number,
  name: string,
  kind: string,
): Uint8Array {
  const { offset, size } = handle;
  if (offset + size + BLOCK_TRAILER_SIZE > limit) {
    throw corrupt(name, `${kind} block at offset ${offset} (size ${size}) runs past the end of the file (truncated?)`);
  }
  const withType = file.subarray(offset, offset + size + 1);
  const type = file[offset + size]!;
  const stored = new DataView(file.buffer, file.byteOffset + offset + size + 1, 4).getUint32(0, true);
  const actual = crc32cExtend(0, withType);
  if (unmaskCrc(stored) !== actual) {
    throw corrupt(
      name,
      `checksum mismatch in the ${kind} block at offset ${offset} (stored 0x${unmaskCrc(stored).toString(16)}, computed 0x${actual.toString(16)})`,
    );
  }
  if (type === 1)
    throw corrupt(name, `${kind} block at offset ${offset} is snappy-compressed, which this reader does not support`);
  if (type !== 0) throw corrupt(name, `${kind} block at offset ${offset} has unknown compression type ${type}`);
  return file.subarray(offset, offset + size);
}

/** Decode one block's entries, checking the restart array against the entries actually found. */
export function parseBlock(block: Uint8Array, what: string): { entries: TableEntry[]; restarts: number[] } {
  const bad = (problem: string) =>
    new FileFormatError(`${what}: ${problem}`, "the checkpoint index is corrupt; re-download or re-create it");
  if (block.length < 4) throw bad(`block of ${block.length} bytes is too short for its restart count`);
  const view = new DataView(block.buffer, block.byteOffset, block.byteLength);
  const numRestarts = view.getUint32(block.length - 4, true);
  const restartsStart = block.length - 4 - 4 * numRestarts;
  if (numRestarts > (block.length - 4) / 4 || restartsStart < 0)
    throw bad(`restart count ${numRestarts} does not fit in the block`);
  const restarts: number[] = [];
  for (let i = 0; i < numRestarts; i++) restarts.push(view.getUint32(restartsStart + 4 * i, true));

  const entries: TableEntry[] = [];
  const entryStarts: number[] = [];
  let prevKey = new Uint8Array(0);
  let pos = 0;
  while (pos < restartsStart) {
    entryStarts.push(pos);
    const [shared, p1] = readVarint(block, pos, what);
    const [nonShared, p2] = readVarint(block, p1, what);
    const [valueLen, p3] = readVarint(block, p2, what);
    if (shared > prevKey.length)
      throw bad(`entry at ${pos} shares ${shared} bytes with a ${prevKey.length}-byte previous key`);
    if (p3 + nonShared + valueLen > restartsStart) throw bad(`entry at ${pos} runs into the restart array`);
    const key = new Uint8Array(shared + nonShared);
    key.set(prevKey.subarray(0, shared), 0);
    key.set(block.subarray(p3, p3 + nonShared), shared);
    const value = block.subarray(p3 + nonShared, p3 + nonShared + valueLen);
    entries.push({ key, value });
    prevKey = key;
    pos = p3 + nonShared + valueLen;
  }
  const starts = new Set(entryStarts);
  for (const r of restarts) {
    // An empty block still carries one restart point at 0.
    if (entries.length === 0 && r === 0) continue;
    if (!starts.has(r)) throw bad(`restart offset ${r} is not the start of an entry`);
    const [shared] = readVarint(block, r, what);
    if (shared !== 0) throw bad(`entry at restart offset ${r} shares ${shared} bytes (must be 0)`);
  }
  return { entries, restarts };
}

function putVarint(out: number[], v: number): void {
  while (v >= 0x80) {
    out.push((v % 0x80) | 0x80);
    v = Math.floor(v / 0x80);
  }
  out.push(v);
}

/** Shortest key k with start <= k < limit (LevelDB's BytewiseComparator::FindShortestSeparator). */
function shortestSeparator(start: Uint8Array, limit: Uint8Array): Uint8Array {
  const n = Math.min(start.length, limit.length);
  let i = 0;
  while (i < n && start[i] === limit[i]) i++;
  if (i < n) {
    const b = start[i]!;
    if (b < 0xff && b + 1 < limit[i]!) {
      const k = start.slice(0, i + 1);
      k[i] = b + 1;
      return k;
    }
  }
  return start;
}

/** Shortest key >= key (BytewiseComparator::FindShortSuccessor). */
function shortSuccessor(key: Uint8Array): Uint8Array {
  for (let i = 0; i < key.length; i++) {
    if (key[i] !== 0xff) {
      const k = key.slice(0, i + 1);
      k[i] = key[i]! + 1;
      return k;
    }
  }
  return key;
}

class BlockBuilder {
  private bytes: number[] = [];
  private restarts: number[] = [0];
  private counter = 0;
  private last: Uint8Array = new Uint8Array(0);
  count = 0;
  constructor(private readonly restartInterval: number) {}
  add(key: Uint8Array, value: Uint8Array): void {
    let shared = 0;
    if (this.counter < this.restartInterval) {
      const n = Math.min(this.last.length, key.length);
      while (shared < n && this.last[shared] === key[shared]) shared++;
    } else {
      this.restarts.push(this.bytes.length);
      this.counter = 0;
    }
    putVarint(this.bytes, shared);
    putVarint(this.bytes, key.length - shared);
    putVarint(this.bytes, value.length);
    for (let i = shared; i < key.length; i++) this.bytes.push(key[i]!);
    for (const b of value) this.bytes.push(b);
    this.last = key;
    this.counter++;
    this.count++;
  }
  estimatedSize(): number {
    return this.bytes.length + 4 * this.restarts.length + 4;
  }
  finish(): Uint8Array {
    const out = new Uint8Array(this.bytes.length + 4 * this.restarts.length + 4);
    out.set(this.bytes, 0);
    const view = new DataView(out.buffer);
    this.restarts.forEach((r, i) => view.setUint32(this.bytes.length + 4 * i, r, true));
    view.setUint32(out.length - 4, this.restarts.length, true);
    return out;
  }
}

/**
 * Build an uncompressed table from entries sorted by key, as LevelDB's TableBuilder does with TensorFlow's
 * options (block size 256 KiB unless given, restart interval 16, index restart interval 1). Used to write
 * tensor bundles for tests and synthetic checkpoints; re-encoding a TensorFlow-written index reproduces it.
 */
export function writeTable(
  entries: readonly TableEntry[],
  opts: { blockSize?: number; restartInterval?: number } = {},
): Uint8Array {
  const blockSize = opts.blockSize ?? 262144;
  const restartInterval = opts.restartInterval ?? 16;
  const chunks: Uint8Array[] = [];
  let offset = 0;
  const writeBlock = (contents: Uint8Array): BlockHandle => {
    const handle = { offset, size: contents.length };
    const trailer = new Uint8Array(BLOCK_TRAILER_SIZE);
    trailer[0] = 0;
    const crc = crc32cExtend(crc32cExtend(0, contents), trailer.subarray(0, 1));
    new DataView(trailer.buffer).setUint32(1, maskCrc(crc), true);
    chunks.push(contents, trailer);
    offset += contents.length + BLOCK_TRAILER_SIZE;
    return handle;
  };
  const encodeHandle = (h: BlockHandle): Uint8Array => {
    const out: number[] = [];
    putVarint(out, h.offset);
    putVarint(out, h.size);
    return Uint8Array.from(out);
  };

  const index = new BlockBuilder(1);
  let data = new BlockBuilder(restartInterval);
  let pending: { last: Uint8Array; handle: BlockHandle } | undefined;
  let lastKey: Uint8Array | undefined;
  for (const e of entries) {
    if (lastKey && compareBytes(lastKey, e.key) >= 0) throw new Error("writeTable: keys must be strictly increasing");
    if (pending) {
      index.add(shortestSeparator(pending.last, e.key), encodeHandle(pending.handle));
      pending = undefined;
    }
    data.add(e.key, e.value);
    lastKey = e.key;
    if (data.estimatedSize() >= blockSize) {
      pending = { last: lastKey, handle: writeBlock(data.finish()) };
      data = new BlockBuilder(restartInterval);
    }
  }
  if (data.count > 0) pending = { last: lastKey!, handle: writeBlock(data.finish()) };
  if (pending) index.add(shortSuccessor(pending.last), encodeHandle(pending.handle));
  const metaHandle = writeBlock(new BlockBuilder(restartInterval).finish());
  const indexHandle = writeBlock(index.finish());
  const footer = new Uint8Array(FOOTER_SIZE);
  const handles = [...encodeHandle(metaHandle), ...encodeHandle(indexHandle)];
  footer.set(handles, 0);
  new DataView(footer.buffer).setBigUint64(40, TABLE_MAGIC, true);
  chunks.push(footer);
  const out = new Uint8Array(offset + FOOTER_SIZE);
  let pos = 0;
  for (const c of chunks) {
    out.set(c, pos);
    pos += c.length;
  }
  return out;
}
