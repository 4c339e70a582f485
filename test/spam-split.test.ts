// test: first backend pass only (a data split: no tensors)
/**
 * Chapter 6's split, exactly: NumPy's legacy RandomState reproduced (golden values), and `finetune spam`'s split
 * files byte for byte equal to what the book's own pandas code writes from the same SMSSpamCollection, when a
 * Python with pandas is there ($LLMCTL_PYTHON, default python3; CI installs pandas).
 */
import { test } from "node:test";
import assert from "node:assert/strict";
import { spawnSync } from "node:child_process";
import { mkdtempSync, readFileSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { NumpyRandomState } from "../src/data/numpy-random.js";
import { makeSpamSplit, readSmsSpamCollection, writeSplitCsvs } from "../src/finetune/spam-data.js";
import { getTokenizer } from "../src/tokenizer/index.js";
import { sharedPath } from "./helpers/shared.js";

const PYTHON = process.env.LLMCTL_PYTHON ?? "python3";

test("NumpyRandomState: MT19937's reference output, and np.random.RandomState(123).permutation", () => {
  assert.equal(new NumpyRandomState(5489).nextUint32(), 3499211612);
  assert.deepEqual(Array.from(new NumpyRandomState(123).permutation(10)), [4, 0, 7, 5, 8, 3, 1, 6, 9, 2]);
  // a rejection step past the mask: still within range
  const r = new NumpyRandomState(1);
  for (let i = 0; i < 1000; i++) assert.ok(r.interval(1000) <= 1000);
});

test("the book's chapter 6 split: 1,045 / 149 / 300, longest training message 120 tokens", async () => {
  const split = makeSpamSplit(await readSmsSpamCollection(sharedPath("datasets", "SMSSpamCollection")), 123);
  assert.deepEqual([split.train.length, split.validation.length, split.test.length], [1045, 149, 300]);
  const tok = getTokenizer();
  assert.equal(Math.max(...split.train.map((m) => tok.encode(m.text).length)), 120);
  for (const part of [split.train, split.validation, split.test]) assert.ok(part.some((m) => m.label === 1));
});

// chapter 6's create_balanced_dataset and random_split, as the book writes them
const BOOK_SPLIT = `
import sys, pandas as pd
df = pd.read_csv(sys.argv[1], sep="\\t", header=None, names=["Label", "Text"])
def create_balanced_dataset(df):
    num_spam = df[df["Label"] == "spam"].shape[0]
    ham_subset = df[df["Label"] == "ham"].sample(num_spam, random_state=123)
    return pd.concat([ham_subset, df[df["Label"] == "spam"]])
balanced_df = create_balanced_dataset(df)
balanced_df["Label"] = balanced_df["Label"].map({"ham": 0, "spam": 1})
def random_split(df, train_frac, validation_frac):
    df = df.sample(frac=1, random_state=123).reset_index(drop=True)
    train_end = int(len(df) * train_frac)
    validation_end = train_end + int(len(df) * validation_frac)
    return df[:train_end], df[train_end:validation_end], df[validation_end:]
train_df, validation_df, test_df = random_split(balanced_df, 0.7, 0.1)
train_df.to_csv(sys.argv[2] + "/train.csv", index=None)
validation_df.to_csv(sys.argv[2] + "/validation.csv", index=None)
test_df.to_csv(sys.argv[2] + "/test.csv", index=None)
`;

test("finetune spam's split files equal, byte for byte, the CSVs the book's pandas code writes", async (t) => {
  const probe = spawnSync(PYTHON, ["-c", "import pandas"], { encoding: "utf8" });
  if (probe.status !== 0)
    return t.skip(`${PYTHON} has no pandas (pip install pandas; LLMCTL_PYTHON picks the interpreter)`);
  const sms = sharedPath("datasets", "SMSSpamCollection");
  const book = mkdtempSync(join(tmpdir(), "llmctl-book-split-"));
  const ours = mkdtempSync(join(tmpdir(), "llmctl-our-split-"));
  const script = join(book, "split.py");
  writeFileSync(script, BOOK_SPLIT);
  const r = spawnSync(PYTHON, [script, sms, book], { encoding: "utf8" });
  assert.equal(r.status, 0, r.stderr);
  await writeSplitCsvs(ours, makeSpamSplit(await readSmsSpamCollection(sms), 123));
  for (const f of ["train.csv", "validation.csv", "test.csv"]) {
    assert.ok(readFileSync(join(ours, f)).equals(readFileSync(join(book, f))), `${f} differs from the book's`);
  }
});
