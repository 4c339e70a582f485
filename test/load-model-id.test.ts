// test: first backend pass only (downloads and file conversion)
/**
 * llmctl load --model-id ORG/NAME: a tiny Llama checkpoint served over a local HTTP server in Hugging Face's
 * URL layout (/<org>/<name>/resolve/main/<file>, LFS files with X-Linked-Etag sha256), single-file and
 * sharded; the converted model equals load --from of the same files.
 */
import { test } from "node:test";
import assert from "node:assert/strict";
import { createHash } from "node:crypto";
import { existsSync } from "node:fs";
import { copyFile, mkdir, mkdtemp, readdir, readFile, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { pathToFileURL } from "node:url";
import { writeSafetensors } from "../src/formats/safetensors.js";
import { runCli } from "./helpers/cli.js";
import { hfShape, hfWeights, trainTokenizer, writeHFCheckpoint } from "./helpers/hf-checkpoint.js";
import { startTestServer, type TestServer } from "./helpers/http-server.js";
import type { HFTextConfig } from "./helpers/llama-reference.js";

const cfg: HFTextConfig = {
  model_type: "llama",
  vocab_size: 300,
  hidden_size: 32,
  intermediate_size: 48,
  num_hidden_layers: 2,
  num_attention_heads: 4,
  num_key_value_heads: 1,
  rms_norm_eps: 1e-5,
  rope_theta: 500000,
  tie_word_embeddings: false,
  max_position_embeddings: 64,
};

const sha256 = (b: Buffer) => createHash("sha256").update(b).digest("hex");

/** Serve every file of `dir` under /<id>/resolve/main/; LFS-like files (.safetensors, tokenizer.json) carry X-Linked-Etag. */
async function serveRepo(
  server: TestServer,
  id: string,
  dir: string,
  opts: { dropAfter?: Record<string, number>; badSha?: string[]; redirect?: boolean } = {},
): Promise<void> {
  for (const file of await readdir(dir)) {
    const body = await readFile(join(dir, file));
    const path = `/${id}/resolve/main/${file}`;
    const lfs = file.endsWith(".safetensors") || file === "tokenizer.json";
    const sum = opts.badSha?.includes(file) ? sha256(Buffer.from("something else")) : sha256(body);
    // Hugging Face quotes the value; small git files get a git sha1 ETag only.
    const headers = lfs ? { "x-linked-etag": `"${sum}"` } : { etag: `"${"0".repeat(40)}"` };
    if (lfs && opts.redirect) {
      const cdn = `/cdn/${id}/${file}`;
      server.set(cdn, { body, dropAfter: opts.dropAfter?.[file] });
      server.redirect(path, server.url(cdn), headers);
    } else server.set(path, { body, headers, dropAfter: opts.dropAfter?.[file] });
  }
}

async function makeCheckpoints(dir: string): Promise<{ single: string; sharded: string }> {
  const tok = await trainTokenizer(dir);
  const weights = hfWeights(cfg, 28);
  const single = join(dir, "single");
  await writeHFCheckpoint(single, cfg, weights);
  await copyFile(join(tok, "tokenizer.json"), join(single, "tokenizer.json"));
  await writeFile(join(single, "tokenizer_config.json"), JSON.stringify({ model_max_length: 64 }));
  await writeFile(join(single, "generation_config.json"), JSON.stringify({ bos_token_id: 1, eos_token_id: 2 }));

  // the same weights in two shards named by model.safetensors.index.json (no generation_config.json)
  const sharded = join(dir, "sharded");
  await mkdir(sharded);
  for (const f of ["config.json", "tokenizer.json", "tokenizer_config.json"])
    await copyFile(join(single, f), join(sharded, f));
  const names = [...weights.keys()];
  const half = Math.ceil(names.length / 2);
  const weight_map: Record<string, string> = {};
  for (const [k, part] of [names.slice(0, half), names.slice(half)].entries()) {
    const file = `model-0000${k + 1}-of-00002.safetensors`;
    for (const n of part) weight_map[n] = file;
    const entries = part.map((name) => ({ name, shape: hfShape(cfg, name), data: weights.get(name)! }));
    await writeSafetensors(join(sharded, file), entries, { format: "pt" });
  }
  await writeFile(join(sharded, "model.safetensors.index.json"), JSON.stringify({ metadata: {}, weight_map }));
  return { single, sharded };
}

function firstLine(stderr: string): string {
  const lines = stderr.trim().split("\n");
  assert.equal(lines.length, 1, stderr);
  return lines[0]!;
}

test("load --model-id downloads single-file and sharded checkpoints (resuming a cut download) into what load --from makes", async () => {
  const dir = await mkdtemp(join(tmpdir(), "llmctl-model-id-"));
  const server = await startTestServer();
  try {
    const { single, sharded } = await makeCheckpoints(dir);
    const cache = join(dir, "cache");
    const env = { LLMCTL_BACKEND: "cpu", LLMCTL_GPT2_MIRROR: server.baseUrl, LLMCTL_CACHE: cache };
    const size = (await readFile(join(single, "model.safetensors"))).length;
    await serveRepo(server, "tiny-org/tiny-llama", single, {
      redirect: true,
      dropAfter: { "model.safetensors": Math.floor(size / 2) },
    });
    await serveRepo(server, "tiny-org/tiny-llama-sharded", sharded, {
      dropAfter: { "model-00002-of-00002.safetensors": 1000 },
    });

    for (const [id, ck] of [
      ["tiny-org/tiny-llama", single],
      ["tiny-org/tiny-llama-sharded", sharded],
    ] as const) {
      const ref = join(dir, `ref-${id.split("/")[1]}`);
      const out = join(dir, `out-${id.split("/")[1]}`);
      const r = await runCli(["load", "--model-id", id, "--out", out, "--json"], { env });
      assert.equal(r.code, 0, r.stderr);
      const res = JSON.parse(r.stdout);
      assert.equal(res.model_id, id);
      // cached under $LLMCTL_CACHE/hf/<org>/<name>/: the served files, no part files; the optional 404s were fine
      const cachedDir = join(cache, "hf", id);
      assert.equal(res.cached, cachedDir);
      const cached = (await readdir(cachedDir)).sort();
      assert.deepEqual(cached, (await readdir(ck)).sort());
      for (const f of cached) assert.ok((await readFile(join(cachedDir, f))).equals(await readFile(join(ck, f))), f);
      // load --from the same files writes the same model (config.json names the directory it came from)
      const r0 = await runCli(["load", "--from", cachedDir, "--out", ref], { env });
      assert.equal(r0.code, 0, r0.stderr);
      for (const f of ["config.json", "model.safetensors", "tokenizer.json"])
        assert.ok((await readFile(join(out, f))).equals(await readFile(join(ref, f))), `${id}: ${f}`);
      const r1 = await runCli(["load", "--from", ck, "--out", `${ref}-orig`], { env });
      assert.equal(r1.code, 0, r1.stderr);
      assert.ok(
        (await readFile(join(out, "model.safetensors"))).equals(
          await readFile(join(`${ref}-orig`, "model.safetensors")),
        ),
      );
    }

    // the cut responses were resumed with a Range request from where they stopped
    const resumed = (path: string) => server.requests.filter((q) => q.path === path).map((q) => q.status);
    assert.deepEqual(resumed("/cdn/tiny-org/tiny-llama/model.safetensors"), [200, 206]);
    assert.deepEqual(resumed("/tiny-org/tiny-llama-sharded/resolve/main/model-00002-of-00002.safetensors"), [200, 206]);
    const range = server.requests.find((q) => q.status === 206 && q.path.includes("00002-of"))!.range;
    assert.equal(range, "bytes=1000-");

    // a second load finds everything in the cache: no request
    const before = server.requests.length;
    const again = await runCli(["load", "--model-id", "tiny-org/tiny-llama", "--out", join(dir, "again")], { env });
    assert.equal(again.code, 0, again.stderr);
    assert.equal(
      server.requests.filter((q, i) => i >= before && !/generation_config|chat_template/.test(q.path)).length,
      0,
    );

    // a file:// mirror (a directory in the same layout): a missing optional file is its 404
    const mirror = join(dir, "mirror");
    const repo = join(mirror, "tiny-org", "file-llama", "resolve", "main");
    await mkdir(repo, { recursive: true });
    for (const f of ["config.json", "tokenizer.json", "model.safetensors"])
      await copyFile(join(single, f), join(repo, f));
    const fileEnv = { ...env, LLMCTL_GPT2_MIRROR: pathToFileURL(mirror).href };
    const fromFiles = await runCli(["load", "--model-id", "tiny-org/file-llama", "--out", join(dir, "file-out")], {
      env: fileEnv,
    });
    assert.equal(fromFiles.code, 0, fromFiles.stderr);
    assert.ok(
      (await readFile(join(dir, "file-out", "model.safetensors"))).equals(
        await readFile(join(dir, "again", "model.safetensors")),
      ),
    );
  } finally {
    await server.close();
    await rm(dir, { recursive: true, force: true });
  }
});

test("load --model-id: one-line errors for a wrong sha256, a bad id, --from with it, a missing model and missing weights", async () => {
  const dir = await mkdtemp(join(tmpdir(), "llmctl-model-id-errors-"));
  const server = await startTestServer();
  try {
    const { single } = await makeCheckpoints(dir);
    const cache = join(dir, "cache");
    const env = { LLMCTL_BACKEND: "cpu", LLMCTL_GPT2_MIRROR: server.baseUrl, LLMCTL_CACHE: cache };
    const load = (...args: string[]) => runCli(["load", ...args, "--out", join(dir, "out")], { env });

    await serveRepo(server, "tiny-org/corrupt", single, { badSha: ["model.safetensors"] });
    const bad = await load("--model-id", "tiny-org/corrupt");
    assert.equal(bad.code, 1);
    assert.match(
      firstLine(bad.stderr),
      /^llmctl: checksum mismatch for http:\/\/127\.0\.0\.1:\d+\/tiny-org\/corrupt\/resolve\/main\/model\.safetensors: expected sha256 [0-9a-f]{64}, got [0-9a-f]{64} \(the file was deleted\) — /,
    );
    const left = await readdir(join(cache, "hf", "tiny-org", "corrupt"));
    assert.ok(!left.some((f) => f.startsWith("model.safetensors")), left.join(", "));
    assert.ok(!existsSync(join(dir, "out")));

    const id = await load("--model-id", "not-an-id");
    assert.equal(id.code, 2);
    assert.match(firstLine(id.stderr), /--model-id "not-an-id" is not a Hugging Face model id — pass it as ORG\/NAME/);

    const both = await load("--model-id", "tiny-org/corrupt", "--from", single);
    assert.equal(both.code, 2);
    assert.match(firstLine(both.stderr), /--from and --model-id cannot be used together/);

    const neither = await load();
    assert.equal(neither.code, 2);
    assert.match(firstLine(neither.stderr), /load needs --from DIR or --model-id ORG\/NAME/);

    const missing = await load("--model-id", "tiny-org/missing");
    assert.equal(missing.code, 2);
    assert.match(
      firstLine(missing.stderr),
      /http:\/\/127\.0\.0\.1:\d+\/tiny-org\/missing\/resolve\/main\/config\.json was not found \(HTTP 404\): tiny-org\/missing is not a Hugging Face model.* — check the model id/,
    );

    const noWeights = join(dir, "no-weights");
    await mkdir(noWeights);
    for (const f of ["config.json", "tokenizer.json"]) await copyFile(join(single, f), join(noWeights, f));
    await serveRepo(server, "tiny-org/no-weights", noWeights);
    const nw = await load("--model-id", "tiny-org/no-weights");
    assert.equal(nw.code, 2);
    assert.match(
      firstLine(nw.stderr),
      /\/tiny-org\/no-weights\/resolve\/main\/model\.safetensors was not found \(HTTP 404\): tiny-org\/no-weights has no model\.safetensors — load reads safetensors weights/,
    );
  } finally {
    await server.close();
    await rm(dir, { recursive: true, force: true });
  }
});
