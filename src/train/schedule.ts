/**
 * The learning-rate schedule of the book's appendix D: a linear warmup from `initialLr` to `peakLr` over
 * `warmupSteps` updates, then either a constant `peakLr` (the ch05 recipe, which has no warmup at all) or a
 * cosine decay from `peakLr` down to `minLr` at the last update.
 */
import type { TrainSettings } from "./settings.js";
import { ConfigError } from "../errors.js";

export interface LrSchedule {
  peakLr: number;
  /** updates spent warming up; 0 = start at peakLr */
  warmupSteps: number;
  /** total number of updates in the run (needed by the cosine decay) */
  totalSteps: number;
  decay: "constant" | "cosine";
  /** the warmup's starting rate (appendix D: 1e-4 for a peak of 1e-2) */
  initialLr: number;
  /** the cosine's final rate (appendix D: 0.1 · initialLr) */
  minLr: number;
}

/** Appendix D's defaults relative to the peak: initial = peak/100, min = initial/10. */
export function makeSchedule(s: Partial<LrSchedule> & { peakLr: number; totalSteps: number }): LrSchedule {
  const initialLr = s.initialLr ?? s.peakLr / 100;
  const out: LrSchedule = {
    peakLr: s.peakLr,
    warmupSteps: s.warmupSteps ?? 0,
    totalSteps: s.totalSteps,
    decay: s.decay ?? "constant",
    initialLr,
    minLr: s.minLr ?? initialLr / 10,
  };
  if (!(out.peakLr > 0))
    throw new ConfigError(`learning rate must be positive, got ${out.peakLr}`, "set train.lr (or --lr) to e.g. 0.0004");
  if (!Number.isInteger(out.warmupSteps) || out.warmupSteps < 0) {
    throw new ConfigError(
      `warmup_steps must be a non-negative integer, got ${out.warmupSteps}`,
      "set train.warmup_steps to e.g. 0 or 20",
    );
  }
  if (out.decay !== "constant" && out.decay !== "cosine") {
    throw new ConfigError(
      `lr_schedule must be "constant" or "cosine", got "${String(out.decay)}"`,
      'set train.lr_schedule to "constant" or "cosine"',
    );
  }
  return out;
}

/** The rate for update number `step` (0-based: the book's `global_step` before it is incremented). */
export function learningRate(step: number, s: LrSchedule): number {
  if (step < s.warmupSteps) {
    return s.initialLr + step * ((s.peakLr - s.initialLr) / s.warmupSteps);
  }
  if (s.decay === "constant") return s.peakLr;
  const span = Math.max(1, s.totalSteps - s.warmupSteps);
  const progress = Math.min(1, (step - s.warmupSteps) / span);
  return s.minLr + (s.peakLr - s.minLr) * 0.5 * (1 + Math.cos(Math.PI * progress));
}

/**
 * A run's schedule from its settings. It spans all epochs (the book's len(train_loader) · n_epochs); max_steps
 * only stops early, so a run stopped by max_steps and resumed without it follows the same rates as one straight run.
 */
export function scheduleOf(
  s: Pick<TrainSettings, "lr" | "warmup_steps" | "epochs" | "lr_schedule" | "initial_lr" | "min_lr">,
  stepsPerEpoch: number,
): LrSchedule {
  return makeSchedule({
    peakLr: s.lr,
    warmupSteps: s.warmup_steps,
    totalSteps: s.epochs * stepsPerEpoch,
    decay: s.lr_schedule,
    initialLr: s.initial_lr ?? undefined,
    minLr: s.min_lr ?? undefined,
  });
}
