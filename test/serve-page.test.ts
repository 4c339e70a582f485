// test: first backend pass only (the chat page in a browser; the server's answers are checked by serve in this pass)
/**
 * The chat page of `llmctl serve` in a real headless browser: Debian's chromium driven by playwright-core. CI
 * installs chromium (.ci/run); where it is absent, this test skips and says so (and fails under CI=true).
 */
import { test, before, after } from "node:test";
import assert from "node:assert/strict";
import { existsSync } from "node:fs";
import { mkdtemp, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { chromium, type BrowserContext } from "playwright-core";
import { useBackend } from "../src/backend/index.js";
import { startServe, type ServeProcess } from "./helpers/serve.js";
import { saveWordModel, WORDS } from "./helpers/word-model.js";

const CHROMIUM = "/usr/bin/chromium";
// without the background-networking flags Chromium's own connections are refused by a closed network
const CHROMIUM_ARGS = [
  "--headless",
  "--no-sandbox",
  "--disable-gpu",
  "--disable-quic",
  "--no-first-run",
  "--disable-background-networking",
  "--disable-component-update",
  "--disable-sync",
];

const missing = existsSync(CHROMIUM)
  ? false
  : `${CHROMIUM} is not installed (apt-get install -y chromium); the chat page test needs a real browser`;
if (missing && process.env.CI) throw new Error(`${missing} — CI must run it (.ci/run installs it)`);

let root: string;
let server: ServeProcess;
let browser: BrowserContext;

before(async () => {
  if (missing) return;
  await useBackend("cpu");
  root = await mkdtemp(join(tmpdir(), "llmctl-serve-page-"));
  await saveWordModel(join(root, "words"), { contextLength: 1024 });
  server = await startServe(["--model", join(root, "words")]);
  browser = await chromium.launchPersistentContext(join(root, "chromium-profile"), {
    executablePath: CHROMIUM,
    headless: true,
    args: CHROMIUM_ARGS,
  });
});

after(async () => {
  await browser?.close();
  await server?.stop();
  if (root) await rm(root, { recursive: true, force: true });
});

test(
  "the chat page: type a message, the reply streams in piece by piece, and equals the API's answer",
  { skip: missing },
  async (t) => {
    const page = await browser.newPage();
    page.setDefaultTimeout(120_000); // a loaded 2-core machine can be many times slower than an idle one
    await page.goto(server.url);
    await page.locator("#model").filter({ hasText: "words" }).waitFor();
    await page.fill("#temperature", "0");
    await page.fill("#max-tokens", "40");
    // record every text the reply shows while it streams
    await page.evaluate(() => {
      const seen: string[] = [];
      (window as unknown as { seen: string[] }).seen = seen;
      new MutationObserver(() => {
        const reply = document.querySelector(".assistant");
        if (reply && reply.textContent !== seen[seen.length - 1]) seen.push(reply.textContent ?? "");
      }).observe(document.getElementById("messages")!, { subtree: true, childList: true, characterData: true });
    });
    await page.fill("#prompt", "Name a color.");
    await page.keyboard.press("Enter");
    const reply = page.locator(".assistant");
    await page.locator('.assistant[data-state="done"]').waitFor();
    const text = (await reply.textContent()) ?? "";
    const seen = await page.evaluate(() => (window as unknown as { seen: string[] }).seen);

    const api = await fetch(`${server.url}v1/chat/completions`, {
      method: "POST",
      headers: { "content-type": "application/json" },
      body: JSON.stringify({
        model: "words",
        messages: [{ role: "user", content: "Name a color." }],
        temperature: 0,
        max_tokens: 40,
      }),
    });
    const expected = ((await api.json()) as { choices: { message: { content: string } }[] }).choices[0].message.content;
    assert.equal(text, expected);
    assert.ok(
      text.split(" ").every((w) => WORDS.includes(` ${w}`)),
      text,
    );
    const partial = seen.filter((s) => s !== "" && s !== text);
    assert.ok(partial.length >= 5, `the reply grew as it streamed: ${JSON.stringify(seen)}`);
    assert.ok(
      partial.every((s) => text.startsWith(s)),
      "each shown state is a beginning of the answer",
    );
    assert.equal(await page.locator(".user").textContent(), "Name a color.");
    t.diagnostic(`the reply showed ${partial.length} partial states before its final ${JSON.stringify(text)}`);

    // a second message continues the conversation: the page sends the whole of it
    await page.fill("#prompt", "And another?");
    await page.click("#send");
    await page.locator('.assistant[data-state="done"]').nth(1).waitFor();
    assert.equal(await page.locator(".assistant").count(), 2);

    // Stop closes the connection mid-answer (no max tokens: up to the context), and the server stops generating
    await page.fill("#max-tokens", "");
    await page.fill("#prompt", "Tell me everything.");
    await page.click("#send");
    const third = page.locator(".assistant").nth(2);
    await page.waitForFunction(() => (document.querySelectorAll(".assistant")[2]?.textContent ?? "").length > 0);
    await page.click("#stop");
    await page.locator('.assistant[data-state="stopped"]').waitFor();
    const m = await server.waitForStderr(/client disconnected after (\d+) tokens/);
    assert.ok(Number(m[1]) < 900, `stopped after ${m[1]} tokens`);
    t.diagnostic(`Stop: the server stopped generating after ${m[1]} tokens`);
    assert.ok(((await third.textContent()) ?? "").length > 0);
    await page.close();
  },
);
