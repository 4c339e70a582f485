// test: first backend pass only (which prompt `generate --chat` builds; the model's numbers are other tests')
/**
 * `llmctl generate --chat`: the prompt is one user message in the model directory's own Hugging Face chat
 * template (tokenizer_config.json's), with the reply's header, and `--json` reports its text and ids; a model
 * without one gets llmctl's plain chat template.
 */
import { test } from "node:test";
import assert from "node:assert/strict";
import { mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { getTokenizer } from "../src/tokenizer/index.js";
import { chatPrompt } from "../src/generate/chat-template.js";
import { runCli } from "./helpers/cli.js";
import { cliEnv } from "./helpers/backend.js";
import { saveNewModel, tinyConfig } from "./helpers/tiny-config.js";

const CHATML =
  "{% for m in messages %}{{ '<|im_start|>' + m.role + '\\n' + m.content + '<|im_end|>\\n' }}{% endfor %}" +
  "{% if add_generation_prompt %}{{ '<|im_start|>assistant\\n' }}{% endif %}";

test("generate --chat: the model's own chat template, else llmctl's; --json reports the prompt and its ids", async () => {
  const dir = mkdtempSync(join(tmpdir(), "llmctl-generate-chat-"));
  try {
    await saveNewModel(dir, tinyConfig({ vocab_size: 50257, context_length: 64 }));
    const args = ["generate", "-m", dir, "-p", "Hi there", "--chat", "-n", "3", "-t", "0", "--json"];
    const plain = await runCli(args, { env: cliEnv() });
    assert.equal(plain.code, 0, plain.stderr);
    const p = JSON.parse(plain.stdout);
    const expected = chatPrompt(getTokenizer(), [{ role: "user", content: "Hi there" }]);
    assert.equal(p.prompt, "User: Hi there\nAssistant:");
    assert.deepEqual(p.prompt_ids, expected.ids);
    assert.equal(p.ids.length, 3);

    writeFileSync(join(dir, "tokenizer_config.json"), JSON.stringify({ chat_template: CHATML }));
    const own = await runCli(args, { env: cliEnv() });
    assert.equal(own.code, 0, own.stderr);
    const o = JSON.parse(own.stdout);
    assert.equal(o.prompt, "<|im_start|>user\nHi there<|im_end|>\n<|im_start|>assistant\n");
    assert.deepEqual(o.prompt_ids, getTokenizer().encode(o.prompt));

    writeFileSync(join(dir, "tokenizer_config.json"), JSON.stringify({ chat_template: "{{ raise_exception('no') }}" }));
    const refused = await runCli(args, { env: cliEnv() });
    assert.equal(refused.code, 2, refused.stderr);
    assert.match(refused.stderr, /the chat template refused the conversation: no/);
    assert.equal(refused.stderr.trim().split("\n").length, 1, refused.stderr);
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});
