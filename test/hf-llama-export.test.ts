/**
 * `export --format hf` for the llama and qwen3 families, the inverse of `llmctl load`: checkpoints made by
 * transformers (Llama) or written with its names (Qwen3, which transformers 4.44 lacks) go through load → export
 * → load; transformers loads the Llama export, and every tensor and config value comes back as it was.
 */
import { test } from "node:test";
import assert from "node:assert/strict";
import { spawnSync } from "node:child_process";
import { copyFile, mkdtemp, readFile, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { loadTokenizerDir } from "../src/tokenizer/bpe-file.js";
import { testBackend } from "./helpers/backend.js";
import { runCli } from "./helpers/cli.js";
import { llmctlLogits, trainTokenizer } from "./helpers/hf-checkpoint.js";

const PYTHON = process.env.LLMCTL_PYTHON ?? "python3";
const PROMPT = "Every effort moves you";

// Llama 3.2's choices in small (GQA, llama3 RoPE scaling), one untied with attention biases, one tied; an eos list
const MAKE_LLAMA = String.raw`
import sys, torch
from transformers import LlamaConfig, LlamaForCausalLM
out = sys.argv[1]
torch.manual_seed(29)
for variant, tied, bias in [("untied", False, True), ("tied", True, False)]:
    cfg = LlamaConfig(vocab_size=300, hidden_size=64, intermediate_size=96, num_hidden_layers=2, num_attention_heads=4,
        num_key_value_heads=2, max_position_embeddings=128, rms_norm_eps=1e-5, rope_theta=500000.0,
        rope_scaling={"rope_type": "llama3", "factor": 8.0, "low_freq_factor": 1.0, "high_freq_factor": 4.0,
                      "original_max_position_embeddings": 64},
        tie_word_embeddings=tied, attention_bias=bias, initializer_range=0.2, bos_token_id=0, eos_token_id=[1, 2])
    m = LlamaForCausalLM(cfg).eval()
    with torch.no_grad():
        for name, p in m.named_parameters():
            if name.endswith("norm.weight") or name.endswith("bias"): p.copy_(1 + 0.3 * torch.randn_like(p))
    m.save_pretrained(f"{out}/{variant}", safe_serialization=True)
`;

// transformers loads both; every tensor equal, the config's values equal, and the export's logits
const CHECK_LLAMA = String.raw`
import json, sys, torch
from transformers import LlamaForCausalLM
orig_dir, exp_dir, ids = sys.argv[1], sys.argv[2], json.loads(sys.argv[3])
orig = LlamaForCausalLM.from_pretrained(orig_dir, torch_dtype=torch.float32).eval()
exp = LlamaForCausalLM.from_pretrained(exp_dir, torch_dtype=torch.float32).eval()
a, b = orig.state_dict(), exp.state_dict()
assert sorted(a) == sorted(b), (sorted(a), sorted(b))
differ = [k for k in a if not torch.equal(a[k], b[k])]
assert not differ, differ
oc, ec = json.load(open(f"{orig_dir}/config.json")), json.load(open(f"{exp_dir}/config.json"))
keys = ["model_type", "hidden_size", "intermediate_size", "num_hidden_layers", "num_attention_heads",
        "num_key_value_heads", "rope_theta", "rope_scaling", "rms_norm_eps", "tie_word_embeddings", "vocab_size",
        "max_position_embeddings", "attention_bias", "torch_dtype", "bos_token_id", "eos_token_id", "architectures"]
assert all(oc[k] == ec[k] for k in keys), [(k, oc[k], ec[k]) for k in keys if oc[k] != ec[k]]
assert ec["head_dim"] == oc["hidden_size"] // oc["num_attention_heads"]
with torch.no_grad():
    logits = exp(torch.tensor([ids])).logits[0].tolist()
print(json.dumps({"tensors": len(a), "logits": logits}))
`;

// Qwen3-0.6B's shape in small (head_dim 16 ≠ 32/4, q/k norm, untied), written with transformers' names
const MAKE_QWEN3 = String.raw`
import json, os, sys, torch
from safetensors.torch import save_file
out = sys.argv[1]
os.makedirs(out)
cfg = {"architectures": ["Qwen3ForCausalLM"], "model_type": "qwen3", "vocab_size": 300, "hidden_size": 32,
       "intermediate_size": 48, "num_hidden_layers": 2, "num_attention_heads": 4, "num_key_value_heads": 2,
       "head_dim": 16, "hidden_act": "silu", "max_position_embeddings": 64, "rms_norm_eps": 1e-6,
       "rope_theta": 1000000.0, "rope_scaling": None, "attention_bias": False, "tie_word_embeddings": False,
       "use_sliding_window": False, "torch_dtype": "float32"}
json.dump(cfg, open(f"{out}/config.json", "w"))
json.dump({"bos_token_id": 0, "eos_token_id": [1, 2]}, open(f"{out}/generation_config.json", "w"))
torch.manual_seed(30)
D, hd, F, V = 32, 16, 48, 300
w = {"model.embed_tokens.weight": torch.randn(V, D), "model.norm.weight": torch.randn(D), "lm_head.weight": torch.randn(V, D)}
for l in range(2):
    p = f"model.layers.{l}"
    for name, shape in [("input_layernorm", [D]), ("post_attention_layernorm", [D]), ("self_attn.q_proj", [4 * hd, D]),
                        ("self_attn.k_proj", [2 * hd, D]), ("self_attn.v_proj", [2 * hd, D]),
                        ("self_attn.o_proj", [D, 4 * hd]), ("self_attn.q_norm", [hd]), ("self_attn.k_norm", [hd]),
                        ("mlp.gate_proj", [F, D]), ("mlp.up_proj", [F, D]), ("mlp.down_proj", [D, F])]:
        w[f"{p}.{name}.weight"] = torch.randn(*shape)
save_file(w, f"{out}/model.safetensors", metadata={"format": "pt"})
`;

const CHECK_QWEN3 = String.raw`
import json, sys, torch
from safetensors.torch import load_file
orig_dir, exp_dir = sys.argv[1], sys.argv[2]
a, b = load_file(f"{orig_dir}/model.safetensors"), load_file(f"{exp_dir}/model.safetensors")
assert sorted(a) == sorted(b), (sorted(a), sorted(b))
differ = [k for k in a if not torch.equal(a[k], b[k])]
assert not differ, differ
oc, ec = json.load(open(f"{orig_dir}/config.json")), json.load(open(f"{exp_dir}/config.json"))
differ = [(k, v, ec.get(k)) for k, v in oc.items() if ec.get(k) != v]
assert not differ, differ
print(json.dumps({"tensors": len(a)}))
`;

function python(script: string, args: string[]): Record<string, unknown> {
  const r = spawnSync(PYTHON, ["-c", script, ...args], { encoding: "utf8", maxBuffer: 1 << 26 });
  assert.equal(r.status, 0, r.stderr);
  return JSON.parse(r.stdout.trim().split("\n").at(-1) || "{}") as Record<string, unknown>;
}

/** load HF → model, export → HF again, load that → model2: the two model directories' weights are the same bytes */
async function roundTrip(dir: string, hf: string, name: string): Promise<{ model: string; exported: string }> {
  const model = join(dir, `model-${name}`);
  const exported = join(dir, `export-${name}`);
  const again = join(dir, `again-${name}`);
  let r = await runCli(["load", "--from", hf, "--out", model]);
  assert.equal(r.code, 0, r.stderr);
  r = await runCli(["export", "-m", model, "--format", "hf", "--out", exported]);
  assert.equal(r.code, 0, r.stderr);
  r = await runCli(["load", "--from", exported, "--out", again]);
  assert.equal(r.code, 0, r.stderr);
  assert.ok(
    (await readFile(join(model, "model.safetensors"))).equals(await readFile(join(again, "model.safetensors"))),
    `${name}: load → export → load changed the weights`,
  );
  for (const f of ["tokenizer.json", "generation_config.json"])
    assert.ok((await readFile(join(hf, f))).equals(await readFile(join(exported, f))), `${name}: ${f} not copied`);
  return { model, exported };
}

test("export --format hf of llama models (tied, untied with attention biases): transformers' LlamaForCausalLM loads them with every tensor and config value as the checkpoint had it, logits equal llmctl's, and load → export → load is bit-exact (needs python3 with torch + transformers)", async (t) => {
  const probe = spawnSync(PYTHON, ["-c", "import torch, transformers, safetensors"], { encoding: "utf8" });
  if (probe.status !== 0) {
    t.skip(`${PYTHON} with torch, transformers and safetensors is not available (LLMCTL_PYTHON picks it)`);
    return;
  }
  const dir = await mkdtemp(join(tmpdir(), "llmctl-llama-export-"));
  try {
    const tokenizer = join(await trainTokenizer(dir), "tokenizer.json");
    const ids = (await loadTokenizerDir(join(dir, "tokenizer"))).encode(PROMPT);
    python(MAKE_LLAMA, [dir]);
    for (const variant of ["untied", "tied"]) {
      const hf = join(dir, variant);
      await copyFile(tokenizer, join(hf, "tokenizer.json"));
      const { model, exported } = await roundTrip(dir, hf, variant);
      const ref = python(CHECK_LLAMA, [hf, exported, JSON.stringify(ids)]) as { tensors: number; logits: number[][] };
      const ours = await llmctlLogits(model, ids);
      let diff = 0;
      ref.logits.forEach((row, i) => row.forEach((v, j) => (diff = Math.max(diff, Math.abs(v - ours[i][j])))));
      t.diagnostic(
        `llama ${variant}: ${ref.tensors} tensors equal; max |logit diff| transformers(export) vs llmctl on ${testBackend()} ${diff.toExponential(2)}`,
      );
      assert.ok(diff < 1e-4, `${variant}: max |diff| ${diff}`);
    }
  } finally {
    await rm(dir, { recursive: true, force: true });
  }
});

test("export --format hf of a qwen3 model: Qwen3Config's values and every tensor as the checkpoint had them, and load → export → load is bit-exact (needs python3 with torch + safetensors)", async (t) => {
  const probe = spawnSync(PYTHON, ["-c", "import torch, safetensors"], { encoding: "utf8" });
  if (probe.status !== 0) {
    t.skip(`${PYTHON} with torch and safetensors is not available (LLMCTL_PYTHON picks it)`);
    return;
  }
  const dir = await mkdtemp(join(tmpdir(), "llmctl-qwen3-export-"));
  try {
    const tokenizer = join(await trainTokenizer(dir), "tokenizer.json");
    const hf = join(dir, "qwen3");
    python(MAKE_QWEN3, [hf]);
    await copyFile(tokenizer, join(hf, "tokenizer.json"));
    const { exported } = await roundTrip(dir, hf, "qwen3");
    const r = python(CHECK_QWEN3, [hf, exported]) as { tensors: number };
    t.diagnostic(`qwen3: ${r.tensors} tensors and every config.json value as the checkpoint's`);
  } finally {
    await rm(dir, { recursive: true, force: true });
  }
});
