/** Kernels the wasm backend lacks but llmctl needs (registered once, on first use of wasm). */
let registered = false;

export function registerWasmKernels(): void {
  if (registered) return;
  registered = true;
}
