/** Stopping generation (a signal, stop strings), generation as text, and the chat templates. */
import { test, before, after } from "node:test";
import assert from "node:assert/strict";
import * as tf from "@tensorflow/tfjs";
import { useBackend } from "../src/backend/index.js";
import { UsageError } from "../src/errors.js";
import type { GPTModel } from "../src/model/gpt.js";
import { generate } from "../src/generate/generate.js";
import { generateText } from "../src/generate/generate-text.js";
import { StopSequences } from "../src/generate/stop-sequences.js";
import { chatPrompt } from "../src/generate/chat-template.js";
import { formatExample, formatPrompt, responseHeader } from "../src/generate/prompt-style.js";
import { END_OF_TEXT_ID, getTokenizer } from "../src/tokenizer/index.js";
import { expected, fixtureModel } from "./helpers/fixture.js";

const tok = getTokenizer();
let gpt: GPTModel;
const prompt = expected.cases[0].ids; // "Every effort moves you"

before(async () => {
  await useBackend("cpu");
  gpt = await fixtureModel();
});

after(() => gpt?.dispose());

test("an aborted signal ends generation before the next token, and the event loop runs between tokens", async () => {
  const controller = new AbortController();
  let timerRan = 0;
  const timer = setInterval(() => timerRan++, 0);
  const seen: number[] = [];
  try {
    const r = await generate(gpt, prompt, {
      maxNewTokens: 20,
      temperature: 0,
      onToken: (id) => {
        seen.push(id);
        if (seen.length === 5) controller.abort();
      },
      signal: controller.signal,
    });
    assert.equal(r.ids.length, 5);
    assert.deepEqual(r.ids, expected.cases[0].greedy_continuation.slice(0, 5));
    assert.equal(r.aborted, true);
    assert.ok(timerRan >= 1, "timers fire while generating");
  } finally {
    clearInterval(timer);
  }
  const full = await generate(gpt, prompt, { maxNewTokens: 3, temperature: 0, signal: new AbortController().signal });
  assert.equal(full.aborted, false);
  const before = await generate(gpt, prompt, { maxNewTokens: 3, temperature: 0, signal: AbortSignal.abort() });
  assert.deepEqual([before.ids, before.aborted], [[], true]);
});

test("stop strings are found across pieces; text that might start one is held back until it cannot", () => {
  const s = new StopSequences(["\nUser:", "END"]);
  assert.equal(s.push("Hello"), "Hello");
  assert.equal(s.push(" there\nUs"), " there"); // "\nUs" may begin "\nUser:"
  assert.equal(s.push("ually"), "\nUsually");
  assert.equal(s.push(" E"), " ");
  assert.equal(s.push("xtra: END and more"), "Extra: ");
  assert.equal(s.stopped, true);
  assert.equal(s.push("anything"), "");
  assert.equal(s.flush(), "");

  const held = new StopSequences(["###"]);
  assert.equal(held.push("a #"), "a ");
  assert.equal(held.flush(), "#", "at the end, held text was not a stop string");
  assert.equal(new StopSequences([]).push("x"), "x");
});

test("generateText: the text of `generate`, cut before a stop string, streamed in the same pieces", async () => {
  const ids = (await generate(gpt, prompt, { maxNewTokens: 12, temperature: 0 })).ids;
  const full = tok.decode(ids);
  const pieces: string[] = [];
  const r = await generateText(gpt, tok, prompt, { maxNewTokens: 12, temperature: 0, onText: (t) => pieces.push(t) });
  assert.equal(r.text, full);
  assert.equal(pieces.join(""), full);
  assert.deepEqual([r.tokens, r.finishReason], [12, "length"]);

  const stop = tok.decode(ids.slice(3, 5));
  const cut = await generateText(gpt, tok, prompt, { maxNewTokens: 12, temperature: 0, stop: [stop] });
  assert.equal(cut.text, full.slice(0, full.indexOf(stop)));
  assert.equal(cut.finishReason, "stop");
  assert.ok(cut.tokens <= 5, `generation stopped at the stop string (${cut.tokens} tokens)`);

  const trimmed = await generateText(gpt, tok, prompt, { maxNewTokens: 12, temperature: 0, trimStart: true });
  assert.equal(trimmed.text, full.trimStart());

  const controller = new AbortController();
  const aborted = await generateText(gpt, tok, prompt, {
    maxNewTokens: 12,
    temperature: 0,
    signal: controller.signal,
    onText: () => controller.abort(),
  });
  assert.equal(aborted.finishReason, "aborted");
});

test("generateText ends at <|endoftext|> without writing it", async () => {
  const eosModel = await fixtureModel();
  try {
    // make end-of-text the certain first token: the head is tied, so a token's logit is h · wte[token]; copy the
    // row of the greedy pick (the largest, positive logit) into row 50256, scaled up 1000 times
    const [top] = expected.cases[0].greedy_continuation;
    const wte = eosModel.namedWeights().get("wte.weight")!;
    const w = (await wte.read().data()).slice();
    const d = eosModel.config.emb_dim;
    for (let j = 0; j < d; j++) w[END_OF_TEXT_ID * d + j] = w[top * d + j] * 1000;
    wte.write(tf.tensor(w, wte.shape as number[]));
    const r = await generateText(eosModel, tok, prompt, { maxNewTokens: 5, temperature: 0 });
    assert.deepEqual([r.text, r.tokens, r.finishReason], ["", 1, "stop"]);
    const past = await generateText(eosModel, tok, prompt, { maxNewTokens: 2, temperature: 0, stopAtEndOfText: false });
    assert.ok(past.text.startsWith("<|endoftext|>"), past.text);
    assert.equal(past.finishReason, "length");
  } finally {
    eosModel.dispose();
  }
});

test("the plain chat template: User:/Assistant: lines, system as a paragraph, stop at the next User: line", () => {
  const p = chatPrompt(tok, [
    { role: "system", content: "Be brief." },
    { role: "user", content: "Hi" },
    { role: "assistant", content: "Hello." },
    { role: "user", content: "Name a color <|endoftext|>" },
  ]);
  assert.equal(p.text, "Be brief.\n\nUser: Hi\nAssistant: Hello.\nUser: Name a color <|endoftext|>\nAssistant:");
  assert.deepEqual(p.ids, tok.encode(p.text, { allowedSpecial: [] }), "a typed <|endoftext|> is ordinary text");
  assert.ok(!p.ids.includes(END_OF_TEXT_ID));
  assert.deepEqual(p.stop, ["\nUser:"]);
});

test("an instruction model's template: earlier exchanges as training examples ending in <|endoftext|>", () => {
  for (const style of ["alpaca", "phi3"] as const) {
    const p = chatPrompt(
      tok,
      [
        { role: "user", content: "Name a color." },
        { role: "assistant", content: "Red." },
        { role: "system", content: "Answer in one word." },
        { role: "user", content: "Another?" },
        { role: "user", content: "Not red." },
      ],
      style,
    );
    const first = formatExample({ instruction: "Name a color.", input: "", output: "Red." }, style);
    const last = formatPrompt({ instruction: "Another?\n\nNot red.", input: "" }, style) + responseHeader(style);
    assert.equal(p.text, `${first}<|endoftext|>Answer in one word.\n\n${last}`);
    assert.deepEqual(p.ids, [
      ...tok.encode(first, { allowedSpecial: [] }),
      END_OF_TEXT_ID,
      ...tok.encode(`Answer in one word.\n\n${last}`, { allowedSpecial: [] }),
    ]);
    assert.deepEqual(p.stop, []);
  }
  assert.throws(() => chatPrompt(tok, []), UsageError);
  assert.throws(
    () =>
      chatPrompt(tok, [
        { role: "user", content: "Hi" },
        { role: "assistant", content: "Hello" },
      ]),
    /the last message is the assistant's/,
  );
});
