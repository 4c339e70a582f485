// test: first backend pass only (a tokenizer and its files: integers and text; the tiny pretrain checks wiring)
/**
 * A byte-level BPE of one's own (`llmctl tokenizer train`): the trainer against a brute-force one, encode/decode
 * round trips, the same ids as Hugging Face's `tokenizers` (when $LLMCTL_PYTHON has it), the CLI from training to
 * `tokenize --tokenizer` and a tiny `pretrain --tokenizer` whose model generates, and the one-line errors.
 */
import { test } from "node:test";
import assert from "node:assert/strict";
import { spawnSync, type SpawnSyncReturns } from "node:child_process";
import { mkdtemp, readFile, rm, writeFile, mkdir } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { preTokenizer, trainBpe } from "../src/tokenizer/bpe-train.js";
import { BpeTokenizer, bpeFiles, loadTokenizerDir, writeBpeFiles } from "../src/tokenizer/bpe-file.js";
import { readModelMeta } from "../src/model/model-meta.js";
import { loadLlamaCpp, llamaCppGreedy } from "../src/bench/llama-cpp.js";
import { readGguf } from "./helpers/gguf-reader.js";
import { runCli, tinyPretrainArgs } from "./helpers/cli.js";
import { cliEnv } from "./helpers/backend.js";
import { REPO_ROOT, sharedPath } from "./helpers/shared.js";

const verdictPath = () => sharedPath("datasets", "the-verdict.txt");

/**
 * The textbook trainer, quadratic and obviously right: count every adjacent pair over all pieces (weighted by
 * frequency) from scratch before every merge, take the most frequent (ties: smaller left id, then right id).
 */
function bruteForceMerges(text: string, merges: number): [number, number][] {
  const counts = new Map<string, number>();
  for (const [p] of text.matchAll(preTokenizer())) counts.set(p, (counts.get(p) ?? 0) + 1);
  const words = [...counts].map(([p, n]) => ({ ids: Array.from(Buffer.from(p)), n }));
  const out: [number, number][] = [];
  let next = 256;
  const made = new Map<string, number>();
  const bytes: number[][] = Array.from({ length: 256 }, (_, b) => [b]);
  while (out.length < merges) {
    const pairs = new Map<string, number>();
    for (const w of words)
      for (let i = 0; i + 1 < w.ids.length; i++) {
        const k = `${w.ids[i]},${w.ids[i + 1]}`;
        pairs.set(k, (pairs.get(k) ?? 0) + w.n);
      }
    let best: [number, number] | undefined;
    let bestCount = 0;
    for (const [k, c] of pairs) {
      const [a, b] = k.split(",").map(Number) as [number, number];
      if (c > bestCount || (c === bestCount && best && (a < best[0] || (a === best[0] && b < best[1])))) {
        best = [a, b];
        bestCount = c;
      }
    }
    if (!best) break;
    const spelled = [...bytes[best[0]], ...bytes[best[1]]].join(",");
    let id = made.get(spelled);
    if (id === undefined) {
      id = next++;
      made.set(spelled, id);
      bytes[id] = [...bytes[best[0]], ...bytes[best[1]]];
    }
    out.push(best);
    for (const w of words) {
      const ids: number[] = [];
      for (let i = 0; i < w.ids.length; i++) {
        if (w.ids[i] === best[0] && w.ids[i + 1] === best[1]) {
          ids.push(id);
          i++;
        } else ids.push(w.ids[i]);
      }
      w.ids = ids;
    }
  }
  return out;
}

const tokenizerOf = (model: ReturnType<typeof trainBpe>["model"]) =>
  new BpeTokenizer("test", JSON.parse(bpeFiles(model).tokenizerJson));

test("golden: the first merges of a small text, by hand", () => {
  // pieces: "low"×1, " low"×1, " lower"×1, " lowest"×1, " newer"×2 (the book's classic example, GPT-2 style)
  const text = "low low lower lowest newer newer";
  const { model } = trainBpe(text, { vocabSize: 256 + 4 + 1, specials: ["<|endoftext|>"] });
  const spell = (id: number) => Buffer.from(model.tokens[id]).toString("latin1");
  const merges = model.merges.map(([l, r]) => `${spell(l)}+${spell(r)}`);
  // counted by hand: "l o" 4, "o w" 4, "w e" 4 (lower, lowest, newer ×2), " l" 3, "e r" 3, …: the tie at 4 goes
  // to the smallest pair (108, 111) = "lo". Then "lo w" 4 and "w e" 4: (119, 101) < (256, 119), so "we". Then
  // " lo" 3 and "we r" 3 (lower, newer ×2): " lo" (32, 256) first, and "we r" last
  assert.deepEqual(merges, ["l+o", "w+e", " +lo", "we+r"]);
  assert.equal(model.tokens.length + model.specials.length, 261);
});

test("the trainer's merges equal a brute-force trainer's (the-verdict, 300 merges)", async () => {
  const text = await readFile(verdictPath(), "utf8");
  const { model } = trainBpe(text, { vocabSize: 256 + 300 + 1, specials: ["<|endoftext|>"] });
  assert.deepEqual(
    model.merges.map(([l, r]) => [l, r]),
    bruteForceMerges(text, 300),
  );
});

test("ties are broken by ids, not by the order the text shows its pieces: reversed words, same merges", async () => {
  // every word after one space: the pieces are the same in any word order
  const words = (await readFile(verdictPath(), "utf8")).match(/\S+/g)!;
  const opts = { vocabSize: 700, specials: ["<|endoftext|>"] };
  const forward = trainBpe(" " + words.join(" "), opts).model;
  const backward = trainBpe(" " + [...words].reverse().join(" "), opts).model;
  assert.deepEqual(backward.merges, forward.merges);
  // every token's bytes are one token's
  const spelled = forward.tokens.map((t) => Buffer.from(t).toString("latin1"));
  assert.equal(new Set(spelled).size, spelled.length);
});

const VARIED = [
  "Every effort moves you",
  "你好，世界！这是一个测试。日本語のテキストも。한국어 문장.",
  "emoji 🤖🎉👍🏽 family 👨‍👩‍👧 flags 🇫🇷🇯🇵",
  "whitespace   runs\t\ttabs\n\n\nnewlines  \n  trailing   ",
  "   leading spaces",
  "the special<|endoftext|>in text<|endoftext|><|endoftext|>twice",
  "<|endoftext",
  "it's I'll we'd they're 12345 3.14159 ½ Ⅻ ١٢٣",
  "\u00a0nbsp\u2003em\u3000ideographic a\u0085b\ufeffc\u180ed",
  "café naïve ÀÉÎõü ß ﬁ x\r\ny\r\n",
  "",
];

test("encode then decode gives the text back (CJK, emoji, whitespace runs, the special token)", async () => {
  const text = await readFile(verdictPath(), "utf8");
  const { model } = trainBpe(text, { vocabSize: 600, specials: ["<|endoftext|>"] });
  const tok = tokenizerOf(model);
  assert.equal(tok.vocabSize, 600);
  assert.equal(tok.endOfTextId, 599);
  for (const t of VARIED) assert.equal(tok.decode(tok.encode(t)), t, JSON.stringify(t));
  assert.deepEqual(tok.encode("a<|endoftext|>b").filter((id) => id === 599).length, 1);
  // not allowed: the special is ordinary text
  assert.ok(!tok.encode("a<|endoftext|>b", { allowedSpecial: [] }).includes(599));
  assert.equal(tok.decode(tok.encode("a<|endoftext|>b", { allowedSpecial: [] })), "a<|endoftext|>b");
  // a learned word is one token
  assert.equal(tok.encode(" the").length, 1);
});

test("the written files: byte tokens first by byte value, merges in order, specials last", async () => {
  const dir = await mkdtemp(join(tmpdir(), "llmctl-bpe-"));
  try {
    const { model } = trainBpe("hello hello world", { vocabSize: 262, specials: ["<|endoftext|>", "<|pad|>"] });
    await writeBpeFiles(dir, model);
    const json = JSON.parse(await readFile(join(dir, "tokenizer.json"), "utf8"));
    assert.equal(json.model.type, "BPE");
    assert.deepEqual(json.pre_tokenizer, {
      type: "ByteLevel",
      add_prefix_space: false,
      trim_offsets: true,
      use_regex: true,
    });
    assert.equal(json.decoder.type, "ByteLevel");
    assert.equal(json.model.vocab["!"], 33);
    assert.equal(json.model.vocab["Ġ"], 32); // the space, in bytes_to_unicode spelling
    assert.deepEqual(
      json.added_tokens.map((t: { id: number; content: string }) => [t.id, t.content]),
      [
        [260, "<|endoftext|>"],
        [261, "<|pad|>"],
      ],
    );
    const vocab = JSON.parse(await readFile(join(dir, "vocab.json"), "utf8"));
    assert.deepEqual(vocab, json.model.vocab);
    const merges = (await readFile(join(dir, "merges.txt"), "utf8")).trim().split("\n");
    assert.equal(merges[0], "#version: 0.2");
    assert.deepEqual(merges.slice(1), json.model.merges);
    const tok = await loadTokenizerDir(dir);
    assert.equal(tok.endOfTextId, 260);
    assert.equal(tok.vocabSize, 262);
    assert.equal(tok.decode(tok.encode("hello<|pad|>")), "hello<|pad|>");
  } finally {
    await rm(dir, { recursive: true, force: true });
  }
});

const HF_CHECK = `
import sys, json
from tokenizers import Tokenizer
t = Tokenizer.from_file(sys.argv[1])
print(json.dumps([t.encode(x).ids for x in json.load(sys.stdin)]))
`;

test("Hugging Face's tokenizers loads tokenizer.json and encodes identically (needs $LLMCTL_PYTHON with tokenizers)", async (t) => {
  const python = process.env.LLMCTL_PYTHON;
  if (!python) return t.skip("LLMCTL_PYTHON is not set (a python with `tokenizers` installed)");
  const probe = spawnSync(python, ["-c", "import tokenizers"], { encoding: "utf8" });
  if (probe.status !== 0) return t.skip(`${python} has no tokenizers (pip install tokenizers)`);
  const dir = await mkdtemp(join(tmpdir(), "llmctl-bpe-hf-"));
  try {
    const verdict = await readFile(verdictPath(), "utf8");
    const instructions = JSON.parse(await readFile(sharedPath("datasets", "instruction-data.json"), "utf8")) as {
      instruction: string;
      input: string;
      output: string;
    }[];
    const instructionText = instructions.map((e) => `${e.instruction}\n${e.input}\n${e.output}`).join("<|endoftext|>");
    const texts = [verdict, instructionText, ...VARIED];
    for (const [corpus, size] of [
      [verdict, 1000],
      [instructionText + verdict, 3000],
    ] as const) {
      const { model } = trainBpe(corpus, { vocabSize: size, specials: ["<|endoftext|>"] });
      await writeBpeFiles(dir, model);
      const tok = await loadTokenizerDir(dir);
      const py: SpawnSyncReturns<string> = spawnSync(python, ["-c", HF_CHECK, join(dir, "tokenizer.json")], {
        input: JSON.stringify(texts),
        encoding: "utf8",
        maxBuffer: 256 << 20,
      });
      assert.equal(py.status, 0, py.stderr);
      const theirs = JSON.parse(py.stdout) as number[][];
      texts.forEach((text, i) => assert.deepEqual(tok.encode(text), theirs[i], `text ${i}: ${text.slice(0, 40)}`));
    }
  } finally {
    await rm(dir, { recursive: true, force: true });
  }
});

test("CLI: tokenizer train on the-verdict, then tokenize --tokenizer (text, --count, --decode, --file --out)", async () => {
  const dir = await mkdtemp(join(tmpdir(), "llmctl-bpe-cli-"));
  try {
    const tokDir = join(dir, "tok");
    // quick to start: training never loads TF.js
    const refuse = { NODE_OPTIONS: `--import=${join(REPO_ROOT, "dist", "test", "helpers", "refuse-tensorflow.js")}` };
    const trained = await runCli(
      ["tokenizer", "train", "--file", verdictPath(), "--vocab-size", "1000", "--out", tokDir, "--json"],
      { env: refuse },
    );
    assert.equal(trained.code, 0, trained.stderr);
    const r = JSON.parse(trained.stdout);
    assert.equal(r.vocab_size, 1000);
    assert.equal(r.merges, 743);
    const ids = await runCli(["tokenize", "--tokenizer", tokDir, "Every effort moves you<|endoftext|>"]);
    assert.equal(ids.code, 0, ids.stderr);
    const list = ids.stdout.trim().split(" ").map(Number);
    assert.equal(list[list.length - 1], 999);
    const back = await runCli(["tokenize", "--tokenizer", tokDir, "--decode", ids.stdout.trim()]);
    assert.equal(back.stdout, "Every effort moves you<|endoftext|>\n");
    const count = await runCli(["tokenize", "--tokenizer", tokDir, "--file", verdictPath(), "--count"]);
    const tok = await loadTokenizerDir(tokDir);
    const verdictIds = tok.encode(await readFile(verdictPath(), "utf8"));
    assert.equal(count.stdout.trim(), String(verdictIds.length));
    // GPT-2 gives 5145 tokens; a 1000-token BPE of the same text needs more, but far fewer than its 20479 bytes
    assert.ok(verdictIds.length > 5145 && verdictIds.length < 10000, String(verdictIds.length));
    const bin = join(dir, "verdict.bin");
    const out = await runCli(["tokenize", "--tokenizer", tokDir, "--file", verdictPath(), "--out", bin]);
    assert.equal(out.code, 0, out.stderr);
  } finally {
    await rm(dir, { recursive: true, force: true });
  }
});

/** llama.cpp, when .ci/run has installed it: its tokenizer and greedy ids from the GGUF are llmctl's. */
async function llamaCppAgrees(gguf: string, promptIds: number[], greedy: number[], tokDir: string): Promise<string> {
  const runtime = await loadLlamaCpp();
  if ("missing" in runtime) return `llama.cpp not checked: ${runtime.missing}`;
  try {
    const model = await runtime.llama.loadModel({ modelPath: gguf });
    const tok = await loadTokenizerDir(tokDir);
    for (const text of ["Every effort moves you", "Ünïcödé 日本語 🙂  spaces\n\n<|endoftext|>I HAD always"])
      assert.deepEqual(model.tokenize(text, true), tok.encode(text), text);
    await model.dispose();
    const theirs = await llamaCppGreedy(runtime.llama, gguf, promptIds, greedy.length, {
      contextLength: 32,
      threads: 1,
    });
    assert.deepEqual(theirs.ids, greedy);
    return `${runtime.path}: same tokens, same ${greedy.length} greedy ids`;
  } finally {
    await runtime.llama.dispose();
  }
}

test("CLI: pretrain --tokenizer gives the model the tokenizer's vocab_size and its tokenizer.json; generate and both exports use it (llama.cpp agrees, when installed)", async (t) => {
  const dir = await mkdtemp(join(tmpdir(), "llmctl-bpe-pretrain-"));
  try {
    const tokDir = join(dir, "tok");
    const trained = await runCli(["tokenizer", "train", "-f", verdictPath(), "-n", "500", "-o", tokDir]);
    assert.equal(trained.code, 0, trained.stderr);
    const run = join(dir, "run");
    const pre = await runCli([...tinyPretrainArgs(dir, run), "--tokenizer", tokDir, "--verbose"], { env: cliEnv() });
    assert.equal(pre.code, 0, pre.stderr);
    assert.match(pre.stderr, /vocab_size 50257 → 500: the model's vocabulary is the tokenizer's/);
    const meta = await readModelMeta(run);
    assert.equal(meta.model.vocab_size, 500);
    assert.equal(meta.tokenizer, "tokenizer.json");
    assert.equal(
      await readFile(join(run, "tokenizer.json"), "utf8"),
      await readFile(join(tokDir, "tokenizer.json"), "utf8"),
    );
    const gen = await runCli(
      ["generate", "--model", run, "--prompt", "Every effort moves you", "--max-new-tokens", "8", "-t", "0", "--json"],
      { env: cliEnv() },
    );
    assert.equal(gen.code, 0, gen.stderr);
    const g = JSON.parse(gen.stdout);
    const ids = [...g.prompt_ids, ...g.ids] as number[];
    assert.equal(g.ids.length, 8);
    assert.ok(
      ids.every((id) => Number.isInteger(id) && id >= 0 && id < 500),
      gen.stdout,
    );
    assert.equal(typeof g.text, "string");
    // an HF export carries the tokenizer.json; GGUF carries its tokens and merges
    const hf = await runCli(["export", "--model", run, "--format", "hf", "--out", join(dir, "hf"), "--json"]);
    assert.equal(hf.code, 0, hf.stderr);
    assert.ok(JSON.parse(hf.stdout).files.includes("tokenizer.json"));
    const ggufPath = join(dir, "m.gguf");
    const gguf = await runCli(["export", "--model", run, "--format", "gguf", "--out", ggufPath]);
    assert.equal(gguf.code, 0, gguf.stderr);
    const file = await readGguf(ggufPath);
    await file.close();
    const json = JSON.parse(await readFile(join(tokDir, "tokenizer.json"), "utf8"));
    const tokens = file.metadata.get("tokenizer.ggml.tokens")!.value as string[];
    assert.equal(tokens.length, 500);
    for (const [text, id] of Object.entries(json.model.vocab as Record<string, number>)) assert.equal(tokens[id], text);
    assert.equal(tokens[499], "<|endoftext|>");
    assert.equal(file.metadata.get("tokenizer.ggml.eos_token_id")!.value, 499);
    assert.deepEqual(file.metadata.get("tokenizer.ggml.merges")!.value, json.model.merges);
    assert.match(await readFile(join(dir, "Modelfile"), "utf8"), /PARAMETER stop "<\|endoftext\|>"/);
    t.diagnostic(await llamaCppAgrees(ggufPath, g.prompt_ids, g.ids, tokDir));
  } finally {
    await rm(dir, { recursive: true, force: true });
  }
});

test("CLI: one-line errors (vocab size, empty corpus, --out a file, no tokenizer.json)", async () => {
  const dir = await mkdtemp(join(tmpdir(), "llmctl-bpe-err-"));
  try {
    const oneLine = (r: { stderr: string }) => assert.equal(r.stderr.trim().split("\n").length, 1, r.stderr);
    const small = await runCli(["tokenizer", "train", "-f", verdictPath(), "-n", "256", "-o", join(dir, "t")]);
    assert.equal(small.code, 2);
    assert.match(small.stderr, /--vocab-size 256 is out of range: a byte-level BPE needs 256 byte tokens \+ 1 special/);
    oneLine(small);
    const two = await runCli([
      "tokenizer",
      "train",
      "-f",
      verdictPath(),
      "-n",
      "257",
      "--special",
      "<|a|>",
      "<|b|>",
      "-o",
      join(dir, "t"),
    ]);
    assert.match(two.stderr, /give an integer from 258/);
    const empty = join(dir, "empty.txt");
    await writeFile(empty, "<|endoftext|>");
    const e = await runCli(["tokenizer", "train", "-f", empty, "-n", "300", "-o", join(dir, "t")]);
    assert.equal(e.code, 1);
    assert.match(e.stderr, /the corpus is empty/);
    oneLine(e);
    const file = join(dir, "afile");
    await writeFile(file, "x");
    const f = await runCli(["tokenizer", "train", "-f", verdictPath(), "-n", "300", "-o", file]);
    assert.equal(f.code, 2);
    assert.match(f.stderr, /--out .*afile is a file/);
    oneLine(f);
    const bare = join(dir, "bare");
    await mkdir(bare);
    const n = await runCli(["tokenize", "--tokenizer", bare, "hello"]);
    assert.equal(n.code, 1);
    assert.match(n.stderr, /bare has no tokenizer\.json — /);
    oneLine(n);
    const p = await runCli([...tinyPretrainArgs(dir, join(dir, "run")), "--tokenizer", bare], { env: cliEnv() });
    assert.notEqual(p.code, 0);
    assert.match(p.stderr, /has no tokenizer\.json/);
    oneLine(p);
  } finally {
    await rm(dir, { recursive: true, force: true });
  }
});
