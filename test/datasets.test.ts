// test: first backend pass only (downloads and the cache, no tensors)
/**
 * Named datasets end to end: a real HTTP server on 127.0.0.1 serves ../shared/datasets (and a spam ZIP
 * built here with node:zlib), standing in for the canonical URLs and for LLMCTL_DATA_MIRROR.
 */
import { test, before, after, beforeEach, afterEach } from "node:test";
import assert from "node:assert/strict";
import { createHash } from "node:crypto";
import { existsSync, readFileSync, writeFileSync, mkdtempSync, mkdirSync, rmSync, readdirSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { pathToFileURL } from "node:url";
import {
  DATASETS,
  DATASET_NAMES,
  fetchDataset,
  resolveDataPath,
  mirrorUrl,
  defaultFallbackDir,
  type FetchDatasetOptions,
} from "../src/data/datasets.js";
import { createZip } from "./helpers/zip.js";
import { NetworkError, UsageError, errorLine } from "../src/errors.js";
import { sharedPath, REPO_ROOT } from "./helpers/shared.js";
import { startTestServer, unusedPort, type TestServer } from "./helpers/http-server.js";

const SHARED = sharedPath("datasets");
const bytes = (file: string) => readFileSync(join(SHARED, file));
const sha = (b: Buffer) => createHash("sha256").update(b).digest("hex");
const SPAM = bytes("SMSSpamCollection");
const T = { timeout: 20_000 };

let server: TestServer;
let cache: string;
let notes: string[];

/** Options that never touch the real cache, the real internet, env variables or ../shared implicitly. */
function opts(extra: FetchDatasetOptions = {}): FetchDatasetOptions {
  return {
    cacheDir: cache,
    mirror: "",
    fallbackDir: null,
    onNote: (m) => notes.push(m),
    download: { retryDelayMs: 0, timeoutMs: 5000 },
    ...extra,
  };
}

before(async () => {
  server = await startTestServer();
  for (const name of DATASET_NAMES)
    server.set("/mirror/" + encodeURIComponent(DATASETS[name].file), bytes(DATASETS[name].file));
});
after(() => server.close());
beforeEach(() => {
  cache = mkdtempSync(join(tmpdir(), "llmctl-cache-"));
  notes = [];
  server.requests.length = 0;
});
afterEach(() => rmSync(cache, { recursive: true, force: true }));

test("the table's sizes and sha256 match the shared files (SOURCES.md)", () => {
  for (const name of DATASET_NAMES) {
    const info = DATASETS[name];
    const b = bytes(info.file);
    assert.equal(b.length, info.bytes, name);
    assert.equal(sha(b), info.sha256, name);
  }
  assert.deepEqual(DATASETS["sms-spam"].urls, [
    "https://archive.ics.uci.edu/static/public/228/sms+spam+collection.zip",
    "https://f001.backblazeb2.com/file/LLMs-from-scratch/sms%2Bspam%2Bcollection.zip",
  ]);
});

test("LLMCTL_DATA_MIRROR as a directory: all three datasets land verified in the cache", T, async () => {
  for (const name of DATASET_NAMES) {
    const path = await fetchDataset(name, opts({ mirror: SHARED }));
    assert.equal(path, join(cache, "datasets", DATASETS[name].file));
    assert.deepEqual(readFileSync(path), bytes(DATASETS[name].file));
  }
  assert.deepEqual(readdirSync(join(cache, "datasets")).sort(), [
    "SMSSpamCollection",
    "instruction-data.json",
    "the-verdict.txt",
  ]);
  // Second time: from the cache, no source consulted.
  notes = [];
  await fetchDataset("the-verdict", opts({ mirror: "/nonexistent-mirror" }));
  assert.match(notes.join("\n"), /using cached/);
});

test("LLMCTL_DATA_MIRROR as a base URL, read from the environment, with the cache in LLMCTL_CACHE", T, async () => {
  const saved = { mirror: process.env.LLMCTL_DATA_MIRROR, cache: process.env.LLMCTL_CACHE };
  process.env.LLMCTL_DATA_MIRROR = server.url("/mirror"); // no trailing slash on purpose
  process.env.LLMCTL_CACHE = cache;
  try {
    const path = await fetchDataset("instruction-data", { download: { retryDelayMs: 0 } });
    assert.equal(path, join(cache, "datasets", "instruction-data.json"));
    assert.equal(sha(readFileSync(path)), DATASETS["instruction-data"].sha256);
    assert.deepEqual(
      server.requests.map((r) => r.path),
      ["/mirror/instruction-data.json"],
    );
  } finally {
    for (const [k, v] of [
      ["LLMCTL_DATA_MIRROR", saved.mirror],
      ["LLMCTL_CACHE", saved.cache],
    ] as const) {
      if (v === undefined) delete process.env[k];
      else process.env[k] = v;
    }
  }
});

test("a connection dropped mid-file is resumed", T, async () => {
  server.set("/drop/the-verdict.txt", { body: bytes("the-verdict.txt"), dropAfter: 8192 });
  const path = await fetchDataset("the-verdict", opts({ mirror: server.url("/drop/") }));
  assert.equal(sha(readFileSync(path)), DATASETS["the-verdict"].sha256);
  assert.deepEqual(
    server.requests.map((r) => [r.range, r.status]),
    [
      [undefined, 200],
      ["bytes=8192-", 206],
    ],
  );
});

test("a wrong checksum: clear error, nothing left in the cache", T, async () => {
  const bad = Buffer.from(bytes("the-verdict.txt"));
  bad[0] = "i".charCodeAt(0);
  server.set("/bad/the-verdict.txt", bad);
  await assert.rejects(fetchDataset("the-verdict", opts({ mirror: server.url("/bad/") })), (err: unknown) => {
    assert.ok(err instanceof NetworkError);
    assert.match(
      err.message,
      /^checksum mismatch for http:\/\/127\.0\.0\.1:\d+\/bad\/the-verdict\.txt: expected sha256 b41e41a6/,
    );
    assert.match(err.fix ?? "", /LLMCTL_DATA_MIRROR/);
    return true;
  });
  assert.deepEqual(readdirSync(join(cache, "datasets")), []);
});

test("a 404 from the mirror names the URL, the status and LLMCTL_DATA_MIRROR", T, async () => {
  const mirror = server.url("/empty/");
  await assert.rejects(fetchDataset("the-verdict", opts({ mirror })), (err: unknown) => {
    assert.ok(err instanceof NetworkError);
    assert.equal(
      errorLine(err),
      `could not download ${mirror}the-verdict.txt: HTTP 404 Not Found — LLMCTL_DATA_MIRROR=${mirror} must be a directory or base URL that holds the-verdict.txt; fix or unset it, or pass --data FILE`,
    );
    return true;
  });
  assert.deepEqual(readdirSync(join(cache, "datasets")), []);
});

test("an unreachable mirror: clear one-line error naming LLMCTL_DATA_MIRROR", T, async () => {
  const mirror = `http://127.0.0.1:${await unusedPort()}/`;
  await assert.rejects(fetchDataset("sms-spam", opts({ mirror })), (err: unknown) => {
    assert.ok(err instanceof NetworkError);
    const line = errorLine(err);
    assert.match(
      line,
      /^could not download http:\/\/127\.0\.0\.1:\d+\/SMSSpamCollection: connection refused .* — LLMCTL_DATA_MIRROR=/,
    );
    assert.doesNotMatch(line, /\n/);
    return true;
  });
});

test(
  "unreachable canonical URLs (no mirror): the error tells you to set LLMCTL_DATA_MIRROR or pass --data",
  T,
  async () => {
    const dead = `http://127.0.0.1:${await unusedPort()}/the-verdict.txt`;
    await assert.rejects(fetchDataset("the-verdict", opts({ urls: [dead] })), (err: unknown) => {
      assert.ok(err instanceof NetworkError);
      assert.equal(
        err.fix,
        "set LLMCTL_DATA_MIRROR to a directory or base URL that holds the-verdict.txt, or pass --data FILE",
      );
      assert.match(
        err.message,
        /^could not fetch dataset the-verdict: could not download http:\/\/127\.0\.0\.1:\d+\/the-verdict\.txt: connection refused/,
      );
      return true;
    });
  },
);

test("when every URL fails, the fallback directory is used and a note says so", T, async () => {
  const dead = `http://127.0.0.1:${await unusedPort()}/x`;
  const path = await fetchDataset("instruction-data", opts({ urls: [dead], fallbackDir: SHARED }));
  assert.equal(path, join(cache, "datasets", "instruction-data.json"));
  assert.equal(sha(readFileSync(path)), DATASETS["instruction-data"].sha256);
  assert.match(notes.join("\n"), /download failed; using the local copy .*instruction-data\.json/);
});

test("the default fallback directory is ../shared/datasets next to the repository", () => {
  assert.equal(defaultFallbackDir(), join(REPO_ROOT, "..", "shared", "datasets"));
});

test("sms-spam: the UCI zip is downloaded, unpacked, verified, and the archive removed", T, async () => {
  const zip = createZip([
    { name: "readme", data: Buffer.from("SMS Spam Collection v.1\n") },
    { name: "SMSSpamCollection", data: SPAM },
  ]);
  assert.ok(zip.length < SPAM.length / 2, "the member is really deflated");
  server.set("/static/public/228/sms+spam+collection.zip", zip);
  const path = await fetchDataset(
    "sms-spam",
    opts({ urls: [server.url("/static/public/228/sms+spam+collection.zip")] }),
  );
  assert.equal(path, join(cache, "datasets", "SMSSpamCollection"));
  assert.deepEqual(readFileSync(path), SPAM);
  assert.deepEqual(readdirSync(join(cache, "datasets")), ["SMSSpamCollection"]);
});

test("sms-spam: the first URL failing falls back to the second (the book's backup copy)", T, async () => {
  server.set(
    "/backup/sms%2Bspam%2Bcollection.zip",
    createZip([{ name: "sms_spam_collection/SMSSpamCollection", data: SPAM, method: "store" }]),
  );
  const path = await fetchDataset(
    "sms-spam",
    opts({ urls: [server.url("/gone.zip"), server.url("/backup/sms%2Bspam%2Bcollection.zip")] }),
  );
  assert.deepEqual(readFileSync(path), SPAM);
  assert.deepEqual(
    server.requests.map((r) => r.status),
    [404, 200],
  );
  assert.match(notes.join("\n"), /gone\.zip: HTTP 404/);
});

test("sms-spam: a zip whose member has the wrong bytes is refused and nothing is kept", T, async () => {
  const tampered = Buffer.from(SPAM);
  tampered[0] = "s".charCodeAt(0); // "ham" → "sam"
  server.set("/tampered.zip", createZip([{ name: "SMSSpamCollection", data: tampered }]));
  server.set("/nomember.zip", createZip([{ name: "readme", data: Buffer.from("x") }]));
  await assert.rejects(
    fetchDataset("sms-spam", opts({ urls: [server.url("/tampered.zip"), server.url("/nomember.zip")] })),
    (err: unknown) => {
      assert.ok(err instanceof NetworkError);
      assert.match(
        err.message,
        /^could not fetch dataset sms-spam: checksum mismatch for SMSSpamCollection in http:\S+tampered\.zip.*\(and 1 more source failed/,
      );
      return true;
    },
  );
  assert.match(notes.join("\n"), /nomember\.zip has no member SMSSpamCollection \(it holds: readme\)/);
  assert.deepEqual(readdirSync(join(cache, "datasets")), []);
});

test("a corrupted cache file is detected and fetched again", T, async () => {
  mkdirSync(join(cache, "datasets"), { recursive: true });
  writeFileSync(join(cache, "datasets", "the-verdict.txt"), "not the verdict");
  const path = await fetchDataset("the-verdict", opts({ mirror: pathToFileURL(SHARED).href }));
  assert.equal(sha(readFileSync(path)), DATASETS["the-verdict"].sha256);
  assert.match(notes.join("\n"), /wrong sha256; fetching it again/);
});

test("a mirror that is neither a directory nor a URL is a clear error", () => {
  assert.throws(
    () => mirrorUrl("/no/such/dir", "the-verdict.txt"),
    /LLMCTL_DATA_MIRROR=\/no\/such\/dir is neither an existing directory nor an http\(s\) URL/,
  );
  assert.equal(mirrorUrl("http://host/data", "SMSSpamCollection"), "http://host/data/SMSSpamCollection");
});

test("--data semantics: an existing file wins, else a dataset name, else a usage error", T, async () => {
  const own = join(cache, "my-corpus.txt");
  writeFileSync(own, "hello");
  assert.equal(await resolveDataPath(own, opts()), own);
  assert.equal(
    await resolveDataPath("the-verdict", opts({ mirror: SHARED })),
    join(cache, "datasets", "the-verdict.txt"),
  );
  await assert.rejects(resolveDataPath("the-verdikt", opts()), (err: unknown) => {
    assert.ok(err instanceof UsageError);
    assert.equal(
      errorLine(err),
      "--data the-verdikt: no such file, and not a dataset name — pass an existing file or one of: the-verdict, sms-spam, instruction-data",
    );
    return true;
  });
  await assert.rejects(fetchDataset("wikitext", opts()), UsageError);
  assert.ok(!existsSync(join(cache, "datasets", "wikitext")));
});
