/**
 * The backend a test runs on when it is not about one backend in particular: the one `npm test` is running the
 * suite on (LLMCTL_TEST_BACKEND, set by scripts/test.mjs), else wasm, the default embedded backend.
 */
export function testBackend(): "wasm" | "tensorflow" | "webgpu" | "cpu" {
  const b = process.env.LLMCTL_TEST_BACKEND ?? "wasm";
  if (b !== "wasm" && b !== "tensorflow" && b !== "webgpu" && b !== "cpu")
    throw new Error(`LLMCTL_TEST_BACKEND=${b}: use wasm, tensorflow, webgpu or cpu`);
  return b;
}

/** Environment for CLI runs in tests: the same backend as the test pass. */
export function cliEnv(): NodeJS.ProcessEnv {
  return { LLMCTL_BACKEND: testBackend() };
}
