/**
 * What @tensorflow/tfjs-node 4.22 needs from Node that current Node no longer gives. TF.js made no release after
 * 4.22.0 (October 2024), so llmctl carries these here, applied before the addon's JavaScript loads.
 *
 * Upstream cause: tfjs-node's dist/nodejs_kernel_backend.js (every op's tensor and dtype attributes) and
 * dist/kernels/TopK.js call `util.isNullOrUndefined` and `util.isArray`. Node deprecated them long ago
 * (DEP0051, DEP0044), warns on every process that calls them since Node 22, and removed them in Node 23, where
 * every tensorflow-backend op then fails with "(0 , util_1.isNullOrUndefined) is not a function". tfjs-node reads
 * them from the `util` module object at each call (`(0, util_1.isNullOrUndefined)(x)`), so defining them on that
 * object is enough; they are defined on every Node so that Node 22 prints no deprecation warning either.
 */
import util from "node:util";

/** The removed `util` helpers that tfjs-node 4.22 calls, with their documented meaning. */
export const TFJS_NODE_UTIL_HELPERS: Readonly<Record<string, (value: unknown) => boolean>> = {
  isNullOrUndefined: (value) => value === null || value === undefined,
  isArray: (value) => Array.isArray(value),
};

/** Makes the running Node give tfjs-node 4.22 what it calls. Idempotent. */
export function prepareNodeForTfjsNode(): void {
  for (const [name, fn] of Object.entries(TFJS_NODE_UTIL_HELPERS)) {
    if ((util as unknown as Record<string, unknown>)[name] === fn) continue;
    Object.defineProperty(util, name, { value: fn, writable: true, configurable: true, enumerable: true });
  }
}
