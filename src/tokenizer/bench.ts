/**
 * The book's chapter 2 bonus comparison of byte-pair encoders (ch02/02_bonus_bytepair-encoder), on one text:
 * js-tiktoken, llmctl's own encoder, and — when the Python at hand has them — OpenAI's tiktoken and Hugging
 * Face's GPT2TokenizerFast. Each is timed as the median of `repeats` encodes after one warm-up, Python's inside
 * Python (time.perf_counter), so no interpreter start is counted; each one's ids are compared with the
 * reference's: Python tiktoken's when it ran, else js-tiktoken's.
 *
 * Nothing here downloads: tiktoken's gpt2 encoding would fetch OpenAI's vocab.bpe, and GPT2TokenizerFast the
 * hub's gpt2 files, so both are built from the GPT-2 ranks js-tiktoken ships, written to a temporary directory
 * (as tiktoken ranks, and as vocab.json + merges.txt by gpt2TokenizerFiles).
 */
import { existsSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { availableParallelism, loadavg, tmpdir } from "node:os";
import { dirname, join } from "node:path";
import { createRequire } from "node:module";
import { Tiktoken } from "js-tiktoken/lite";
import gpt2 from "js-tiktoken/ranks/gpt2";
import { END_OF_TEXT, Gpt2Tokenizer } from "./index.js";
import { gpt2TokenBytes, gpt2TokenizerFiles } from "./vocab.js";

export interface TokenizerBenchRow {
  /** e.g. "tiktoken 0.9.0 (Python)" */
  name: string;
  /** how it was measured, e.g. "a fresh tokenizer per run (not timed)…" */
  note?: string;
  /** why it did not run (a missing Python package); the fields below are then absent */
  skipped?: string;
  /** median milliseconds of one encode of the whole text */
  ms?: number;
  mb_per_s?: number;
  tokens?: number;
  /** its ids equal the reference's, element for element */
  matches_reference?: boolean;
  /** this row is the reference */
  reference?: boolean;
}

export interface TokenizerBenchResult {
  file: string;
  bytes: number;
  repeats: number;
  /** the reference row's name */
  reference: string;
  rows: TokenizerBenchRow[];
  /** the machine's 1-minute load average when done, beside its cores: times taken on a busy machine vary */
  load_average: number;
  cores: number;
  /** the book's own numbers for the-verdict, measured on its author's machine, for comparison only */
  book: { name: string; ms: number }[];
}

/** The book's bonus notebook on the-verdict (its machine, not this one). */
export const BOOK_TIMES: TokenizerBenchResult["book"] = [
  { name: "tiktoken", ms: 0.9 },
  { name: "GPT2TokenizerFast", ms: 3.77 },
  { name: "from-scratch BPE", ms: 9.37 },
];

export interface TokenizerBenchOptions {
  /** timed encodes per implementation, after one warm-up (default 10) */
  repeats?: number;
  /** interpreter for the Python rows (default $LLMCTL_PYTHON, else python3); null: no Python rows */
  python?: string | null;
  /** names the implementation about to be measured, for a spinner */
  onStage?: (name: string) => void;
}

interface Timed {
  times: number[];
  ids: number[];
}

function median(xs: number[]): number {
  const s = [...xs].sort((a, b) => a - b);
  const mid = s.length >> 1;
  return s.length % 2 ? s[mid] : (s[mid - 1] + s[mid]) / 2;
}

/** One untimed warm-up, then `repeats` timed runs; `setup` (untimed) gives each run what it encodes with. */
function timeIt<T>(repeats: number, setup: () => T, encode: (state: T) => number[]): Timed {
  let ids = encode(setup());
  const times: number[] = [];
  for (let i = 0; i < repeats; i++) {
    const state = setup();
    const start = performance.now();
    ids = encode(state);
    times.push(performance.now() - start);
  }
  return { times, ids };
}

/** A dependency's version, from the package.json above its entry point (its exports hide package.json). */
function packageVersion(name: string): string {
  try {
    let dir = dirname(createRequire(import.meta.url).resolve(name));
    while (dirname(dir) !== dir) {
      const pkg = join(dir, "package.json");
      if (existsSync(pkg)) {
        const { name: found, version } = JSON.parse(readFileSync(pkg, "utf8")) as { name?: string; version: string };
        if (found === name) return version;
      }
      dir = dirname(dir);
    }
  } catch {
    // no version, then
  }
  return "";
}

/** Which of the packages the Python rows need are importable, with their versions (no import: fast). */
const PROBE = `
import importlib.metadata as md, importlib.util as u, json, sys
def v(p):
    try: return md.version(p)
    except Exception: return None
print(json.dumps({"python": sys.version.split()[0],
  "tiktoken": v("tiktoken") if u.find_spec("tiktoken") else None,
  "transformers": v("transformers") if u.find_spec("transformers") else None,
  "tokenizers": v("tokenizers") if u.find_spec("tokenizers") else None}))
`;

/**
 * argv: dir repeats. dir holds text.txt and, for the rows wanted, gpt2.tiktoken (base64 bytes + rank a line)
 * or vocab.json + merges.txt. Prints {name: {"times": [ms…], "ids": […]} or {"skipped": reason}}.
 */
const MEASURE = `
import base64, gc, json, os, sys, time
d, repeats = sys.argv[1], int(sys.argv[2])
with open(os.path.join(d, "text.txt"), encoding="utf-8", newline="") as f:
    text = f.read()
def timed(encode):
    ids = encode()
    times = []
    gc.disable()  # as timeit does
    try:
        for _ in range(repeats):
            t = time.perf_counter()
            ids = encode()
            times.append((time.perf_counter() - t) * 1000)
    finally:
        gc.enable()
    return {"times": times, "ids": list(ids)}
out = {}
if os.path.exists(os.path.join(d, "gpt2.tiktoken")):
    try:
        import tiktoken
        from tiktoken_ext.openai_public import r50k_pat_str  # gpt2's pattern, as tiktoken's gpt2() uses it
        with open(os.path.join(d, "gpt2.tiktoken")) as f:
            ranks = {base64.b64decode(t): int(r) for t, r in (line.split() for line in f if line.strip())}
        enc = tiktoken.Encoding(name="gpt2", pat_str=r50k_pat_str, mergeable_ranks=ranks,
                                special_tokens={"<|endoftext|>": 50256}, explicit_n_vocab=50257)
        out["tiktoken"] = timed(lambda: enc.encode(text, allowed_special={"<|endoftext|>"}))
    except Exception as e:
        out["tiktoken"] = {"skipped": f"{type(e).__name__}: {e}"}
if os.path.exists(os.path.join(d, "vocab.json")):
    try:
        from transformers import GPT2TokenizerFast
        tok = GPT2TokenizerFast(vocab_file=os.path.join(d, "vocab.json"), merges_file=os.path.join(d, "merges.txt"))
        out["hf"] = timed(lambda: tok.encode(text))
    except Exception as e:
        out["hf"] = {"skipped": f"{type(e).__name__}: {e}"}
print(json.dumps(out))
`;
import { runProgram } from "../run-program.js";

interface PythonRow {
  key: "tiktoken" | "hf";
  name: string;
  note: string;
  timed?: Timed;
  skipped?: string;
}

function lastLine(text: string): string {
  return text.trim().split("\n").pop() ?? "";
}

async function measurePython(python: string, text: string, repeats: number): Promise<PythonRow[]> {
  const tiktokenNote = "GPT-2 ranks from js-tiktoken's file (get_encoding would download them)";
  const hfNote = "built from vocab.json + merges.txt llmctl writes (no hub access)";
  const probe = await runProgram(python, ["-c", PROBE]);
  if (probe.code !== 0) {
    const why =
      probe.code === -1
        ? `${python} could not be started (LLMCTL_PYTHON picks the interpreter)`
        : `${python} failed: ${lastLine(probe.stderr)}`;
    return [
      { key: "tiktoken", name: "tiktoken (Python)", note: tiktokenNote, skipped: why },
      { key: "hf", name: "GPT2TokenizerFast (Python)", note: hfNote, skipped: why },
    ];
  }
  const has = JSON.parse(lastLine(probe.stdout)) as Record<string, string | null>;
  const rows: PythonRow[] = [
    {
      key: "tiktoken",
      name: has.tiktoken ? `tiktoken ${has.tiktoken} (Python ${has.python})` : "tiktoken (Python)",
      note: tiktokenNote,
      skipped: has.tiktoken ? undefined : `${python} has no tiktoken (pip install tiktoken)`,
    },
    {
      key: "hf",
      name: has.transformers
        ? `GPT2TokenizerFast (transformers ${has.transformers}, tokenizers ${has.tokenizers ?? "?"})`
        : "GPT2TokenizerFast (Python)",
      note: hfNote,
      skipped:
        has.transformers && has.tokenizers
          ? undefined
          : `${python} has no transformers + tokenizers (pip install transformers)`,
    },
  ];
  if (rows.every((r) => r.skipped)) return rows;

  const dir = mkdtempSync(join(tmpdir(), "llmctl-tokenize-bench-"));
  try {
    writeFileSync(join(dir, "text.txt"), text);
    if (!rows[0].skipped) {
      const lines = gpt2TokenBytes().map((bytes, rank) => `${Buffer.from(bytes).toString("base64")} ${rank}`);
      writeFileSync(join(dir, "gpt2.tiktoken"), lines.join("\n") + "\n");
    }
    if (!rows[1].skipped) {
      const { vocab, merges } = gpt2TokenizerFiles();
      writeFileSync(join(dir, "vocab.json"), JSON.stringify(vocab));
      writeFileSync(join(dir, "merges.txt"), ["#version: 0.2", ...merges].join("\n") + "\n");
    }
    const r = await runProgram(python, ["-c", MEASURE, dir, String(repeats)]);
    if (r.code !== 0) {
      for (const row of rows) row.skipped ??= `${python} failed: ${lastLine(r.stderr)}`;
      return rows;
    }
    const got = JSON.parse(lastLine(r.stdout)) as Record<string, Timed | { skipped: string }>;
    for (const row of rows) {
      const res = got[row.key];
      if (row.skipped || res === undefined) continue;
      if ("skipped" in res) row.skipped = res.skipped;
      else row.timed = res;
    }
    return rows;
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
}

function sameIds(a: number[], b: number[]): boolean {
  return a.length === b.length && a.every((x, i) => x === b[i]);
}

/** Measure every implementation on `text` (from `file`, named in the result). */
export async function benchTokenizers(
  text: string,
  file: string,
  opts: TokenizerBenchOptions = {},
): Promise<TokenizerBenchResult> {
  const repeats = opts.repeats ?? 10;
  const stage = opts.onStage ?? (() => {});
  const bytes = Buffer.byteLength(text, "utf8");
  const allowed = [END_OF_TEXT];

  const measured: { row: TokenizerBenchRow; timed?: Timed }[] = [];

  stage("js-tiktoken");
  const js = new Tiktoken(gpt2);
  measured.push({
    row: { name: `js-tiktoken ${packageVersion("js-tiktoken")}`.trim(), note: "Tiktoken class, gpt2 ranks" },
    timed: timeIt(
      repeats,
      () => js,
      (enc) => enc.encode(text, allowed),
    ),
  });

  stage("llmctl");
  measured.push({
    row: {
      name: "llmctl (cold piece cache)",
      note: "a fresh tokenizer per run (not timed): its piece cache starts empty; words repeated in the text still hit it",
    },
    timed: timeIt(
      repeats,
      () => new Gpt2Tokenizer(),
      (tok) => tok.encode(text, { allowedSpecial: allowed }),
    ),
  });
  const warm = new Gpt2Tokenizer();
  measured.push({
    row: {
      name: "llmctl (warm piece cache)",
      note: "piece cache already holds every piece of this text: the repeat-encode case",
    },
    timed: timeIt(
      repeats,
      () => warm,
      (tok) => tok.encode(text, { allowedSpecial: allowed }),
    ),
  });

  const python = opts.python === undefined ? (process.env.LLMCTL_PYTHON ?? "python3") : opts.python;
  let pythonTiktoken: Timed | undefined;
  if (python !== null) {
    stage("Python tiktoken, GPT2TokenizerFast");
    for (const p of await measurePython(python, text, repeats)) {
      measured.push({ row: { name: p.name, note: p.note, skipped: p.skipped }, timed: p.timed });
      if (p.key === "tiktoken") pythonTiktoken = p.timed;
    }
  }

  const ref = pythonTiktoken ?? measured[0].timed!;
  const rows = measured.map(({ row, timed }) => {
    if (!timed) return row;
    const ms = median(timed.times);
    return {
      ...row,
      ms: Math.round(ms * 1000) / 1000,
      mb_per_s: Math.round((bytes / 1e3 / ms) * 100) / 100,
      tokens: timed.ids.length,
      matches_reference: sameIds(timed.ids, ref.ids),
      ...(timed === ref ? { reference: true } : {}),
    };
  });
  return {
    file,
    bytes,
    repeats,
    reference: rows.find((r) => r.reference)!.name,
    rows,
    load_average: Math.round(loadavg()[0] * 100) / 100,
    cores: availableParallelism(),
    book: BOOK_TIMES,
  };
}
