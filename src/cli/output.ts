/**
 * How commands talk to people and scripts: results on stdout (JSON with --json), progress and notes on
 * stderr, quiet unless --verbose.
 */
import ora, { type Ora, type Options as OraOptions } from "ora";

export interface GlobalOptions {
  backend: string;
  bf16: boolean;
  seed?: number;
  json: boolean;
  verbose: boolean;
}

export function printJson(value: unknown): void {
  process.stdout.write(JSON.stringify(value) + "\n");
}

export function printLine(text = ""): void {
  process.stdout.write(text + "\n");
}

/** A note for people, on stderr, shown only with --verbose. */
export function verbose(opts: GlobalOptions, text: string): void {
  if (opts.verbose) process.stderr.write(text + "\n");
}

/** A note for people on stderr (never stdout, so --json output stays parseable). */
export function note(text: string): void {
  process.stderr.write(text + "\n");
}

/** A spinner on stderr; silent when stderr is not a terminal. */
export function spinner(text: string, options: Pick<OraOptions, "discardStdin"> = {}): Ora {
  return ora({ text, stream: process.stderr, isSilent: process.stderr.isTTY !== true, ...options }).start();
}

export function formatDuration(seconds: number): string {
  if (!Number.isFinite(seconds) || seconds < 0) return "?";
  const s = Math.round(seconds);
  const h = Math.floor(s / 3600);
  const m = Math.floor((s % 3600) / 60);
  const sec = s % 60;
  return h > 0 ? `${h}h${String(m).padStart(2, "0")}m` : m > 0 ? `${m}m${String(sec).padStart(2, "0")}s` : `${sec}s`;
}

/**
 * Ctrl-C for long jobs: the first press aborts `signal` (the job stops at its next safe point and saves a
 * resumable checkpoint), a second quits at once with exit 130. Call `release()` when the job ends.
 */
export function interruptOnCtrlC(message: string): { signal: AbortSignal; release: () => void } {
  const controller = new AbortController();
  const onSigint = () => {
    if (controller.signal.aborted) process.exit(130);
    note(message);
    controller.abort();
  };
  process.on("SIGINT", onSigint);
  return { signal: controller.signal, release: () => process.off("SIGINT", onSigint) };
}
