#!/usr/bin/env node
// `npm test`: run the compiled suite once per backend that loads here — wasm (the default embedded backend),
// tensorflow (when `llmctl setup tensorflow` has built it) and webgpu (when Dawn finds an adapter) — and close
// with one summary line for all passes.
// Tests that are not about one backend pick theirs with test/helpers/backend.ts (env LLMCTL_TEST_BACKEND).
// A test file whose results cannot depend on the backend (file formats, protocols, terminals) says so with a line
// `// test: first backend pass only (…why…)` and runs in the first pass alone.
// LLMCTL_TEST_NODES (comma-separated paths of other `node` binaries, as .ci/run sets for Node 24 and 26) runs the
// passes again on each of those Nodes: the whole suite on wasm, the backend-dependent files on tensorflow, and the
// fixture's logits on webgpu.
import { spawn, spawnSync } from "node:child_process";
import { existsSync, mkdtempSync, readdirSync, readFileSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { dirname, join } from "node:path";

const only = process.env.LLMCTL_TEST_BACKENDS?.split(",").filter(Boolean);
const backends = only ?? ["wasm", "tensorflow", "webgpu"];
// A pass that runs only the tests whose titles match: on a CPU Vulkan driver (lavapipe, as in CI) webgpu compiles
// every shader with LLVM and runs at ~1 GFLOP/s, so its pass is the tests that name it (the fixture, generation,
// classification, training against cpu, resume, leaks), not the whole suite.
const NAME_PATTERN = { webgpu: "webgpu" };
// on another Node, webgpu's pass is the fixture alone: Dawn is the same N-API addon, and lavapipe is slow
const OTHER_NODE_FILES = { webgpu: ["model-fixture.test.ts"] };
const nodes = [process.execPath, ...(process.env.LLMCTL_TEST_NODES?.split(",").filter(Boolean) ?? [])];

const files = process.argv.slice(2);
if (!existsSync("dist/test")) {
  console.error("test: dist/test is missing — run `npm run build` first");
  process.exit(1);
}

const FIRST_PASS_ONLY = /^\/\/ test: first backend pass only/m;
// the sources say which tests exist (dist/ may still hold a deleted test's build)
const sources = readdirSync("test")
  .filter((f) => f.endsWith(".test.ts"))
  .sort();
const dist = (f) => `dist/test/${f.replace(/\.ts$/, ".js")}`;
const suite = sources.map(dist);
const everyPass = sources.filter((f) => !FIRST_PASS_ONLY.test(readFileSync(`test/${f}`, "utf8"))).map(dist);

/**
 * One pass, its TAP passed through to stdout as it comes (so a log shows how far a pass got, even one that never
 * ends) and kept to read the totals from.
 */
function runPass(node, args, env) {
  return new Promise((resolve) => {
    const child = spawn(node, args, { env, stdio: ["ignore", "pipe", "inherit"] });
    const chunks = [];
    child.stdout.on("data", (chunk) => {
      chunks.push(chunk);
      process.stdout.write(chunk);
    });
    child.on("error", (error) =>
      resolve({ status: null, signal: null, error, stdout: Buffer.concat(chunks).toString() }),
    );
    child.on("close", (status, signal) => resolve({ status, signal, stdout: Buffer.concat(chunks).toString() }));
  });
}

const totals = { pass: 0, fail: 0, skipped: 0 };
let failed = false;
const failures = [];
for (const node of nodes) {
  // the tests' own children (`process.execPath`, `#!/usr/bin/env node`, npm) run on this Node too
  const env = { ...process.env, PATH: `${dirname(node)}:${process.env.PATH ?? ""}` };
  const version = spawnSync(node, ["--version"], { encoding: "utf8" }).stdout?.trim();
  if (!version) {
    console.log(`# node ${node}: does not run, its passes fail`);
    failed = true;
    continue;
  }
  const probe = spawnSync(node, ["bin/llmctl", "doctor", "--json", "--no-speed"], { encoding: "utf8", env });
  const available = new Set(
    probe.status === 0
      ? JSON.parse(probe.stdout)
          .backends.filter((b) => b.available)
          .map((b) => b.name)
      : ["wasm", "cpu"],
  );
  const otherNode = node !== process.execPath;
  const start = Date.now();
  let passes = 0;
  for (const backend of backends) {
    if (!available.has(backend)) {
      console.log(
        `# node ${version}, backend ${backend}: not available here, its pass is skipped (see \`llmctl doctor\`)`,
      );
      continue;
    }
    const list = files.length
      ? files
      : otherNode && OTHER_NODE_FILES[backend]
        ? OTHER_NODE_FILES[backend].map(dist)
        : passes === 0
          ? suite
          : everyPass;
    const pattern = NAME_PATTERN[backend] ? [`--test-name-pattern=${NAME_PATTERN[backend]}`] : [];
    console.log(
      `# node ${version}, backend ${backend}: running ` +
        `${list.length === suite.length ? "the suite" : `${list.length} of ${suite.length} test files`}` +
        (pattern.length ? `, the tests whose titles match /${NAME_PATTERN[backend]}/` : ""),
    );
    passes++;
    // TAP, whatever Node's default reporter (Node 23+ picks spec), so that the totals below can be read
    // each pass's temporary files in a folder of its own, removed when it ends: what tests leave behind (their
    // model and run directories) must not pile up pass after pass until a CI machine's disk is full
    const passTmp = mkdtempSync(join(tmpdir(), "llmctl-test-pass-"));
    const run = await runPass(node, ["--test", "--test-reporter=tap", "--test-concurrency=1", ...pattern, ...list], {
      ...env,
      LLMCTL_TEST_BACKEND: backend,
      TMPDIR: passTmp,
    });
    rmSync(passTmp, { recursive: true, force: true });
    const out = run.stdout;
    // a patterned pass reports the tests its pattern leaves out as skipped: they are not skipped tests
    for (const key of Object.keys(totals).filter((k) => !(pattern.length && k === "skipped"))) {
      const m = out.match(new RegExp(`^# ${key} (\\d+)$`, "m"));
      if (m) totals[key] += Number(m[1]);
    }
    if (run.status !== 0) {
      failed = true;
      // said again at the end, where a log's tail shows it: which pass failed, how, and its failing tests
      const how = run.error ? run.error.message : run.signal ? `killed by ${run.signal}` : `exit code ${run.status}`;
      failures.push(`# node ${version}, backend ${backend}: ${how}`, ...(out.match(/^not ok .*$/gm) ?? []));
    }
  }
  console.log(`# node ${version}: its passes took ${Math.round((Date.now() - start) / 1000)} s`);
}
for (const line of failures) console.log(line);
console.log(`${totals.pass} passed, ${totals.fail} failed, ${totals.skipped} skipped`);
process.exit(failed || totals.pass === 0 ? 1 : 0);
