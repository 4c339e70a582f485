// test: first backend pass only (the tokenizer, no tensors)
import { test } from "node:test";
import assert from "node:assert/strict";
import { readFileSync, mkdtempSync, writeFileSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { getTokenizer, tokenizeFile, END_OF_TEXT_ID } from "../src/tokenizer/index.js";
import { encodeTokenFile, readTokenFile, writeTokenFile, isTokenFile } from "../src/tokenizer/token-file.js";
import { FileFormatError } from "../src/errors.js";
import { sharedPath } from "./helpers/shared.js";
import { getEncoding } from "js-tiktoken";

const tok = getTokenizer();

test("the-verdict.txt is 5,145 GPT-2 tokens (book ch02)", () => {
  const text = readFileSync(sharedPath("datasets", "the-verdict.txt"), "utf8");
  assert.equal(tok.encode(text).length, 5145);
});

test("book ch02 golden encodings", () => {
  assert.deepEqual(
    tok.encode("Hello, do you like tea? <|endoftext|> In the sunlit terracesof someunknownPlace."),
    [15496, 11, 466, 345, 588, 8887, 30, 220, 50256, 554, 262, 4252, 18250, 8812, 2114, 1659, 617, 34680, 27271, 13],
  );
  assert.deepEqual(tok.encode("Akwirw ier"), [33901, 86, 343, 86, 220, 959]);
  assert.deepEqual(tok.encode("Every effort moves you"), [6109, 3626, 6100, 345]);
  assert.equal(END_OF_TEXT_ID, 50256);
});

test("special tokens: allowed by default, ordinary text when not allowed", () => {
  assert.deepEqual(tok.encode("<|endoftext|>"), [50256]);
  const asText = tok.encode("<|endoftext|>", { allowedSpecial: [] });
  assert.ok(asText.length > 1 && !asText.includes(50256));
  assert.equal(tok.decode(asText), "<|endoftext|>");
});

test("decode(encode(x)) == x for emoji, CJK and whitespace runs", () => {
  for (const s of [
    "😀👍🏽 family: 👨‍👩‍👧",
    "日本語のテキスト、中文",
    "a  b\t\tc\n\n\n  d   ",
    " leading",
    "trailing   ",
    "£ü\u0091",
  ]) {
    assert.equal(tok.decode(tok.encode(s)), s);
  }
});

test("the piece-cached encoder gives js-tiktoken's own ids: book text, JSON, mixed scripts, specials, twice", () => {
  const reference = getEncoding("gpt2");
  const texts = [
    readFileSync(sharedPath("datasets", "the-verdict.txt"), "utf8"),
    readFileSync(sharedPath("datasets", "instruction-data.json"), "utf8").slice(0, 200_000),
    "😀👍🏽 x<|endoftext|>y 日本語 it's we'll  'S\t\t\n \n\u00a0 1234567 3.14 <|endoftext|><|endoftext|> end  ",
  ];
  for (const text of texts) {
    for (const allowedSpecial of [["<|endoftext|>"], []]) {
      const want = reference.encode(text, allowedSpecial, []);
      // the second pass is served from the piece cache
      for (let pass = 0; pass < 2; pass++)
        assert.deepEqual(tok.encode(text, { allowedSpecial }), want, `${text.slice(0, 20)}… pass ${pass}`);
    }
  }
});

test("decode rejects ids outside the vocabulary", () => {
  assert.throws(() => tok.decode([50257]), /outside the GPT-2 vocabulary/);
});

test("streamed file tokenization equals one-shot encoding, across many chunk cuts", async () => {
  const dir = mkdtempSync(join(tmpdir(), "llmctl-tok-"));
  try {
    const verdict = readFileSync(sharedPath("datasets", "the-verdict.txt"), "utf8");
    // > 1 MB so the stream is cut several times; spaces, newlines and specials at the seams
    const text = Array.from({ length: 60 }, (_, i) => verdict + (i % 3 === 0 ? " <|endoftext|> " : "\n\n  ")).join("");
    const path = join(dir, "big.txt");
    writeFileSync(path, text);
    const streamed = await tokenizeFile(path);
    const whole = tok.encode(text);
    assert.equal(streamed.length, whole.length);
    assert.deepEqual(Array.from(streamed), whole);
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});

test("token file round trip (uint16) and corrupt files fail clearly", async () => {
  const dir = mkdtempSync(join(tmpdir(), "llmctl-tokfile-"));
  try {
    const ids = Uint16Array.from([40, 367, 2885, 50256, 0, 65535 % 50257]);
    const path = join(dir, "ids.bin");
    await writeTokenFile(path, ids, 50257);
    assert.ok(isTokenFile(path));
    const back = readTokenFile(path);
    assert.equal(back.vocabSize, 50257);
    assert.ok(back.ids instanceof Uint16Array);
    assert.deepEqual(Array.from(back.ids), Array.from(ids));
    assert.equal(readFileSync(path).length, 32 + 2 * ids.length);

    const truncated = join(dir, "trunc.bin");
    writeFileSync(truncated, encodeTokenFile(ids, 50257).subarray(0, 40));
    assert.throws(
      () => readTokenFile(truncated),
      (e: unknown) => e instanceof FileFormatError && /truncated/.test(e.message),
    );
    const garbage = join(dir, "garbage.bin");
    writeFileSync(garbage, Buffer.alloc(64, 7));
    assert.throws(() => readTokenFile(garbage), /bad magic/);
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});
