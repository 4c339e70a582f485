/**
 * TensorBoard event files, written without TensorFlow: a sequence of TFRecords, each holding one serialized
 * `tensorboard.Event` protocol buffer (tensorboard/compat/proto/event.proto and summary.proto).
 *
 * TFRecord framing: u64 little-endian length, masked CRC-32C of those 8 bytes, the data, masked CRC-32C of the
 * data. The fields written here:
 *
 *   Event        { double wall_time = 1; int64 step = 2;
 *                  oneof what { string file_version = 3; Summary summary = 5; SessionLog session_log = 7; }
 *                  SourceMetadata source_metadata = 10; }          SourceMetadata { string writer = 1; }
 *   Summary      { repeated Value value = 1; }    Value { string tag = 1; float simple_value = 2; }
 *   SessionLog   { SessionStatus status = 1; }    START = 1
 *
 * A file starts with a file_version event "brain.Event:2". A reader that meets a SessionLog START at step S
 * drops what it already holds from steps >= S: that is how a run restarted from a checkpoint hides the steps
 * logged after that checkpoint before the crash (TensorBoard's EventAccumulator `_CheckForRestartAndMaybePurge`;
 * its Rust data server drops a series' points from any step it sees again).
 *
 * Each record goes to the file in one write() on an unbuffered descriptor, so a running `tensorboard` sees it at
 * once, and a crash can at worst leave one torn record at the end, which readers treat as not yet written.
 */
import { closeSync, fsyncSync, openSync, writeSync } from "node:fs";
import { fileSystemError } from "../errors.js";
import { crc32c, maskCrc } from "./crc32c.js";

export const EVENT_FILE_PREFIX = "events.out.tfevents.";
export const FILE_VERSION = "brain.Event:2";

/** Frame `data` as one TFRecord. */
export function tfRecord(data: Uint8Array): Uint8Array {
  const out = new Uint8Array(12 + data.length + 4);
  const view = new DataView(out.buffer);
  view.setBigUint64(0, BigInt(data.length), true);
  view.setUint32(8, maskCrc(crc32c(out.subarray(0, 8))), true);
  out.set(data, 12);
  view.setUint32(12 + data.length, maskCrc(crc32c(data)), true);
  return out;
}

/** Protocol-buffer wire format, fields appended in the order given (write them in field-number order). */
class ProtoWriter {
  private readonly bytes: number[] = [];

  private varint(value: bigint): void {
    let v = BigInt.asUintN(64, value); // negative int64s are 10-byte two's complement, as protobuf encodes them
    while (v >= 0x80n) {
      this.bytes.push(Number(v & 0x7fn) | 0x80);
      v >>= 7n;
    }
    this.bytes.push(Number(v));
  }

  private key(field: number, wire: number): void {
    this.varint(BigInt((field << 3) | wire));
  }

  int(field: number, value: number): this {
    this.key(field, 0);
    this.varint(BigInt(value));
    return this;
  }

  double(field: number, value: number): this {
    return this.fixed(field, 1, 8, (view) => view.setFloat64(0, value, true));
  }

  float(field: number, value: number): this {
    return this.fixed(field, 5, 4, (view) => view.setFloat32(0, value, true));
  }

  /** a fixed-width field: wire type 1 (64-bit) or 5 (32-bit), little-endian */
  private fixed(field: number, wireType: 1 | 5, size: 8 | 4, write: (view: DataView) => void): this {
    this.key(field, wireType);
    const b = new Uint8Array(size);
    write(new DataView(b.buffer));
    this.bytes.push(...b);
    return this;
  }

  bytesField(field: number, data: Uint8Array): this {
    this.key(field, 2);
    this.varint(BigInt(data.length));
    this.bytes.push(...data);
    return this;
  }

  string(field: number, s: string): this {
    return this.bytesField(field, new TextEncoder().encode(s));
  }

  finish(): Uint8Array {
    return Uint8Array.from(this.bytes);
  }
}

export interface Scalar {
  tag: string;
  value: number;
}

/** What one Event carries besides its time and step. */
export type EventContent = { fileVersion: string; writer: string } | { scalars: Scalar[] } | { sessionStart: true };

const SESSION_LOG_START = 1;

/** Serialize one tensorboard.Event. `wallTime` is in seconds since the epoch. */
export function encodeEvent(wallTime: number, step: number, content: EventContent): Uint8Array {
  const event = new ProtoWriter().double(1, wallTime);
  if (step !== 0) event.int(2, step); // proto3 leaves default values out, as TensorFlow's writers do
  if ("fileVersion" in content) {
    event.string(3, content.fileVersion);
    event.bytesField(10, new ProtoWriter().string(1, content.writer).finish());
  } else if ("scalars" in content) {
    const summary = new ProtoWriter();
    for (const { tag, value } of content.scalars)
      summary.bytesField(1, new ProtoWriter().string(1, tag).float(2, value).finish());
    event.bytesField(5, summary.finish());
  } else event.bytesField(7, new ProtoWriter().int(1, SESSION_LOG_START).finish());
  return event.finish();
}

/** An event file being appended to. Creating one writes its file_version record. */
export class EventFileWriter {
  readonly path: string;
  private fd: number | null;

  /** Create `path` (it must not exist yet) and write the file_version event naming `writer`. */
  constructor(path: string, writer: string) {
    this.path = path;
    this.fd = openSync(path, "wx");
    this.write(Date.now() / 1000, 0, { fileVersion: FILE_VERSION, writer });
  }

  write(wallTime: number, step: number, content: EventContent): void {
    if (this.fd === null) throw new Error(`${this.path} is closed`);
    const record = tfRecord(encodeEvent(wallTime, step, content));
    try {
      for (let done = 0; done < record.length;) done += writeSync(this.fd, record, done);
    } catch (err) {
      throw fileSystemError(err, this.path); // a write error names no path of its own
    }
  }

  /** Make what was written durable (the OS already shows it to readers; this survives a power loss). */
  sync(): void {
    try {
      if (this.fd !== null) fsyncSync(this.fd);
    } catch (err) {
      throw fileSystemError(err, this.path);
    }
  }

  close(): void {
    if (this.fd === null) return;
    fsyncSync(this.fd);
    closeSync(this.fd);
    this.fd = null;
  }
}
