/**
 * How commands talk to people and scripts: results on stdout (JSON with --json), progress and notes on
 * stderr, quiet unless --verbose.
 */
import type { Ora } from "ora";

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

/**
 * A spinner on stderr, shown only on a terminal. ora (some 20 modules) loads when a spinner is first shown,
 * not when the CLI starts; `text` can be set before it has. It leaves stdin alone: ora's discardStdin puts the
 * terminal in raw mode, where a typed Ctrl-C is a byte that JavaScript must read, not a SIGINT from the
 * terminal, so a job busy in synchronous work never heard it.
 */
class Spinner {
  private shown: Ora | undefined;
  private stopped = false;
  private current: string;

  constructor(text: string) {
    this.current = text;
    if (process.stderr.isTTY !== true) return;
    void import("ora").then(({ default: ora }) => {
      if (!this.stopped) this.shown = ora({ text: this.current, stream: process.stderr, discardStdin: false }).start();
    });
  }

  get text(): string {
    return this.current;
  }
  set text(text: string) {
    this.current = text;
    if (this.shown) this.shown.text = text;
  }
  get isSpinning(): boolean {
    return this.shown?.isSpinning ?? false;
  }
  /** Take the spinner off the line (to print a line above it); it comes back with the next text. */
  clear(): void {
    this.shown?.clear();
  }
  stop(): void {
    this.stopped = true;
    this.shown?.stop();
  }
}

export function spinner(text: string): Spinner {
  return new Spinner(text);
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
