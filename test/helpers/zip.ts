import { deflateRawSync } from "node:zlib";
import {
  FLAG_UTF8,
  METHOD_DEFLATE,
  METHOD_STORED,
  SIG_CENTRAL,
  SIG_END,
  SIG_LOCAL,
  crc32,
} from "../../src/data/zip.js";

export interface ZipInput {
  name: string;
  data: Uint8Array;
  /** "deflate" (default) or "store". */
  method?: "deflate" | "store";
}

/** Build a ZIP archive in memory, to stand in for the UCI download (llmctl only reads ZIPs: src/data/zip.ts). */
export function createZip(inputs: ZipInput[]): Buffer {
  const locals: Buffer[] = [];
  const centrals: Buffer[] = [];
  let offset = 0;
  for (const input of inputs) {
    const name = Buffer.from(input.name, "utf8");
    const data = Buffer.from(input.data.buffer, input.data.byteOffset, input.data.byteLength);
    const method = input.method === "store" ? METHOD_STORED : METHOD_DEFLATE;
    const body = method === METHOD_DEFLATE ? deflateRawSync(data) : data;
    const crc = crc32(data);
    // The fields local and central headers share (APPNOTE 4.3.7 / 4.3.12), from "version needed" on.
    const shared = Buffer.alloc(26);
    shared.writeUInt16LE(20, 0); // version needed: 2.0 (deflate)
    shared.writeUInt16LE(FLAG_UTF8, 2);
    shared.writeUInt16LE(method, 4);
    // time 00:00 and date 1980-01-01 (bytes 6–9): fixed, so archives built from the same bytes are identical
    shared.writeUInt16LE((0 << 9) | (1 << 5) | 1, 8);
    shared.writeUInt32LE(crc, 10);
    shared.writeUInt32LE(body.length, 14);
    shared.writeUInt32LE(data.length, 18);
    shared.writeUInt16LE(name.length, 22); // extra field length (24–25) stays 0

    const local = Buffer.alloc(30);
    local.writeUInt32LE(SIG_LOCAL, 0);
    shared.copy(local, 4);
    locals.push(local, name, body);

    const central = Buffer.alloc(46);
    central.writeUInt32LE(SIG_CENTRAL, 0);
    central.writeUInt16LE(20, 4); // made by: MS-DOS, 2.0
    shared.copy(central, 6);
    central.writeUInt32LE(offset, 42);
    centrals.push(central, name);

    offset += local.length + name.length + body.length;
  }
  const cd = Buffer.concat(centrals);
  const endRecord = Buffer.alloc(22);
  endRecord.writeUInt32LE(SIG_END, 0);
  endRecord.writeUInt16LE(inputs.length, 8);
  endRecord.writeUInt16LE(inputs.length, 10);
  endRecord.writeUInt32LE(cd.length, 12);
  endRecord.writeUInt32LE(offset, 16);
  return Buffer.concat([...locals, cd, endRecord]);
}
