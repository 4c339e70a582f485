// test: first backend pass only (SMS data and splits, no tensors)
import { test } from "node:test";
import assert from "node:assert/strict";
import { mkdtemp, rm, readFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import {
  parsePythonCsv,
  readSmsSpamCollection,
  labelCounts,
  makeSpamSplit,
  writeSplitCsvs,
  readSplitCsvs,
  type SmsMessage,
} from "../src/finetune/spam-data.js";
import { SpamDataset, SpamDataLoader } from "../src/generate/classify.js";
import { getTokenizer, END_OF_TEXT_ID } from "../src/tokenizer/index.js";
import { Rng } from "../src/data/rng.js";
import { FileFormatError } from "../src/errors.js";
import { sharedPath } from "./helpers/shared.js";

const SMS = sharedPath("datasets", "SMSSpamCollection");

test("parsePythonCsv follows Python's csv quoting rules", () => {
  // closing quote followed by text: quotes dropped, the rest read unquoted (pandas / csv, non-strict)
  assert.deepEqual(parsePythonCsv('ham\t"Hi" there\n'), [["ham", "Hi there"]]);
  // a quote that is not the field's first character is a literal
  assert.deepEqual(parsePythonCsv('ham\tsay "hi" now\n'), [["ham", 'say "hi" now']]);
  // inside quotes: "" is one quote, tab and newline are literal
  assert.deepEqual(parsePythonCsv('a\t"x""y\tz\nw"\nb\tc'), [
    ["a", 'x"y\tz\nw'],
    ["b", "c"],
  ]);
  // blank lines are skipped, CRLF ends a record
  assert.deepEqual(parsePythonCsv("a\tb\r\n\r\nc\td\n\n"), [
    ["a", "b"],
    ["c", "d"],
  ]);
  assert.throws(() => parsePythonCsv('a\t"never closed\nb\tc\n'), FileFormatError);
});

test("the SMS Spam Collection parses as pandas does: 5,572 rows, 4,825 ham, 747 spam", async () => {
  const msgs = await readSmsSpamCollection(SMS);
  assert.equal(msgs.length, 5572);
  assert.deepEqual(labelCounts(msgs), { ham: 4825, spam: 747 });
  assert.deepEqual(msgs[0], {
    label: 0,
    text: "Go until jurong point, crazy.. Available only in bugis n great world la e buffet... Cine there got amore wat...",
  });
  // line 283: `"...Keep-in-touch" gdeve..` loses its quotes
  assert.equal(msgs[282].text.slice(0, 22), "Wen u miss someone, th");
  assert.ok(msgs[282].text.endsWith("Keep-in-touch gdeve.."));
  // lines 5082–5084 are one record: the quote opened on 5082 closes at the start of 5084's text
  const merged = msgs[5081];
  assert.equal(merged.label, 0);
  assert.ok(merged.text.startsWith("Keep ur problems in ur heart"));
  assert.ok(merged.text.includes("SD..\nham\tYeah, give me a call if you've got a minute\nham\tHI BABE UAWAKE?"));
  assert.ok(merged.text.endsWith('CALL U"'));
  // and the record after it is physical line 5085
  const lines = (await readFile(SMS, "utf8")).split("\n");
  assert.equal(msgs[5082].text, lines[5084].split("\t")[1]);
});

test("balance and split: 1,045 / 149 / 300, 747 of each class, deterministic per seed", async () => {
  const msgs = await readSmsSpamCollection(SMS);
  const split = makeSpamSplit(msgs, 123);
  assert.equal(split.train.length, 1045);
  assert.equal(split.validation.length, 149);
  assert.equal(split.test.length, 300);
  const all = [...split.train, ...split.validation, ...split.test];
  assert.deepEqual(labelCounts(all), { ham: 747, spam: 747 });
  // every spam message is used exactly once; the ham ones are distinct records of the file
  const spamTexts = msgs
    .filter((m) => m.label === 1)
    .map((m) => m.text)
    .sort();
  assert.deepEqual(
    all
      .filter((m) => m.label === 1)
      .map((m) => m.text)
      .sort(),
    spamTexts,
  );
  assert.equal(new Set(all.filter((m) => m.label === 0)).size, 747);
  for (const m of all) assert.ok(msgs.includes(m));

  const again = makeSpamSplit(msgs, 123);
  assert.deepEqual(again, split);
  const other = makeSpamSplit(msgs, 7);
  assert.notDeepEqual(
    other.train.map((m) => m.text),
    split.train.map((m) => m.text),
  );
  assert.equal(other.train.length, 1045);
});

test("split CSVs round-trip, including texts with quotes, commas and newlines", async () => {
  const dir = await mkdtemp(join(tmpdir(), "llmctl-spam-"));
  try {
    const split = {
      train: [
        { label: 1, text: 'WIN "big", now\nreply YES' },
        { label: 0, text: "ok" },
      ],
      validation: [{ label: 0, text: "  spaced  " }],
      test: [{ label: 1, text: "£100 prize" }],
    };
    await writeSplitCsvs(dir, split);
    const head = (await readFile(join(dir, "train.csv"), "utf8")).split("\n")[0];
    assert.equal(head, "Label,Text");
    assert.deepEqual(await readSplitCsvs(dir), split);
    await rm(join(dir, "test.csv"));
    await assert.rejects(readSplitCsvs(dir), /test\.csv not found/);
  } finally {
    await rm(dir, { recursive: true, force: true });
  }
});

test("SpamDataset pads with 50256 to the longest training text and truncates others to it", () => {
  const tok = getTokenizer();
  const train: SmsMessage[] = [
    { label: 0, text: "Hello, world" }, // 15496 11 995
    { label: 1, text: "Every effort moves you" }, // 6109 3626 6100 345
  ];
  const ds = new SpamDataset(train, tok);
  assert.equal(ds.maxLength, 4);
  assert.deepEqual(Array.from(ds.ids), [15496, 11, 995, END_OF_TEXT_ID, 6109, 3626, 6100, 345]);
  assert.deepEqual(Array.from(ds.lengths), [3, 4]);
  assert.deepEqual(Array.from(ds.labels), [0, 1]);

  // validation/test use the training max length: longer texts are cut, shorter ones padded
  const val = new SpamDataset(
    [
      { label: 1, text: "Every effort moves you forward" },
      { label: 0, text: "Hello" },
    ],
    tok,
    { maxLength: ds.maxLength },
  );
  assert.deepEqual(Array.from(val.ids), [6109, 3626, 6100, 345, 15496, 50256, 50256, 50256]);
  assert.deepEqual(Array.from(val.lengths), [4, 1]);
  assert.equal(val.truncated, 1);

  // the model's context length caps everything
  const short = new SpamDataset(train, tok, { contextLength: 2 });
  assert.equal(short.maxLength, 2);
  assert.deepEqual(Array.from(short.ids), [15496, 11, 6109, 3626]);

  // <|endoftext|> inside an SMS is ordinary text, never the pad id
  const special = new SpamDataset([{ label: 0, text: "<|endoftext|>" }], tok);
  assert.ok(!Array.from(special.ids).includes(END_OF_TEXT_ID));
});

test("SpamDataLoader: the book's batch counts (train drops the last partial batch)", async () => {
  const tok = getTokenizer();
  const split = makeSpamSplit(await readSmsSpamCollection(SMS), 123);
  const train = new SpamDataset(split.train, tok);
  const test = new SpamDataset(split.test, tok, { maxLength: train.maxLength });
  const trainLoader = new SpamDataLoader(train, { batchSize: 8, shuffle: true, dropLast: true });
  const testLoader = new SpamDataLoader(test, { batchSize: 8 });
  assert.equal(trainLoader.numBatches, 130);
  assert.equal(
    new SpamDataLoader(new SpamDataset(split.validation, tok, { maxLength: train.maxLength }), { batchSize: 8 })
      .numBatches,
    19,
  );
  assert.equal(testLoader.numBatches, 38);
  const batches = [...testLoader.batches()];
  assert.equal(batches.at(-1)!.batchSize, 4);
  assert.equal(batches[0].inputs.length, 8 * train.maxLength);
  // a shuffled epoch visits distinct examples; the same Rng state gives the same order
  const order = trainLoader.epochOrder(new Rng(1));
  assert.equal(new Set(order).size, 1045);
  assert.deepEqual(trainLoader.epochOrder(new Rng(1)), order);
  const b = trainLoader.batch(order, 0);
  assert.equal(b.labels[0], train.labels[order[0]]);
  assert.deepEqual(
    Array.from(b.inputs.subarray(0, train.maxLength)),
    Array.from(train.ids.subarray(order[0] * train.maxLength, (order[0] + 1) * train.maxLength)),
  );
});
