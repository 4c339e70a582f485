import { test } from "node:test";
import assert from "node:assert/strict";
import { bf16MatmulsAvailable, cpuBf16Support, useBackend } from "../src/backend/index.js";
import { BackendError } from "../src/errors.js";

test("--bf16 asked for after tensorflow was loaded without it is a BackendError saying what to do", async (t) => {
  if (!bf16MatmulsAvailable()) return t.skip(`--bf16 needs AMX-BF16; this CPU has ${cpuBf16Support() ?? "unknown"}`);
  try {
    await useBackend("tensorflow");
  } catch (err) {
    return t.skip(`tensorflow does not load here: ${(err as Error).message}`);
  }
  await assert.rejects(
    useBackend("tensorflow", { bf16: true }),
    (e: unknown) =>
      e instanceof BackendError &&
      /--bf16 must be chosen before the tensorflow backend is first loaded/.test(e.message) &&
      /first useBackend call/.test(e.fix ?? ""),
  );
});
