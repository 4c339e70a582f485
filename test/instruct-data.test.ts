// test: first backend pass only (instruction data, no tensors)
import { test } from "node:test";
import assert from "node:assert/strict";
import { mkdtemp, writeFile, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { sharedPath } from "./helpers/shared.js";
import { loadInstructionData, parseInstructionData, splitInstructionData } from "../src/data/instruction-data.js";
import {
  checkPromptStyle,
  extractResponse,
  formatExample,
  formatPrompt,
  responseHeader,
} from "../src/generate/prompt-style.js";
import { FileFormatError, UsageError } from "../src/errors.js";

const PREAMBLE =
  "Below is an instruction that describes a task. Write a response that appropriately completes the request.";

test("the book's instruction data splits 935 / 110 / 55 in file order", async () => {
  const data = await loadInstructionData(sharedPath("datasets", "instruction-data.json"));
  assert.equal(data.length, 1100);
  const { train, test: testSet, validation } = splitInstructionData(data);
  assert.equal(train.length, 935);
  assert.equal(testSet.length, 110);
  assert.equal(validation.length, 55);
  // order kept: the split is data[:935], data[935:1045], data[1045:]
  assert.equal(train[50].input, "Ocassion");
  assert.equal(testSet[0], data[935]);
  assert.equal(validation[0], data[1045]);
  assert.equal(validation.at(-1), data[1099]);
});

test("alpaca prompt with an input (the book's data[50])", async () => {
  const data = await loadInstructionData(sharedPath("datasets", "instruction-data.json"));
  assert.equal(
    formatExample(data[50], "alpaca"),
    `${PREAMBLE}\n\n### Instruction:\nIdentify the correct spelling of the following word.\n\n### Input:\nOcassion` +
      "\n\n### Response:\nThe correct spelling is 'Occasion.'",
  );
});

test("alpaca prompt without an input (the book's data[999]) has no Input section", async () => {
  const data = await loadInstructionData(sharedPath("datasets", "instruction-data.json"));
  assert.equal(data[999].input, "");
  assert.equal(
    formatExample(data[999], "alpaca"),
    `${PREAMBLE}\n\n### Instruction:\nWhat is an antonym of 'complicated'?\n\n### Response:\nAn antonym of 'complicated' is 'simple'.`,
  );
});

test("phi3 prompt as in the book's exercise 7.1", () => {
  const withInput = {
    instruction: "Identify the correct spelling of the following word.",
    input: "Ocassion",
    output: "The correct spelling is 'Occasion.'",
  };
  const noInput = {
    instruction: "What is an antonym of 'complicated'?",
    input: "",
    output: "An antonym of 'complicated' is 'simple'.",
  };
  assert.equal(
    formatPrompt(withInput, "phi3"),
    "<|user|>\nIdentify the correct spelling of the following word.\nOcassion",
  );
  assert.equal(formatPrompt(noInput, "phi3"), "<|user|>\nWhat is an antonym of 'complicated'?");
  assert.equal(
    formatExample(noInput, "phi3"),
    "<|user|>\nWhat is an antonym of 'complicated'?\n<|assistant|>:\nAn antonym of 'complicated' is 'simple'.",
  );
  assert.equal(responseHeader("phi3"), "\n<|assistant|>:\n");
});

test("extractResponse strips the response tag and whitespace like the book", () => {
  assert.equal(
    extractResponse("\n\n### Response:\nThe meal is cooked by the chef.  ", "alpaca"),
    "The meal is cooked by the chef.",
  );
  assert.equal(extractResponse("\n<|assistant|>:\nJane Austen.\n", "phi3"), "Jane Austen.");
  assert.equal(extractResponse("no tag here", "alpaca"), "no tag here");
});

test("unknown prompt style is a usage error", () => {
  assert.throws(() => checkPromptStyle("chatml"), UsageError);
  assert.equal(checkPromptStyle("phi3"), "phi3");
});

test("JSON Lines and a missing input key are accepted; extra fields are kept", () => {
  const text = '{"instruction":"a","input":"b","output":"c"}\n\n{"instruction":"d","output":"e","id":7}\n';
  const data = parseInstructionData(text, "x.jsonl");
  assert.equal(data.length, 2);
  assert.equal(data[1].input, "");
  assert.equal(data[1].id, 7);
});

test("a malformed entry is named by its index", () => {
  const bad = JSON.stringify([
    { instruction: "a", input: "", output: "b" },
    { instruction: "c", input: "", output: 3 },
  ]);
  assert.throws(
    () => parseInstructionData(bad, "d.json"),
    (err: Error) =>
      err instanceof FileFormatError && /entry 1 of d\.json/.test(err.message) && /output/.test(err.message),
  );
  assert.throws(
    () => parseInstructionData('[{"input":"x","output":"y"}]', "d.json"),
    /entry 0 of d\.json has no "instruction"/,
  );
  assert.throws(
    () => parseInstructionData('{"instruction":"a","output":"b"}\nnot json\n', "d.jsonl"),
    /entry 1 \(line 2\) of d\.jsonl is not valid JSON/,
  );
  assert.throws(() => parseInstructionData('[{"instruction":"a",', "d.json"), /d\.json is not valid JSON/);
  assert.throws(() => parseInstructionData("[1]", "d.json"), /entry 0 of d\.json is not an object/);
  assert.throws(() => parseInstructionData("  ", "d.json"), /d\.json is empty/);
});

test("a missing data file is a clear FileFormatError", async () => {
  const dir = await mkdtemp(join(tmpdir(), "llmctl-idata-"));
  try {
    await assert.rejects(loadInstructionData(join(dir, "nope.json")), /instruction data not found/);
    await writeFile(join(dir, "ok.json"), '[{"instruction":"i","input":"","output":"o"}]');
    assert.equal((await loadInstructionData(join(dir, "ok.json"))).length, 1);
  } finally {
    await rm(dir, { recursive: true, force: true });
  }
});
