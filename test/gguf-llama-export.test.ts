// test: first backend pass only (the GGUF file and llama.cpp; llmctl's side of generation is checked on every backend by families)
/**
 * `export --format gguf` for the llama and qwen3 families: a Llama 3.2-style checkpoint made by transformers with
 * Llama 3.2's real tokenizer, and a Qwen3-style one, loaded with `llmctl load`, exported, and run by llama.cpp
 * (node-llama-cpp): its greedy ids equal llmctl's. The GGUF's rope_freqs are transformers' llama3 scaling.
 */
import { test, after } from "node:test";
import assert from "node:assert/strict";
import { spawnSync } from "node:child_process";
import { copyFile, mkdir, mkdtemp, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { useBackend } from "../src/backend/index.js";
import { loadModelDir } from "../src/model/model-dir.js";
import { generate } from "../src/generate/generate.js";
import { loadChatFormat } from "../src/generate/chat-template.js";
import { loadTokenizerDir } from "../src/tokenizer/bpe-file.js";
import { loadLlamaCpp, llamaCppGreedy, type LlamaCppRuntime } from "../src/bench/llama-cpp.js";
import { readGguf } from "./helpers/gguf-reader.js";
import { testBackend } from "./helpers/backend.js";
import { runCli } from "./helpers/cli.js";
import { hfTokenizerDirs } from "./helpers/hf-tokenizers.js";
import { sharedPath } from "./helpers/shared.js";

const PYTHON = process.env.LLMCTL_PYTHON ?? "python3";
const NEW_TOKENS = 16;

let llamaCpp: LlamaCppRuntime | { missing: string } | undefined;
after(async () => {
  if (llamaCpp && !("missing" in llamaCpp)) await llamaCpp.llama.dispose();
});

/** transformers' llama3-scaled inverse frequencies, as the factors llama.cpp divides the plain ones by */
const MAKE_LLAMA = String.raw`
import json, shutil, sys, torch
from transformers import AutoTokenizer, LlamaConfig, LlamaForCausalLM
from transformers.modeling_rope_utils import ROPE_INIT_FUNCTIONS
out, tok_dir = sys.argv[1], sys.argv[2]
for f in ("tokenizer.json", "tokenizer_config.json"):
    shutil.copy(f"{tok_dir}/{f}", f"{out}/{f}")
tok = AutoTokenizer.from_pretrained(out)
torch.manual_seed(34)
cfg = LlamaConfig(vocab_size=len(tok), hidden_size=64, intermediate_size=96, num_hidden_layers=2,
    num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=256, rope_theta=500000.0,
    rope_scaling={"rope_type": "llama3", "factor": 32.0, "low_freq_factor": 1.0, "high_freq_factor": 4.0,
                  "original_max_position_embeddings": 128},
    tie_word_embeddings=True, initializer_range=0.5, bos_token_id=128000, eos_token_id=[128001, 128008, 128009])
LlamaForCausalLM(cfg).eval().save_pretrained(out, safe_serialization=True)
plain, _ = ROPE_INIT_FUNCTIONS["default"](cfg, "cpu")
scaled, _ = ROPE_INIT_FUNCTIONS["llama3"](cfg, "cpu")
print(json.dumps({"rope_factors": (plain / scaled).tolist()}))
`;

const MAKE_QWEN3 = String.raw`
import json, os, sys, torch
from safetensors.torch import save_file
out = sys.argv[1]
cfg = {"architectures": ["Qwen3ForCausalLM"], "model_type": "qwen3", "vocab_size": 300, "hidden_size": 32,
       "intermediate_size": 48, "num_hidden_layers": 2, "num_attention_heads": 4, "num_key_value_heads": 2,
       "head_dim": 16, "hidden_act": "silu", "max_position_embeddings": 64, "rms_norm_eps": 1e-6,
       "rope_theta": 1000000.0, "attention_bias": False, "tie_word_embeddings": False, "use_sliding_window": False}
json.dump(cfg, open(f"{out}/config.json", "w"))
torch.manual_seed(35)
D, hd, F, V = 32, 16, 48, 300
w = {"model.embed_tokens.weight": torch.randn(V, D), "model.norm.weight": 1 + 0.3 * torch.randn(D),
     "lm_head.weight": 0.3 * torch.randn(V, D)}
for l in range(2):
    p = f"model.layers.{l}"
    for name, shape in [("self_attn.q_proj", [4 * hd, D]), ("self_attn.k_proj", [2 * hd, D]),
                        ("self_attn.v_proj", [2 * hd, D]), ("self_attn.o_proj", [D, 4 * hd]),
                        ("mlp.gate_proj", [F, D]), ("mlp.up_proj", [F, D]), ("mlp.down_proj", [D, F])]:
        w[f"{p}.{name}.weight"] = 0.4 * torch.randn(*shape)
    for name, n in [("input_layernorm", D), ("post_attention_layernorm", D), ("self_attn.q_norm", hd),
                    ("self_attn.k_norm", hd)]:
        w[f"{p}.{name}.weight"] = 1 + 0.3 * torch.randn(n)
save_file(w, f"{out}/model.safetensors", metadata={"format": "pt"})
`;

function python(script: string, args: string[]): Record<string, unknown> {
  const r = spawnSync(PYTHON, ["-c", script, ...args], { encoding: "utf8" });
  assert.equal(r.status, 0, r.stderr);
  return JSON.parse(r.stdout.trim().split("\n").at(-1) || "{}") as Record<string, unknown>;
}

async function llmctlGreedy(model: string, ids: number[]): Promise<number[]> {
  await useBackend(testBackend());
  const { gpt } = await loadModelDir(model);
  try {
    return (await generate(gpt, ids, { maxNewTokens: NEW_TOKENS, temperature: 0 })).ids;
  } finally {
    gpt.dispose();
  }
}

/** load → export --format gguf; llama.cpp's greedy ids on the file against llmctl's on the model directory */
async function compareGreedy(hf: string, dir: string, ids: number[], context: number) {
  const model = join(dir, "model");
  let r = await runCli(["load", "--from", hf, "--out", model]);
  assert.equal(r.code, 0, r.stderr);
  const gguf = join(dir, "model.gguf");
  r = await runCli(["export", "-m", model, "--format", "gguf", "--out", gguf]);
  assert.equal(r.code, 0, r.stderr);
  const ours = await llmctlGreedy(model, ids);
  const theirs = await llamaCppGreedy((llamaCpp as LlamaCppRuntime).llama, gguf, ids, NEW_TOKENS, {
    contextLength: context,
    threads: 1,
  });
  assert.deepEqual(theirs.ids, ours);
  return { gguf, ours };
}

async function runtime(t: test.TestContext): Promise<boolean> {
  llamaCpp ??= await loadLlamaCpp();
  if ("missing" in llamaCpp) t.skip(`${llamaCpp.missing}; .ci/run installs it`);
  return !("missing" in llamaCpp);
}

test("export --format gguf of a Llama 3.2-style checkpoint with Llama 3.2's real tokenizer: llama.cpp's architecture keys, llama-bpe, rope_freqs as transformers' llama3 scaling, and llama.cpp's greedy ids on a chat prompt equal llmctl's (needs python3 with transformers, npm and node-llama-cpp)", async (t) => {
  const probe = spawnSync(PYTHON, ["-c", "import torch, transformers, safetensors, jinja2"], { encoding: "utf8" });
  if (probe.status !== 0) return t.skip(`${PYTHON} with torch, transformers, safetensors and jinja2 is not available`);
  if (!(await runtime(t))) return;
  const files = hfTokenizerDirs();
  if ("skip" in files) return t.skip(files.skip);
  const dir = await mkdtemp(join(tmpdir(), "llmctl-gguf-llama-"));
  try {
    const hf = join(dir, "hf");
    await mkdir(hf);
    const ref = python(MAKE_LLAMA, [hf, files.dirs["llama3.1"]]) as { rope_factors: number[] };
    const tokenizer = await loadTokenizerDir(hf);
    const messages = [{ role: "user" as const, content: "Name three primary colors." }];
    const ids = (await loadChatFormat(hf, tokenizer))(messages).ids;
    const { gguf, ours } = await compareGreedy(hf, dir, ids, 256);

    const g = await readGguf(gguf);
    try {
      const md = (k: string) => g.metadata.get(k)?.value;
      assert.equal(md("general.architecture"), "llama");
      assert.equal(md("tokenizer.ggml.model"), "gpt2");
      assert.equal(md("tokenizer.ggml.pre"), "llama-bpe");
      assert.deepEqual(
        [md("llama.attention.head_count"), md("llama.attention.head_count_kv"), md("llama.rope.dimension_count")],
        [4, 2, 16],
      );
      assert.equal(md("tokenizer.ggml.bos_token_id"), 128000);
      assert.equal(md("tokenizer.ggml.eos_token_id"), 128001);
      assert.equal(g.tensors.has("output.weight"), false); // tied
      const factors = await g.read("rope_freqs.weight");
      const diff = Math.max(...ref.rope_factors.map((f, i) => Math.abs(f - factors[i]) / f));
      assert.ok(diff < 1e-5, `rope_freqs vs transformers: relative diff ${diff}`);
      t.diagnostic(
        `llama: ${ids.length} chat prompt ids, llama.cpp's ${NEW_TOKENS} greedy ids = llmctl's on ${testBackend()} (${ours.join(" ")}); rope_freqs [${[...factors].map((f) => f.toFixed(3)).join(", ")}] within ${diff.toExponential(1)} of transformers'`,
      );
    } finally {
      await g.close();
    }
  } finally {
    files.done();
    await rm(dir, { recursive: true, force: true });
  }
});

test("export --format gguf of a Qwen3-style checkpoint (head_dim 16 ≠ 32/4, q/k norm, untied): llama.cpp's qwen3 architecture gives llmctl's greedy ids (needs python3 with torch + safetensors, and node-llama-cpp)", async (t) => {
  const probe = spawnSync(PYTHON, ["-c", "import torch, safetensors"], { encoding: "utf8" });
  if (probe.status !== 0) return t.skip(`${PYTHON} with torch and safetensors is not available`);
  if (!(await runtime(t))) return;
  const dir = await mkdtemp(join(tmpdir(), "llmctl-gguf-qwen3-"));
  try {
    const hf = join(dir, "hf");
    await mkdir(hf);
    python(MAKE_QWEN3, [hf]);
    const tok = join(dir, "tokenizer");
    const args = ["tokenizer", "train", "--file", sharedPath("datasets", "the-verdict.txt"), "--vocab-size", "300"];
    const r = await runCli([...args, "--out", tok]);
    assert.equal(r.code, 0, r.stderr);
    await copyFile(join(tok, "tokenizer.json"), join(hf, "tokenizer.json"));
    const ids = (await loadTokenizerDir(tok)).encode("Every effort moves you");
    const { gguf, ours } = await compareGreedy(hf, dir, ids, 64);
    const g = await readGguf(gguf);
    try {
      assert.equal(g.metadata.get("general.architecture")?.value, "qwen3");
      assert.equal(g.metadata.get("qwen3.attention.key_length")?.value, 16);
    } finally {
      await g.close();
    }
    t.diagnostic(`qwen3: llama.cpp's ${NEW_TOKENS} greedy ids = llmctl's on ${testBackend()} (${ours.join(" ")})`);
  } finally {
    await rm(dir, { recursive: true, force: true });
  }
});
