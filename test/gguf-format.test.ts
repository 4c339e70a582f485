// test: first backend pass only (the GGUF container, no tensors)
import { test } from "node:test";
import assert from "node:assert/strict";
import { mkdtemp, readFile, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { quantizeQ8_0, writeGguf, type GgufTensorEntry, type GgufValue } from "../src/formats/gguf.js";
import { dequantizeQ8_0, readGguf } from "./helpers/gguf-reader.js";
import { decodeFloat, encodeFloat, floatToBfloat16, floatToHalf, halfToFloat } from "../src/formats/float.js";

test("floatToHalf inverts halfToFloat on every half, and rounds to nearest even between them", () => {
  for (let h = 0; h < 0x10000; h++) {
    const x = halfToFloat(h);
    if (Number.isNaN(x)) assert.ok(Number.isNaN(halfToFloat(floatToHalf(x))), `NaN ${h.toString(16)}`);
    else assert.equal(floatToHalf(x), h, `half 0x${h.toString(16)} (${x})`);
  }
  // 1 + 2^-11 lies halfway between 1 (0x3c00, even) and 1 + 2^-10 (0x3c01): ties go to the even one
  assert.equal(floatToHalf(1 + 2 ** -11), 0x3c00);
  assert.equal(floatToHalf(1 + 3 * 2 ** -11), 0x3c02);
  assert.equal(floatToHalf(1 + 2 ** -11 + 2 ** -20), 0x3c01);
  assert.equal(floatToHalf(65520), 0x7c00, "rounds up past the largest half (65504): infinity");
  assert.equal(floatToHalf(65519), 0x7bff);
  assert.equal(floatToHalf(-1e9), 0xfc00);
  assert.equal(floatToHalf(2 ** -25), 0, "half the smallest subnormal ties to zero");
  assert.equal(floatToHalf(2 ** -25 * 1.0001), 1);
  assert.equal(floatToHalf(3 * 2 ** -25), 2, "1.5 subnormal units tie to 2");
  assert.equal(floatToHalf(-0), 0x8000);
});

test("floatToBfloat16 keeps the top half of the float32, rounded to nearest even", () => {
  assert.equal(floatToBfloat16(1), 0x3f80);
  assert.equal(floatToBfloat16(-2.5), 0xc020);
  // 1 + 2^-8 is halfway between bfloat16 1 (even) and 1 + 2^-7
  assert.equal(floatToBfloat16(1 + 2 ** -8), 0x3f80);
  assert.equal(floatToBfloat16(1 + 3 * 2 ** -8), 0x3f82);
  assert.equal(floatToBfloat16(Infinity), 0x7f80);
  assert.ok(Number.isNaN(decodeFloat("BF16", encodeFloat("BF16", Float32Array.of(NaN)), 1)[0]));
  const xs = Float32Array.from({ length: 1000 }, (_, i) => Math.sin(i) * 10 ** ((i % 9) - 4));
  const back = decodeFloat("BF16", encodeFloat("BF16", xs), xs.length);
  xs.forEach((x, i) => assert.ok(Math.abs(back[i]! - x) <= Math.abs(x) * 2 ** -8, `${x} → ${back[i]}`));
});

test("Q8_0 stores each block of 32 as an F16 scale max|x|/127 and int8 round(x/scale)", () => {
  const xs = Float32Array.from({ length: 64 }, (_, i) => (i < 32 ? (i - 16) / 4 : 0));
  const q = quantizeQ8_0(xs);
  assert.equal(q.length, 2 * 34);
  const view = new DataView(q.buffer);
  assert.equal(view.getUint16(0, true), floatToHalf(4 / 127));
  assert.equal(new Int8Array(q.buffer)[2], -127, "-4 is the block's max |x|: -127");
  assert.equal(view.getUint16(34, true), 0, "an all-zero block has scale 0");
  const back = dequantizeQ8_0(q, 64);
  const d = halfToFloat(floatToHalf(4 / 127));
  xs.forEach((x, i) => assert.ok(Math.abs(back[i]! - x) <= d / 2 + 1e-3, `${x} → ${back[i]}`));
});

/** The bytes a GGUF v3 file with one string key and one F32 tensor [1, 2] must have, written out by hand. */
function handMadeGguf(): Uint8Array {
  const parts: number[] = [];
  const u32 = (n: number) => parts.push(n & 0xff, (n >>> 8) & 0xff, (n >>> 16) & 0xff, n >>> 24);
  const u64 = (n: number) => (u32(n), u32(0));
  const str = (s: string) => (u64(s.length), parts.push(...Buffer.from(s)));
  parts.push(...Buffer.from("GGUF"));
  u32(3);
  u64(1); // tensors
  u64(1); // metadata
  str("general.architecture");
  u32(8); // string
  str("gpt2");
  str("t");
  u32(1); // n_dims
  u64(2); // ne[0]
  u32(0); // F32
  u64(0); // offset
  while (parts.length % 32) parts.push(0);
  parts.push(...new Uint8Array(Float32Array.of(1, 2).buffer));
  while (parts.length % 32) parts.push(0);
  return Uint8Array.from(parts);
}

test("writeGguf writes GGUF v3 byte for byte: header, metadata, tensor table, aligned data", async () => {
  const dir = await mkdtemp(join(tmpdir(), "llmctl-gguf-"));
  const path = join(dir, "t.gguf");
  const { bytes } = await writeGguf(
    path,
    new Map<string, GgufValue>([["general.architecture", { type: "string", value: "gpt2" }]]),
    [{ name: "t", shape: [2], type: "F32", data: Float32Array.of(1, 2) }],
  );
  const file = await readFile(path);
  assert.deepEqual(new Uint8Array(file), handMadeGguf());
  assert.equal(bytes, file.length);
  await rm(dir, { recursive: true });
});

test("readGguf reads back every value type and each tensor type, at offsets padded to the alignment", async () => {
  const dir = await mkdtemp(join(tmpdir(), "llmctl-gguf-"));
  const path = join(dir, "all.gguf");
  const metadata = new Map<string, GgufValue>([
    ["u8", { type: "uint8", value: 255 }],
    ["i8", { type: "int8", value: -128 }],
    ["u16", { type: "uint16", value: 65535 }],
    ["i16", { type: "int16", value: -32768 }],
    ["u32", { type: "uint32", value: 4294967295 }],
    ["i32", { type: "int32", value: -2147483648 }],
    ["f32", { type: "float32", value: 0.5 }],
    ["bool", { type: "bool", value: true }],
    ["str", { type: "string", value: "ĠHello — 日本 🙂" }],
    ["u64", { type: "uint64", value: 2n ** 64n - 1n }],
    ["i64", { type: "int64", value: -(2n ** 63n) }],
    ["f64", { type: "float64", value: Math.PI }],
    ["strs", { type: "array", itemType: "string", value: ["a", "", "Ċ"] }],
    ["ints", { type: "array", itemType: "int32", value: [1, -3, 5] }],
    ["empty", { type: "array", itemType: "float32", value: [] }],
  ]);
  const rand = (n: number, seed: number) => Float32Array.from({ length: n }, (_, i) => Math.sin(seed + i * 1.7));
  const tensors: GgufTensorEntry[] = [
    { name: "a", shape: [3], type: "F32", data: rand(3, 1) }, // 12 bytes: padding follows
    { name: "b", shape: [5, 7], type: "F16", data: () => rand(35, 2) },
    { name: "c", shape: [2, 64], type: "Q8_0", data: async () => rand(128, 3) },
    { name: "d", shape: [3, 1, 2, 5], type: "BF16", data: rand(30, 4) },
  ];
  await writeGguf(path, metadata, tensors);
  const g = await readGguf(path);
  assert.equal(g.version, 3);
  assert.equal(g.alignment, 32);
  assert.deepEqual([...g.metadata.keys()], [...metadata.keys()]);
  for (const [k, v] of metadata) assert.deepEqual(g.metadata.get(k), v, k);
  assert.equal(g.dataStart % 32, 0);
  const infos = tensors.map((t) => g.info(t.name));
  assert.deepEqual(
    infos.map((i) => [i.type, i.shape, i.offset, i.size]),
    [
      ["F32", [3], 0, 12],
      ["F16", [5, 7], 32, 70],
      ["Q8_0", [2, 64], 128, 136],
      ["BF16", [3, 1, 2, 5], 288, 60],
    ],
  );
  assert.equal((await readFile(path)).length, g.dataStart + 288 + 64);
  assert.deepEqual(await g.read("a"), rand(3, 1));
  const b = await g.read("b");
  rand(35, 2).forEach((x, i) => assert.equal(b[i], halfToFloat(floatToHalf(x))));
  const c = await g.read("c");
  assert.deepEqual(c, dequantizeQ8_0(quantizeQ8_0(rand(128, 3)), 128));
  const d = await g.read("d");
  assert.deepEqual(d, decodeFloat("BF16", encodeFloat("BF16", rand(30, 4)), 30));
  await g.close();
  await rm(dir, { recursive: true });
});

test("writeGguf refuses what llama.cpp could not read; readGguf names what is wrong with a file", async () => {
  const dir = await mkdtemp(join(tmpdir(), "llmctl-gguf-bad-"));
  const none = new Map<string, GgufValue>();
  const t = (over: Partial<GgufTensorEntry>): GgufTensorEntry => ({
    name: "t",
    shape: [2, 16],
    type: "F32",
    data: new Float32Array(32),
    ...over,
  });
  const path = join(dir, "x.gguf");
  await assert.rejects(writeGguf(path, none, [t({ type: "Q8_0" })]), /rows must be a multiple of 32/);
  await assert.rejects(writeGguf(path, none, [t({}), t({})]), /given twice/);
  await assert.rejects(writeGguf(path, none, [t({ shape: [1, 1, 1, 2, 16] })]), /1 to 4 positive dimensions/);
  await assert.rejects(writeGguf(path, none, [t({ name: "x".repeat(64) })]), /longer than 63 bytes/);
  await assert.rejects(writeGguf(path, none, [t({ data: new Float32Array(3) })]), /has 3 values/);
  await assert.rejects(
    writeGguf(path, new Map<string, GgufValue>([["n", { type: "uint32", value: 2 ** 32 }]]), []),
    /not a valid uint32/,
  );

  const good = handMadeGguf();
  const variant = async (edit: (b: Uint8Array) => Uint8Array) => {
    await writeFile(path, edit(good.slice()));
    return readGguf(path);
  };
  await assert.rejects(
    variant((b) => (b.set(Buffer.from("GGUX")), b)),
    /not a valid GGUF file: it does not start with "GGUF"/,
  );
  await assert.rejects(
    variant((b) => ((b[4] = 2), b)),
    /version 2/,
  );
  await assert.rejects(
    variant((b) => b.subarray(0, b.length - 40)),
    /truncated/,
  );
  // header 24, key 8+20, type 4, value 8+4, tensor name 8+1, n_dims 4, ne 8, type 4: then the u64 offset
  const tensorOffset = 24 + 8 + 20 + 4 + 8 + 4 + 8 + 1 + 4 + 8 + 4;
  await assert.rejects(
    variant((b) => ((b[tensorOffset] = 32), b)),
    /tensor 't' is at data offset 32, expected 0/,
  );
  await assert.rejects(readGguf(join(dir, "missing.gguf")), /does not exist/);
  await rm(dir, { recursive: true });
});
