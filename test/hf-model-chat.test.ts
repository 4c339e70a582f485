/**
 * A model directory's own chat template in `serve` (and `chat`, `generate --chat`): a Llama 3.2-style checkpoint
 * made by transformers with Llama 3.2's real tokenizer and chat template, loaded with `llmctl load`. The prompt of a
 * 2-turn conversation is transformers' apply_chat_template, and the reply ends where transformers' generate stops:
 * at an eos_token_id of generation_config.json (<|eot_id|> here).
 */
import { test } from "node:test";
import assert from "node:assert/strict";
import { spawnSync } from "node:child_process";
import { mkdir, mkdtemp, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { loadChatFormat, type ChatMessage } from "../src/generate/chat-template.js";
import { loadTokenizerDir } from "../src/tokenizer/bpe-file.js";
import { cliEnv, testBackend } from "./helpers/backend.js";
import { runCli } from "./helpers/cli.js";
import { chatTemplateOracle } from "./helpers/hf-tokenizers.js";
import { startServe } from "./helpers/serve.js";

const PYTHON = process.env.LLMCTL_PYTHON ?? "python3";
const EOT_ID = 128009; // Llama 3's <|eot_id|>

// An untied head, so that one row can be set: <|eot_id|>'s row becomes twice the row of a token the model
// greedily writes, which makes <|eot_id|> win at that step (or earlier); transformers' generate says where it stops.
const MAKE_LLAMA_CHAT = String.raw`
import json, shutil, sys, torch
from transformers import AutoTokenizer, LlamaConfig, LlamaForCausalLM
out, tok_dir, messages, n_new = sys.argv[1], sys.argv[2], json.loads(sys.argv[3]), int(sys.argv[4])
for f in ("tokenizer.json", "tokenizer_config.json"):
    shutil.copy(f"{tok_dir}/{f}", f"{out}/{f}")
tok = AutoTokenizer.from_pretrained(out)
torch.manual_seed(33)
cfg = LlamaConfig(vocab_size=len(tok), hidden_size=64, intermediate_size=96, num_hidden_layers=2,
    num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=256, rope_theta=500000.0,
    rope_scaling={"rope_type": "llama3", "factor": 32.0, "low_freq_factor": 1.0, "high_freq_factor": 4.0,
                  "original_max_position_embeddings": 128},
    tie_word_embeddings=False, initializer_range=0.5, bos_token_id=128000, eos_token_id=[128001, 128008, 128009])
m = LlamaForCausalLM(cfg).eval()
ids = tok.apply_chat_template(messages, add_generation_prompt=True, tokenize=True)
x = torch.tensor([ids])
with torch.no_grad():
    free = m.generate(x, max_new_tokens=n_new, min_new_tokens=n_new, do_sample=False, pad_token_id=0)[0, len(ids):]
    head = m.lm_head.weight
    for k in range(2, n_new):
        head[${EOT_ID}] = 2 * head[free[k]]
        g = m.generate(x, max_new_tokens=n_new, do_sample=False, pad_token_id=0)[0, len(ids):].tolist()
        if len(g) < n_new and g[-1] == ${EOT_ID}: break
    else:
        sys.exit("no row made the model stop at <|eot_id|>")
    one = tok.apply_chat_template(messages[:1], add_generation_prompt=True, tokenize=True)
    single = m.generate(torch.tensor([one]), max_new_tokens=40, do_sample=False, pad_token_id=0)[0, len(one):].tolist()
m.save_pretrained(out, safe_serialization=True)
print(json.dumps({"prompt_ids": ids, "greedy": g, "single": single}))
`;

test("serve's /v1/chat/completions with a Llama 3.2-style checkpoint and its real chat template: transformers' prompt ids for 2 turns, and the reply ends at <|eot_id|> as transformers' generate does; chat and generate --chat give transformers' single-turn reply (needs python3 with transformers + jinja2, and npm)", async (t) => {
  const files = chatTemplateOracle(t, PYTHON);
  if (!files) return;
  const dir = await mkdtemp(join(tmpdir(), "llmctl-model-chat-"));
  try {
    const messages: ChatMessage[] = [
      { role: "user", content: "Name three primary colors." },
      { role: "assistant", content: "Red, yellow and blue." },
      { role: "user", content: "And three secondary ones?" },
    ];
    const maxTokens = 10;
    const hf = join(dir, "hf");
    await mkdir(hf);
    const made = spawnSync(
      PYTHON,
      ["-c", MAKE_LLAMA_CHAT, hf, files.dirs["llama3.1"], JSON.stringify(messages), String(maxTokens)],
      { encoding: "utf8" },
    );
    assert.equal(made.status, 0, made.stderr);
    const ref = JSON.parse(made.stdout.trim().split("\n").at(-1)!) as {
      prompt_ids: number[];
      greedy: number[];
      single: number[];
    };
    assert.equal(ref.greedy.at(-1), EOT_ID);
    const model = join(dir, "model");
    const loaded = await runCli(["load", "--from", hf, "--out", model]);
    assert.equal(loaded.code, 0, loaded.stderr);

    // the prompt as serve makes it (the same function), against apply_chat_template
    const tokenizer = await loadTokenizerDir(model);
    const prompt = (await loadChatFormat(model, tokenizer))(messages);
    assert.deepEqual(prompt.ids, ref.prompt_ids);
    assert.deepEqual(
      [...prompt.stopIds].sort((a, b) => a - b),
      [128001, 128008, 128009],
    );

    const server = await startServe(["--model", model]);
    try {
      const res = await fetch(`${server.url}v1/chat/completions`, {
        method: "POST",
        headers: { "content-type": "application/json" },
        body: JSON.stringify({ model: "model", messages, max_tokens: maxTokens, temperature: 0 }),
      });
      assert.equal(res.status, 200, await res.clone().text());
      const body = (await res.json()) as {
        choices: { message: { content: string }; finish_reason: string }[];
        usage: { prompt_tokens: number; completion_tokens: number };
      };
      assert.equal(body.usage.prompt_tokens, ref.prompt_ids.length);
      assert.equal(body.usage.completion_tokens, ref.greedy.length);
      assert.equal(body.choices[0].finish_reason, "stop");
      assert.equal(body.choices[0].message.content, tokenizer.decode(ref.greedy.slice(0, -1)).trimStart());
    } finally {
      await server.stop("SIGKILL");
    }

    // generate --chat (one user message) stops where transformers' generate does
    const r = await runCli(
      ["generate", "-m", model, "--chat", "-p", messages[0].content, "-t", "0", "-n", "40", "--json"],
      {
        env: cliEnv(),
      },
    );
    assert.equal(r.code, 0, r.stderr);
    assert.deepEqual((JSON.parse(r.stdout) as { ids: number[] }).ids, ref.single);
    // chat, one line on stdin: the same reply, ended where transformers ends it
    const chat = await runCli(["chat", "-m", model, "-t", "0", "-n", "40"], {
      env: cliEnv(),
      input: `${messages[0].content}\n`,
    });
    assert.equal(chat.code, 0, chat.stderr);
    const stopped = [128001, 128008, 128009].includes(ref.single.at(-1)!);
    const replyIds = stopped ? ref.single.slice(0, -1) : ref.single;
    assert.equal(chat.stdout, `${tokenizer.decode(replyIds).trimStart()}\n`);
    t.diagnostic(
      `${ref.prompt_ids.length} prompt ids as apply_chat_template; ${ref.greedy.length} reply ids ending at <|eot_id|> as transformers' generate, on ${testBackend()}; generate --chat: ${ref.single.length} ids as transformers' (${ref.single.length < 40 ? "stopped" : "not stopped"})`,
    );
  } finally {
    files.done();
    await rm(dir, { recursive: true, force: true });
  }
});
