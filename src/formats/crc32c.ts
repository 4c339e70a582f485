/**
 * CRC-32C (Castagnoli, reflected polynomial 0x82F63B78), the checksum LevelDB tables and TensorFlow tensor
 * bundles use, plus their "mask" (stored checksums are masked so that a CRC of data that itself contains CRCs
 * stays well distributed). Slicing-by-8 tables: the tensors of GPT-2 1558M are 6 GB to checksum.
 */

import { LITTLE_ENDIAN } from "./float.js";

const POLY = 0x82f63b78;

// TABLES[k][b]: CRC contribution of byte b followed by k zero bytes.
const TABLES: Uint32Array[] = (() => {
  const t = Array.from({ length: 8 }, () => new Uint32Array(256));
  for (let b = 0; b < 256; b++) {
    let c = b;
    for (let k = 0; k < 8; k++) c = c & 1 ? (c >>> 1) ^ POLY : c >>> 1;
    t[0]![b] = c >>> 0;
  }
  for (let b = 0; b < 256; b++) {
    for (let k = 1; k < 8; k++) t[k]![b] = (t[k - 1]![b]! >>> 8) ^ t[0]![t[k - 1]![b]! & 0xff]!;
  }
  return t;
})();

/** Continue a CRC-32C over more bytes (start with crc = 0). Returns an unsigned 32-bit value. */
export function crc32cExtend(crc: number, bytes: Uint8Array): number {
  const [t0, t1, t2, t3, t4, t5, t6, t7] = TABLES as [
    Uint32Array,
    Uint32Array,
    Uint32Array,
    Uint32Array,
    Uint32Array,
    Uint32Array,
    Uint32Array,
    Uint32Array,
  ];
  let c = ~crc >>> 0;
  let i = 0;
  const n = bytes.length;
  // Byte at a time up to a 4-byte boundary, then 8 bytes per step read as two little-endian words.
  while (i < n && (bytes.byteOffset + i) % 4 !== 0) c = t0[(c ^ bytes[i++]!) & 0xff]! ^ (c >>> 8);
  if (LITTLE_ENDIAN && n - i >= 8) {
    const words = new Uint32Array(bytes.buffer, bytes.byteOffset + i, Math.floor((n - i) / 8) * 2);
    for (let w = 0; w < words.length; w += 2) {
      const lo = (c ^ words[w]!) >>> 0;
      const hi = words[w + 1]!;
      c =
        t7[lo & 0xff]! ^
        t6[(lo >>> 8) & 0xff]! ^
        t5[(lo >>> 16) & 0xff]! ^
        t4[lo >>> 24]! ^
        t3[hi & 0xff]! ^
        t2[(hi >>> 8) & 0xff]! ^
        t1[(hi >>> 16) & 0xff]! ^
        t0[hi >>> 24]!;
    }
    i += words.length * 4;
  }
  for (; i < n; i++) c = t0[(c ^ bytes[i]!) & 0xff]! ^ (c >>> 8);
  return ~c >>> 0;
}

export function crc32c(bytes: Uint8Array): number {
  return crc32cExtend(0, bytes);
}

const MASK_DELTA = 0xa282ead8;

/** Rotate right by 15 bits and add a constant, as LevelDB's crc32c::Mask does. */
export function maskCrc(crc: number): number {
  return ((((crc >>> 15) | (crc << 17)) >>> 0) + MASK_DELTA) >>> 0;
}

export function unmaskCrc(masked: number): number {
  const rot = (masked - MASK_DELTA) >>> 0;
  return ((rot >>> 17) | (rot << 15)) >>> 0;
}
