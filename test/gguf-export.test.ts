// test: first backend pass only (the GGUF file and llama.cpp; generation itself is checked on every backend by generate)
import { test, before, after } from "node:test";
import assert from "node:assert/strict";
import { spawnSync } from "node:child_process";
import { mkdtemp, readFile, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { useBackend } from "../src/backend/index.js";
import { buildGPT } from "../src/model/gpt.js";
import { saveModelDir } from "../src/model/model-dir.js";
import { type GPTConfig } from "../src/model/config.js";
import { readSafetensors } from "../src/formats/safetensors.js";
import { readGguf, type GgufFile } from "./helpers/gguf-reader.js";
import { exportGguf } from "../src/weights/gguf-export.js";
import { getTokenizer } from "../src/tokenizer/index.js";
import { loadLlamaCpp, llamaCppGreedy, type LlamaCppRuntime } from "../src/bench/llama-cpp.js";
import { runCli } from "./helpers/cli.js";
import { cliEnv, testBackend } from "./helpers/backend.js";
import { fixture } from "./helpers/fixture.js";
import { tinyConfig } from "./helpers/tiny-config.js";

let dir: string;
/** the gpt2-tiny fixture as a model directory, through the CLI a user runs */
let tiny: string;

before(async () => {
  await useBackend(testBackend());
  dir = await mkdtemp(join(tmpdir(), "llmctl-gguf-export-"));
  tiny = join(dir, "tiny");
  const r = await runCli(["load-gpt2", "--from", fixture("hf"), "--out", tiny], { env: cliEnv() });
  assert.equal(r.code, 0, r.stderr);
});

after(async () => {
  await rm(dir, { recursive: true, force: true });
});

async function exportCli(model: string, out: string, ...extra: string[]) {
  return runCli(["export", "--model", model, "--format", "gguf", "--out", out, ...extra], { env: cliEnv() });
}

/** [rows, cols] → [cols, rows] */
function transposed(data: Float32Array, rows: number, cols: number): Float32Array {
  const out = new Float32Array(data.length);
  for (let r = 0; r < rows; r++) for (let c = 0; c < cols; c++) out[c * rows + r] = data[r * cols + c]!;
  return out;
}

/** An untied model with the full GPT-2 vocabulary and no qkv bias, as `pretrain configs/gpt2-tiny.json` makes. */
const untiedCfg: GPTConfig = tinyConfig({ vocab_size: 50257, context_length: 24, emb_dim: 32, n_heads: 4 });

test("export --format gguf writes the fixture as llama.cpp's gpt2: keys, types, tensor names, layout, values", async () => {
  const out = join(dir, "f32", "tiny.gguf");
  const r = await exportCli(tiny, out, "--json");
  assert.equal(r.code, 0, r.stderr);
  const res = JSON.parse(r.stdout);
  assert.equal(res.dtype, "f32");
  assert.equal(res.tensors, 2 + 2 * 12 + 2);
  assert.deepEqual(res.f16_fallback, []);
  assert.equal(res.ollama_name, "tiny");

  const g = await readGguf(out);
  const md = (k: string) => g.metadata.get(k);
  assert.deepEqual(md("general.architecture"), { type: "string", value: "gpt2" });
  for (const [k, v] of [
    ["gpt2.context_length", 32],
    ["gpt2.embedding_length", 16],
    ["gpt2.feed_forward_length", 64],
    ["gpt2.block_count", 2],
    ["gpt2.attention.head_count", 2],
    ["tokenizer.ggml.bos_token_id", 50256],
    ["tokenizer.ggml.eos_token_id", 50256],
    ["general.file_type", 0],
  ] as const)
    assert.deepEqual(md(k), { type: "uint32", value: v }, k);
  assert.equal(md("gpt2.attention.layer_norm_epsilon")?.type, "float32");
  assert.deepEqual(md("tokenizer.ggml.model"), { type: "string", value: "gpt2" });
  assert.deepEqual(md("tokenizer.ggml.pre"), { type: "string", value: "gpt-2" });
  const tokens = md("tokenizer.ggml.tokens")!;
  const types = md("tokenizer.ggml.token_type")!;
  const merges = md("tokenizer.ggml.merges")!;
  assert.ok(tokens.type === "array" && types.type === "array" && merges.type === "array");
  assert.equal(tokens.itemType, "string");
  assert.equal(types.itemType, "int32");
  assert.equal(tokens.value.length, 50257);
  assert.deepEqual([tokens.value[262], tokens.value[198], tokens.value[50256]], ["Ġthe", "Ċ", "<|endoftext|>"]);
  assert.deepEqual(types.value.slice(50250), [1, 1, 1, 1, 1, 1, 3]);
  assert.deepEqual([merges.value.length, ...merges.value.slice(0, 3)], [50000, "Ġ t", "Ġ a", "h e"]);

  const names = [...g.tensors.keys()];
  const block = (i: number) =>
    ["attn_norm", "attn_qkv", "attn_output", "ffn_norm", "ffn_up", "ffn_down"].flatMap((t) => [
      `blk.${i}.${t}.weight`,
      `blk.${i}.${t}.bias`,
    ]);
  assert.deepEqual(names, [
    "token_embd.weight",
    "position_embd.weight",
    ...block(0),
    ...block(1),
    "output_norm.weight",
    "output_norm.bias",
  ]);
  assert.deepEqual(g.info("blk.0.attn_qkv.weight").shape, [48, 16]);
  assert.deepEqual(g.info("blk.0.ffn_up.weight").shape, [64, 16]);
  assert.deepEqual(g.info("blk.0.ffn_down.weight").shape, [16, 64]);
  let end = 0;
  for (const info of g.tensors.values()) {
    assert.equal(info.type, "F32");
    assert.equal(info.offset, end, "each tensor starts where the previous one ended, padded to 32");
    end = Math.ceil((info.offset + info.size) / 32) * 32;
  }

  const st = await readSafetensors(join(tiny, "model.safetensors"));
  assert.deepEqual(await g.read("token_embd.weight"), await st.read("wte.weight"));
  assert.deepEqual(await g.read("blk.1.ffn_norm.bias"), await st.read("h.1.ln_2.bias"));
  assert.deepEqual(await g.read("blk.1.attn_qkv.weight"), transposed(await st.read("h.1.attn.c_attn.weight"), 16, 48));
  assert.deepEqual(await g.read("blk.0.ffn_down.weight"), transposed(await st.read("h.0.mlp.c_proj.weight"), 64, 16));
  await st.close();
  await g.close();

  assert.equal(
    await readFile(join(dir, "f32", "Modelfile"), "utf8"),
    [
      "# Ollama Modelfile written by llmctl export --format gguf: ollama create NAME -f Modelfile",
      "FROM ./tiny.gguf",
      'TEMPLATE """{{ .Prompt }}"""',
      'PARAMETER stop "<|endoftext|>"',
      "PARAMETER num_ctx 32",
      "",
    ].join("\n"),
  );
  const human = await exportCli(tiny, out);
  assert.equal(human.code, 2);
  assert.match(human.stderr, /already exists — choose another --out, or pass --force/);
  const again = await exportCli(tiny, out, "--force");
  assert.equal(again.code, 0, again.stderr);
  assert.match(again.stdout, /^ollama create tiny -f .*Modelfile$/m);
});

test("--dtype q8_0 quantizes the matrices whose rows are whole blocks, writes the rest F16 and says so", async () => {
  const out = join(dir, "q8", "tiny-q8.gguf");
  const r = await exportCli(tiny, out, "--dtype", "q8_0");
  assert.equal(r.code, 0, r.stderr);
  assert.match(
    r.stderr,
    /7 matrices are F16, not Q8_0 \(their rows are not a multiple of 32 long\): token_embd\.weight/,
  );
  const g = await readGguf(out);
  assert.equal(g.info("blk.0.ffn_down.weight").type, "Q8_0", "rows of 64: quantized");
  assert.equal(g.info("blk.0.ffn_up.weight").type, "F16", "rows of 16: F16");
  assert.equal(g.info("token_embd.weight").type, "F16");
  assert.equal(g.info("position_embd.weight").type, "F32", "positions stay F32");
  assert.equal(g.info("blk.0.ffn_down.bias").type, "F32", "1-D tensors stay F32");
  assert.deepEqual(g.metadata.get("general.file_type"), { type: "uint32", value: 7 });
  await g.close();
});

test("an untied model without qkv bias gets output.weight and zero attn_qkv biases; an instruction model its prompt template", async () => {
  const gpt = buildGPT(untiedCfg, { seed: 5 });
  await saveModelDir(join(dir, "untied"), gpt, { prompt_style: "phi3" });
  gpt.dispose();
  const out = join(dir, "untied-gguf", "untied.gguf");
  const res = await exportGguf(join(dir, "untied"), out, { dtype: "bf16" });
  assert.deepEqual(res.f16_fallback, []);
  const g = await readGguf(out);
  const st = await readSafetensors(join(dir, "untied", "model.safetensors"));
  assert.equal(g.info("output.weight").type, "BF16");
  assert.deepEqual(g.info("output.weight").shape, [50257, 32]);
  const head = await st.read("lm_head.weight");
  const back = await g.read("output.weight");
  head.forEach((x, i) => assert.ok(Math.abs(back[i]! - x) <= Math.abs(x) / 256, `output.weight[${i}]`));
  assert.deepEqual(await g.read("blk.1.attn_qkv.bias"), new Float32Array(96));
  await st.close();
  await g.close();
  const modelfile = await readFile(join(dir, "untied-gguf", "Modelfile"), "utf8");
  assert.match(modelfile, /^TEMPLATE """<\|user\|>\n\{\{ \.Prompt \}\}\n<\|assistant\|>:\n"""$/m);
  assert.match(modelfile, /^PARAMETER num_ctx 24$/m);
});

test("export --format gguf refuses bad input with one line: classifier, missing model, unwritable --out, small vocabulary", async () => {
  const small: GPTConfig = { ...untiedCfg, vocab_size: 97 };
  const clf = buildGPT(small, { seed: 1, head: { kind: "classifier", num_classes: 2 } });
  await saveModelDir(join(dir, "clf"), clf, { labels: ["ham", "spam"] });
  clf.dispose();
  const smallLm = buildGPT(small, { seed: 1 });
  await saveModelDir(join(dir, "small"), smallLm);
  smallLm.dispose();
  await writeFile(join(dir, "a-file"), "not a directory");
  const cases: [string[], number, RegExp][] = [
    [
      ["--model", join(dir, "clf")],
      2,
      /is a classifier \(head 'classifier'\); export --format gguf writes language models only/,
    ],
    [["--model", join(dir, "nope")], 1, /model directory not found/],
    [["--model", tiny, "--out", join(dir, "a-file", "x.gguf")], 1, /cannot write .*a-file.* — choose a writable --out/],
    [["--model", tiny, "--out", join(dir, "x.bin")], 2, /does not end in \.gguf/],
    [["--model", join(dir, "small")], 2, /vocab_size 97, fewer rows than the 50257 tokens/],
    [["--model", tiny, "--no-tokenizer"], 2, /always carries its tokenizer/],
  ];
  for (const [args, code, message] of cases) {
    const withOut = args.includes("--out") ? args : [...args, "--out", join(dir, "bad", "x.gguf")];
    const r = await runCli(["export", "--format", "gguf", ...withOut], { env: cliEnv() });
    assert.equal(r.code, code, `${args.join(" ")}: ${r.stderr}`);
    assert.match(r.stderr, message);
    assert.equal(r.stderr.trim().split("\n").length, 1, `one line: ${r.stderr}`);
  }
  const hf = await runCli(["export", "--model", tiny, "--out", join(dir, "hf"), "--dtype", "f16"], { env: cliEnv() });
  assert.equal(hf.code, 2);
  assert.match(hf.stderr, /--dtype applies to --format gguf/);
});

// ---- The real consumers ----

let llamaCpp: LlamaCppRuntime | { missing: string } | undefined;
async function llamaCppOrSkip(t: { skip(message: string): void }): Promise<LlamaCppRuntime | undefined> {
  llamaCpp ??= await loadLlamaCpp();
  if ("missing" in llamaCpp) {
    t.skip(`${llamaCpp.missing}; .ci/run installs it`);
    return undefined;
  }
  return llamaCpp;
}

after(async () => {
  if (llamaCpp && !("missing" in llamaCpp)) await llamaCpp.llama.dispose();
});

async function llmctlGreedy(
  model: string,
  prompt: string,
  n: number,
): Promise<{ prompt_ids: number[]; ids: number[] }> {
  const r = await runCli(["generate", "-m", model, "-p", prompt, "-t", "0", "-n", String(n), "--json"], {
    env: cliEnv(),
  });
  assert.equal(r.code, 0, r.stderr);
  return JSON.parse(r.stdout);
}

function sameUntil(a: number[], b: number[]): number {
  let i = 0;
  while (i < a.length && a[i] === b[i]) i++;
  return i;
}

test("llama.cpp (node-llama-cpp 3.21.1) generates llmctl's greedy ids from the exported fixture: F32 all, F16 and Q8_0 the first", async (t) => {
  const runtime = await llamaCppOrSkip(t);
  if (!runtime) return;
  t.diagnostic(runtime.path);
  const n = 24;
  for (const prompt of ["Every effort moves you", "Hello, I am"]) {
    const ours = await llmctlGreedy(tiny, prompt, n);
    for (const dtype of ["f32", "f16", "q8_0"] as const) {
      const out = join(dir, "llama", `tiny-${dtype}.gguf`);
      await exportGguf(tiny, out, { dtype });
      const theirs = await llamaCppGreedy(runtime.llama, out, ours.prompt_ids, n, { contextLength: 32, threads: 1 });
      const agree = sameUntil(theirs.ids, ours.ids);
      t.diagnostic(`${JSON.stringify(prompt)} ${dtype}: llama.cpp agrees with llmctl on ${agree}/${n} greedy tokens`);
      if (dtype === "f32") assert.deepEqual(theirs.ids, ours.ids);
      else if (dtype === "f16") assert.ok(agree >= 4, `f16: ${theirs.ids} vs ${ours.ids}`);
      else assert.ok(theirs.ids.length === n && theirs.ids.every((id) => id >= 0 && id < 50257));
    }
  }
});

test("llama.cpp generates llmctl's greedy ids from an untied model trained without qkv bias (F32)", async (t) => {
  const runtime = await llamaCppOrSkip(t);
  if (!runtime) return;
  const out = join(dir, "llama", "untied.gguf");
  await exportGguf(join(dir, "untied"), out);
  const ours = await llmctlGreedy(join(dir, "untied"), "The quick brown fox", 16);
  const theirs = await llamaCppGreedy(runtime.llama, out, ours.prompt_ids, 16, { contextLength: 24, threads: 1 });
  assert.deepEqual(theirs.ids, ours.ids);
});

test("llama.cpp's tokenizer, read from the GGUF, gives llmctl's token ids", async (t) => {
  const runtime = await llamaCppOrSkip(t);
  if (!runtime) return;
  const model = await runtime.llama.loadModel({ modelPath: join(dir, "f32", "tiny.gguf") });
  const tok = getTokenizer();
  try {
    for (const text of [
      "Every effort moves you",
      "Hello, do you like tea?<|endoftext|>In the sunlit terraces of someunknownPlace.",
      "Ünïcödé — ✓ 日本語 emoji 🙂 and numbers 1234567 3.14",
      "  leading spaces, tabs\tand\nnewlines\n\n  ",
      "it's they're we've I'm you'll he'd",
    ])
      assert.deepEqual(model.tokenize(text, true), tok.encode(text), text);
  } finally {
    await model.dispose();
  }
});

// $LLMCTL_PYTHON picks the interpreter (CI's venv has the PyPI gguf package), default python3 on PATH.
const PYTHON = process.env.LLMCTL_PYTHON ?? "python3";

const PY_READ = `
import json, sys
from gguf import GGUFReader
r = GGUFReader(sys.argv[1])
fields = {}
for name, f in r.fields.items():
    if name.startswith("GGUF."):
        continue
    v = f.contents()
    fields[name] = {"types": [t.name for t in f.types], "value": v if not isinstance(v, list) or len(v) < 8 else v[:4] + [len(v)]}
tensors = [{"name": t.name, "shape": [int(d) for d in t.shape], "type": t.tensor_type.name, "offset": int(t.data_offset),
            "bytes": int(t.n_bytes), "sum": float(t.data.astype("float64").sum()) if t.tensor_type.name == "F32" else None}
           for t in r.tensors]
print(json.dumps({"fields": fields, "tensors": tensors}))
`;

test("the PyPI gguf package's GGUFReader reads the export as we wrote it (needs python3 with gguf)", async (t) => {
  const probe = spawnSync(PYTHON, ["-c", "import gguf"], { encoding: "utf8" });
  if (probe.status !== 0) {
    t.skip(`${PYTHON} with the gguf package is not available (pip install gguf; LLMCTL_PYTHON picks the interpreter)`);
    return;
  }
  for (const file of [join(dir, "f32", "tiny.gguf"), join(dir, "q8", "tiny-q8.gguf")]) {
    const run = spawnSync(PYTHON, ["-c", PY_READ, file], { encoding: "utf8", maxBuffer: 64 << 20 });
    assert.equal(run.status, 0, run.stderr);
    const py = JSON.parse(run.stdout) as {
      fields: Record<string, { types: string[]; value: unknown }>;
      tensors: { name: string; shape: number[]; type: string; offset: number; bytes: number; sum: number | null }[];
    };
    const g: GgufFile = await readGguf(file);
    assert.deepEqual(Object.keys(py.fields), [...g.metadata.keys()]);
    for (const [k, v] of g.metadata) {
      const want = v.type === "array" ? ["ARRAY", v.itemType.toUpperCase()] : [v.type.toUpperCase()];
      assert.deepEqual(py.fields[k]!.types, want, k);
    }
    assert.equal(py.fields["gpt2.context_length"]!.value, 32);
    assert.equal(py.fields["tokenizer.ggml.pre"]!.value, "gpt-2");
    assert.deepEqual(py.fields["tokenizer.ggml.tokens"]!.value, ["!", '"', "#", "$", 50257]);
    assert.deepEqual(py.fields["tokenizer.ggml.merges"]!.value, ["Ġ t", "Ġ a", "h e", "i n", 50000]);
    assert.deepEqual(
      py.tensors.map((x) => x.name),
      [...g.tensors.keys()],
    );
    for (const x of py.tensors) {
      const ours = g.info(x.name);
      // gguf-py gives ne order (fastest first), the reverse of our row-major shapes
      assert.deepEqual(x.shape, [...ours.shape].reverse(), x.name);
      assert.equal(x.type, ours.type, x.name);
      assert.equal(x.offset, g.dataStart + ours.offset, x.name);
      assert.equal(x.bytes, ours.size, x.name);
      if (x.sum !== null) {
        const sum = (await g.read(x.name)).reduce((a, b) => a + b, 0);
        assert.ok(Math.abs(x.sum - sum) <= 1e-3 * (1 + Math.abs(sum)), `${x.name}: ${x.sum} vs ${sum}`);
      }
    }
    await g.close();
  }
});
