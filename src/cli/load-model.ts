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

/**
 * Load a model for a command that generates (chat, instruct, serve): a classifier is refused here, with the one
 * language-model check there is (generate/generate.ts).
 */
export async function loadLanguageModel(dir: string): ReturnType<typeof loadModelDir> {
  const loaded = await loadModelShowingProgress(dir);
  const { requireLanguageModel } = await import("../generate/generate.js");
  try {
    requireLanguageModel(loaded.gpt, dir);
  } catch (err) {
    loaded.gpt.dispose();
    throw err;
  }
  return loaded;
}
