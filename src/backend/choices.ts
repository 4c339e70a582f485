/** The backends `--backend` accepts, apart from the code that loads them, so the CLI parses without TF.js. */
export const BACKEND_NAMES = ["auto", "tensorflow", "webgpu", "wasm", "cpu"] as const;
