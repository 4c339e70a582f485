// test: first backend pass only (file readers, no tensors)
/**
 * The readers under damaged input (issue 13 §4): a few hundred seeded mutations (bit flips, truncations, length
 * fields set huge) of a safetensors file, a TF bundle index/data pair and a token file (llmctl reads no GGUF; it
 * only writes it). Each one either
 * reads or fails with llmctl's own typed error: never a RangeError, a crash, a hang, or an allocation of what a
 * damaged length field claims.
 */
import { test } from "node:test";
import assert from "node:assert/strict";
import { copyFileSync, mkdtempSync, readFileSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { LlmctlError } from "../src/errors.js";
import { Rng } from "../src/data/rng.js";
import { readSafetensors } from "../src/formats/safetensors.js";
import { TensorBundleReader } from "../src/formats/tf-bundle.js";
import { encodeTokenFile, readTokenFile } from "../src/tokenizer/token-file.js";
import { sharedPath } from "./helpers/shared.js";

const MUTATIONS = 100;
/** far below any length a damaged field claims (they reach 2^32 and 2^64), far above what these files hold */
const ALLOCATION_LIMIT = 256 * 2 ** 20;

/** One seeded mutation of `bytes`: flip bits, cut the file short, or write 0xff… over a (length) field. */
function mutate(bytes: Buffer, rng: Rng, headerBytes: number): { data: Buffer; what: string } {
  const data = Buffer.from(bytes);
  const kind = rng.int(3);
  // most fields that matter sit in the first bytes; aim there half the time
  const at = () => (rng.random() < 0.5 ? rng.int(Math.min(headerBytes, data.length)) : rng.int(data.length));
  if (kind === 0) {
    const flips = 1 + rng.int(4);
    const where: number[] = [];
    for (let i = 0; i < flips; i++) {
      const p = at();
      data[p] ^= 1 << rng.int(8);
      where.push(p);
    }
    return { data, what: `bit flips at ${where.join(", ")}` };
  }
  if (kind === 1) {
    const cut = rng.int(data.length);
    return { data: data.subarray(0, cut), what: `truncated to ${cut} bytes` };
  }
  const p = at();
  const width = [2, 4, 8][rng.int(3)];
  data.fill(0xff, p, Math.min(data.length, p + width));
  return { data, what: `${width} bytes of 0xff at ${p}` };
}

/** Run `read` on each mutation: it may succeed or throw an LlmctlError, nothing else, without a huge allocation. */
async function fuzz(
  name: string,
  original: Buffer,
  headerBytes: number,
  seed: number,
  read: (data: Buffer) => Promise<void>,
): Promise<{ refused: number; read: number }> {
  const rng = new Rng(seed);
  let refused = 0;
  for (let i = 0; i < MUTATIONS; i++) {
    const { data, what } = mutate(original, rng, headerBytes);
    const before = process.memoryUsage().arrayBuffers;
    try {
      await read(data);
    } catch (err) {
      if (!(err instanceof LlmctlError))
        assert.fail(`${name}, mutation ${i} (${what}): ${(err as Error)?.name}: ${(err as Error)?.message}`);
      refused++;
    }
    const grew = process.memoryUsage().arrayBuffers - before;
    assert.ok(grew < ALLOCATION_LIMIT, `${name}, mutation ${i} (${what}): allocated ${grew} bytes`);
  }
  // the mutations are not vacuous: most damage is noticed
  assert.ok(refused > MUTATIONS / 3, `${name}: only ${refused} of ${MUTATIONS} mutations refused`);
  return { refused, read: MUTATIONS - refused };
}

const dir = mkdtempSync(join(tmpdir(), "llmctl-fuzz-"));

test(
  "safetensors: 100 mutations of the fixture read or are refused with a typed error",
  { timeout: 120_000 },
  async () => {
    const original = readFileSync(sharedPath("fixtures", "gpt2-tiny", "hf", "model.safetensors"));
    const path = join(dir, "m.safetensors");
    await fuzz("safetensors", original, 1024, 1, async (data) => {
      writeFileSync(path, data);
      const file = await readSafetensors(path);
      try {
        for (const name of file.tensors.keys()) await file.read(name);
      } finally {
        await file.close();
      }
    });
  },
);

test("TF bundle: 100 mutations of the index or the data file read or are refused", { timeout: 120_000 }, async () => {
  const src = (f: string) => sharedPath("fixtures", "gpt2-tiny", "tf", f);
  const prefix = join(dir, "model.ckpt");
  const files = ["model.ckpt.index", "model.ckpt.data-00000-of-00001"];
  for (const [i, f] of files.entries()) {
    const others = files.filter((_, j) => j !== i);
    await fuzz(f, readFileSync(src(f)), 1024, 2 + i, async (data) => {
      for (const o of others) copyFileSync(src(o), join(dir, o));
      writeFileSync(join(dir, f), data);
      const bundle = await TensorBundleReader.open(prefix);
      try {
        for (const key of bundle.entries.keys()) await bundle.readValues(key);
      } finally {
        await bundle.close();
      }
    });
  }
});

test("token file: 100 mutations read or are refused", { timeout: 60_000 }, async () => {
  const rng = new Rng(9);
  const ids = Uint16Array.from({ length: 4000 }, () => rng.int(50257));
  const path = join(dir, "t.bin");
  await fuzz("token file", encodeTokenFile(ids, 50257), 32, 4, async (data) => {
    writeFileSync(path, data);
    readTokenFile(path);
  });
});
