#!/usr/bin/env node
// `npm test`: run the compiled suite once per backend that loads here — wasm (the default embedded backend) and
// tensorflow (when `npm run setup:tensorflow` has built it) — and close with one summary line for both passes.
// Tests that are not about one backend pick theirs with test/helpers/backend.ts (env LLMCTL_TEST_BACKEND).
import { spawnSync } from "node:child_process";
import { existsSync } from "node:fs";

const only = process.env.LLMCTL_TEST_BACKENDS?.split(",").filter(Boolean);
const backends = only ?? ["wasm", "tensorflow"];
const probe = spawnSync(process.execPath, ["bin/llmctl", "doctor", "--json", "--no-speed"], { encoding: "utf8" });
const available = new Set(
  probe.status === 0
    ? JSON.parse(probe.stdout)
        .backends.filter((b) => b.available)
        .map((b) => b.name)
    : ["wasm", "cpu"],
);
const files = process.argv.slice(2);
if (!existsSync("dist/test")) {
  console.error("test: dist/test is missing — run `npm run build` first");
  process.exit(1);
}

const totals = { pass: 0, fail: 0, skipped: 0 };
let failed = false;
for (const backend of backends) {
  if (!available.has(backend)) {
    console.log(`# backend ${backend}: not available here, its pass is skipped (see \`llmctl doctor\`)`);
    continue;
  }
  console.log(`# backend ${backend}: running the suite`);
  const run = spawnSync(
    process.execPath,
    ["--test", "--test-concurrency=1", ...(files.length ? files : ["dist/test/"])],
    {
      env: { ...process.env, LLMCTL_TEST_BACKEND: backend },
      encoding: "utf8",
      stdio: ["ignore", "pipe", "inherit"],
      maxBuffer: 1 << 30,
    },
  );
  process.stdout.write(run.stdout);
  for (const key of Object.keys(totals)) {
    const m = run.stdout.match(new RegExp(`^# ${key} (\\d+)$`, "m"));
    if (m) totals[key] += Number(m[1]);
  }
  if (run.status !== 0) failed = true;
}
console.log(`${totals.pass} passed, ${totals.fail} failed, ${totals.skipped} skipped`);
process.exit(failed || totals.pass === 0 ? 1 : 0);
