// test: first backend pass only (the TF tensor bundle format, no tensors)
import { test } from "node:test";
import assert from "node:assert/strict";
import { mkdtemp, readFile, writeFile, copyFile, rm, truncate } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import {
  TensorBundleReader,
  writeTensorBundle,
  encodeBundleEntry,
  encodeBundleHeader,
  bundlePrefix,
} from "../src/formats/tf-bundle.js";
import { readTable, writeTable, parseBlock } from "../src/formats/leveldb-table.js";
import { crc32c, maskCrc, unmaskCrc } from "../src/formats/crc32c.js";
import { readSafetensors } from "../src/formats/safetensors.js";
import { FileFormatError } from "../src/errors.js";
import { sharedPath } from "./helpers/shared.js";

const real = (name: string) => join(sharedPath("fixtures", "tf-bundle-real", name), "variables");
const text = (b: Uint8Array) => new TextDecoder().decode(b);

test("crc32c matches the standard check value and masking round-trips", () => {
  assert.equal(crc32c(new TextEncoder().encode("123456789")), 0xe3069283);
  assert.equal(crc32c(new Uint8Array(32)), 0x8a9136aa); // RFC 3720 B.4: 32 bytes of zeros
  assert.equal(crc32c(new Uint8Array(32).fill(0xff)), 0x62a8ab43);
  for (const c of [0, 1, 0xdeadbeef, 0xffffffff]) assert.equal(unmaskCrc(maskCrc(c)), c);
  // The word-at-a-time path against a bit-at-a-time reference, at every alignment and length.
  const slow = (b: Uint8Array) => {
    let c = 0xffffffff;
    for (const x of b) {
      c ^= x;
      for (let k = 0; k < 8; k++) c = c & 1 ? (c >>> 1) ^ 0x82f63b78 : c >>> 1;
    }
    return ~c >>> 0;
  };
  const buf = Uint8Array.from({ length: 100 }, (_, i) => (i * 131 + 7) & 0xff);
  for (let off = 0; off < 8; off++)
    for (let len = 0; len <= 40; len++)
      assert.equal(crc32c(buf.subarray(off, off + len)), slow(buf.subarray(off, off + len)), `${off}+${len}`);
});

test("times_three_float: table layout, header and tensors as the fixture README lists", async () => {
  const r = await TensorBundleReader.open(real("times_three_float"));
  try {
    assert.deepEqual(r.header, {
      numShards: 1,
      endianness: "LITTLE",
      version: { producer: 1, minConsumer: 0, badConsumers: [] },
    });
    assert.deepEqual(r.table.blocks, [
      { kind: "data", handle: { offset: 0, size: 103 }, entries: 3, restarts: [0] },
      { kind: "metaindex", handle: { offset: 108, size: 8 }, entries: 0, restarts: [0] },
      { kind: "index", handle: { offset: 121, size: 14 }, entries: 1, restarts: [0] },
    ]);
    assert.deepEqual([...r.entries.keys()], ["_CHECKPOINTABLE_OBJECT_GRAPH", "v/.ATTRIBUTES/VARIABLE_VALUE"]);
    const g = r.entry("_CHECKPOINTABLE_OBJECT_GRAPH");
    assert.deepEqual(
      [g.dtypeName, g.dtype, g.shape, g.offset, g.size, g.crc32c],
      ["DT_STRING", 7, [], 4, 92, 0x5292fc47],
    );
    const strings = await r.readStrings("_CHECKPOINTABLE_OBJECT_GRAPH");
    assert.equal(strings.length, 1);
    assert.equal(strings[0]!.length, 87);
    for (const s of ["v", "signatures", "VARIABLE_VALUE", "Variable", "v/.ATTRIBUTES/VARIABLE_VALUE"]) {
      assert.ok(Buffer.from(strings[0]!).includes(s), `object graph mentions ${s}`);
    }
    const v = r.entry("v/.ATTRIBUTES/VARIABLE_VALUE");
    assert.deepEqual(
      [v.dtypeName, v.dtype, v.shape, v.offset, v.size, v.crc32c],
      ["DT_FLOAT", 1, [], 0, 4, 0xc382d6ef],
    );
    assert.deepEqual([...(await r.read("v/.ATTRIBUTES/VARIABLE_VALUE"))], [3]);
  } finally {
    await r.close();
  }
  // The index block's one separator key is 'w'.
  const index = await readFile(`${real("times_three_float")}.index`);
  const sep = parseBlock(index.subarray(121, 121 + 14), "index");
  assert.deepEqual(
    sep.entries.map((e) => text(e.key)),
    ["w"],
  );
});

test("int64_multiply: int64 values, prefix-compressed keys and the string tensor", async () => {
  const r = await TensorBundleReader.open(`${real("int64_multiply")}.index`);
  try {
    assert.deepEqual(
      r.table.blocks.map((b) => [b.kind, b.handle.offset, b.handle.size, b.entries]),
      [
        ["data", 0, 149, 4],
        ["metaindex", 154, 8, 0],
        ["index", 167, 15, 1],
      ],
    );
    const rows = [...r.entries.values()].map((e) => [e.key, e.dtypeName, e.shape, e.offset, e.size, e.crc32c]);
    assert.deepEqual(rows, [
      ["_CHECKPOINTABLE_OBJECT_GRAPH", "DT_STRING", [], 16, 164, 0x6362ebdf],
      ["v1/.ATTRIBUTES/VARIABLE_VALUE", "DT_INT64", [], 0, 8, 0x0e4999b0],
      ["v2/.ATTRIBUTES/VARIABLE_VALUE", "DT_INT64", [], 8, 8, 0x340b2778],
    ]);
    assert.deepEqual([...((await r.readValues("v1/.ATTRIBUTES/VARIABLE_VALUE")) as BigInt64Array)], [3n]);
    assert.deepEqual([...((await r.readValues("v2/.ATTRIBUTES/VARIABLE_VALUE")) as BigInt64Array)], [2n]);
    const [graph] = (await r.readValues("_CHECKPOINTABLE_OBJECT_GRAPH")) as Uint8Array[];
    assert.equal(graph!.length, 158);
    for (const s of ["v1", "v2", "signatures", "v1/.ATTRIBUTES/VARIABLE_VALUE", "v2/.ATTRIBUTES/VARIABLE_VALUE"])
      assert.ok(Buffer.from(graph!).includes(s));
    await assert.rejects(r.read("v1/.ATTRIBUTES/VARIABLE_VALUE"), /DT_INT64, not a floating-point type/);
  } finally {
    await r.close();
  }
  // Shared-prefix lengths as stored: [0, 0, 0, 1] (header first).
  const index = await readFile(`${real("int64_multiply")}.index`);
  const block = index.subarray(0, 149);
  const shared: number[] = [];
  let pos = 0;
  for (const e of parseBlock(block, "data").entries) {
    shared.push(block[pos]!);
    pos += 3 + block[pos + 1]! + block[pos + 2]!; // all varints are single bytes in this small block
    void e;
  }
  assert.deepEqual(shared, [0, 0, 0, 1]);
});

test("re-encoding the decoded entries reproduces TensorFlow's index files byte for byte", async () => {
  for (const path of [
    `${real("times_three_float")}.index`,
    `${real("int64_multiply")}.index`,
    sharedPath("fixtures", "gpt2-tiny", "tf", "model.ckpt.index"),
  ]) {
    const bytes = await readFile(path);
    const table = readTable(bytes, path);
    assert.deepEqual(Buffer.from(writeTable(table.entries)), bytes, path);
  }
  // And our proto encoders reproduce TensorFlow's header and entry messages.
  const r = await TensorBundleReader.open(real("int64_multiply"));
  const t = readTable(await readFile(`${real("int64_multiply")}.index`), "x");
  assert.deepEqual(Buffer.from(encodeBundleHeader({ numShards: 1, producer: 1 })), Buffer.from(t.entries[0]!.value));
  const e = r.entry("v2/.ATTRIBUTES/VARIABLE_VALUE");
  assert.deepEqual(Buffer.from(encodeBundleEntry(e)), Buffer.from(t.entries[3]!.value));
  await r.close();
});

test("gpt2-tiny tf/ holds OpenAI names and is bit-for-bit equal to hf/", async () => {
  const r = await TensorBundleReader.open(join(sharedPath("fixtures", "gpt2-tiny", "tf"), "model.ckpt"));
  const st = await readSafetensors(sharedPath("fixtures", "gpt2-tiny", "hf", "model.safetensors"));
  try {
    const pairs: [string, string, number[]][] = [
      ["model/wte", "wte.weight", [50257, 16]],
      ["model/wpe", "wpe.weight", [32, 16]],
      ["model/ln_f/g", "ln_f.weight", [16]],
      ["model/ln_f/b", "ln_f.bias", [16]],
    ];
    for (let i = 0; i < 2; i++) {
      const o = `model/h${i}/`;
      const h = `h.${i}.`;
      pairs.push(
        [`${o}ln_1/g`, `${h}ln_1.weight`, [16]],
        [`${o}ln_1/b`, `${h}ln_1.bias`, [16]],
        [`${o}ln_2/g`, `${h}ln_2.weight`, [16]],
        [`${o}ln_2/b`, `${h}ln_2.bias`, [16]],
        [`${o}attn/c_attn/w`, `${h}attn.c_attn.weight`, [1, 16, 48]],
        [`${o}attn/c_attn/b`, `${h}attn.c_attn.bias`, [48]],
        [`${o}attn/c_proj/w`, `${h}attn.c_proj.weight`, [1, 16, 16]],
        [`${o}attn/c_proj/b`, `${h}attn.c_proj.bias`, [16]],
        [`${o}mlp/c_fc/w`, `${h}mlp.c_fc.weight`, [1, 16, 64]],
        [`${o}mlp/c_fc/b`, `${h}mlp.c_fc.bias`, [64]],
        [`${o}mlp/c_proj/w`, `${h}mlp.c_proj.weight`, [1, 64, 16]],
        [`${o}mlp/c_proj/b`, `${h}mlp.c_proj.bias`, [16]],
      );
    }
    assert.equal(r.entries.size, pairs.length);
    for (const [tf, hf, shape] of pairs) {
      const e = r.entry(tf);
      assert.equal(e.dtypeName, "DT_FLOAT");
      assert.deepEqual(e.shape, shape, tf);
      const a = await r.read(tf);
      const b = await st.read(hf);
      assert.deepEqual(Buffer.from(a.buffer), Buffer.from(b.buffer), `${tf} == ${hf}`);
    }
  } finally {
    await r.close();
    await st.close();
  }
});

test("a bundle spread over many data blocks: index walk, bytewise key order, tensors by offset", async () => {
  const dir = await mkdtemp(join(tmpdir(), "llmctl-tfb-"));
  const prefix = join(dir, "ck", "model.ckpt");
  // Written in an order unlike key order, so data offsets are not sorted by key.
  const names = ["model/h2/w", "model/h10/w", "model/h1/w", "model/wte", "model/h11/b"];
  const tensors = names.map((key, i) => ({
    key,
    shape: [i + 1, 3],
    data: Float32Array.from({ length: 3 * (i + 1) }, (_, j) => i * 100 + j + 0.5),
  }));
  await writeTensorBundle(prefix, tensors, { blockSize: 40 });
  const r = await TensorBundleReader.open(prefix);
  try {
    assert.ok(r.table.blocks.filter((b) => b.kind === "data").length >= 3, "several data blocks");
    assert.deepEqual([...r.entries.keys()], ["model/h1/w", "model/h10/w", "model/h11/b", "model/h2/w", "model/wte"]);
    for (const t of tensors) {
      assert.deepEqual(r.entry(t.key).shape, t.shape);
      assert.deepEqual([...(await r.read(t.key))], [...t.data]);
    }
  } finally {
    await r.close();
  }
  assert.equal(bundlePrefix(`${prefix}.data-00000-of-00001`), prefix);
  await rm(dir, { recursive: true });
});

test("corrupt and truncated bundles fail with clear FileFormatErrors", async () => {
  const dir = await mkdtemp(join(tmpdir(), "llmctl-tfb-bad-"));
  const src = sharedPath("fixtures", "gpt2-tiny", "tf");
  const index = await readFile(join(src, "model.ckpt.index"));
  const data = join(src, "model.ckpt.data-00000-of-00001");
  let n = 0;
  const variant = async (indexBytes: Uint8Array | null, mutateData?: (p: string) => Promise<void>): Promise<string> => {
    const prefix = join(dir, `v${n++}`, "model.ckpt");
    await writeTensorBundle(prefix, []); // creates the directory
    if (indexBytes) await writeFile(`${prefix}.index`, indexBytes);
    else await rm(`${prefix}.index`);
    await copyFile(data, `${prefix}.data-00000-of-00001`);
    if (mutateData) await mutateData(`${prefix}.data-00000-of-00001`);
    return prefix;
  };
  const expectOpen = async (prefix: string, pattern: RegExp) => {
    await assert.rejects(TensorBundleReader.open(prefix), (err: unknown) => {
      assert.ok(err instanceof FileFormatError, String(err));
      assert.match(err.message, pattern);
      return true;
    });
  };
  await expectOpen(await variant(index.subarray(0, 30)), /shorter than the 48-byte footer/);
  await expectOpen(await variant(index.subarray(0, index.length - 1)), /bad magic number/);
  const flipped = Buffer.from(index);
  flipped[100]! ^= 0x01; // inside the data block
  await expectOpen(await variant(flipped), /checksum mismatch in the data block at offset 0/);
  const noFooter = Buffer.concat([index.subarray(0, 200), index.subarray(index.length - 48)]);
  await expectOpen(await variant(noFooter), /runs past the end of the file/);
  await expectOpen(await variant(null), /model\.ckpt\.index does not exist/);
  await expectOpen(await variant(index, (p) => rm(p)), /data-00000-of-00001 does not exist/);
  await expectOpen(
    await variant(index, (p) => truncate(p, 1000)),
    /needs bytes .* but the file has 1000 \(truncated\)/,
  );

  // A flipped bit in a tensor's bytes is caught by its crc32c when that tensor is read.
  const bad = await variant(index, async (p) => {
    const b = await readFile(p);
    b[b.length - 3]! ^= 0x10;
    await writeFile(p, b);
  });
  const r = await TensorBundleReader.open(bad);
  const last = [...r.entries.values()].reduce((a, b) => (a.offset > b.offset ? a : b));
  await assert.rejects(r.read(last.key), new RegExp(`checksum mismatch for tensor '${last.key}'.*corrupt`));
  await r.close();
  await rm(dir, { recursive: true });
});
