/**
 * TensorBoard logs for every training run: the Trainer's events become scalars in
 * RUN/tensorboard/events.out.tfevents.<time>.<host>.<pid>, so `tensorboard --logdir RUN` shows a run as it goes.
 *
 * Tags are `<event>/<field>`: step/loss, step/lr and step/tokens_per_second after every optimizer update;
 * eval/train_loss and eval/val_loss at each evaluation (the numbers log.jsonl holds); epoch/<field> for each
 * number an epoch record carries (finetune spam: epoch/train_accuracy, epoch/val_accuracy).
 *
 * Each process writes a file of its own, so a crashed process's torn last record is never appended to. A fresh
 * run deletes event files an earlier attempt left (as it empties log.jsonl). Every file starts with a SessionLog
 * START at the first step it will log, so after a resume TensorBoard drops what the crashed process logged past
 * the checkpoint: the same cut log.jsonl gets.
 */
import { mkdirSync, readdirSync, rmSync } from "node:fs";
import { hostname } from "node:os";
import { join } from "node:path";
import { EVENT_FILE_PREFIX, EventFileWriter, type Scalar } from "../formats/tfevents.js";
import type { TrainEvent } from "./events.js";

export const TENSORBOARD_DIR = "tensorboard";

/** an epoch record's own bookkeeping, not results to chart */
const EPOCH_KEYS = new Set(["epoch", "step", "tokens_seen"]);

/**
 * The run's TensorBoard event file as a listener of its events: opened at "start", closed at "stop", each event
 * recorded before it is passed on to `next`.
 */
export function recordTensorBoard(next?: (event: TrainEvent) => void): (event: TrainEvent) => void {
  let log: TensorBoardLog | null = null;
  return (event) => {
    if (event.kind === "start") log = new TensorBoardLog(event.runDir, event.step, !event.resumed);
    else if (event.kind === "stop") {
      log?.close();
      log = null;
    } else log?.record(event);
    next?.(event);
  };
}

export class TensorBoardLog {
  private readonly file: EventFileWriter;

  /**
   * Start this process's event file in `runDir`/tensorboard. `stepDone` is the step the run continues from (0 for
   * a fresh run, the checkpoint's step on resume); `fresh` deletes earlier event files.
   */
  constructor(runDir: string, stepDone: number, fresh: boolean) {
    const dir = join(runDir, TENSORBOARD_DIR);
    mkdirSync(dir, { recursive: true });
    const earlier = readdirSync(dir).filter((f) => f.startsWith(EVENT_FILE_PREFIX));
    if (fresh) for (const f of earlier) rmSync(join(dir, f));
    // TensorBoard reads a run's files in name order, and the name starts with the time in seconds: make this
    // file's sort after the earlier ones even when a resume comes within the same second
    const newest = fresh
      ? 0
      : Math.max(0, ...earlier.map((f) => Number(f.slice(EVENT_FILE_PREFIX.length).split(".")[0]) || 0));
    const seconds = Math.max(Math.floor(Date.now() / 1000), newest + 1);
    const name = `${EVENT_FILE_PREFIX}${String(seconds).padStart(10, "0")}.${hostname()}.${process.pid}`;
    this.file = new EventFileWriter(join(dir, name), "llmctl");
    this.file.write(Date.now() / 1000, stepDone + 1, { sessionStart: true });
  }

  record(event: Exclude<TrainEvent, { kind: "start" | "stop" }>): void {
    switch (event.kind) {
      case "step": {
        const p = event.progress;
        this.scalars(p.step, [
          { tag: "step/loss", value: p.loss },
          { tag: "step/lr", value: p.lr },
          { tag: "step/tokens_per_second", value: p.tokensPerSecond },
        ]);
        break;
      }
      case "eval": {
        const r = event.record;
        const values = [{ tag: "eval/train_loss", value: r.train_loss }];
        if (r.val_loss !== null) values.push({ tag: "eval/val_loss", value: r.val_loss });
        this.scalars(r.step, values);
        break;
      }
      case "epoch": {
        const values = Object.entries(event.record)
          .filter((e): e is [string, number] => typeof e[1] === "number" && !EPOCH_KEYS.has(e[0]))
          .map(([key, value]) => ({ tag: `epoch/${key}`, value }));
        if (values.length) this.scalars(event.record.step, values);
        break;
      }
      case "checkpoint":
        // the events up to a checkpoint are as durable as the checkpoint
        this.file.sync();
        break;
    }
  }

  close(): void {
    this.file.close();
  }

  private scalars(step: number, values: Scalar[]): void {
    this.file.write(Date.now() / 1000, step, { scalars: values });
  }
}
