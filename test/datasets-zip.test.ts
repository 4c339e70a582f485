// test: first backend pass only (the zip reader, no tensors)
/** The small ZIP reader/writer that unpacks the UCI spam archive. */
import { test } from "node:test";
import assert from "node:assert/strict";
import { spawnSync } from "node:child_process";
import { readFileSync } from "node:fs";
import { crc32, readZip } from "../src/data/zip.js";
import { createZip } from "./helpers/zip.js";
import { FileFormatError } from "../src/errors.js";
import { sharedPath } from "./helpers/shared.js";

test("crc32 matches the standard check value", () => {
  assert.equal(crc32(Buffer.from("123456789")), 0xcbf43926);
  assert.equal(crc32(new Uint8Array(0)), 0);
});

test("stored and deflated members round-trip, names and sizes preserved", () => {
  const spam = readFileSync(sharedPath("datasets", "SMSSpamCollection"));
  const zip = createZip([
    { name: "SMSSpamCollection", data: spam },
    { name: "dir/readme", data: Buffer.from("hello"), method: "store" },
    { name: "empty", data: new Uint8Array(0) },
  ]);
  const entries = readZip(zip);
  assert.deepEqual(
    entries.map((e) => [e.name, e.method, e.size]),
    [
      ["SMSSpamCollection", 8, spam.length],
      ["dir/readme", 0, 5],
      ["empty", 8, 0],
    ],
  );
  assert.deepEqual(entries[0].read(), spam);
  assert.equal(entries[1].read().toString(), "hello");
  assert.equal(entries[2].read().length, 0);
});

test("a trailing archive comment does not hide the end record", () => {
  const zip = createZip([{ name: "a", data: Buffer.from("abc") }]);
  const comment = Buffer.from("made by a test");
  zip.writeUInt16LE(comment.length, zip.length - 2);
  assert.equal(
    readZip(Buffer.concat([zip, comment]))[0]
      .read()
      .toString(),
    "abc",
  );
});

test("damage is a FileFormatError, never wrong bytes", () => {
  const zip = createZip([{ name: "a", data: Buffer.from("some text that deflates") }]);
  assert.throws(
    () => readZip(zip.subarray(0, zip.length - 10), "x.zip"),
    (e: unknown) =>
      e instanceof FileFormatError &&
      /x\.zip is not a readable ZIP archive: no end-of-central-directory record/.test(e.message),
  );
  const flipped = Buffer.from(zip);
  flipped[33] ^= 0xff; // inside the deflated data of member "a" (30-byte header + 1-byte name)
  assert.throws(() => readZip(flipped)[0].read(), FileFormatError);
  assert.throws(() => readZip(Buffer.from("PK not really")), /no end-of-central-directory/);
});

test("reads an archive made by Info-ZIP `zip`, and `unzip` reads ours (when the tools are installed)", (t) => {
  if (spawnSync("zip", ["-v"]).status !== 0 || spawnSync("unzip", ["-v"]).status !== 0) {
    t.skip("zip/unzip not installed");
    return;
  }
  const path = sharedPath("datasets", "SMSSpamCollection");
  // `zip -j - FILE` writes the archive to stdout: a real data descriptor (flag bit 3) and extra fields.
  const made = spawnSync("zip", ["-j", "-q", "-", path], { maxBuffer: 1 << 24 });
  assert.equal(made.status, 0, made.stderr?.toString());
  const entries = readZip(made.stdout);
  assert.equal(entries.length, 1);
  assert.equal(entries[0].name, "SMSSpamCollection");
  assert.deepEqual(entries[0].read(), readFileSync(path));

  const ours = createZip([{ name: "SMSSpamCollection", data: readFileSync(path) }]);
  const tested = spawnSync(
    "sh",
    ["-c", "f=$(mktemp) && cat > $f && unzip -p $f SMSSpamCollection; rc=$?; rm -f $f; exit $rc"],
    { input: ours, maxBuffer: 1 << 24 },
  );
  assert.equal(tested.status, 0, tested.stderr?.toString());
  assert.deepEqual(tested.stdout, readFileSync(path));
});
