// test: first backend pass only (the Ollama judge protocol, no tensors)
import { test } from "node:test";
import assert from "node:assert/strict";
import http from "node:http";
import type { AddressInfo } from "node:net";
import { mkdtemp, readFile, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { OllamaClient } from "../src/judge/ollama.js";
import { judgePrompt, parseScore, scoreResponses } from "../src/judge/evaluate.js";
import { NetworkError } from "../src/errors.js";
import { runCli } from "./helpers/cli.js";

interface ChatRequest {
  model: string;
  messages: { role: string; content: string }[];
  options: Record<string, unknown>;
}

type Handler = (req: ChatRequest, res: http.ServerResponse, n: number) => void | Promise<void>;

/** A stand-in Ollama on 127.0.0.1: collects request bodies, lets each test decide how to answer. */
async function fakeOllama(
  handler: Handler,
): Promise<{ url: string; requests: ChatRequest[]; close: () => Promise<void> }> {
  const requests: ChatRequest[] = [];
  const server = http.createServer((req, res) => {
    let body = "";
    req.on("data", (d) => (body += d));
    req.on("end", () => {
      if (req.method !== "POST" || req.url !== "/api/chat") {
        res.writeHead(404).end("404 page not found");
        return;
      }
      const parsed = JSON.parse(body) as ChatRequest;
      requests.push(parsed);
      void handler(parsed, res, requests.length);
    });
  });
  await new Promise<void>((r) => server.listen(0, "127.0.0.1", r));
  const { port } = server.address() as AddressInfo;
  return {
    url: `http://127.0.0.1:${port}`,
    requests,
    close: () => new Promise<void>((r) => server.close(() => r())).then(() => undefined),
  };
}

const line = (content: string, done = false) =>
  JSON.stringify({
    model: "llama3",
    created_at: "2026-11-29T00:00:00Z",
    message: { role: "assistant", content },
    done,
  }) + "\n";

/** Stream `pieces` as Ollama does: chunked transfer, one NDJSON line per piece, then a done line. */
async function streamReply(res: http.ServerResponse, pieces: string[]): Promise<void> {
  res.writeHead(200, { "content-type": "application/x-ndjson" });
  const text = pieces.map((p) => line(p)).join("") + line("", true);
  // cut the stream at arbitrary byte positions, so lines arrive split across chunks
  for (let i = 0; i < text.length; i += 7) {
    res.write(text.slice(i, i + 7));
    await new Promise((r) => setImmediate(r));
  }
  res.end();
}

const entry = (response: string) => ({
  instruction: "Name the author of 'Pride and Prejudice'.",
  input: "",
  output: "Jane Austen.",
  model_response: response,
});

test("judge prompt is the book's wording", () => {
  assert.equal(
    judgePrompt({
      instruction: "Rewrite the sentence using a simile.",
      input: "The car is very fast.",
      output: "The car is as fast as lightning.",
      model_response: "The car is as fast as a bullet.",
    }),
    "Given the input `Below is an instruction that describes a task. Write a response that appropriately completes the request." +
      "\n\n### Instruction:\nRewrite the sentence using a simile.\n\n### Input:\nThe car is very fast.` " +
      "and correct output `The car is as fast as lightning.`, score the model response `The car is as fast as a bullet.` " +
      "on a scale from 0 to 100, where 100 is the best score. Respond with the integer number only.",
  );
});

test("parseScore takes integers 0-100 only", () => {
  assert.equal(parseScore("85"), 85);
  assert.equal(parseScore(" 100\n"), 100);
  assert.equal(parseScore("0"), 0);
  assert.equal(parseScore("85.5"), undefined);
  assert.equal(parseScore("Score: 85"), undefined);
  assert.equal(parseScore("101"), undefined);
  assert.equal(parseScore(""), undefined);
});

test("streamed NDJSON pieces are concatenated; the request follows Ollama's chat API", async () => {
  const server = await fakeOllama((_req, res) => streamReply(res, ["8", "5"]));
  try {
    const client = new OllamaClient({ url: server.url, model: "llama3" });
    assert.equal(await client.chat("hello"), "85");
    assert.deepEqual(server.requests[0], {
      model: "llama3",
      messages: [{ role: "user", content: "hello" }],
      options: { seed: 123, temperature: 0, num_ctx: 2048 },
    });
  } finally {
    await server.close();
  }
});

test("scores are averaged; a non-integer reply is reported and skipped; an empty response scores 0", async () => {
  const replies: Record<string, string[]> = { A: ["9", "0"], B: ["I would say", " 70."], C: ["6", "0\n"] };
  const server = await fakeOllama((req, res) => {
    const which = /model response `(\w)`/.exec(req.messages[0].content)![1];
    return streamReply(res, replies[which]);
  });
  try {
    const client = new OllamaClient({ url: server.url });
    const result = await scoreResponses([entry("A"), entry("B"), entry("C"), entry("")], client, { concurrency: 2 });
    assert.equal(result.scored, 3);
    assert.equal(result.skipped, 1);
    assert.equal(result.average, (90 + 60 + 0) / 3);
    assert.deepEqual(result.entries[1], { index: 1, reply: "I would say 70." });
    assert.deepEqual(result.entries[3], { index: 3, score: 0 });
    assert.equal(server.requests.length, 3, "the empty response is not sent to the judge");
  } finally {
    await server.close();
  }
});

test("a model that is not pulled (404) names `ollama pull`", async () => {
  const server = await fakeOllama((_req, res) => {
    res
      .writeHead(404, { "content-type": "application/json" })
      .end(JSON.stringify({ error: 'model "llama3" not found, try pulling it first' }));
  });
  try {
    const client = new OllamaClient({ url: server.url, model: "llama3", retryDelayMs: 1 });
    await assert.rejects(
      client.chat("x"),
      (err: Error) =>
        err instanceof NetworkError &&
        /not found/.test(err.message) &&
        /ollama pull llama3/.test((err as NetworkError).fix ?? ""),
    );
    assert.equal(server.requests.length, 1, "a 404 is not retried");
  } finally {
    await server.close();
  }
});

test("a garbage reply is a clear error, not a score", async () => {
  const server = await fakeOllama((_req, res) => {
    res.writeHead(200, { "content-type": "text/html" }).end("<html>hello</html>\n");
  });
  try {
    const client = new OllamaClient({ url: server.url, retryDelayMs: 1 });
    await assert.rejects(client.chat("x"), /did not answer in Ollama's format/);
  } finally {
    await server.close();
  }
});

test("an error line inside the stream is reported", async () => {
  const server = await fakeOllama((_req, res) => {
    res.writeHead(200).end(JSON.stringify({ error: "model requires more system memory" }) + "\n");
  });
  try {
    await assert.rejects(
      new OllamaClient({ url: server.url }).chat("x"),
      /reported: model requires more system memory/,
    );
  } finally {
    await server.close();
  }
});

test("a connection dropped mid-reply is retried, and gives up after the bound", async () => {
  const dropThenAnswer = await fakeOllama(async (_req, res, n) => {
    if (n === 1) {
      res.writeHead(200);
      res.write(line("4"));
      await new Promise((r) => setImmediate(r));
      res.socket?.destroy();
      return;
    }
    await streamReply(res, ["42"]);
  });
  try {
    const client = new OllamaClient({ url: dropThenAnswer.url, attempts: 3, retryDelayMs: 1 });
    assert.equal(await client.chat("x"), "42", "the partial '4' of the dropped reply is discarded");
    assert.equal(dropThenAnswer.requests.length, 2);
  } finally {
    await dropThenAnswer.close();
  }

  const alwaysDrop = await fakeOllama((_req, res) => {
    res.socket?.destroy();
  });
  try {
    const client = new OllamaClient({ url: alwaysDrop.url, attempts: 3, retryDelayMs: 1 });
    await assert.rejects(client.chat("x"), /failed 3 times/);
    assert.equal(alwaysDrop.requests.length, 3);
  } finally {
    await alwaysDrop.close();
  }
});

test("a server error (503) is retried", async () => {
  const server = await fakeOllama((_req, res, n) =>
    n < 3 ? void res.writeHead(503).end("busy") : streamReply(res, ["77"]),
  );
  try {
    assert.equal(await new OllamaClient({ url: server.url, attempts: 3, retryDelayMs: 1 }).chat("x"), "77");
  } finally {
    await server.close();
  }
});

test("no server listening: 'is Ollama running?'", async () => {
  // a port that was free a moment ago
  const probe = http.createServer();
  await new Promise<void>((r) => probe.listen(0, "127.0.0.1", r));
  const { port } = probe.address() as AddressInfo;
  await new Promise<void>((r) => probe.close(() => r()));
  const client = new OllamaClient({ url: `http://127.0.0.1:${port}` });
  await assert.rejects(
    client.chat("x"),
    (err: Error) => err instanceof NetworkError && /ollama serve/.test((err as NetworkError).fix ?? ""),
  );
});

test("concurrency limits the requests in flight", async () => {
  let inFlight = 0;
  let maxInFlight = 0;
  const waiting: (() => void)[] = [];
  const server = await fakeOllama(async (_req, res) => {
    inFlight++;
    maxInFlight = Math.max(maxInFlight, inFlight);
    // hold each reply until a second request is in flight (or 2 s pass, so a serial client cannot hang)
    if (inFlight < 2)
      await new Promise<void>((r) => {
        waiting.push(r);
        setTimeout(r, 2000);
      });
    else waiting.splice(0).forEach((r) => r());
    inFlight--;
    await streamReply(res, ["50"]);
  });
  try {
    const client = new OllamaClient({ url: server.url });
    const result = await scoreResponses(
      Array.from({ length: 6 }, (_, i) => entry(`r${i}`)),
      client,
      { concurrency: 2 },
    );
    assert.equal(result.scored, 6);
    assert.equal(result.average, 50);
    assert.equal(maxInFlight, 2);
  } finally {
    await server.close();
  }
});

test("llmctl evaluate --json prints and saves the scores", async () => {
  const dir = await mkdtemp(join(tmpdir(), "llmctl-eval-"));
  const server = await fakeOllama((req, res) =>
    streamReply(res, [/`yes`/.test(req.messages[0].content) ? "80" : "oops"]),
  );
  try {
    const file = join(dir, "instruction-data-with-response.json");
    await writeFile(file, JSON.stringify([entry("yes"), entry("yes"), entry("no"), entry("yes")], null, 2));
    const r = await runCli(["evaluate", "--responses", file, "--judge-url", server.url, "--json"]);
    assert.equal(r.code, 0, r.stderr);
    assert.deepEqual(JSON.parse(r.stdout), { scored: 3, skipped: 1, average: 80 });
    assert.match(r.stderr, /entry 2: could not convert score: "oops"/);
    const saved = JSON.parse(await readFile(join(dir, "instruction-data-with-response.scores.json"), "utf8"));
    assert.equal(saved.average, 80);
    assert.equal(saved.judge.model, "llama3");
    assert.equal(saved.entries.length, 4);

    await writeFile(file, JSON.stringify([{ instruction: "a", input: "", output: "b" }]));
    const bad = await runCli(["evaluate", "--responses", file, "--judge-url", server.url]);
    assert.equal(bad.code, 1);
    assert.match(bad.stderr, /entry 0 of .* has no "model_response"/);
  } finally {
    await server.close();
    await rm(dir, { recursive: true, force: true });
  }
});

test("a judge that accepts and never answers times out, saying after how long; -r missing names --responses", async () => {
  const dir = await mkdtemp(join(tmpdir(), "llmctl-eval-hang-"));
  // accepts the request, then says nothing
  const silent = await fakeOllama(() => new Promise<void>(() => {}));
  try {
    const client = new OllamaClient({ url: silent.url, attempts: 2, retryDelayMs: 1, timeoutMs: 200 });
    await assert.rejects(client.chat("x"), /failed 2 times: no reply within 0\.2 s/);
    assert.equal(silent.requests.length, 2);

    const file = join(dir, "responses.json");
    await writeFile(file, JSON.stringify([entry("yes")]));
    const r = await runCli(["evaluate", "-r", file, "--judge-url", silent.url, "--timeout", "0.5", "--retries", "0"]);
    assert.equal(r.code, 1, r.stderr);
    assert.match(r.stderr, /failed 1 times: no reply within 0\.5 s/);
    const bad = await runCli(["evaluate", "-r", file, "--timeout", "0"]);
    assert.equal(bad.code, 2);
    assert.match(bad.stderr, /--timeout must be a positive number of seconds up to 2147483 \(24.8 days\), got 0/);
  } finally {
    await silent.close();
  }
  const missing = await runCli(["evaluate", "-r", join(dir, "missing.json")]);
  assert.equal(missing.code, 1);
  assert.match(missing.stderr, /instruction data not found: .*missing\.json — check the --responses path/);
  await rm(dir, { recursive: true, force: true });
});

test("a judge that trickles a byte at a time is stopped by --max-time; a reply without a newline is capped at 1 MiB", async () => {
  const trickle = await fakeOllama((_req, res) => {
    res.writeHead(200, { "content-type": "application/x-ndjson" });
    const timer = setInterval(() => res.write(" "), 50);
    res.on("close", () => clearInterval(timer));
  });
  const flood = await fakeOllama((_req, res) => {
    res.writeHead(200, { "content-type": "application/x-ndjson" });
    const chunk = "x".repeat(64 * 1024);
    const pump = () => {
      while (!res.destroyed && res.write(chunk));
      if (!res.destroyed) res.once("drain", pump);
    };
    pump();
  });
  try {
    const slow = new OllamaClient({ url: trickle.url, attempts: 1, timeoutMs: 1000, maxTimeMs: 600 });
    const start = performance.now();
    await assert.rejects(slow.chat("x"), /the reply took longer than 0\.6 s in all/);
    assert.ok(performance.now() - start < 5000);
    const big = new OllamaClient({ url: flood.url, attempts: 1 });
    await assert.rejects(big.chat("x"), /sent more than 1 MiB for one reply/);
    const rss = process.memoryUsage().rss;
    assert.ok(rss < 1.5 * 2 ** 30, `rss ${rss}`);
  } finally {
    await trickle.close();
    await flood.close();
  }
});

test("evaluate: none of the entries scored is exit 1 with one line; --timeout past Node's timers is a usage error", async () => {
  const dir = await mkdtemp(join(tmpdir(), "llmctl-eval-none-"));
  const server = await fakeOllama((_req, res) => streamReply(res, ["I cannot score that."]));
  try {
    const file = join(dir, "responses.json");
    await writeFile(file, JSON.stringify([entry("yes"), entry("no")]));
    const r = await runCli(["evaluate", "-r", file, "--judge-url", server.url, "--json"]);
    assert.equal(r.code, 1, r.stderr);
    assert.deepEqual(JSON.parse(r.stdout), { scored: 0, skipped: 2, average: null });
    const errors = r.stderr.split("\n").filter((l) => l.startsWith("llmctl:"));
    assert.equal(errors.length, 1, r.stderr);
    assert.match(errors[0], /none of the 2 responses could be scored.*— check that --judge-model llama3/);
    for (const flag of ["--timeout", "--max-time"]) {
      const huge = await runCli(["evaluate", "-r", file, "--judge-url", server.url, flag, "1e10"]);
      assert.equal(huge.code, 2, huge.stderr);
      assert.doesNotMatch(huge.stderr, /TimeoutOverflowWarning/);
      assert.match(huge.stderr, new RegExp(`^llmctl: ${flag} must be a positive number of seconds up to 2147483`));
    }
  } finally {
    await server.close();
    await rm(dir, { recursive: true, force: true });
  }
});
