import { test } from "node:test";
import assert from "node:assert/strict";
import { readFileSync } from "node:fs";
import { getTokenizer } from "../src/tokenizer/index.js";
import { SlidingWindowDataset, SlidingWindowLoader, splitText } from "../src/data/sliding-window.js";
import { Rng } from "../src/data/rng.js";
import { sharedPath } from "./helpers/shared.js";

const verdictIds = getTokenizer().encode(readFileSync(sharedPath("datasets", "the-verdict.txt"), "utf8"));

function rows(a: Int32Array, width: number): number[][] {
  return Array.from({ length: a.length / width }, (_, i) => Array.from(a.subarray(i * width, (i + 1) * width)));
}

test("book ch02: batch 1, max_length 4, stride 1", () => {
  const loader = new SlidingWindowLoader(new SlidingWindowDataset(verdictIds, 4, 1), { batchSize: 1 });
  const it = loader.batches();
  const first = it.next().value!;
  assert.deepEqual(rows(first.inputs, 4), [[40, 367, 2885, 1464]]);
  assert.deepEqual(rows(first.targets, 4), [[367, 2885, 1464, 1807]]);
  const second = it.next().value!;
  assert.deepEqual(rows(second.inputs, 4), [[367, 2885, 1464, 1807]]);
});

test("book ch02: batch 8, max_length 4, stride 4", () => {
  const loader = new SlidingWindowLoader(new SlidingWindowDataset(verdictIds, 4, 4), { batchSize: 8 });
  const batch = loader.batches().next().value!;
  assert.deepEqual(rows(batch.inputs, 4), [
    [40, 367, 2885, 1464],
    [1807, 3619, 402, 271],
    [10899, 2138, 257, 7026],
    [15632, 438, 2016, 257],
    [922, 5891, 1576, 438],
    [568, 340, 373, 645],
    [1049, 5975, 284, 502],
    [284, 3285, 326, 11],
  ]);
  // targets are the inputs shifted by one token
  assert.deepEqual(rows(batch.targets, 4)[0], [367, 2885, 1464, 1807]);
});

test("book ch05 loaders: 9 training batches and 1 validation batch", () => {
  const text = readFileSync(sharedPath("datasets", "the-verdict.txt"), "utf8");
  const { train, validation } = splitText(text, 0.9);
  assert.equal(train.length, 18431);
  const tok = getTokenizer();
  const trainLoader = new SlidingWindowLoader(new SlidingWindowDataset(tok.encode(train), 256, 256), {
    batchSize: 2,
    shuffle: true,
    dropLast: true,
  });
  const valLoader = new SlidingWindowLoader(new SlidingWindowDataset(tok.encode(validation), 256, 256), {
    batchSize: 2,
  });
  assert.equal(trainLoader.numBatches, 9);
  assert.equal(valLoader.numBatches, 1);
  const all = [...trainLoader.batches(trainLoader.epochOrder(new Rng(123)))];
  assert.equal(all.length, 9);
  assert.ok(all.every((b) => b.batchSize === 2 && b.seqLen === 256));
});

test("windows follow range(0, len - max_length, stride)", () => {
  const ids = Array.from({ length: 10 }, (_, i) => i);
  const ds = new SlidingWindowDataset(ids, 4, 3); // starts 0, 3 (6 is not < 10 - 4)
  assert.equal(ds.length, 2);
  assert.deepEqual(Array.from(ds.window(1).input), [3, 4, 5, 6]);
  assert.deepEqual(Array.from(ds.window(1).target), [4, 5, 6, 7]);
  assert.equal(new SlidingWindowDataset(ids, 10, 1).length, 0);
  assert.throws(() => new SlidingWindowDataset(ids, 0, 1), /max length/);
});

test("shuffle is a seeded permutation; drop_last drops the ragged batch", () => {
  const ds = new SlidingWindowDataset(
    Array.from({ length: 101 }, (_, i) => i),
    4,
    4,
  ); // 25 windows
  const loader = new SlidingWindowLoader(ds, { batchSize: 4, shuffle: true, dropLast: true });
  assert.equal(loader.numBatches, 6);
  const a = loader.epochOrder(new Rng(7));
  const b = loader.epochOrder(new Rng(7));
  assert.deepEqual(a, b);
  assert.notDeepEqual(
    Array.from(a),
    Array.from({ length: 25 }, (_, i) => i),
  );
  assert.deepEqual(
    [...a].sort((x, y) => x - y),
    Array.from({ length: 25 }, (_, i) => i),
  );
  assert.equal(new SlidingWindowLoader(ds, { batchSize: 4 }).numBatches, 7);
});

test("Rng state round-trips exactly", () => {
  const r = new Rng(42);
  r.random();
  const saved = r.state;
  const x = [r.random(), r.int(100), r.nextUint32()];
  const r2 = new Rng(saved);
  assert.deepEqual([r2.random(), r2.int(100), r2.nextUint32()], x);
});
