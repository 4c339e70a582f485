/**
 * The run directory of a training run: its checkpoint, its lock, its log (log.jsonl) and loss plot (loss.svg).
 *
 * Checkpoints are committed as one unit.
 *
 * A checkpoint is several files (the model directory's config.json + model.safetensors, optimizer.safetensors,
 * trainer-state.json) that must agree with each other. Renaming each file atomically is not enough: a crash
 * between two renames would pair new weights with an old optimizer. So a checkpoint is written in three steps:
 *
 *   1. every file goes into a fresh staging directory `DIR/.checkpoint-stage-*` (fsynced);
 *   2. a journal `DIR/.checkpoint-commit.json` naming the staged files is written atomically — the commit point;
 *   3. the files are renamed into DIR, then the journal and the staging directory are removed.
 *
 * A crash before step 2 leaves the previous checkpoint untouched (the stale staging directory is deleted on the
 * next open); a crash during step 3 is finished by `recoverCheckpoint`, which redoes the remaining renames. Either
 * way DIR holds one complete checkpoint.
 */
import { existsSync, readFileSync, realpathSync } from "node:fs";
import { appendFile, mkdir, readFile, readdir, rename, rm, rmdir, writeFile } from "node:fs/promises";
import { join } from "node:path";
import { makeDirectory, writeFileAtomic } from "../fs-atomic.js";
import { FileFormatError, FileSystemError, TrainingError, UsageError, fileSystemError } from "../errors.js";
import { readAllSafetensors, writeSafetensors } from "../formats/safetensors.js";
import { linePlotSvg } from "../plot/svg.js";
import type { EpochRecord, EvalRecord } from "./events.js";
import { Rng } from "../data/rng.js";

export const TRAINER_STATE_FILE = "trainer-state.json";
export const OPTIMIZER_FILE = "optimizer.safetensors";
/** Beside the checkpoint, not part of it: every evaluation and epoch (JSON lines), and the loss plot. */
export const LOG_FILE = "log.jsonl";
export const PLOT_FILE = "loss.svg";
const JOURNAL = ".checkpoint-commit.json";
const STAGE_PREFIX = ".checkpoint-stage-";

/** What `trainer-state.json` holds: everything besides tensors needed to continue a run exactly. */
export interface TrainerState {
  format: "llmctl-trainer-state";
  version: 1;
  /** optimizer updates done */
  step: number;
  /** the epoch in progress (0-based) and the next micro-batch in it */
  epoch: number;
  batch_index: number;
  /** the current epoch's window order, or null when the next epoch has not drawn one yet */
  order: number[] | null;
  /** the data RNG's state (4 uint32) after drawing `order` */
  rng: number[];
  tokens_seen: number;
  /** training time so far, for throughput and ETA across resumes */
  elapsed_seconds: number;
  /** the run ended (all epochs or max_steps) rather than being interrupted */
  finished: boolean;
  /** the resolved train settings of the run */
  settings: Record<string, unknown>;
  /** the job's own choices (run.ts); absent in runs saved before it moved here, and in bare Trainer runs */
  job?: JobRecord;
}

/** A job's own choices (its data, pool, prompt style…) under its name: what --resume rebuilds the run from. */
export interface JobRecord {
  task: string;
  [key: string]: unknown;
}

/** Test hook: called before each rename of the commit, to simulate a crash part-way. */
export type CommitHook = (file: string) => void;

/**
 * Write a checkpoint into `runDir`: `write(stageDir)` writes every file of it into `stageDir`. Files not in the
 * stage (logs, plots) are left alone. trainer-state.json, when present, is moved last.
 */
export async function writeCheckpoint(
  runDir: string,
  write: (stageDir: string) => Promise<void>,
  beforeRename?: CommitHook,
): Promise<void> {
  await makeDirectory(runDir);
  await recoverCheckpoint(runDir);
  const stageName = `${STAGE_PREFIX}${process.pid}-${Date.now()}`;
  const stage = join(runDir, stageName);
  await mkdir(stage);
  try {
    await write(stage);
  } catch (err) {
    await rm(stage, { recursive: true, force: true });
    throw err;
  }
  const files = (await readdir(stage)).filter((f) => !f.startsWith("."));
  files.sort((a, b) => Number(a === TRAINER_STATE_FILE) - Number(b === TRAINER_STATE_FILE));
  await writeFileAtomic(join(runDir, JOURNAL), JSON.stringify({ stage: stageName, files }));
  await finishCommit(runDir, stageName, files, beforeRename);
}

async function finishCommit(
  runDir: string,
  stageName: string,
  files: string[],
  beforeRename?: CommitHook,
): Promise<void> {
  for (const f of files) {
    const from = join(runDir, stageName, f);
    if (!existsSync(from)) continue; // moved before a crash
    beforeRename?.(f);
    await rename(from, join(runDir, f));
  }
  await rm(join(runDir, JOURNAL), { force: true });
  await rm(join(runDir, stageName), { recursive: true, force: true });
}

/**
 * Bring `runDir` to a consistent checkpoint after a crash: finish a committed checkpoint, drop uncommitted
 * staging directories. Returns true when a half-moved checkpoint was completed.
 */
export async function recoverCheckpoint(runDir: string): Promise<boolean> {
  if (!existsSync(runDir)) return false;
  let rolledForward = false;
  const journal = join(runDir, JOURNAL);
  if (existsSync(journal)) {
    let parsed: { stage: string; files: string[] };
    try {
      parsed = JSON.parse(await readFile(journal, "utf8"));
    } catch {
      throw new FileFormatError(`${journal} is corrupt`, `delete it and resume from the files in ${runDir}`);
    }
    await finishCommit(runDir, parsed.stage, parsed.files);
    rolledForward = true;
  }
  for (const entry of await readdir(runDir)) {
    if (entry.startsWith(STAGE_PREFIX)) await rm(join(runDir, entry), { recursive: true, force: true });
  }
  return rolledForward;
}

/** A directory with a trainer-state.json holds a run: refused as a new run's directory (see prepareNewRunDir). */
export function refuseExistingRun(runDir: string): void {
  if (existsSync(join(runDir, TRAINER_STATE_FILE))) {
    throw new UsageError(
      `${runDir} already holds a training run`,
      `continue it with --resume ${runDir}, or choose another output directory`,
    );
  }
}

/**
 * Where a new run may start: a directory that is missing or empty. One holding a run is continued with
 * --resume; one holding other files (a model, someone's data) only with `force`, which starts over there:
 * the old run's resumable state is removed so none of it is resumed or mixed in. `inputs` are directories the
 * run reads (its base model): never its output, force or not.
 */
export async function prepareNewRunDir(
  runDir: string,
  opts: { force?: boolean; inputs?: (string | undefined)[] } = {},
): Promise<void> {
  const same = (a: string, b: string) => existsSync(a) && existsSync(b) && realpathSync(a) === realpathSync(b);
  for (const input of opts.inputs ?? [])
    if (input !== undefined && same(input, runDir))
      throw new UsageError(
        `--out ${runDir} is the model this run reads`,
        "choose another --out (the base model must stay as it is)",
      );
  if (!existsSync(runDir)) return;
  if (opts.force) {
    await recoverCheckpoint(runDir);
    for (const f of [TRAINER_STATE_FILE, OPTIMIZER_FILE]) await rm(join(runDir, f), { force: true });
    return;
  }
  refuseExistingRun(runDir);
  const held = (await readdir(runDir)).filter((f) => f !== LOCK_FILE);
  if (held.length > 0)
    throw new UsageError(
      `${runDir} is not empty (it holds ${held.slice(0, 3).join(", ")}${held.length > 3 ? ", …" : ""}) and holds no run to resume`,
      "choose another --out, or pass --force to start a new run there (files of the same names are replaced)",
    );
}

/** Beside a run's files while a process trains in it: that process's pid. */
export const LOCK_FILE = ".llmctl.lock";

/** The pid holding `runDir`'s lock if that process is alive; a lock whose process is gone is stale. */
function lockOwner(runDir: string): number | null {
  let pid: number;
  try {
    pid = Number(readFileSync(join(runDir, LOCK_FILE), "utf8").trim());
  } catch {
    return null;
  }
  if (!Number.isInteger(pid) || pid <= 0 || pid === process.pid) return null;
  try {
    process.kill(pid, 0);
    return pid;
  } catch (err) {
    return (err as NodeJS.ErrnoException).code === "EPERM" ? pid : null; // EPERM: alive, another user's
  }
}

/** Refuse a run directory another live process is training in. */
export function refuseLockedRunDir(runDir: string): void {
  const pid = lockOwner(runDir);
  if (pid !== null)
    throw new UsageError(
      `${runDir} is in use by another llmctl process (pid ${pid})`,
      `wait for it to finish or stop it; if no such process runs, delete ${join(runDir, LOCK_FILE)}`,
    );
}

/**
 * Take `runDir`'s lock for this process (a stale one is replaced), so a second process on the same directory
 * refuses instead of interleaving checkpoints. Returns its release, which also removes the directory when the
 * lock made it and nothing else went in (a run refused before it wrote anything leaves nothing behind).
 */
export async function lockRunDir(runDir: string): Promise<() => Promise<void>> {
  const made = !existsSync(runDir);
  await makeDirectory(runDir);
  const path = join(runDir, LOCK_FILE);
  for (;;) {
    refuseLockedRunDir(runDir);
    try {
      await writeFile(path, `${process.pid}\n`, { flag: "wx" });
      return async () => {
        await rm(path, { force: true });
        if (made) await rmdir(runDir).catch(() => {}); // ENOTEMPTY: the run wrote its files
      };
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code !== "EEXIST") throw fileSystemError(err, path);
      if (lockOwner(runDir) === null) await rm(path, { force: true }); // stale (or our own from a crash)
    }
  }
}

/** Read and check trainer-state.json of a run directory (after recovering it). */
export async function readTrainerState(runDir: string): Promise<TrainerState> {
  await recoverCheckpoint(runDir);
  const path = join(runDir, TRAINER_STATE_FILE);
  if (!existsSync(path)) {
    throw new UsageError(
      `${runDir} holds no training run to resume (no ${TRAINER_STATE_FILE})`,
      "pass the --out directory of an earlier run, or start a new run without --resume",
    );
  }
  let s: TrainerState;
  try {
    s = JSON.parse(await readFile(path, "utf8"));
  } catch (err) {
    throw new FileFormatError(
      `${path} is not valid JSON: ${(err as Error).message}`,
      "the checkpoint is damaged; start a new run",
    );
  }
  if (s.format !== "llmctl-trainer-state" || s.version !== 1) {
    throw new FileFormatError(
      `${path} is not an llmctl trainer state (version 1)`,
      "pass the --out directory of an earlier llmctl training run",
    );
  }
  for (const key of ["step", "epoch", "batch_index", "tokens_seen", "elapsed_seconds"] as const) {
    if (typeof s[key] !== "number" || !(s[key] >= 0))
      throw new FileFormatError(
        `${path}: '${key}' is missing or invalid`,
        "the checkpoint is damaged; start a new run",
      );
  }
  if (!Array.isArray(s.rng) || s.rng.length !== 4)
    throw new FileFormatError(`${path}: 'rng' must hold 4 numbers`, "the checkpoint is damaged; start a new run");
  return s;
}

/** A new run's log: the directory checked free of another run, log.jsonl started empty. */
export async function startRunLog(runDir: string): Promise<void> {
  refuseExistingRun(runDir);
  await makeDirectory(runDir);
  await writeFile(join(runDir, LOG_FILE), "");
}

export async function appendRunLog(runDir: string, record: EvalRecord | EpochRecord): Promise<void> {
  await appendFile(join(runDir, LOG_FILE), JSON.stringify(record) + "\n");
}

/**
 * On resume, log.jsonl is kept up to the checkpoint: what was written after it (before a crash) will be written
 * again. Returns the evaluations kept.
 */
export async function restoreRunLog(runDir: string, st: TrainerState): Promise<EvalRecord[]> {
  const logPath = join(runDir, LOG_FILE);
  const lines = existsSync(logPath) ? (await readFile(logPath, "utf8")).split("\n").filter(Boolean) : [];
  const kept: string[] = [];
  const evals: EvalRecord[] = [];
  for (const line of lines) {
    let rec: EvalRecord | EpochRecord;
    try {
      rec = JSON.parse(line);
    } catch {
      continue; // a line torn by a crash
    }
    if (rec.step > st.step || (rec.type === "epoch" && rec.epoch >= st.epoch)) continue;
    kept.push(line);
    if (rec.type === "eval") evals.push(rec);
  }
  await writeFileAtomic(logPath, kept.map((l) => l + "\n").join(""));
  return evals;
}

/** The book's plot_losses: train and validation loss against tokens seen. */
export function lossPlot(evals: EvalRecord[]): string {
  return linePlotSvg({
    title: "Loss",
    xLabel: "tokens seen",
    yLabel: "loss",
    series: [
      { label: "training loss", color: "#1f77b4", points: evals.map((e) => [e.tokens_seen, e.train_loss]) },
      {
        label: "validation loss",
        color: "#ff7f0e",
        dashed: true,
        points: evals.filter((e) => e.val_loss !== null).map((e) => [e.tokens_seen, e.val_loss as number]),
      },
    ],
  });
}

export interface CheckpointParts {
  state: TrainerState;
  /** writes the model's files into a directory */
  saveModel: (dir: string) => Promise<void>;
  /** AdamW's moments, and its step */
  moments: Map<string, { shape: number[]; data: Float32Array }>;
  optimizerStep: number;
  /** the step of the checkpoint the directory holds now (null: none) */
  previousStep: number | null;
  beforeCommitRename?: CommitHook;
}

/**
 * Commit one checkpoint: the model, optimizer.safetensors and trainer-state.json. When the final one does not
 * fit (its optimizer state is twice the model), the trained model alone is saved where nothing else is lost: the
 * run directory when it held no checkpoint, else model-step-N beside that checkpoint, which stays resumable.
 */
export async function saveCheckpoint(runDir: string, p: CheckpointParts): Promise<void> {
  try {
    await writeCheckpoint(
      runDir,
      async (stage) => {
        await p.saveModel(stage);
        const entries = [...p.moments].map(([name, { shape, data }]) => ({ name, shape, data }));
        await writeSafetensors(join(stage, OPTIMIZER_FILE), entries, {
          format: "llmctl-adamw",
          step: String(p.optimizerStep),
        });
        await writeFileAtomic(join(stage, TRAINER_STATE_FILE), JSON.stringify(p.state, null, 1) + "\n");
      },
      p.beforeCommitRename,
    );
  } catch (err) {
    if (p.state.finished && outOfSpace(err)) throw await saveModelAlone(runDir, p, err as FileSystemError);
    throw err;
  }
}

/** A write failed for want of space (ENOSPC, EDQUOT), as fileSystemError reports it. */
function outOfSpace(err: unknown): boolean {
  const code = err instanceof FileSystemError ? (err.cause as NodeJS.ErrnoException | undefined)?.code : undefined;
  return code === "ENOSPC" || code === "EDQUOT";
}

async function saveModelAlone(runDir: string, p: CheckpointParts, full: FileSystemError): Promise<FileSystemError> {
  const kept = p.previousStep;
  const step = p.state.step;
  const dir = kept === null ? runDir : join(runDir, `model-step-${step}`);
  const restart =
    kept === null
      ? `free space and start again with --force`
      : `${runDir} keeps the resumable checkpoint of step ${kept} (--resume ${runDir} once there is space)`;
  try {
    await p.saveModel(dir);
  } catch (err) {
    if (!outOfSpace(err)) throw err;
    return new FileSystemError(`${full.message}; the trained model alone does not fit either`, restart);
  }
  return new FileSystemError(
    `${full.message}: the final checkpoint (model and optimizer state) did not fit, the trained model of step ` +
      `${step} alone did and is in ${dir} (-m ${dir} uses it; it cannot be resumed)`,
    kept === null ? `to train further, ${restart}` : restart,
  );
}

/** A checkpoint's optimizer moments, by name. */
export async function readOptimizerState(runDir: string): Promise<Map<string, { data: Float32Array }>> {
  const optFile = join(runDir, OPTIMIZER_FILE);
  if (!existsSync(optFile))
    throw new TrainingError(`${runDir} has no ${OPTIMIZER_FILE}`, "the checkpoint is incomplete; start a new run");
  return (await readAllSafetensors(optFile)).tensors;
}

/**
 * A checkpoint continues only on the data it was saved with: its epoch order must be a permutation of the
 * `examples` the source orders, and its position must be where `numBatches` per epoch put it. Otherwise the run
 * would replay indices past the data's end, or train on other examples than it claims.
 */
export function checkDataPosition(
  st: TrainerState,
  path: string,
  data: { examples: number; numBatches: number; stepsPerEpoch: number; gradAccum: number },
): void {
  const n = data.examples;
  const fix = "resume with the data and settings the run was started with, or start a new run";
  if (st.order !== null) {
    if (!Array.isArray(st.order) || st.order.length !== n)
      throw new UsageError(
        `${path}: the saved data order covers ${Array.isArray(st.order) ? st.order.length : "no"} examples, the data now has ${n}`,
        fix,
      );
    const seen = new Uint8Array(n);
    for (const i of st.order) {
      if (!Number.isInteger(i) || i < 0 || i >= n || seen[i])
        throw new FileFormatError(
          `${path}: the saved data order is not a permutation of 0…${n - 1} (holds ${JSON.stringify(i)})`,
          "the checkpoint is damaged; start a new run",
        );
      seen[i] = 1;
    }
  }
  const expected = st.epoch * data.stepsPerEpoch + Math.ceil(st.batch_index / data.gradAccum);
  if (st.batch_index > data.numBatches || st.step !== expected)
    throw new UsageError(
      `${path}: step ${st.step} at batch ${st.batch_index} of epoch ${st.epoch + 1} does not fit ${data.numBatches} batches per epoch (grad_accum ${data.gradAccum})`,
      fix,
    );
}

/** Where a run is, as of its last completed optimizer step: all that a checkpoint saves besides tensors. */
export interface RunPosition {
  step: number;
  /** the epoch in progress (0-based), the next micro-batch in it, and its order (null: not drawn yet) */
  epoch: number;
  batchIndex: number;
  order: Int32Array | null;
  /** the data RNG, after drawing `order` */
  rng: Rng;
  tokensSeen: number;
  /** training time of the run before this process's part */
  elapsedSeconds: number;
}

export function newPosition(seed: number): RunPosition {
  return { step: 0, epoch: 0, batchIndex: 0, order: null, rng: new Rng(seed), tokensSeen: 0, elapsedSeconds: 0 };
}

/** trainer-state.json for `at`, `elapsed` seconds into the run. */
export function trainerState(
  at: RunPosition,
  elapsed: number,
  finished: boolean,
  settings: Readonly<Record<string, unknown>>,
  job?: JobRecord,
): TrainerState {
  return {
    format: "llmctl-trainer-state",
    version: 1,
    step: at.step,
    epoch: at.epoch,
    batch_index: at.batchIndex,
    order: at.order ? Array.from(at.order) : null,
    rng: at.rng.state,
    tokens_seen: at.tokensSeen,
    elapsed_seconds: Math.round(elapsed * 1000) / 1000,
    finished,
    settings: { ...settings },
    ...(job ? { job } : {}),
  };
}

export function positionOf(st: TrainerState): RunPosition {
  return {
    step: st.step,
    epoch: st.epoch,
    batchIndex: st.batch_index,
    order: st.order ? Int32Array.from(st.order) : null,
    rng: new Rng(st.rng),
    tokensSeen: st.tokens_seen,
    elapsedSeconds: st.elapsed_seconds,
  };
}

/** Non-finite values among the weights and the optimizer's moments: a checkpoint never holds any. */
export async function countNonFinite(
  params: readonly { variable: { data(): Promise<unknown>; size: number } }[],
  moments: Map<string, { data: Float32Array }>,
): Promise<{ bad: number; total: number }> {
  const count = (data: Float32Array) => {
    let n = 0;
    for (let i = 0; i < data.length; i++) if (!Number.isFinite(data[i])) n++;
    return n;
  };
  let bad = 0;
  let total = 0;
  for (const { variable } of params) {
    bad += count((await variable.data()) as Float32Array);
    total += variable.size;
  }
  for (const { data } of moments.values()) {
    bad += count(data);
    total += data.length;
  }
  return { bad, total };
}

/**
 * The error for a run whose numbers left the finite range: what happened, and what is left of the run. The
 * checkpoint in runDir predates the divergence (no checkpoint holds a non-finite value), but resuming it replays
 * the same updates, so the way on is a new run with a lower rate, or that checkpoint as a model.
 */
export function divergedError(
  what: string,
  lr: number,
  run: { runDir: string; savedStep: number | null; peakLr: number; lora?: { rank: number; alpha: number } | null },
): TrainingError {
  const { runDir: dir, lora } = run;
  // a learning rate past 1 is no recipe's: suggest the book's order of magnitude, not a tenth of it
  const saner = run.peakLr > 1 ? 4e-4 : run.peakLr / 10;
  const remedy =
    lora && lora.alpha / lora.rank > 64
      ? `lower --lora-alpha (${lora.alpha} scales the adapters by alpha/rank = ${(lora.alpha / lora.rank).toPrecision(3)}; the default is the rank)`
      : `lower the learning rate (e.g. --lr ${saner.toPrecision(2)}) or set train.grad_clip to 1.0`;
  return new TrainingError(
    `${what} (lr ${lr.toPrecision(3)})`,
    run.savedStep === null
      ? `no checkpoint was saved (${dir} holds only this run's log); start again with --force and ${remedy}`
      : `${dir} keeps the checkpoint of step ${run.savedStep}, the last finite one (-m ${dir} loads it); to train on, start a new run and ${remedy}`,
  );
}
