import type { loadModelDir } from "../model/model-dir.js";
import { spinner } from "./output.js";

/** Load a model directory for a command, with a spinner while the weights are read. */
export async function loadModelShowingProgress(dir: string): ReturnType<typeof loadModelDir> {
  const spin = spinner(`loading ${dir}`);
  try {
    const { loadModelDir } = await import("../model/model-dir.js");
    return await loadModelDir(dir);
  } finally {
    spin.stop();
  }
}
