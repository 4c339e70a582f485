// test: first backend pass only (packs and installs llmctl; the commands it runs pick their backends)
import { test } from "node:test";
import assert from "node:assert/strict";
import { spawnSync } from "node:child_process";
import { existsSync, mkdirSync, mkdtempSync, readdirSync, rmSync } from "node:fs";
import { createRequire } from "node:module";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { runCli } from "./helpers/cli.js";
import { REPO_ROOT, sharedPath } from "./helpers/shared.js";

const tensorflowHere = (() => {
  try {
    createRequire(import.meta.url).resolve("@tensorflow/tfjs-node/package.json");
    return true;
  } catch {
    return false;
  }
})();

function npm(args: string[], cwd: string): string {
  const r = spawnSync("npm", [...args, "--no-audit", "--no-fund"], { cwd, encoding: "utf8", timeout: 300_000 });
  assert.equal(r.status, 0, `npm ${args.join(" ")}: ${r.stderr}`);
  return r.stdout + r.stderr;
}

test("npm pack, npm install -g into a prefix: llmctl pretrains by config name and generates from another directory", async (t) => {
  const work = mkdtempSync(join(tmpdir(), "llmctl-package-"));
  t.after(() => rmSync(work, { recursive: true, force: true })); // the installed package holds 1.6 GB
  npm(["pack", "--pack-destination", work], REPO_ROOT);
  const tgz = readdirSync(work).find((f) => f.endsWith(".tgz"));
  assert.ok(tgz, "npm pack wrote no tarball");
  const prefix = join(work, "prefix");
  // none of the install scripts is needed (README, "Install"): the package carries its build, webgpu's only acts on macOS
  const installLog = npm(["install", "-g", "--ignore-scripts", "--prefix", prefix, join(work, tgz)], work);
  assert.doesNotMatch(installLog, /install-scripts|allowScripts/, "install script warnings");
  const bin = join(prefix, "bin", "llmctl");
  assert.ok(existsSync(bin), `no ${bin}`);

  const elsewhere = join(work, "elsewhere");
  mkdirSync(elsewhere);
  // the dataset comes from the offline mirror, as it would from its URL online; the cache is the user's own
  const env = { LLMCTL_DATA_MIRROR: sharedPath("datasets"), LLMCTL_CACHE: join(work, "cache") };
  const run = (args: string[]) => runCli(args, { bin, cwd: elsewhere, env });
  const pretrain = await run(["pretrain", "--config", "gpt2-tiny", "--out", "run", "--max-steps", "2", "--json"]);
  assert.equal(pretrain.code, 0, pretrain.stderr);
  assert.ok(existsSync(join(elsewhere, "run", "model.safetensors")), "the run is written in the working directory");
  assert.ok(existsSync(join(work, "cache", "datasets", "the-verdict.txt")), "the dataset is cached");
  const generate = await run(["generate", "-m", "run", "-p", "Every effort", "-n", "3", "--temperature", "0"]);
  assert.equal(generate.code, 0, generate.stderr);
  assert.match(generate.stdout, /^Every effort/);

  // the native backend from the global install: setup finds its node_modules (the build is cached by CI's setup)
  if (!tensorflowHere) return t.diagnostic("tensorflow is not set up in this checkout: setup from the package not run");
  const setup = await run(["setup", "tensorflow", "--json"]);
  assert.equal(setup.code, 0, setup.stderr);
  assert.match(
    (JSON.parse(setup.stdout) as { node_modules: string }).node_modules,
    new RegExp(`^${prefix}/lib/node_modules/llmctl/node_modules$`),
  );
  const onTensorflow = await run(["generate", "-m", "run", "-p", "Every effort", "-n", "3", "--temperature", "0"]);
  assert.equal(onTensorflow.code, 0, onTensorflow.stderr);
  assert.equal(onTensorflow.stdout, generate.stdout, "tensorflow's greedy text is wasm's");
});
