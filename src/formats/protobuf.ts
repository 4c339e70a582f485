/**
 * A minimal protocol-buffers wire-format decoder: just enough to read TensorFlow's BundleHeaderProto,
 * BundleEntryProto and TensorShapeProto without generated code. Messages decode into a list of raw fields;
 * the caller knows the schema (field numbers) and picks what it needs, skipping the rest as protobuf allows.
 */
import { FileFormatError } from "../errors.js";

export type ProtoField =
  | { field: number; wire: 0; value: bigint } // varint (int32, int64, uint*, bool, enum)
  | { field: number; wire: 1; value: Uint8Array } // 8 bytes (fixed64, double)
  | { field: number; wire: 2; value: Uint8Array } // length-delimited (bytes, string, embedded message, packed)
  | { field: number; wire: 5; value: Uint8Array }; // 4 bytes (fixed32, float)

/**
 * Read a base-128 varint of up to 64 bits starting at `pos`; `what` names the thing being decoded for errors.
 * Returns the value as an unsigned bigint and the position after it.
 */
export function readVarintBig(bytes: Uint8Array, pos: number, what: string): [bigint, number] {
  let result = 0n;
  let shift = 0n;
  for (let i = 0; i < 10; i++) {
    if (pos >= bytes.length)
      throw new FileFormatError(`${what}: varint runs past the end of its buffer`, "the file is truncated or corrupt");
    const b = bytes[pos++]!;
    result |= BigInt(b & 0x7f) << shift;
    if ((b & 0x80) === 0) return [BigInt.asUintN(64, result), pos];
    shift += 7n;
  }
  throw new FileFormatError(`${what}: varint longer than 10 bytes`, "the file is corrupt");
}

/** A varint that must fit in a safe JS integer (lengths, offsets). */
export function readVarint(bytes: Uint8Array, pos: number, what: string): [number, number] {
  const [v, next] = readVarintBig(bytes, pos, what);
  if (v > BigInt(Number.MAX_SAFE_INTEGER))
    throw new FileFormatError(`${what}: value ${v} is too large`, "the file is corrupt");
  return [Number(v), next];
}

export function decodeMessage(bytes: Uint8Array, what: string): ProtoField[] {
  const fields: ProtoField[] = [];
  let pos = 0;
  while (pos < bytes.length) {
    const [tag, afterTag] = readVarint(bytes, pos, what);
    pos = afterTag;
    const field = Math.floor(tag / 8);
    const wire = tag & 7;
    if (field === 0) throw new FileFormatError(`${what}: protobuf field number 0`, "the file is corrupt");
    const take = (n: number): Uint8Array => {
      if (pos + n > bytes.length)
        throw new FileFormatError(
          `${what}: field ${field} runs past the end of the message`,
          "the file is truncated or corrupt",
        );
      const v = bytes.subarray(pos, pos + n);
      pos += n;
      return v;
    };
    switch (wire) {
      case 0: {
        const [v, next] = readVarintBig(bytes, pos, what);
        pos = next;
        fields.push({ field, wire, value: v });
        break;
      }
      case 1:
        fields.push({ field, wire, value: take(8) });
        break;
      case 2: {
        const [len, next] = readVarint(bytes, pos, what);
        pos = next;
        fields.push({ field, wire, value: take(len) });
        break;
      }
      case 5:
        fields.push({ field, wire, value: take(4) });
        break;
      default:
        throw new FileFormatError(
          `${what}: unsupported protobuf wire type ${wire} (field ${field})`,
          "the file is corrupt",
        );
    }
  }
  return fields;
}

/** The last occurrence of a scalar field wins, as in protobuf; undefined when absent. */
export function lastField(fields: ProtoField[], field: number): ProtoField | undefined {
  for (let i = fields.length - 1; i >= 0; i--) if (fields[i]!.field === field) return fields[i];
  return undefined;
}

/** A varint field as a signed 64-bit integer (int32/int64 negatives are 10-byte two's complement). */
export function int64Field(fields: ProtoField[], field: number, what: string): bigint {
  const f = lastField(fields, field);
  if (!f) return 0n;
  if (f.wire !== 0) throw new FileFormatError(`${what}: field ${field} should be a varint`, "the file is corrupt");
  return BigInt.asIntN(64, f.value);
}

export function intField(fields: ProtoField[], field: number, what: string): number {
  const v = int64Field(fields, field, what);
  if (v > BigInt(Number.MAX_SAFE_INTEGER) || v < BigInt(Number.MIN_SAFE_INTEGER)) {
    throw new FileFormatError(`${what}: field ${field} value ${v} is out of range`, "the file is corrupt");
  }
  return Number(v);
}

export function fixed32Field(fields: ProtoField[], field: number, what: string): number {
  const f = lastField(fields, field);
  if (!f) return 0;
  if (f.wire !== 5) throw new FileFormatError(`${what}: field ${field} should be fixed32`, "the file is corrupt");
  return new DataView(f.value.buffer, f.value.byteOffset, 4).getUint32(0, true);
}

export function messageFields(fields: ProtoField[], field: number, what: string): Uint8Array[] {
  return fields
    .filter((f) => f.field === field)
    .map((f) => {
      if (f.wire !== 2)
        throw new FileFormatError(`${what}: field ${field} should be length-delimited`, "the file is corrupt");
      return f.value;
    });
}
