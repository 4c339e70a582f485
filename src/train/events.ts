/**
 * What a training run reports as it goes: a step, an evaluation, an epoch's end, a checkpoint. The Trainer emits
 * them; the CLI renders them, and TensorBoard's writer and log.jsonl record them.
 */

/** One evaluation, as written to log.jsonl. */
export interface EvalRecord {
  type: "eval";
  step: number;
  /** 0-based epoch in progress when evaluated */
  epoch: number;
  tokens_seen: number;
  train_loss: number;
  val_loss: number | null;
  lr: number;
  elapsed_seconds: number;
}

/** What `afterEpoch` returned, as written to log.jsonl (e.g. `{ sample: "…" }` or `{ val_accuracy: 0.95 }`). */
export interface EpochRecord {
  type: "epoch";
  epoch: number;
  step: number;
  tokens_seen: number;
  [key: string]: unknown;
}

/** One optimizer update, as reported to `onEvent` (llm.c's per-step line: loss, ms, tok/s). */
export interface TrainProgress {
  step: number;
  totalSteps: number;
  /** 0-based epoch and the next micro-batch within it */
  epoch: number;
  epochs: number;
  batch: number;
  batchesPerEpoch: number;
  loss: number;
  lr: number;
  tokensSeen: number;
  /** wall time of this update (forward, backward, optimizer) */
  msPerStep: number;
  /** tokens per second over this process's part of the run */
  tokensPerSecond: number;
  etaSeconds: number;
  /** a classifier's running accuracy over this epoch's training batches so far (added by finetune spam) */
  accuracy?: number;
}

export type TrainEvent =
  /** the run begins (or goes on, `resumed`) after `step` done steps; `stop` follows however it ends */
  | { kind: "start"; step: number; runDir: string; resumed: boolean }
  | { kind: "stop" }
  | { kind: "step"; progress: TrainProgress }
  | { kind: "eval"; record: EvalRecord }
  | { kind: "epoch"; record: EpochRecord }
  | { kind: "checkpoint"; step: number; dir: string; final: boolean };

/** What a run reports when it ends: where it got to, its last losses, and this process's throughput. */
export interface TrainResult {
  step: number;
  epoch: number;
  tokensSeen: number;
  evals: EvalRecord[];
  /** the last evaluation's losses */
  trainLoss: number | null;
  valLoss: number | null;
  /** wall time of this process's part of the run, and its throughput */
  seconds: number;
  tokensPerSecond: number;
}
