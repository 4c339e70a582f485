// test: first backend pass only (the safetensors format, no tensors)
import { test } from "node:test";
import assert from "node:assert/strict";
import { mkdtemp, readFile, writeFile, readdir, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { readSafetensors, writeSafetensors, readAllSafetensors } from "../src/formats/safetensors.js";
import { halfToFloat } from "../src/formats/float.js";
import { FileFormatError, InterruptedError } from "../src/errors.js";
import { sharedPath } from "./helpers/shared.js";

async function tempDir(): Promise<string> {
  return mkdtemp(join(tmpdir(), "llmctl-st-"));
}

/** A safetensors file from a header object and a data section, exactly as given (for malformed variants). */
function rawFile(header: unknown, data: Uint8Array, headerText?: string): Buffer {
  const json = Buffer.from(headerText ?? JSON.stringify(header), "utf8");
  const len = Buffer.alloc(8);
  len.writeBigUInt64LE(BigInt(json.length));
  return Buffer.concat([len, json, Buffer.from(data)]);
}

async function expectFormatError(path: string, pattern: RegExp): Promise<void> {
  await assert.rejects(readSafetensors(path), (err: unknown) => {
    assert.ok(err instanceof FileFormatError, `expected FileFormatError, got ${String(err)}`);
    assert.match(err.message, pattern);
    assert.ok(err.message.includes(path), "the message names the file");
    return true;
  });
}

test("reads the gpt2-tiny Hugging Face fixture: names, shapes, metadata, values", async () => {
  const file = await readSafetensors(sharedPath("fixtures", "gpt2-tiny", "hf", "model.safetensors"));
  try {
    assert.deepEqual(file.metadata, { format: "pt" });
    const expected = new Map<string, number[]>([
      ["wte.weight", [50257, 16]],
      ["wpe.weight", [32, 16]],
      ["ln_f.weight", [16]],
      ["ln_f.bias", [16]],
    ]);
    for (let i = 0; i < 2; i++) {
      const p = `h.${i}.`;
      for (const n of ["ln_1", "ln_2"]) {
        expected.set(`${p}${n}.weight`, [16]);
        expected.set(`${p}${n}.bias`, [16]);
      }
      expected.set(`${p}attn.c_attn.weight`, [16, 48]);
      expected.set(`${p}attn.c_attn.bias`, [48]);
      expected.set(`${p}attn.c_proj.weight`, [16, 16]);
      expected.set(`${p}attn.c_proj.bias`, [16]);
      expected.set(`${p}mlp.c_fc.weight`, [16, 64]);
      expected.set(`${p}mlp.c_fc.bias`, [64]);
      expected.set(`${p}mlp.c_proj.weight`, [64, 16]);
      expected.set(`${p}mlp.c_proj.bias`, [16]);
      expected.set(`${p}attn.bias`, [1, 1, 32, 32]);
    }
    assert.equal(file.tensors.size, expected.size);
    for (const [name, shape] of expected) {
      const info = file.tensors.get(name);
      assert.ok(info, `missing ${name}`);
      assert.deepEqual(info.shape, shape, name);
      assert.equal(info.dtype, "F32");
    }
    // Header padded to 8 bytes; parameters (without the mask buffers) number 811216 as the README says.
    assert.equal(file.dataStart % 8, 0);
    let params = 0;
    for (const [name, info] of file.tensors)
      if (!/^h\.\d+\.attn\.bias$/.test(name)) params += info.shape.reduce((a, b) => a * b, 1);
    assert.equal(params, 811216);
    // The causal mask buffer: lower-triangular ones.
    const mask = await file.read("h.0.attn.bias");
    for (let i = 0; i < 32; i++) for (let j = 0; j < 32; j++) assert.equal(mask[i * 32 + j], j <= i ? 1 : 0);
    const wte = await file.read("wte.weight");
    assert.equal(wte.length, 50257 * 16);
    assert.ok(wte.every(Number.isFinite));
    assert.ok(wte.some((v) => v !== 0));
  } finally {
    await file.close();
  }
});

test("write → read round trip keeps names, shapes, values and metadata; layout is sorted and aligned", async () => {
  const dir = await tempDir();
  const path = join(dir, "sub", "t.safetensors");
  const a = new Float32Array([1.5, -2, 3.25, Math.PI, -0, 1e-30]);
  const b = new Float32Array([7]);
  let lazyCalls = 0;
  await writeSafetensors(
    path,
    [
      { name: "zeta", shape: [2, 3], data: a },
      { name: "alpha", shape: [], data: () => (lazyCalls++, b) },
      { name: "empty", shape: [0, 4], data: new Float32Array(0) },
    ],
    { format: "pt", note: "hi" },
  );
  assert.equal(lazyCalls, 1);
  const bytes = await readFile(path);
  const n = Number(bytes.readBigUInt64LE(0));
  assert.equal(n % 8, 0);
  const header = JSON.parse(bytes.subarray(8, 8 + n).toString("utf8"));
  assert.deepEqual(Object.keys(header), ["__metadata__", "alpha", "empty", "zeta"]);
  assert.deepEqual(header.alpha.data_offsets, [0, 4]);
  assert.deepEqual(header.zeta.data_offsets, [4, 28]);
  assert.equal(bytes.length, 8 + n + 28);
  // No temp files left behind.
  assert.deepEqual(await readdir(join(dir, "sub")), ["t.safetensors"]);

  const { tensors, metadata } = await readAllSafetensors(path);
  assert.deepEqual(metadata, { format: "pt", note: "hi" });
  assert.deepEqual(tensors.get("zeta")!.shape, [2, 3]);
  assert.deepEqual([...tensors.get("zeta")!.data], [...a]);
  assert.ok(Object.is(tensors.get("zeta")!.data[4], -0));
  assert.deepEqual([...tensors.get("alpha")!.data], [7]);
  assert.deepEqual(tensors.get("empty")!.shape, [0, 4]);
  await rm(dir, { recursive: true });
});

test("F16 and BF16 tensors decode to float32", async () => {
  const dir = await tempDir();
  // F16: 1.0, -2.0, 0.5, 65504 (max), smallest subnormal, +inf, 0.333 (0x3555)
  const f16 = [0x3c00, 0xc000, 0x3800, 0x7bff, 0x0001, 0x7c00, 0x3555];
  const f16Want = [1, -2, 0.5, 65504, 2 ** -24, Infinity, 0.333251953125];
  // BF16: top 16 bits of float32 1.0, -3.0, pi (0x4049 → 3.140625), 1e-40 subnormal-ish (0x0001)
  const bf16 = [0x3f80, 0xc040, 0x4049, 0x0001];
  const bf16Want = [1, -3, 3.140625, new Float32Array(new Uint32Array([0x00010000]).buffer)[0]!];
  const data = Buffer.alloc(f16.length * 2 + bf16.length * 2);
  f16.forEach((h, i) => data.writeUInt16LE(h, 2 * i));
  bf16.forEach((h, i) => data.writeUInt16LE(h, f16.length * 2 + 2 * i));
  const path = join(dir, "half.safetensors");
  await writeFile(
    path,
    rawFile(
      {
        h: { dtype: "F16", shape: [f16.length], data_offsets: [0, f16.length * 2] },
        b: { dtype: "BF16", shape: [2, 2], data_offsets: [f16.length * 2, data.length] },
      },
      data,
    ),
  );
  const file = await readSafetensors(path);
  assert.deepEqual([...(await file.read("h"))], f16Want);
  assert.deepEqual([...(await file.read("b"))], bf16Want);
  await file.close();
  assert.ok(Number.isNaN(halfToFloat(0x7e00)));
  assert.ok(Object.is(halfToFloat(0x8000), -0));
  await rm(dir, { recursive: true });
});

test("a non-float tensor cannot be read as weights, but its bytes can", async () => {
  const dir = await tempDir();
  const path = join(dir, "i.safetensors");
  await writeFile(
    path,
    rawFile({ i: { dtype: "I64", shape: [1], data_offsets: [0, 8] } }, new Uint8Array([5, 0, 0, 0, 0, 0, 0, 0])),
  );
  const file = await readSafetensors(path);
  await assert.rejects(file.read("i"), /dtype I64/);
  assert.deepEqual([...(await file.readBytes("i"))], [5, 0, 0, 0, 0, 0, 0, 0]);
  await assert.rejects(file.read("nope"), /no tensor named 'nope'/);
  await file.close();
  await rm(dir, { recursive: true });
});

test("truncated and corrupt files fail with a FileFormatError naming the file and the problem", async () => {
  const dir = await tempDir();
  const good = join(dir, "good.safetensors");
  await writeSafetensors(good, [
    { name: "a", shape: [2, 2], data: new Float32Array([1, 2, 3, 4]) },
    { name: "b", shape: [3], data: new Float32Array([5, 6, 7]) },
  ]);
  const goodBytes = await readFile(good);
  const headerLen = Number(goodBytes.readBigUInt64LE(0));
  const f = (name: string) => join(dir, name);
  const twelve = new Uint8Array(12);
  const cases: [string, Buffer, RegExp][] = [
    ["empty", Buffer.alloc(0), /shorter than the 8-byte header length/],
    ["short-len", goodBytes.subarray(0, 5), /shorter than the 8-byte header length/],
    ["cut-in-header", goodBytes.subarray(0, 8 + headerLen - 3), /runs past the end.*truncated/],
    [
      "cut-in-data",
      goodBytes.subarray(0, goodBytes.length - 1),
      /need 28 data bytes but the file has only 27.*truncated/,
    ],
    ["trailing", Buffer.concat([goodBytes, Buffer.from([0])]), /1 trailing bytes/],
    [
      "huge-len",
      (() => {
        const b = Buffer.from(goodBytes);
        b.writeBigUInt64LE(2n ** 40n);
        return b;
      })(),
      /exceeds the .*limit/,
    ],
    ["not-json", rawFile(null, twelve, "{not json}  "), /not valid JSON/],
    ["not-object", rawFile(null, twelve, "[1,2,3] "), /does not start with '\{'/],
    [
      "bad-utf8",
      (() => {
        const b = rawFile(null, new Uint8Array(0), '{"a":1}');
        b[9] = 0xff;
        return b;
      })(),
      /not valid UTF-8/,
    ],
    [
      "bad-dtype",
      rawFile({ a: { dtype: "F31", shape: [3], data_offsets: [0, 12] } }, twelve),
      /tensor 'a': unknown dtype "F31"/,
    ],
    ["bad-shape", rawFile({ a: { dtype: "F32", shape: [-3], data_offsets: [0, 12] } }, twelve), /shape \[-3\]/],
    ["bad-offsets", rawFile({ a: { dtype: "F32", shape: [3], data_offsets: [0] } }, twelve), /data_offsets \[0\]/],
    ["reversed", rawFile({ a: { dtype: "F32", shape: [0], data_offsets: [12, 0] } }, twelve), /end before they begin/],
    [
      "size-mismatch",
      rawFile({ a: { dtype: "F32", shape: [2], data_offsets: [0, 12] } }, twelve),
      /holds 12 bytes but F32 \[2\] needs 8/,
    ],
    [
      "overlap",
      rawFile(
        {
          a: { dtype: "F32", shape: [2], data_offsets: [0, 8] },
          b: { dtype: "F32", shape: [2], data_offsets: [4, 12] },
        },
        twelve,
      ),
      /tensor 'b' .* overlaps/,
    ],
    [
      "gap",
      rawFile(
        {
          a: { dtype: "F32", shape: [1], data_offsets: [0, 4] },
          b: { dtype: "F32", shape: [1], data_offsets: [8, 12] },
        },
        twelve,
      ),
      /gap in the data section: bytes 4..8/,
    ],
    [
      "past-end",
      rawFile({ a: { dtype: "F32", shape: [4], data_offsets: [0, 16] } }, twelve),
      /need 16 data bytes but the file has only 12/,
    ],
    [
      "bad-metadata",
      rawFile({ __metadata__: { n: 1 }, a: { dtype: "F32", shape: [3], data_offsets: [0, 12] } }, twelve),
      /__metadata__ value for 'n'/,
    ],
  ];
  for (const [name, bytes, pattern] of cases) {
    await writeFile(f(name), bytes);
    await expectFormatError(f(name), pattern);
  }
  await assert.rejects(readSafetensors(f("missing")), /does not exist/);
  await rm(dir, { recursive: true });
});

test("a header with a key twice is refused (JSON.parse would silently keep the last)", async () => {
  const dir = await tempDir();
  const twelve = new Uint8Array(12);
  const entry = (offsets: string) => `{"dtype":"F32","shape":[3],"data_offsets":${offsets}}`;
  const cases: [string, string, RegExp][] = [
    ["tensor", `{"a":${entry("[0,12]")},"a":${entry("[0,12]")}}`, /the key "a" twice/],
    ["escaped", `{"a":${entry("[0,12]")},"\\u0061":${entry("[0,12]")}}`, /the key "a" twice/],
    ["field", `{"a":{"dtype":"F32","shape":[3],"shape":[3],"data_offsets":[0,12]}}`, /the key "shape" twice/],
    ["metadata", `{"__metadata__":{"k":"1","k":"2"},"a":${entry("[0,12]")}}`, /the key "k" twice/],
  ];
  for (const [name, header, pattern] of cases) {
    await writeFile(join(dir, name), rawFile(null, twelve, header));
    await expectFormatError(join(dir, name), pattern);
  }
  // equal keys in different objects, and keys equal to values, are fine
  await writeFile(
    join(dir, "ok"),
    rawFile(null, twelve, `{"__metadata__":{"F32":"shape"},"shape":{"dtype":"F32","shape":[3],"data_offsets":[0,12]}}`),
  );
  const file = await readSafetensors(join(dir, "ok"));
  assert.deepEqual(file.tensors.get("shape")!.shape, [3]);
  await file.close();
  await rm(dir, { recursive: true });
});

test("the writer rejects data that does not match its shape and leaves no file behind", async () => {
  const dir = await tempDir();
  const path = join(dir, "w.safetensors");
  await assert.rejects(
    writeSafetensors(path, [{ name: "a", shape: [2, 2], data: new Float32Array(3) }]),
    /tensor 'a' has 3 values but shape \[2,2\] needs 4/,
  );
  await assert.rejects(
    writeSafetensors(path, [
      { name: "a", shape: [1], data: new Float32Array(1) },
      { name: "a", shape: [1], data: new Float32Array(1) },
    ]),
    /given twice/,
  );
  assert.deepEqual(await readdir(dir), []);
  // An aborted write stops between tensors and removes its temporary file.
  const ac = new AbortController();
  await assert.rejects(
    writeSafetensors(
      path,
      [
        { name: "a", shape: [1], data: () => (ac.abort(), new Float32Array(1)) },
        { name: "b", shape: [1], data: new Float32Array(1) },
      ],
      undefined,
      { signal: ac.signal },
    ),
    (err: unknown) => err instanceof InterruptedError,
  );
  assert.deepEqual(await readdir(dir), []);
  await rm(dir, { recursive: true });
});
