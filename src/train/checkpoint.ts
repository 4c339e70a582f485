/**
 * Checkpoints in a run directory, committed as one unit.
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
import { mkdir, readFile, readdir, rename, rm, writeFile } from "node:fs/promises";
import { join } from "node:path";
import { makeDirectory, writeFileAtomic } from "../fs-atomic.js";
import { FileFormatError, UsageError, fileSystemError } from "../errors.js";

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

/** The one guard against starting a run over another: a directory with a trainer-state.json holds a run. */
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
 * refuses instead of interleaving checkpoints. Returns its release.
 */
export async function lockRunDir(runDir: string): Promise<() => Promise<void>> {
  await makeDirectory(runDir);
  const path = join(runDir, LOCK_FILE);
  for (;;) {
    refuseLockedRunDir(runDir);
    try {
      await writeFile(path, `${process.pid}\n`, { flag: "wx" });
      return () => rm(path, { force: true });
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
