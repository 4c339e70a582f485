/**
 * The webgpu backend: @tensorflow/tfjs-backend-webgpu on Dawn, Chrome's WebGPU implementation, which npm's
 * `webgpu` package ships prebuilt for Node. Both are optional dependencies: where they are missing, or no
 * adapter comes up (no Vulkan/Metal/D3D12 driver), the backend is reported unavailable and nothing else changes.
 *
 * Dawn runs on whatever adapter the system's driver offers, a GPU or a CPU rasteriser (Mesa's lavapipe,
 * SwiftShader). A software adapter computes correctly but slower than the wasm backend, so `auto` takes only a
 * hardware one. WebGPU has no synchronous read-back in Node: llmctl reads tensors with `await data()`.
 */
import { readdirSync } from "node:fs";

export const WEBGPU_PACKAGES = { dawn: "webgpu", tfjs: "@tensorflow/tfjs-backend-webgpu" } as const;

/**
 * Whether a GPU may be there for `auto` to find, without loading Dawn. On Linux a hardware Vulkan adapter needs a
 * device node (Mesa's drivers open /dev/dri/renderD*, NVIDIA's /dev/nvidia*); without one only a software adapter
 * can come up, and asking Dawn would cost `auto` about a second and print Dawn's warnings. Elsewhere (Metal, D3D12)
 * there is no such cheap sign, so Dawn is asked.
 */
export function gpuDeviceVisible(): boolean {
  if (process.platform !== "linux") return true;
  const present = (dir: string, prefix: string) => {
    try {
      return readdirSync(dir).some((name) => name.startsWith(prefix));
    } catch {
      return false;
    }
  };
  return present("/dev/dri", "renderD") || present("/dev", "nvidia");
}

/** What `navigator.gpu.requestAdapter()` found. */
export interface AdapterReport {
  vendor: string;
  architecture: string;
  device: string;
  description: string;
  /** a CPU implementation (lavapipe/llvmpipe, SwiftShader, or one the driver flags as a fallback adapter) */
  software: boolean;
  features: string[];
  /** the limits that bound llmctl's tensors and kernels */
  limits: Record<string, number>;
}

interface GpuAdapterLike {
  info: { vendor: string; architecture: string; device: string; description: string; isFallbackAdapter?: boolean };
  features: Iterable<string>;
  limits: Record<string, number>;
}

interface GpuLike {
  requestAdapter(options?: { powerPreference?: string }): Promise<GpuAdapterLike | null>;
}

const REPORTED_LIMITS = [
  "maxBufferSize",
  "maxStorageBufferBindingSize",
  "maxComputeWorkgroupStorageSize",
  "maxComputeInvocationsPerWorkgroup",
  "maxComputeWorkgroupsPerDimension",
];

const SOFTWARE = /llvmpipe|lavapipe|swiftshader/i;

/** A software adapter by what it says about itself. */
export function isSoftwareAdapter(info: GpuAdapterLike["info"]): boolean {
  return (
    info.isFallbackAdapter === true ||
    info.architecture === "software" ||
    SOFTWARE.test(`${info.vendor} ${info.architecture} ${info.device} ${info.description}`)
  );
}

function report(adapter: GpuAdapterLike): AdapterReport {
  const { vendor, architecture, device, description } = adapter.info;
  const limits: Record<string, number> = {};
  for (const k of REPORTED_LIMITS) limits[k] = adapter.limits[k];
  return {
    vendor,
    architecture,
    device,
    description,
    software: isSoftwareAdapter(adapter.info),
    features: [...adapter.features].sort(),
    limits,
  };
}

export type WebgpuProbe = { ok: true; adapter: AdapterReport } | { ok: false; reason: string };

let probed: Promise<WebgpuProbe> | undefined;

/**
 * Create Dawn's `navigator.gpu` (once per process; tfjs-backend-webgpu registers itself only where it exists)
 * and ask it for the adapter tfjs will use.
 */
export function probeWebgpu(): Promise<WebgpuProbe> {
  probed ??= (async (): Promise<WebgpuProbe> => {
    let gpu: GpuLike;
    try {
      const dawn = (await import(WEBGPU_PACKAGES.dawn)) as {
        create(flags: string[]): GpuLike;
        globals: Record<string, unknown>;
      };
      Object.assign(globalThis, dawn.globals);
      gpu = dawn.create([]);
    } catch (err) {
      const why = (err instanceof Error ? err.message : String(err)).split("\n")[0];
      return { ok: false, reason: `${WEBGPU_PACKAGES.dawn} (Dawn) does not load: ${why}` };
    }
    // Node 20 has no navigator; Node 21+ has one without gpu
    const nav = (globalThis as { navigator?: object }).navigator;
    if (nav) Object.defineProperty(nav, "gpu", { value: gpu, configurable: true });
    else Object.defineProperty(globalThis, "navigator", { value: { gpu }, configurable: true, writable: true });
    const adapter = await gpu.requestAdapter({ powerPreference: "high-performance" });
    if (!adapter) {
      return {
        ok: false,
        reason:
          "Dawn found no WebGPU adapter (no Vulkan driver with a usable device; docs/webgpu.md says what to install)",
      };
    }
    return { ok: true, adapter: report(adapter) };
  })();
  return probed;
}
