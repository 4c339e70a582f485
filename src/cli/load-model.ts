import { loadModelDir } from "../model/model-dir.js";
import { spinner } from "./output.js";

/** Load a model directory for a command, with a spinner while the weights are read. */
export function loadModelShowingProgress(dir: string): ReturnType<typeof loadModelDir> {
  const spin = spinner(`loading ${dir}`);
  return loadModelDir(dir).finally(() => spin.stop());
}
