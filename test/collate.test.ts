import { test } from "node:test";
import assert from "node:assert/strict";
import { collateInstructions, InstructionDataset, InstructionLoader } from "../src/finetune/collate.js";
import { getTokenizer } from "../src/tokenizer/index.js";
import { Rng } from "../src/data/rng.js";

const rows = (flat: Int32Array, T: number): number[][] =>
  Array.from({ length: flat.length / T }, (_, b) => Array.from(flat.subarray(b * T, (b + 1) * T)));

/** The book's custom_collate_fn example: three examples of 5, 2 and 3 token ids, nothing masked. */
const BOOK_ITEMS = [
  [0, 1, 2, 3, 4],
  [5, 6],
  [7, 8, 9],
].map((ids) => ({ ids, promptLength: 0 }));

test("custom_collate_fn golden: pad to longest + 1, shift, ignore all but the first padding target", () => {
  const items = BOOK_ITEMS;
  const batch = collateInstructions(items);
  assert.equal(batch.batchSize, 3);
  assert.equal(batch.seqLen, 5);
  assert.deepEqual(rows(batch.inputs, 5), [
    [0, 1, 2, 3, 4],
    [5, 6, 50256, 50256, 50256],
    [7, 8, 9, 50256, 50256],
  ]);
  assert.deepEqual(rows(batch.targets, 5), [
    [1, 2, 3, 4, 50256],
    [6, 50256, -100, -100, -100],
    [8, 9, 50256, -100, -100],
  ]);
});

test("--max-length truncates inputs and targets after masking", () => {
  const items = BOOK_ITEMS;
  const batch = collateInstructions(items, { maxLength: 3 });
  assert.equal(batch.seqLen, 3);
  assert.deepEqual(rows(batch.inputs, 3), [
    [0, 1, 2],
    [5, 6, 50256],
    [7, 8, 9],
  ]);
  assert.deepEqual(rows(batch.targets, 3), [
    [1, 2, 3],
    [6, 50256, -100],
    [8, 9, 50256],
  ]);
  assert.throws(() => collateInstructions(items, { maxLength: 0 }), /max length/);
});

test("exercise 7.2 golden: --mask-instruction ignores the prompt's targets (book's token ids)", () => {
  const tok = getTokenizer();
  const sample = [
    {
      instruction: "What is an antonym of 'complicated'?",
      input: "",
      output: "An antonym of 'complicated' is 'simple'.",
    },
    {
      instruction: "Sort the following list in alphabetical order.",
      input: "Zebra, Elephant, Crocodile",
      output: "Crocodile, Elephant, Zebra",
    },
    {
      instruction: "Arrange the given numbers in descending order.",
      input: "5, 12, 8, 3, 15",
      output: "15, 12, 8, 5, 3.",
    },
  ];
  const ds = new InstructionDataset(sample, tok, "alpaca");
  const batch = collateInstructions(ds.items, { maskInstruction: true });
  assert.equal(batch.seqLen, 64);
  const inputs = rows(batch.inputs, 64)[1];
  const targets = rows(batch.targets, 64)[1];
  assert.deepEqual(
    inputs,
    [
      21106, 318, 281, 12064, 326, 8477, 257, 4876, 13, 19430, 257, 2882, 326, 20431, 32543, 262, 2581, 13, 198, 198,
      21017, 46486, 25, 198, 42758, 262, 1708, 1351, 287, 24830, 605, 1502, 13, 198, 198, 21017, 23412, 25, 198, 57,
      37052, 11, 42651, 11, 9325, 19815, 576, 198, 198, 21017, 18261, 25, 198, 34, 12204, 375, 576, 11, 42651, 11, 1168,
      37052, 50256, 50256,
    ],
  );
  assert.deepEqual(targets, [
    ...new Array(46).fill(-100),
    198,
    198,
    21017,
    18261,
    25,
    198,
    34,
    12204,
    375,
    576,
    11,
    42651,
    11,
    1168,
    37052,
    50256,
    -100,
    -100,
  ]);
  assert.equal(
    tok.decode(targets.filter((t) => t !== -100)),
    "\n\n### Response:\nCrocodile, Elephant, Zebra<|endoftext|>",
  );
});

test("InstructionLoader: shuffled training batches drop the last partial batch, validation keeps it", () => {
  const tok = getTokenizer();
  const entries = Array.from({ length: 10 }, (_, i) => ({
    instruction: `Count to ${i}.`,
    input: i % 2 ? "slowly" : "",
    output: "1 ".repeat(i).trim(),
  }));
  const ds = new InstructionDataset(entries, tok, "alpaca");
  const train = new InstructionLoader(ds, { batchSize: 4, shuffle: true, dropLast: true });
  const val = new InstructionLoader(ds, { batchSize: 4 });
  assert.equal(train.numBatches, 2);
  assert.equal(val.numBatches, 3);
  const order = train.epochOrder(new Rng(123));
  assert.deepEqual(
    [...order].sort((a, b) => a - b),
    [0, 1, 2, 3, 4, 5, 6, 7, 8, 9],
  );
  assert.deepEqual([...train.epochOrder(new Rng(123))], [...order], "the order is a function of the RNG state");
  const batches = [...val.batches()];
  assert.deepEqual(
    batches.map((b) => b.batchSize),
    [4, 4, 2],
  );
  // each batch is only as long as its own longest example
  assert.equal(batches[2].seqLen, Math.max(ds.items[8].ids.length, ds.items[9].ids.length));
});

test("loss with the ignore index (the book's golden values), on collated targets", async () => {
  const tf = await import("@tensorflow/tfjs");
  const { useBackend } = await import("../src/backend/index.js");
  const { sparseCrossEntropy } = await import("../src/train/loss.js");
  await useBackend("cpu");
  const loss = (logits: number[][], targets: number[]) =>
    tf.tidy(() => sparseCrossEntropy(tf.tensor2d(logits), tf.tensor1d(targets, "int32")).dataSync()[0]);
  // the book's examples: two targets; a third one ignored (-100) changes nothing; a third one counted does
  // prettier-ignore
  const cases: [number[][], number[], number][] = [
    [[[-1, 1], [-0.5, 1.5]], [0, 1], 1.1269],
    [[[-1, 1], [-0.5, 1.5], [-0.5, 1.5]], [0, 1, -100], 1.1269],
    [[[-1, 1], [-0.5, 1.5], [-0.5, 1.5]], [0, 1, 1], 0.7936],
  ];
  for (const [logits, targets, expected] of cases)
    assert.ok(Math.abs(loss(logits, targets) - expected) < 1e-4, `targets ${targets}: ${loss(logits, targets)}`);
  // a collated batch: the padding targets after the first end-of-text carry no loss
  const batch = collateInstructions(
    [
      { ids: [0, 1], promptLength: 0 },
      { ids: [1], promptLength: 0 },
    ],
    { padId: 2 },
  );
  // targets [[1,2],[2,-100]]; logits for every position alike → mean over the 3 kept targets
  const logits = tf.tensor3d([
    [
      [0, 1, 2],
      [0, 1, 2],
    ],
    [
      [0, 1, 2],
      [0, 1, 2],
    ],
  ]);
  const got = tf.tidy(() => sparseCrossEntropy(logits, tf.tensor2d(batch.targets, [2, 2], "int32")).dataSync()[0]);
  const lse = Math.log(1 + Math.E + Math.E ** 2);
  assert.ok(Math.abs(got - (lse - 1 + (lse - 2) + (lse - 2)) / 3) < 1e-5);
  logits.dispose();
});
