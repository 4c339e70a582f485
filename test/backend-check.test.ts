// test: first backend pass only (installs, broken addons and Node versions; each test picks its backends itself)
import { test, before } from "node:test";
import assert from "node:assert/strict";
import {
  cpSync,
  existsSync,
  mkdirSync,
  mkdtempSync,
  readdirSync,
  readFileSync,
  rmSync,
  symlinkSync,
  writeFileSync,
} from "node:fs";
import { createRequire } from "node:module";
import { tmpdir } from "node:os";
import { dirname, join } from "node:path";
import util from "node:util";
import { TFJS_NODE_UTIL_HELPERS, prepareNodeForTfjsNode } from "../src/backend/node-compat.js";
import { runCli } from "./helpers/cli.js";
import { sharedPath, REPO_ROOT } from "./helpers/shared.js";

const require = createRequire(import.meta.url);
const tfjsNodeDir = (() => {
  try {
    return dirname(require.resolve("@tensorflow/tfjs-node/package.json"));
  } catch {
    return undefined;
  }
})();
const NO_ADDON = "@tensorflow/tfjs-node is not installed here (`llmctl setup tensorflow`)";

test("the util helpers tfjs-node 4.22 calls, and Node 23+ removed, are there after prepareNodeForTfjsNode", (t) => {
  if (!tfjsNodeDir) return t.skip(NO_ADDON);
  // every `util_1.NAME` in a tfjs-node module that requires Node's util
  const called = new Set<string>();
  const walk = (dir: string): void => {
    for (const e of readdirSync(dir, { withFileTypes: true })) {
      const path = join(dir, e.name);
      if (e.isDirectory()) walk(path);
      else if (e.name.endsWith(".js") && !e.name.endsWith("_test.js")) {
        const text = readFileSync(path, "utf8");
        if (!/var util_1 = require\("util"\)/.test(text)) continue;
        for (const m of text.matchAll(/util_1\.(\w+)/g)) called.add(m[1]);
      }
    }
  };
  walk(join(tfjsNodeDir, "dist"));
  prepareNodeForTfjsNode();
  const u = util as unknown as Record<string, (v: unknown) => unknown>;
  for (const name of called) {
    // promisify and the like are still Node's; the is* helpers are the removed ones
    if (!name.startsWith("is")) continue;
    assert.ok(name in TFJS_NODE_UTIL_HELPERS, `tfjs-node calls util.${name}, which node-compat.ts does not define`);
    assert.equal(typeof u[name], "function", `util.${name} on Node ${process.version}`);
  }
  assert.deepEqual([...called].filter((n) => n.startsWith("is")).sort(), ["isArray", "isNullOrUndefined"]);
  assert.equal(u.isNullOrUndefined(null), true);
  assert.equal(u.isNullOrUndefined(undefined), true);
  assert.equal(u.isNullOrUndefined(0), false);
  assert.equal(u.isArray([1]), true);
  assert.equal(u.isArray({ length: 1 }), false);
});

let model = "";
let work = "";
before(async () => {
  work = mkdtempSync(join(tmpdir(), "llmctl-backend-check-"));
  model = join(work, "tiny");
  const r = await runCli(["load-gpt2", "--from", sharedPath("fixtures", "gpt2-tiny", "hf"), "--out", model]);
  assert.equal(r.code, 0, r.stderr);
});

const fixtureIds = () => {
  const c = (
    JSON.parse(readFileSync(sharedPath("fixtures", "gpt2-tiny", "expected.json"), "utf8")) as {
      cases: { text: string; greedy_continuation: number[] }[];
    }
  ).cases[0];
  return { prompt: c.text, ids: c.greedy_continuation.slice(0, 6) };
};

test("greedy ids of the gpt2-tiny fixture on tensorflow, auto and wasm, from the CLI on this Node, equal PyTorch's", async (t) => {
  const { prompt, ids } = fixtureIds();
  for (const backend of ["tensorflow", "auto", "wasm"]) {
    if (backend === "tensorflow" && !tfjsNodeDir) {
      t.diagnostic(NO_ADDON);
      continue;
    }
    const r = await runCli([
      "generate",
      "-m",
      model,
      "-p",
      prompt,
      "-n",
      "6",
      "--temperature",
      "0",
      "--json",
      "--backend",
      backend,
    ]);
    assert.equal(r.code, 0, `${backend} on Node ${process.version}: ${r.stderr}`);
    assert.deepEqual((JSON.parse(r.stdout) as { ids: number[] }).ids, ids, `${backend} on Node ${process.version}`);
    assert.equal(r.stderr, "", `${backend}: nothing on stderr`);
  }
});

/**
 * A copy of this install where tfjs-node can be broken without touching the real one: dist and package.json
 * copied (Node resolves packages from a module's real path), node_modules a folder of links to the real
 * packages, tfjs-node a copy (or absent).
 */
function installCopy(tfjsNode: "copy" | "absent"): string {
  const root = mkdtempSync(join(work, "install-"));
  cpSync(join(REPO_ROOT, "dist", "src"), join(root, "dist", "src"), { recursive: true });
  cpSync(join(REPO_ROOT, "bin"), join(root, "bin"), { recursive: true });
  cpSync(join(REPO_ROOT, "package.json"), join(root, "package.json"));
  const realModules = join(REPO_ROOT, "node_modules");
  mkdirSync(join(root, "node_modules", "@tensorflow"), { recursive: true });
  for (const name of readdirSync(realModules)) {
    if (name === "@tensorflow" || name === ".bin") continue;
    symlinkSync(join(realModules, name), join(root, "node_modules", name));
  }
  for (const name of readdirSync(join(realModules, "@tensorflow"))) {
    if (name === "tfjs-node" || name === "tfjs-node-gpu") continue;
    symlinkSync(join(realModules, "@tensorflow", name), join(root, "node_modules", "@tensorflow", name));
  }
  if (tfjsNode === "copy" && tfjsNodeDir) {
    cpSync(tfjsNodeDir, join(root, "node_modules", "@tensorflow", "tfjs-node"), {
      recursive: true,
      verbatimSymlinks: true,
    });
  }
  return root;
}

async function runCopy(root: string, args: string[], env: NodeJS.ProcessEnv = {}) {
  return runCli(args, { env: { LLMCTL_CACHE: join(root, "cache"), ...env }, bin: join(root, "bin", "llmctl") });
}

const brokenAddons: [string, (pkg: string) => void, RegExp][] = [
  [
    "a corrupt .node file",
    (pkg) => {
      const lib = join(pkg, "lib");
      const napi = readdirSync(lib).find((d) => d.startsWith("napi-v"))!;
      writeFileSync(join(lib, napi, "tfjs_binding.node"), Buffer.alloc(4096, 0x5a));
    },
    /invalid ELF header|file too short/,
  ],
  [
    "a missing libtensorflow",
    (pkg) => {
      // the link setup makes to the wheel's library folder, now pointing nowhere (a deleted cache)
      const lib = join(pkg, "deps", "lib");
      rmSync(lib);
      symlinkSync(join(pkg, "deps", "deleted"), lib);
    },
    /libtensorflow/,
  ],
];

for (const [what, breakIt, reason] of brokenAddons) {
  test(`tfjs-node with ${what}: auto takes wasm with one stderr line; --backend tensorflow is one line; doctor says why`, async (t) => {
    if (!tfjsNodeDir) return t.skip(NO_ADDON);
    const root = installCopy("copy");
    breakIt(join(root, "node_modules", "@tensorflow", "tfjs-node"));
    const { prompt, ids } = fixtureIds();
    const gen = ["generate", "-m", model, "-p", prompt, "-n", "6", "--temperature", "0", "--json"];
    for (let run = 0; run < 2; run++) {
      // the second run takes the verdict from the cache, and says the same
      const auto = await runCopy(root, gen);
      assert.equal(auto.code, 0, auto.stderr);
      assert.deepEqual((JSON.parse(auto.stdout) as { ids: number[] }).ids, ids);
      const lines = auto.stderr.trim().split("\n");
      assert.equal(lines.length, 1, auto.stderr);
      assert.match(lines[0], /^llmctl: backend tensorflow not used: /);
      assert.match(lines[0], reason);
      assert.match(lines[0], /llmctl setup tensorflow --force/);
    }
    assert.ok(existsSync(join(root, "cache", "backend-checks.json")), "the verdict is cached");
    const named = await runCopy(root, [...gen, "--backend", "tensorflow"]);
    assert.equal(named.code, 1);
    assert.equal(named.stderr.trim().split("\n").length, 1, named.stderr);
    assert.match(named.stderr, /^llmctl: backend 'tensorflow' cannot be used: .*setup tensorflow --force/);
    const doctor = await runCopy(root, ["doctor", "--json", "--no-speed"]);
    assert.equal(doctor.code, 0, doctor.stderr);
    const tfStatus = (
      JSON.parse(doctor.stdout) as { backends: { name: string; available: boolean; reason?: string }[] }
    ).backends.find((b) => b.name === "tensorflow")!;
    assert.equal(tfStatus.available, false);
    assert.match(tfStatus.reason ?? "", reason);
  });
}

test("after npm ci removed what setup installed, doctor says so and how to restore it", async () => {
  const root = installCopy("absent");
  const tfCache = join(root, "tf-cache");
  mkdirSync(join(tfCache, "cpu-2.20.0", "npm-4.22.0"), { recursive: true });
  writeFileSync(join(tfCache, "cpu-2.20.0", "npm-4.22.0", ".complete"), "");
  for (const [cache, said] of [
    [tfCache, /npm ci.*removed.*llmctl setup tensorflow.*cached/],
    [join(root, "no-cache"), /not installed \(run `llmctl setup tensorflow`\)/],
  ] as const) {
    const r = await runCopy(root, ["doctor", "--no-speed"], { LLMCTL_TF_CACHE: cache });
    assert.equal(r.code, 0, r.stderr);
    const line = r.stdout.split("\n").find((l) => l.startsWith("tensorflow"))!;
    assert.match(line, /not installed/);
    assert.match(line, said);
  }
});
