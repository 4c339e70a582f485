// test: first backend pass only (how text files are read: encodings, byte-order marks, shapes of JSON)
import { test, before } from "node:test";
import assert from "node:assert/strict";
import { mkdirSync, mkdtempSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { firstInvalidUtf8 } from "../src/formats/file.js";
import { runCli } from "./helpers/cli.js";
import { sharedPath } from "./helpers/shared.js";

let work = "";
let model = "";
const env = { LLMCTL_BACKEND: "wasm", LLMCTL_DATA_MIRROR: "" };
before(async () => {
  work = mkdtempSync(join(tmpdir(), "llmctl-text-"));
  model = join(work, "model");
  const r = await runCli(["load-gpt2", "--from", sharedPath("fixtures", "gpt2-tiny", "hf"), "--out", model]);
  assert.equal(r.code, 0, r.stderr);
});

const latin1 = (text: string) => Buffer.from(text, "latin1");

/** A split directory `name` whose three CSVs are `csv`, and one step of finetune spam on it. */
async function spamOnSplit(name: string, csv: string | Buffer) {
  const split = join(work, name);
  mkdirSync(split);
  for (const part of ["train", "validation", "test"]) writeFileSync(join(split, `${part}.csv`), csv);
  const out = join(work, `${name}-run`);
  return runCli(
    ["finetune", "spam", "-m", model, "--split-dir", split, "--out", out, "--max-steps", "1", "--batch-size", "2"],
    {
      env,
    },
  );
}

function oneError(r: { code: number; stderr: string }, said: RegExp): void {
  assert.equal(r.code, 1, r.stderr);
  const errors = r.stderr.split("\n").filter((l) => l.startsWith("llmctl:"));
  assert.equal(errors.length, 1, r.stderr);
  assert.match(errors[0], said);
  assert.doesNotMatch(r.stderr, /unexpected/);
}

test("firstInvalidUtf8: well-formed text passes; overlong, surrogate, stray, past U+10FFFF and cut characters are found", () => {
  assert.equal(firstInvalidUtf8(Buffer.from("héllo wörld 日本 🙂", "utf8")), -1);
  assert.equal(firstInvalidUtf8(Buffer.from([0x61, 0xc0, 0x80])), 1); // overlong NUL
  assert.equal(firstInvalidUtf8(Buffer.from([0x61, 0x62, 0xed, 0xa0, 0x80])), 2); // a UTF-16 surrogate
  assert.equal(firstInvalidUtf8(Buffer.from([0x80])), 0); // a continuation byte alone
  assert.equal(firstInvalidUtf8(Buffer.from([0xf4, 0x90, 0x80, 0x80])), 0); // past U+10FFFF
  assert.equal(firstInvalidUtf8(Buffer.from([0x61, 0xe6, 0x97])), 1); // cut short
  assert.equal(firstInvalidUtf8(latin1("caf\xe9")), 3);
});

test("Latin-1 text is refused with the offset of its first bad byte: tokenize (past the first MB too), pretrain, instruct, spam splits, classify", async () => {
  const small = join(work, "latin1.txt");
  writeFileSync(small, latin1("Every effort moves you, caf\xe9"));
  const big = join(work, "latin1-big.txt");
  const offset = 1_500_000;
  writeFileSync(big, Buffer.concat([Buffer.from("a ".repeat(offset / 2)), latin1("\xe9 b")]));
  oneError(
    await runCli(["tokenize", "--file", small], { env }),
    /latin1\.txt is not UTF-8 text: byte 27 \(0xe9\).*iconv/,
  );
  oneError(await runCli(["tokenize", "--file", big], { env }), new RegExp(`byte ${offset} \\(0xe9\\)`));
  oneError(
    await runCli(["pretrain", "--config", "gpt2-tiny", "--data", small, "--out", join(work, "p")], { env }),
    /latin1\.txt is not UTF-8 text: byte 27/,
  );
  const alpaca = join(work, "alpaca.json");
  writeFileSync(alpaca, latin1('[{"instruction": "caf\xe9", "input": "", "output": "x"}]'));
  oneError(
    await runCli(
      ["finetune", "instruct", "-m", model, "--data", alpaca, "--out", join(work, "i"), "--max-steps", "1"],
      {
        env,
      },
    ),
    /alpaca\.json is not UTF-8 text: byte 21/,
  );
  oneError(
    await spamOnSplit("split", latin1("Label,Text\n0,caf\xe9 ok\n1,win cash\n")),
    /train\.csv is not UTF-8 text: byte 16/,
  );
  oneError(await runCli(["classify", "-m", model, "--file", small], { env }), /latin1\.txt is not UTF-8 text/);
});

test("a byte-order mark is dropped: a split CSV that starts with one is read; Alpaca data under a key is named as that", async () => {
  const r = await spamOnSplit("bom", "\ufeffLabel,Text\n0,see you at noon\n1,win cash now\n");
  assert.equal(r.code, 0, r.stderr);
  const wrapped = join(work, "wrapped.json");
  writeFileSync(wrapped, JSON.stringify({ data: [{ instruction: "a", input: "", output: "b" }] }, null, 2));
  const w = await runCli(["finetune", "instruct", "-m", model, "--data", wrapped, "--out", join(work, "w")], { env });
  oneError(
    w,
    /wrapped\.json is a JSON object with the entries under "data"; instruction data is the list itself — .*jq '\.data'/,
  );
  assert.doesNotMatch(w.stderr, /JSON Lines/);
});

test("a split whose training part holds one class trains with a note; classify --file on a binary file is refused", async () => {
  const r = await spamOnSplit("one-class", "Label,Text\n0,see you at noon\n0,lunch?\n");
  assert.match(r.stderr, /note: the training split \(.*one-class\) holds only ham \(label 0\)/);
  const binary = join(work, "blob.bin");
  writeFileSync(binary, Buffer.from([0x4c, 0x00, 0x01, 0x02, 0x0a, 0x41, 0x00]));
  oneError(await runCli(["classify", "-m", model, "--file", binary], { env }), /blob\.bin holds binary data/);
});
