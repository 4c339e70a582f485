// test: first backend pass only (HTTP downloads, no tensors)
/**
 * download() against a real HTTP server on 127.0.0.1 serving ../shared/datasets/the-verdict.txt:
 * checksums, resuming after a dropped connection, servers that ignore Range, 416, errors.
 */
import { test, before, after, beforeEach, afterEach } from "node:test";
import assert from "node:assert/strict";
import { createHash } from "node:crypto";
import { existsSync, readFileSync, writeFileSync, mkdtempSync, rmSync, readdirSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { pathToFileURL } from "node:url";
import { download, sha256File, cacheRoot } from "../src/data/download.js";
import { InterruptedError, NetworkError, errorLine } from "../src/errors.js";
import { sharedPath } from "./helpers/shared.js";
import { startTestServer, unusedPort, type TestServer } from "./helpers/http-server.js";

const VERDICT = readFileSync(sharedPath("datasets", "the-verdict.txt"));
const VERDICT_SHA = "b41e41a68f0398a3154ae69e2e4c0e2694e17fe0d66730536837f1b01935b31f";
const FAST = { retryDelayMs: 0, timeoutMs: 5000 };
const T = { timeout: 20_000 };

let server: TestServer;
let dir: string;

before(async () => {
  server = await startTestServer();
});
after(() => server.close());
beforeEach(() => {
  dir = mkdtempSync(join(tmpdir(), "llmctl-download-"));
  server.requests.length = 0;
});
afterEach(() => rmSync(dir, { recursive: true, force: true }));

test("the shared file is the one SOURCES.md describes", () => {
  assert.equal(VERDICT.length, 20_479);
  assert.equal(createHash("sha256").update(VERDICT).digest("hex"), VERDICT_SHA);
});

test("downloads, verifies sha256 and size, renames into place, reports progress", T, async () => {
  server.set("/ok.txt", VERDICT);
  const dest = join(dir, "sub", "the-verdict.txt");
  const progress: Array<[number, number | undefined]> = [];
  await download(server.url("/ok.txt"), dest, {
    sha256: VERDICT_SHA,
    expectedSize: VERDICT.length,
    onProgress: (r, t) => progress.push([r, t]),
    ...FAST,
  });
  assert.deepEqual(readFileSync(dest), VERDICT);
  assert.equal(existsSync(dest + ".part"), false);
  assert.equal(await sha256File(dest), VERDICT_SHA);
  assert.deepEqual(progress.at(-1), [VERDICT.length, VERDICT.length]);
  for (let i = 1; i < progress.length; i++) assert.ok(progress[i][0] >= progress[i - 1][0], "progress never goes back");
  assert.deepEqual(server.requests, [{ path: "/ok.txt", range: undefined, status: 200 }]);
});

test("a connection dropped mid-file is resumed with a Range request", T, async () => {
  server.set("/drop.txt", { body: VERDICT, dropAfter: 5000 });
  const dest = join(dir, "v.txt");
  await download(server.url("/drop.txt"), dest, { sha256: VERDICT_SHA, ...FAST });
  assert.deepEqual(readFileSync(dest), VERDICT);
  assert.deepEqual(server.requests, [
    { path: "/drop.txt", range: undefined, status: 200 },
    { path: "/drop.txt", range: "bytes=5000-", status: 206 },
  ]);
});

test("repeated drops keep resuming while each attempt makes progress", T, async () => {
  server.set("/flaky.txt", { body: VERDICT, dropAfter: 3000, dropTimes: 5 });
  const dest = join(dir, "v.txt");
  // retries: 1 would give up after two failures without progress; five drops with progress must still succeed.
  await download(server.url("/flaky.txt"), dest, { sha256: VERDICT_SHA, ...FAST, retries: 1 });
  assert.deepEqual(readFileSync(dest), VERDICT);
  assert.deepEqual(
    server.requests.map((r) => r.range),
    [undefined, "bytes=3000-", "bytes=6000-", "bytes=9000-", "bytes=12000-", "bytes=15000-"],
  );
});

test("a part file left by an earlier run is continued, not restarted", T, async () => {
  server.set("/v.txt", VERDICT);
  const dest = join(dir, "v.txt");
  writeFileSync(dest + ".part", VERDICT.subarray(0, 7000));
  const progress: number[] = [];
  await download(server.url("/v.txt"), dest, { sha256: VERDICT_SHA, onProgress: (r) => progress.push(r), ...FAST });
  assert.deepEqual(readFileSync(dest), VERDICT);
  assert.deepEqual(server.requests, [{ path: "/v.txt", range: "bytes=7000-", status: 206 }]);
  assert.equal(progress[0], 7000);
});

test("a server that ignores Range (200) makes the download start over", T, async () => {
  server.set("/norange.txt", { body: VERDICT, ignoreRange: true });
  const dest = join(dir, "v.txt");
  writeFileSync(dest + ".part", Buffer.from("these bytes are not the start of the file"));
  await download(server.url("/norange.txt"), dest, { sha256: VERDICT_SHA, ...FAST });
  assert.deepEqual(readFileSync(dest), VERDICT);
  assert.deepEqual(server.requests, [{ path: "/norange.txt", range: "bytes=41-", status: 200 }]);
});

test("416 on a part file that is already complete finishes without re-downloading", T, async () => {
  server.set("/v.txt", VERDICT);
  const dest = join(dir, "v.txt");
  writeFileSync(dest + ".part", VERDICT);
  await download(server.url("/v.txt"), dest, { sha256: VERDICT_SHA, ...FAST });
  assert.deepEqual(readFileSync(dest), VERDICT);
  assert.deepEqual(server.requests, [{ path: "/v.txt", range: `bytes=${VERDICT.length}-`, status: 416 }]);
});

test("with expectedSize, a complete part file is verified without any request", T, async () => {
  const dest = join(dir, "v.txt");
  writeFileSync(dest + ".part", VERDICT);
  await download(server.url("/never-asked.txt"), dest, { sha256: VERDICT_SHA, expectedSize: VERDICT.length, ...FAST });
  assert.deepEqual(readFileSync(dest), VERDICT);
  assert.equal(server.requests.length, 0);
});

test("a wrong checksum throws a clear NetworkError and leaves no file behind", T, async () => {
  const corrupted = Buffer.from(VERDICT);
  corrupted[100] ^= 0x20;
  server.set("/bad.txt", corrupted);
  const dest = join(dir, "v.txt");
  await assert.rejects(download(server.url("/bad.txt"), dest, { sha256: VERDICT_SHA, ...FAST }), (err: unknown) => {
    assert.ok(err instanceof NetworkError);
    assert.match(
      err.message,
      /^checksum mismatch for http:\/\/127\.0\.0\.1:\d+\/bad\.txt: expected sha256 b41e41a6\w+, got [0-9a-f]{64}/,
    );
    assert.doesNotMatch(err.message, /\n/);
    return true;
  });
  assert.deepEqual(readdirSync(dir), []);
});

test("a wrong size is refused the same way", T, async () => {
  server.set("/short.txt", VERDICT.subarray(0, 100));
  const dest = join(dir, "v.txt");
  await assert.rejects(
    download(server.url("/short.txt"), dest, { expectedSize: VERDICT.length, ...FAST }),
    /expected 20479 bytes, got 100/,
  );
  assert.deepEqual(readdirSync(dir), []);
});

test("404 is a NetworkError naming the URL, the status and the fix", T, async () => {
  const url = server.url("/missing.txt");
  await assert.rejects(download(url, join(dir, "x"), { ...FAST, fix: "try --data FILE" }), (err: unknown) => {
    assert.ok(err instanceof NetworkError);
    assert.equal(errorLine(err), `could not download ${url}: HTTP 404 Not Found — try --data FILE`);
    return true;
  });
  assert.deepEqual(
    server.requests.map((r) => r.status),
    [404],
    "a 404 is not retried",
  );
  assert.deepEqual(readdirSync(dir), []);
});

test("an unreachable host fails at once with a NetworkError naming the URL", T, async () => {
  const url = `http://127.0.0.1:${await unusedPort()}/the-verdict.txt`;
  await assert.rejects(download(url, join(dir, "x"), FAST), (err: unknown) => {
    assert.ok(err instanceof NetworkError);
    assert.match(err.message, new RegExp(`^could not download ${url.replace(/\./g, "\\.")}: connection refused`));
    assert.ok(err.fix && /network/.test(err.fix));
    return true;
  });
});

test("a server that never answers times out and gives up after the retries", T, async () => {
  server.set("/stall", { body: VERDICT, stall: true });
  await assert.rejects(
    download(server.url("/stall"), join(dir, "x"), { timeoutMs: 200, retries: 1, retryDelayMs: 0 }),
    (err: unknown) => {
      assert.ok(err instanceof NetworkError);
      assert.match(err.message, /no response for 0 s \(gave up after 2 attempts\)$/);
      return true;
    },
  );
  assert.equal(server.requests.length, 2);
});

test("redirects are followed", T, async () => {
  server.set("/real.txt", VERDICT);
  server.redirect("/moved.txt", "/real.txt");
  const dest = join(dir, "v.txt");
  await download(server.url("/moved.txt"), dest, { sha256: VERDICT_SHA, ...FAST });
  assert.deepEqual(readFileSync(dest), VERDICT);
  assert.deepEqual(
    server.requests.map((r) => [r.path, r.status]),
    [
      ["/moved.txt", 302],
      ["/real.txt", 200],
    ],
  );
});

test("file: URLs are copied and verified like downloads", T, async () => {
  const dest = join(dir, "v.txt");
  await download(pathToFileURL(sharedPath("datasets", "the-verdict.txt")).href, dest, {
    sha256: VERDICT_SHA,
    expectedSize: 20_479,
  });
  assert.deepEqual(readFileSync(dest), VERDICT);
  await assert.rejects(download(pathToFileURL(join(dir, "nope")).href, join(dir, "y")), /not found: .*nope/);
});

test("an aborted download throws InterruptedError", T, async () => {
  server.set("/v.txt", VERDICT);
  await assert.rejects(
    download(server.url("/v.txt"), join(dir, "v.txt"), { signal: AbortSignal.abort() }),
    InterruptedError,
  );
});

test("Ctrl-C mid-body keeps the part file, and the next call resumes from it", T, async () => {
  const big = Buffer.alloc(8 << 20, 7); // several chunks on any machine
  const bigSha = createHash("sha256").update(big).digest("hex");
  server.set("/big.bin", big);
  const dest = join(dir, "big.bin");
  const ctl = new AbortController();
  await assert.rejects(
    download(server.url("/big.bin"), dest, {
      sha256: bigSha,
      onProgress: (r) => r > 0 && ctl.abort(),
      signal: ctl.signal,
      ...FAST,
    }),
    InterruptedError,
  );
  assert.equal(existsSync(dest), false);
  const kept = readFileSync(dest + ".part").length;
  assert.ok(kept > 0 && kept < big.length, `part file holds ${kept} bytes`);
  await download(server.url("/big.bin"), dest, { sha256: bigSha, ...FAST });
  assert.equal(await sha256File(dest), bigSha);
  assert.deepEqual(
    server.requests.map((r) => r.range),
    [undefined, `bytes=${kept}-`],
  );
});

test("cacheRoot honours LLMCTL_CACHE, else ~/.cache/llmctl", () => {
  assert.equal(cacheRoot({ LLMCTL_CACHE: "/tmp/x" }), "/tmp/x");
  assert.match(cacheRoot({}), /[/\\]\.cache[/\\]llmctl$/);
});
