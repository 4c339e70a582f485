import { test } from "node:test";
import assert from "node:assert/strict";
import http from "node:http";
import { mkdtemp, readFile, writeFile, mkdir, rm, readdir } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import type { AddressInfo } from "node:net";
import { runCli } from "./helpers/cli.js";
import { sharedPath } from "./helpers/shared.js";
import { gpt2Urls } from "../src/weights/gpt2-download.js";
import { tinyConfig } from "./helpers/tiny-config.js";

const fixture = (...p: string[]) => sharedPath("fixtures", "gpt2-tiny", ...p);
const env = { LLMCTL_BACKEND: "cpu" };

interface Expected {
  cases: { text?: string; greedy_continuation: number[] }[];
}

async function greedy(model: string, prompt: string): Promise<number[]> {
  const r = await runCli(
    ["generate", "--model", model, "--prompt", prompt, "--temperature", "0", "--max-new-tokens", "12", "--json"],
    { env },
  );
  assert.equal(r.code, 0, r.stderr);
  return JSON.parse(r.stdout).ids;
}

test("load-gpt2 --from an OpenAI dir, a HF dir and a .index file: generate continues greedily as the reference", async () => {
  const dir = await mkdtemp(join(tmpdir(), "llmctl-load-"));
  const expected = JSON.parse(await readFile(fixture("expected.json"), "utf8")) as Expected;
  const sources = [fixture("tf"), fixture("hf"), join(fixture("tf"), "model.ckpt.index")];
  const weights: Buffer[] = [];
  for (const [k, from] of sources.entries()) {
    const out = join(dir, `m${k}`);
    const r = await runCli(["load-gpt2", "--from", from, "--out", out, "--json"], { env });
    assert.equal(r.code, 0, r.stderr);
    const res = JSON.parse(r.stdout);
    assert.equal(res.parameters, 811216);
    assert.deepEqual(
      res.config,
      tinyConfig({ vocab_size: 50257, context_length: 32, qkv_bias: true, tied_head: true }),
    );
    weights.push(await readFile(join(out, "model.safetensors")));
  }
  assert.ok(weights[0]!.equals(weights[1]!) && weights[0]!.equals(weights[2]!));
  for (const c of expected.cases.filter((c) => c.text)) {
    assert.deepEqual(await greedy(join(dir, "m0"), c.text!), c.greedy_continuation, c.text);
  }
  assert.deepEqual(await greedy(join(dir, "m1"), expected.cases[0]!.text!), expected.cases[0]!.greedy_continuation);
  const info = await runCli(["info", join(dir, "m0"), "--json"], { env });
  assert.equal(info.code, 0, info.stderr);
  assert.equal(JSON.parse(info.stdout).parameters, 811216);

  const again = await runCli(["load-gpt2", "--from", fixture("tf"), "--out", join(dir, "m0")], { env });
  assert.equal(again.code, 2);
  assert.match(again.stderr, /already holds a model — .*--force/);
  await rm(dir, { recursive: true });
});

test("load-gpt2 explains bad input in one line", async () => {
  const dir = await mkdtemp(join(tmpdir(), "llmctl-load-bad-"));
  const missing = await runCli(["load-gpt2", "--from", join(dir, "nope"), "--out", join(dir, "m")], { env });
  assert.equal(missing.code, 2);
  assert.match(missing.stderr, /^llmctl: .*nope does not exist — /);

  // A truncated safetensors file.
  await mkdir(join(dir, "hf"));
  const st = await readFile(fixture("hf", "model.safetensors"));
  await writeFile(join(dir, "hf", "model.safetensors"), st.subarray(0, st.length - 100));
  await writeFile(join(dir, "hf", "config.json"), await readFile(fixture("hf", "config.json")));
  const trunc = await runCli(["load-gpt2", "--from", join(dir, "hf"), "--out", join(dir, "m")], { env });
  assert.equal(trunc.code, 1);
  assert.match(
    trunc.stderr,
    /not a valid safetensors file: the tensors need \d+ data bytes but the file has only \d+ after the header \(truncated\)/,
  );
  assert.equal(trunc.stderr.trim().split("\n").length, 1);

  // A bare file whose head count cannot be inferred, then with --heads.
  await writeFile(join(dir, "bare.safetensors"), st);
  const bare = await runCli(["load-gpt2", "--from", join(dir, "bare.safetensors"), "--out", join(dir, "m")], { env });
  assert.equal(bare.code, 2);
  assert.match(bare.stderr, /attention heads.* — .*--heads N/);
  const ok = await runCli(
    ["load-gpt2", "--from", join(dir, "bare.safetensors"), "--heads", "2", "--out", join(dir, "m"), "--json"],
    { env },
  );
  assert.equal(ok.code, 0, ok.stderr);
  assert.equal(JSON.parse(ok.stdout).config.n_heads, 2);
  await rm(dir, { recursive: true });
});

test("load-gpt2 blames the input file at fault, and a failed conversion leaves no --out behind", async () => {
  const dir = await mkdtemp(join(tmpdir(), "llmctl-load-blame-"));
  const hf = join(dir, "hf");
  await mkdir(hf);
  await writeFile(join(hf, "model.safetensors"), await readFile(fixture("hf", "model.safetensors")));
  const hfConfig = JSON.parse(await readFile(fixture("hf", "config.json"), "utf8"));
  const load = (from: string) => runCli(["load-gpt2", "--from", from, "--out", join(dir, "m")], { env });

  // a config.json that does not parse is reported as such (was: passed over, then "put a config.json next to it")
  await writeFile(join(hf, "config.json"), "{ not json");
  const broken = await load(hf);
  assert.equal(broken.code, 1);
  assert.match(broken.stderr, new RegExp(`^llmctl: ${join(hf, "config.json")} is not a valid JSON object`));
  assert.doesNotMatch(broken.stderr, /put a Hugging Face config\.json/);

  // n_head 3 for n_embd 16 is the input's fault, not the config.json being written
  await writeFile(join(hf, "config.json"), JSON.stringify({ ...hfConfig, n_head: 3 }));
  const heads = await load(hf);
  assert.equal(heads.code, 1);
  assert.match(heads.stderr, new RegExp(`^llmctl: ${join(hf, "config.json")}: n_embd 16 is not divisible by n_head 3`));

  // a TF checkpoint whose data fails its CRC: the error, and no empty --out
  const tf = join(dir, "tf");
  await mkdir(tf);
  for (const f of await readdir(fixture("tf"))) await writeFile(join(tf, f), await readFile(fixture("tf", f)));
  const dataFile = join(tf, "model.ckpt.data-00000-of-00001");
  const data = await readFile(dataFile);
  data[data.length >> 1] ^= 0xff;
  await writeFile(dataFile, data);
  const crc = await load(tf);
  assert.equal(crc.code, 1, crc.stderr);
  assert.match(crc.stderr, /checksum mismatch for tensor/);
  assert.deepEqual(await readdir(dir), ["hf", "tf"]);
  await rm(dir, { recursive: true });
});

/** A static server for the mirror layout; the first request for `dropFile` is cut off after `dropAfter` bytes. */
async function mirrorServer(files: Map<string, Buffer>, dropFile: string, dropAfter: number) {
  const log: { path: string; range?: string; status: number }[] = [];
  let dropped = false;
  const server = http.createServer((req, res) => {
    const path = decodeURIComponent(new URL(req.url!, "http://x").pathname);
    const body = files.get(path);
    if (!body) {
      log.push({ path, status: 404 });
      res.writeHead(404).end("not found");
      return;
    }
    const m = /^bytes=(\d+)-$/.exec(req.headers.range ?? "");
    const start = m ? Number(m[1]) : 0;
    const status = m ? 206 : 200;
    log.push({ path, range: req.headers.range, status });
    const headers: Record<string, string | number> = {
      "content-length": body.length - start,
      "accept-ranges": "bytes",
    };
    if (m) headers["content-range"] = `bytes ${start}-${body.length - 1}/${body.length}`;
    res.writeHead(status, headers);
    if (path.endsWith(dropFile) && !dropped) {
      dropped = true;
      res.write(body.subarray(start, dropAfter), () => res.destroy());
      return;
    }
    res.end(body.subarray(start));
  });
  await new Promise<void>((r) => server.listen(0, "127.0.0.1", r));
  const { port } = server.address() as AddressInfo;
  return { url: `http://127.0.0.1:${port}`, log, close: () => new Promise<void>((r) => server.close(() => r())) };
}

test("load-gpt2 downloads from a mirror (OpenAI and HF layouts), resuming a dropped transfer", async () => {
  const dir = await mkdtemp(join(tmpdir(), "llmctl-load-dl-"));
  const files = new Map<string, Buffer>();
  const mirrorEnv = { LLMCTL_GPT2_MIRROR: "http://mirror" };
  for (const { file, url } of gpt2Urls("124M", "openai", mirrorEnv))
    files.set(new URL(url).pathname, await readFile(fixture("tf", file)));
  for (const { file, url } of gpt2Urls("124M", "hf", mirrorEnv))
    files.set(new URL(url).pathname, await readFile(fixture("hf", file)));
  assert.ok(
    files.has("/124M/model.ckpt.data-00000-of-00001") &&
      files.has("/openai-community/gpt2/resolve/main/model.safetensors"),
  );

  const data = "model.ckpt.data-00000-of-00001";
  const server = await mirrorServer(files, data, 1_000_000);
  try {
    const cache = join(dir, "cache");
    const runEnv = { ...env, LLMCTL_GPT2_MIRROR: server.url, LLMCTL_CACHE: cache };
    const r = await runCli(["load-gpt2", "--out", join(dir, "openai"), "--json"], { env: runEnv });
    assert.equal(r.code, 0, r.stderr);
    assert.equal(JSON.parse(r.stdout).source, "openai gpt2-124M");
    // The data file was cut off once, then fetched from where it stopped.
    const dataReqs = server.log.filter((l) => l.path === `/124M/${data}`);
    assert.deepEqual(
      dataReqs.map((l) => l.status),
      [200, 206],
    );
    const resumedAt = Number(/^bytes=(\d+)-$/.exec(dataReqs[1]!.range ?? "")?.[1]);
    assert.ok(resumedAt > 0 && resumedAt <= 1_000_000, `resumed at ${dataReqs[1]!.range}`);
    assert.deepEqual(
      (await readdir(join(cache, "gpt2", "openai", "124M"))).sort(),
      ["checkpoint", "hparams.json", data, "model.ckpt.index"].sort(),
    );

    const h = await runCli(["load-gpt2", "--source", "hf", "--out", join(dir, "hf"), "--json"], { env: runEnv });
    assert.equal(h.code, 0, h.stderr);
    const a = await readFile(join(dir, "openai", "model.safetensors"));
    const b = await readFile(join(dir, "hf", "model.safetensors"));
    assert.ok(a.equals(b), "both downloads convert to the same weights");
    const expected = JSON.parse(await readFile(fixture("expected.json"), "utf8")) as Expected;
    assert.deepEqual(
      await greedy(join(dir, "openai"), expected.cases[0]!.text!),
      expected.cases[0]!.greedy_continuation,
    );

    // A second run uses the cache: no new requests.
    const before = server.log.length;
    const again = await runCli(["load-gpt2", "--out", join(dir, "openai"), "--force"], { env: runEnv });
    assert.equal(again.code, 0, again.stderr);
    assert.equal(server.log.length, before);

    // A cached file that went bad: the checksum catches it and the fix names the cache directory.
    const cachedData = join(cache, "gpt2", "openai", "124M", data);
    const bytes = await readFile(cachedData);
    bytes[bytes.length - 5]! ^= 0x40;
    await writeFile(cachedData, bytes);
    const corrupt = await runCli(["load-gpt2", "--out", join(dir, "openai"), "--force"], { env: runEnv });
    assert.equal(corrupt.code, 1);
    assert.match(
      corrupt.stderr,
      /checksum mismatch for tensor '[^']+'.* — delete .*gpt2\/openai\/124M and run the command again/,
    );

    // A mirror without the files: a network error naming the URL, exit 1.
    const missing = await runCli(["load-gpt2", "--size", "355M", "--out", join(dir, "x")], { env: runEnv });
    assert.equal(missing.code, 1);
    assert.match(missing.stderr, /\/355M\/checkpoint.*404/);
  } finally {
    await server.close();
  }
  await rm(dir, { recursive: true });
});
