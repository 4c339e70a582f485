import type { loadModelDir } from "../model/model-dir.js";
import { selectBackend } from "./backend.js";
import { note, spinner, type GlobalOptions } from "./output.js";

/** The `--model` flag of a command that reads one model directory. */
export function modelOption(describe: string) {
  return { alias: "m", type: "string", demandOption: true, describe } as const;
}

/**
 * Load a model directory for a command that runs it, with a spinner while the weights are read; first, whether it
 * fits the backend (generate/fit.ts).
 */
export async function loadModelShowingProgress(dir: string): ReturnType<typeof loadModelDir> {
  const { fitForInference } = await import("../generate/fit.js");
  await fitForInference(dir, note);
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

/**
 * Run a generating command (chat, instruct, serve) with its language model: the backend picked, the model loaded
 * (loadLanguageModel), and disposed when `use` ends, however it ends.
 */
export async function withLanguageModel<T>(
  args: GlobalOptions & { model: string },
  use: (loaded: Awaited<ReturnType<typeof loadModelDir>>) => Promise<T>,
): Promise<T> {
  await selectBackend(args);
  const loaded = await loadLanguageModel(args.model);
  try {
    return await use(loaded);
  } finally {
    loaded.gpt.dispose();
  }
}
