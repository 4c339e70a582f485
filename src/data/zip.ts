/**
 * Just enough ZIP to unpack the UCI "SMS Spam Collection" archive (tests build one with test/helpers/zip.ts):
 * the central directory, stored and deflated members, CRC-32 checked. No ZIP64, no encryption, no multi-disk archives —
 * those are refused with a clear error rather than misread.
 *
 * Layout (PKWARE APPNOTE 4.3): [local header + data]… [central directory entries]… [end of central directory].
 * The central directory is the index we trust: local headers may carry zero sizes when a data descriptor
 * (flag bit 3) follows the data, so sizes always come from the central directory.
 */
import { inflateRawSync } from "node:zlib";
import { FileFormatError } from "../errors.js";

export const SIG_LOCAL = 0x04034b50;
export const SIG_CENTRAL = 0x02014b50;
export const SIG_END = 0x06054b50;
export const METHOD_STORED = 0;
export const METHOD_DEFLATE = 8;
const FLAG_ENCRYPTED = 0x0001;
export const FLAG_UTF8 = 0x0800;

export interface ZipEntry {
  /** Path inside the archive, with forward slashes (e.g. "SMSSpamCollection", "docs/readme"). */
  name: string;
  method: number;
  compressedSize: number;
  size: number;
  crc32: number;
  /** The member's bytes, inflated and CRC-checked. */
  read(): Buffer;
}

let crcTable: Uint32Array | undefined;

/** CRC-32 (IEEE 802.3, reflected, polynomial 0xEDB88320) — what ZIP stores per member. */
export function crc32(data: Uint8Array): number {
  if (!crcTable) {
    crcTable = new Uint32Array(256);
    for (let n = 0; n < 256; n++) {
      let c = n;
      for (let k = 0; k < 8; k++) c = c & 1 ? 0xedb88320 ^ (c >>> 1) : c >>> 1;
      crcTable[n] = c >>> 0;
    }
  }
  let crc = 0xffffffff;
  for (let i = 0; i < data.length; i++) crc = crcTable[(crc ^ data[i]) & 0xff] ^ (crc >>> 8);
  return (crc ^ 0xffffffff) >>> 0;
}

function corrupt(what: string, why: string): FileFormatError {
  return new FileFormatError(`${what} is not a readable ZIP archive: ${why}`, "delete it and download it again");
}

/**
 * List the members of a ZIP archive held in memory. `what` names the archive in error messages.
 * Members are inflated lazily by `entry.read()`.
 */
export function readZip(zip: Buffer, what = "archive"): ZipEntry[] {
  // The end record is 22 bytes plus a comment of up to 65,535 bytes, so search backwards that far.
  const minEnd = Math.max(0, zip.length - 22 - 0xffff);
  let end = -1;
  for (let i = zip.length - 22; i >= minEnd; i--) {
    if (zip.readUInt32LE(i) === SIG_END) {
      end = i;
      break;
    }
  }
  if (end < 0) throw corrupt(what, "no end-of-central-directory record");
  const disk = zip.readUInt16LE(end + 4);
  const count = zip.readUInt16LE(end + 10);
  const cdSize = zip.readUInt32LE(end + 12);
  const cdOffset = zip.readUInt32LE(end + 16);
  if (count === 0xffff || cdSize === 0xffffffff || cdOffset === 0xffffffff)
    throw corrupt(what, "ZIP64 archives are not supported");
  if (disk !== 0) throw corrupt(what, "multi-disk archives are not supported");
  if (cdOffset + cdSize > end) throw corrupt(what, "central directory lies outside the file (truncated download?)");

  const entries: ZipEntry[] = [];
  let p = cdOffset;
  for (let i = 0; i < count; i++) {
    if (p + 46 > end || zip.readUInt32LE(p) !== SIG_CENTRAL)
      throw corrupt(what, `central directory entry ${i} is damaged`);
    const flags = zip.readUInt16LE(p + 8);
    const method = zip.readUInt16LE(p + 10);
    const crc = zip.readUInt32LE(p + 16);
    const compressedSize = zip.readUInt32LE(p + 20);
    const size = zip.readUInt32LE(p + 24);
    const nameLen = zip.readUInt16LE(p + 28);
    const extraLen = zip.readUInt16LE(p + 30);
    const commentLen = zip.readUInt16LE(p + 32);
    const localOffset = zip.readUInt32LE(p + 42);
    // Names are CP437 unless flag bit 11 says UTF-8; the archives we read use ASCII names, where both agree.
    const name = zip.toString(flags & FLAG_UTF8 ? "utf8" : "latin1", p + 46, p + 46 + nameLen);
    p += 46 + nameLen + extraLen + commentLen;
    if (compressedSize === 0xffffffff || size === 0xffffffff || localOffset === 0xffffffff) {
      throw corrupt(what, `member ${name} needs ZIP64, which is not supported`);
    }
    entries.push({
      name,
      method,
      compressedSize,
      size,
      crc32: crc,
      read: () => readMember(zip, what, name, flags, method, localOffset, compressedSize, size, crc),
    });
  }
  return entries;
}

function readMember(
  zip: Buffer,
  what: string,
  name: string,
  flags: number,
  method: number,
  localOffset: number,
  compressedSize: number,
  size: number,
  crc: number,
): Buffer {
  if (flags & FLAG_ENCRYPTED) throw corrupt(what, `member ${name} is encrypted`);
  if (localOffset + 30 > zip.length || zip.readUInt32LE(localOffset) !== SIG_LOCAL)
    throw corrupt(what, `local header of ${name} is damaged`);
  // The local header's name/extra lengths may differ from the central directory's, so read them here.
  const start = localOffset + 30 + zip.readUInt16LE(localOffset + 26) + zip.readUInt16LE(localOffset + 28);
  if (start + compressedSize > zip.length) throw corrupt(what, `member ${name} is truncated`);
  const raw = zip.subarray(start, start + compressedSize);
  let data: Buffer;
  if (method === METHOD_STORED) data = Buffer.from(raw);
  else if (method === METHOD_DEFLATE) {
    try {
      data = inflateRawSync(raw);
    } catch (err) {
      throw corrupt(what, `member ${name} does not inflate (${(err as Error).message})`);
    }
  } else
    throw corrupt(
      what,
      `member ${name} uses compression method ${method}; only stored (0) and deflate (8) are supported`,
    );
  if (data.length !== size) throw corrupt(what, `member ${name} is ${data.length} bytes, the directory says ${size}`);
  if (crc32(data) !== crc) throw corrupt(what, `member ${name} fails its CRC-32 check`);
  return data;
}
