import type { loadModelDir } from "../model/model-dir.js";
import { spinner } from "./output.js";

/**
 * Load a model directory for a command, with a spinner while the weights are read. The spinner leaves stdin
 * alone (ora would put it in raw mode, where a typed Ctrl-C is a byte, not SIGINT): chat reads the terminal
 * and serve stops on Ctrl-C.
 */
export async function loadModelShowingProgress(dir: string): ReturnType<typeof loadModelDir> {
  const spin = spinner(`loading ${dir}`, { discardStdin: false });
  try {
    const { loadModelDir } = await import("../model/model-dir.js");
    return await loadModelDir(dir);
  } finally {
    spin.stop();
  }
}
