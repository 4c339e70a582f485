// test: first backend pass only (doctor loads every backend itself, whichever the pass runs on)
import { test } from "node:test";
import assert from "node:assert/strict";
import { isSoftwareAdapter } from "../src/backend/webgpu.js";
import { runCli } from "./helpers/cli.js";

test("software WebGPU adapters are told from hardware ones by what they say about themselves", () => {
  const info = (vendor: string, architecture: string, device: string, description: string) => ({
    vendor,
    architecture,
    device,
    description,
  });
  // what Mesa 25's lavapipe gives through Dawn on this machine
  assert.ok(isSoftwareAdapter(info("mesa", "software", "llvmpipe-llvm-15-0-6-256-bits-", "llvmpipe: Mesa 25.0.7")));
  assert.ok(isSoftwareAdapter(info("google", "", "", "SwiftShader Device (Subzero)")));
  assert.ok(isSoftwareAdapter({ ...info("", "", "", ""), isFallbackAdapter: true }));
  assert.ok(!isSoftwareAdapter(info("nvidia", "hopper", "", "NVIDIA H200")));
  assert.ok(!isSoftwareAdapter(info("amd", "rdna-3", "", "AMD Radeon RX 7900 XTX (RADV NAVI31)")));
});

interface DoctorBackend {
  name: string;
  available: boolean;
  reason?: string;
  adapter?: { description: string; software: boolean; features: string[]; limits: Record<string, number> };
}

test("doctor reports the WebGPU adapter, and auto never selects a software one", async () => {
  const r = await runCli(["doctor", "--json", "--no-speed"]);
  assert.equal(r.code, 0, r.stderr);
  const doctor = JSON.parse(r.stdout) as { backends: DoctorBackend[]; selected: string };
  const webgpu = doctor.backends.find((b) => b.name === "webgpu")!;
  if (!webgpu.available) {
    assert.match(webgpu.reason ?? "", /not installed|does not load|no WebGPU adapter/);
    assert.notEqual(doctor.selected, "webgpu");
    return;
  }
  const a = webgpu.adapter!;
  assert.ok(a.description.length > 0);
  assert.ok(a.limits.maxBufferSize > 0 && a.limits.maxStorageBufferBindingSize > 0);
  assert.ok(Array.isArray(a.features));
  if (a.software) assert.notEqual(doctor.selected, "webgpu");
  else assert.equal(doctor.selected, "webgpu");
  const pinned = await runCli(["doctor", "--json", "--no-speed", "--backend", "webgpu"]);
  assert.equal(pinned.code, 0, pinned.stderr);
  assert.equal(JSON.parse(pinned.stdout).selected, "webgpu");
});

test("--bf16 with --backend webgpu is a usage error", async () => {
  const r = await runCli(["doctor", "--json", "--no-speed", "--backend", "webgpu", "--bf16"]);
  assert.equal(r.code, 2);
  assert.match(r.stderr, /--bf16 needs the tensorflow backend, not webgpu/);
});
