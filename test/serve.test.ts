// test: first backend pass only (the OpenAI protocol; generation itself is checked on every backend by generate)
/**
 * `llmctl serve` against the official `openai` npm client (and plain fetch for what the client cannot send), on a
 * real server on 127.0.0.1. The model is the word model (./helpers/word-model.ts), so answers are readable.
 */
import { test, before, after } from "node:test";
import assert from "node:assert/strict";
import { mkdtemp, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import OpenAI from "openai";
import { useBackend } from "../src/backend/index.js";
import { chatPrompt } from "../src/generate/chat-template.js";
import { getTokenizer } from "../src/tokenizer/index.js";
import { spawn } from "node:child_process";
import { cliEnv } from "./helpers/backend.js";
import { REPO_ROOT } from "./helpers/shared.js";
import { runCli } from "./helpers/cli.js";
import { startServe, type ServeProcess } from "./helpers/serve.js";
import { saveWordModel } from "./helpers/word-model.js";

const CONTEXT = 1024;
let root: string;
let modelDir: string;
let server: ServeProcess;
let client: OpenAI;

before(async () => {
  await useBackend("cpu");
  root = await mkdtemp(join(tmpdir(), "llmctl-serve-"));
  modelDir = join(root, "words");
  await saveWordModel(modelDir, { contextLength: CONTEXT });
  server = await startServe(["--model", modelDir]);
  client = new OpenAI({ baseURL: `${server.url}v1`, apiKey: "unused", maxRetries: 0 });
});

after(async () => {
  await server?.stop("SIGKILL");
  await rm(root, { recursive: true, force: true });
});

/** `llmctl generate --temperature 0`, the reference for greedy answers */
async function greedyGenerate(dir: string, prompt: string, tokens: number): Promise<string> {
  const r = await runCli(["generate", "-m", dir, "-p", prompt, "-n", String(tokens), "-t", "0", "--json"], {
    env: cliEnv(),
  });
  assert.equal(r.code, 0, r.stderr);
  return JSON.parse(r.stdout).text;
}

test("GET /v1/models lists the one model, by its directory's name; the chat page is at /", async () => {
  const models = await client.models.list();
  assert.deepEqual(
    models.data.map((m) => [m.id, m.object, m.owned_by]),
    [["words", "model", "llmctl"]],
  );
  assert.equal((await client.models.retrieve("words")).id, "words");
  await assert.rejects(client.models.retrieve("nope"), (e: unknown) => e instanceof OpenAI.NotFoundError);
  const page = await fetch(server.url);
  assert.equal(page.status, 200);
  assert.match(page.headers.get("content-type") ?? "", /^text\/html/);
  assert.match(await page.text(), /<title>llmctl chat<\/title>/);
});

test("a greedy completion equals `llmctl generate --temperature 0`, from text or token ids, streamed or not", async () => {
  const prompt = "Every effort moves you";
  const expected = await greedyGenerate(modelDir, prompt, 20);
  const r = await client.completions.create({ model: "words", prompt, max_tokens: 20, temperature: 0 });
  assert.equal(r.object, "text_completion");
  assert.equal(r.choices[0].text, expected);
  assert.equal(r.choices[0].finish_reason, "length");
  assert.deepEqual(r.usage, { prompt_tokens: 4, completion_tokens: 20, total_tokens: 24 });

  const fromIds = await client.completions.create({
    model: "words",
    prompt: [6109, 3626, 6100, 345],
    max_tokens: 20,
    temperature: 0,
  });
  assert.equal(fromIds.choices[0].text, expected);

  const stream = await client.completions.create({
    model: "words",
    prompt,
    max_tokens: 20,
    temperature: 0,
    stream: true,
    stream_options: { include_usage: true },
  });
  const pieces: string[] = [];
  let last;
  for await (const chunk of stream) {
    if (chunk.choices.length > 0) pieces.push(chunk.choices[0].text);
    last = chunk;
  }
  assert.equal(pieces.join(""), expected);
  assert.ok(pieces.filter((p) => p !== "").length >= 10, "streamed piece by piece");
  assert.deepEqual(last?.usage, { prompt_tokens: 4, completion_tokens: 20, total_tokens: 24 });

  // a stop string ends the text before it, and finish_reason says so
  const stop = expected.split(" ").slice(0, 4).join(" ").slice(1); // e.g. "sun far ran"
  const word = expected.slice(expected.indexOf(stop) + stop.length).split(" ")[1];
  const stopped = await client.completions.create({
    model: "words",
    prompt,
    max_tokens: 20,
    temperature: 0,
    stop: [` ${word}`],
  });
  assert.equal(stopped.choices[0].text, expected.slice(0, expected.indexOf(` ${word}`)));
  assert.equal(stopped.choices[0].finish_reason, "stop");

  // OpenAI's default max_tokens for completions is 16; a seed reproduces a sample
  const sampled = () => client.completions.create({ model: "words", prompt, seed: 42 });
  const [a, b] = [await sampled(), await sampled()];
  assert.equal(a.usage?.completion_tokens, 16);
  assert.equal(a.choices[0].text, b.choices[0].text);
});

test("streamed chat: a role chunk, content piece by piece, finish_reason, then usage; the plain template for a base model", async () => {
  const messages = [{ role: "user" as const, content: "Name a color." }];
  // the documented plain template (docs/serve.md): "User: …\nAssistant:", the reply without leading space
  const expected = (await greedyGenerate(modelDir, "User: Name a color.\nAssistant:", 12)).trimStart();
  const stream = await client.chat.completions.create({
    model: "words",
    messages,
    max_tokens: 12,
    temperature: 0,
    stream: true,
    stream_options: { include_usage: true },
  });
  const chunks = [];
  for await (const chunk of stream) chunks.push(chunk);
  assert.equal(chunks[0].choices[0].delta.role, "assistant");
  const content = chunks.map((c) => c.choices[0]?.delta.content ?? "").join("");
  assert.equal(content, expected);
  assert.ok(chunks.filter((c) => c.choices[0]?.delta.content).length >= 10, "one chunk per word");
  assert.equal(chunks.at(-2)?.choices[0].finish_reason, "length");
  const promptTokens = chatPrompt(getTokenizer(), messages).ids.length;
  assert.deepEqual(chunks.at(-1)?.choices, []);
  assert.deepEqual(chunks.at(-1)?.usage, {
    prompt_tokens: promptTokens,
    completion_tokens: 12,
    total_tokens: promptTokens + 12,
  });

  // not streamed, and with text parts and max_completion_tokens: the same answer
  const whole = await client.chat.completions.create({
    model: "words",
    messages: [
      {
        role: "user",
        content: [
          { type: "text", text: "Name a " },
          { type: "text", text: "color." },
        ],
      },
    ],
    max_completion_tokens: 12,
    temperature: 0,
  });
  assert.equal(whole.object, "chat.completion");
  assert.equal(whole.choices[0].message.role, "assistant");
  assert.equal(whole.choices[0].message.content, expected);
  assert.equal(whole.usage?.completion_tokens, 12);
});

test("concurrent clients all get their own answers, the same as one at a time", async () => {
  const prompts = ["Every effort moves you", "I HAD always thought", "The sun", "A dog ran", "Colors:", "Hello"];
  const ask = (prompt: string, i: number, stream: boolean) =>
    stream
      ? (async () => {
          const s = await client.chat.completions.create({
            model: "words",
            messages: [{ role: "user", content: prompt }],
            max_tokens: 15 + i,
            temperature: 0,
            stream: true,
          });
          let text = "";
          for await (const c of s) text += c.choices[0]?.delta.content ?? "";
          return text;
        })()
      : client.chat.completions
          .create({ model: "words", messages: [{ role: "user", content: prompt }], max_tokens: 15 + i, temperature: 0 })
          .then((r) => r.choices[0].message.content ?? "");
  const together = await Promise.all(prompts.map((p, i) => ask(p, i, i % 2 === 0)));
  const alone: string[] = [];
  for (const [i, p] of prompts.entries()) alone.push(await ask(p, i, i % 2 === 1));
  assert.deepEqual(together, alone);
  assert.equal(new Set(together).size, prompts.length, "six different answers");
});

test("bad parameters are 400s and an unknown model a 404, in OpenAI's error shape", async () => {
  const base = { model: "words", messages: [{ role: "user" as const, content: "hi" }] };
  const rejects = async (promise: Promise<unknown>, status: number, param: string | null, code?: string) => {
    await assert.rejects(promise, (e: unknown) => {
      assert.ok(e instanceof OpenAI.APIError, String(e));
      assert.equal(e.status, status);
      assert.equal(e.param, param);
      if (code) assert.equal(e.code, code);
      assert.equal(e.type, "invalid_request_error");
      return true;
    });
  };
  await rejects(client.chat.completions.create({ ...base, temperature: 3 }), 400, "temperature");
  await rejects(client.chat.completions.create({ ...base, top_p: 0 }), 400, "top_p");
  await rejects(client.chat.completions.create({ ...base, n: 2 }), 400, "n");
  await rejects(client.chat.completions.create({ ...base, messages: [] }), 400, "messages");
  await rejects(
    client.chat.completions.create({ ...base, max_tokens: CONTEXT }),
    400,
    "max_tokens",
    "context_length_exceeded",
  );
  await rejects(client.completions.create({ model: "words", prompt: [60000] }), 400, "prompt");
  await rejects(client.chat.completions.create({ ...base, model: "gpt-4o" }), 404, "model", "model_not_found");
});

test("bad JSON, a body over the limit, an unknown path and a wrong method get errors in the same shape", async () => {
  const post = (path: string, body: string) =>
    fetch(`${server.url}${path}`, { method: "POST", headers: { "content-type": "application/json" }, body });
  const badJson = await post("v1/chat/completions", '{"model": "words", "messages": [');
  assert.equal(badJson.status, 400);
  const e = ((await badJson.json()) as { error: Record<string, unknown> }).error;
  assert.deepEqual(Object.keys(e).sort(), ["code", "message", "param", "type"]);
  assert.equal(e.code, "invalid_json");
  assert.match(String(e.message), /not valid JSON/);

  const huge = await post("v1/completions", JSON.stringify({ model: "words", prompt: "x".repeat(4 << 20) }));
  assert.equal(huge.status, 413);
  assert.equal(((await huge.json()) as { error: { code: string } }).error.code, "request_too_large");

  assert.equal((await fetch(`${server.url}v1/embeddings`)).status, 404);
  const get = await fetch(`${server.url}v1/chat/completions`);
  assert.equal(get.status, 405);
  assert.equal(get.headers.get("allow"), "POST");
  assert.equal((await client.models.list()).data.length, 1, "and the server still answers");
});

test("a client that disconnects mid-stream stops its generation; the next request is served", async () => {
  const stream = await client.chat.completions.create({
    model: "words",
    messages: [{ role: "user", content: "Tell me a long story." }],
    max_tokens: 1000,
    temperature: 0,
    stream: true,
  });
  let pieces = 0;
  for await (const chunk of stream) {
    if (chunk.choices[0]?.delta.content && ++pieces === 3) break; // leaving the loop aborts the request
  }
  const m = await server.waitForStderr(/client disconnected after (\d+) tokens/);
  assert.ok(Number(m[1]) >= 3 && Number(m[1]) < 200, `stopped after ${m[1]} of 1000 tokens`);
  const next = await client.chat.completions.create({
    model: "words",
    messages: [{ role: "user", content: "hi" }],
    max_tokens: 3,
  });
  assert.equal(next.usage?.completion_tokens, 3);
});

test("an instruction model answers in its prompt style, as `llmctl instruct` does", async () => {
  const dir = join(root, "instruct");
  await saveWordModel(dir, { contextLength: 256, promptStyle: "alpaca" });
  const instruct = await runCli(["instruct", "-m", dir, "Name a color.", "-n", "10", "--json"], { env: cliEnv() });
  assert.equal(instruct.code, 0, instruct.stderr);
  const styled = await startServe(["--model", dir, "--name", "sft"]);
  try {
    const c = new OpenAI({ baseURL: `${styled.url}v1`, apiKey: "unused", maxRetries: 0 });
    const r = await c.chat.completions.create({
      model: "sft",
      messages: [{ role: "user", content: "Name a color." }],
      max_tokens: 10,
      temperature: 0,
    });
    assert.equal(r.choices[0].message.content, JSON.parse(instruct.stdout).response);
  } finally {
    await styled.stop("SIGKILL");
  }
});

test("Ctrl-C (SIGINT) shuts down cleanly: a stream in progress is ended, the process exits 0", async () => {
  const stream = await client.chat.completions.create({
    model: "words",
    messages: [{ role: "user", content: "Go on and on." }],
    max_tokens: 1000,
    temperature: 0,
    stream: true,
  });
  let seen = "";
  let stopping: Promise<number | null> | undefined;
  const reading = (async () => {
    for await (const chunk of stream) {
      seen += chunk.choices[0]?.delta.content ?? "";
      if (seen.length > 0 && !stopping) stopping = server.stop("SIGINT");
    }
  })();
  await assert.rejects(reading, /shutting down/);
  assert.equal(await stopping, 0);
  assert.match(server.stderr(), /shutting down/);
});

test("--api-key: /v1 needs Authorization: Bearer KEY (401 in OpenAI's shape otherwise); the chat page itself is open", async () => {
  const keyed = await startServe(["--model", modelDir, "--api-key", "s3cret-key"]);
  try {
    const wrong = new OpenAI({ baseURL: `${keyed.url}v1`, apiKey: "nope-nope", maxRetries: 0 });
    await assert.rejects(wrong.models.list(), (e: unknown) => {
      assert.ok(e instanceof OpenAI.APIError);
      assert.equal(e.status, 401);
      assert.equal(e.code, "invalid_api_key");
      return true;
    });
    const bare = await fetch(`${keyed.url}v1/models`);
    assert.equal(bare.status, 401);
    const right = new OpenAI({ baseURL: `${keyed.url}v1`, apiKey: "s3cret-key", maxRetries: 0 });
    assert.equal((await right.models.list()).data[0].id, "words");
    assert.equal((await fetch(keyed.url)).status, 200, "the chat page loads, and asks for the key");
  } finally {
    await keyed.stop("SIGKILL");
  }
});

test("a web page from another origin cannot make the model generate; --cors ORIGIN lets that one in", async () => {
  const body = JSON.stringify({ model: "words", prompt: "the", max_tokens: 1 });
  // its own server: the shared one is stopped by the Ctrl-C test
  const open = await startServe(["--model", modelDir, "--cors", "http://localhost:3000"]);
  try {
    // a form on another site needs no preflight: refused before anything is generated
    const foreign = await fetch(`${open.url}v1/completions`, {
      method: "POST",
      headers: { origin: "http://evil.example", "content-type": "text/plain" },
      body,
    });
    assert.equal(foreign.status, 403);
    assert.equal(((await foreign.json()) as { error: { code: string } }).error.code, "origin_not_allowed");
    const same = await fetch(`${open.url}v1/completions`, {
      method: "POST",
      headers: { origin: open.url.replace(/\/$/, ""), "content-type": "application/json" },
      body,
    });
    assert.equal(same.status, 200, "the chat page's own origin");
    const pre = await fetch(`${open.url}v1/completions`, {
      method: "OPTIONS",
      headers: { origin: "http://localhost:3000", "access-control-request-method": "POST" },
    });
    assert.equal(pre.status, 204);
    assert.equal(pre.headers.get("access-control-allow-origin"), "http://localhost:3000");
    assert.match(pre.headers.get("access-control-allow-headers") ?? "", /authorization/);
    const ok = await fetch(`${open.url}v1/completions`, {
      method: "POST",
      headers: { origin: "http://localhost:3000", "content-type": "application/json" },
      body,
    });
    assert.equal(ok.status, 200);
    assert.equal(ok.headers.get("access-control-allow-origin"), "http://localhost:3000");
  } finally {
    await open.stop("SIGKILL");
  }
});

test("serve --host 0.0.0.0 without a key warns on stderr; with one, or on loopback, it does not", async () => {
  const run = async (args: string[]) => {
    const child = spawn(
      process.execPath,
      [join(REPO_ROOT, "bin", "llmctl"), "serve", "-m", modelDir, "--port", "0", ...args],
      {
        env: { ...process.env, ...cliEnv() },
        stdio: ["ignore", "pipe", "pipe"],
      },
    );
    let out = "";
    let err = "";
    child.stderr.on("data", (d) => (err += d));
    await new Promise<void>((resolve) =>
      child.stdout.on("data", (d) => ((out += d), /serving/.test(out) && resolve())),
    );
    await new Promise((r) => setTimeout(r, 200));
    child.kill("SIGKILL");
    return err;
  };
  assert.match(
    await run(["--host", "0.0.0.0"]),
    /warning: serving on 0\.0\.0\.0, reachable from other machines.*--api-key/,
  );
  assert.doesNotMatch(await run(["--host", "0.0.0.0", "--api-key", "s3cret-key"]), /warning/);
  assert.doesNotMatch(await run([]), /warning/);
});

test("a prompt of token ids with a fraction is 'not an integer', not outside the vocabulary", async () => {
  const own = await startServe(["--model", modelDir]);
  try {
    const r = await fetch(`${own.url}v1/completions`, {
      method: "POST",
      headers: { "content-type": "application/json" },
      body: JSON.stringify({ model: "words", prompt: [1.5] }),
    });
    assert.equal(r.status, 400);
    assert.match(((await r.json()) as { error: { message: string } }).error.message, /token id 1\.5 is not an integer/);
  } finally {
    await own.stop("SIGKILL");
  }
});
