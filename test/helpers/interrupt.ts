import assert from "node:assert/strict";
import { InterruptedError } from "../../src/errors.js";
import type { JobEvent } from "../../src/train/run.js";

/**
 * Run a training job as Ctrl-C would stop it: its signal aborts once step `step` is reported, and the job must end
 * in InterruptedError (its checkpoint saved at that step boundary). `job` spreads `stop` into its options.
 */
export async function interruptAtStep(
  step: number,
  job: (stop: { signal: AbortSignal; onEvent: (e: JobEvent) => void }) => Promise<unknown>,
): Promise<void> {
  const controller = new AbortController();
  const onEvent = (e: JobEvent) => {
    if (e.kind === "step" && e.progress.step === step) controller.abort();
  };
  await assert.rejects(job({ signal: controller.signal, onEvent }), InterruptedError);
}
