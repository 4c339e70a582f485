/**
 * How commands talk to people and scripts: results on stdout (JSON with --json), progress and notes on
 * stderr, quiet unless --verbose.
 */
import { removeTemporariesNow } from "../fs-atomic.js";
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

/**
 * Token ids as text, space-separated (or, with `json`, as printJson's `{"count":N,"ids":[…]}`), written in
 * pieces as the stream takes them: a corpus's ids as one string would pass V8's longest string (~512 MB).
 */
export async function writeIds(
  ids: ArrayLike<number>,
  opts: { json: boolean; out?: NodeJS.WritableStream } = { json: false },
): Promise<void> {
  const out = opts.out ?? process.stdout;
  const sep = opts.json ? "," : " ";
  const PIECE = 1 << 16;
  const write = (text: string) =>
    out.write(text) ? Promise.resolve() : new Promise<void>((resolve) => out.once("drain", resolve));
  await write(opts.json ? `{"count":${ids.length},"ids":[` : "");
  for (let start = 0; start < ids.length; start += PIECE) {
    const end = Math.min(start + PIECE, ids.length);
    const piece = Array.prototype.slice.call(ids, start, end) as number[];
    await write((start > 0 ? sep : "") + piece.join(sep));
  }
  await write(opts.json ? "]}\n" : "\n");
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

/** The signals that ask a job to stop: Ctrl-C, a closed terminal, `kill`, `docker stop`, systemd, CI timeouts. */
export const STOP_SIGNALS = ["SIGINT", "SIGTERM", "SIGHUP"] as const;
type StopSignal = (typeof STOP_SIGNALS)[number];
const SIGNAL_NUMBERS: Record<StopSignal, number> = { SIGHUP: 1, SIGINT: 2, SIGTERM: 15 };

let stoppedBy: StopSignal | undefined;

/** The exit code of a command a signal stopped: 128 + the signal's number (130 for Ctrl-C), as shells report it. */
export function interruptedExitCode(): number {
  return 128 + SIGNAL_NUMBERS[stoppedBy ?? "SIGINT"];
}

/**
 * Stop signals for long jobs: the first SIGINT, SIGTERM or SIGHUP aborts `signal` (the job stops at its next
 * safe point and saves what it can: a training run a resumable checkpoint), a second quits at once, removing the
 * temporary files of writes in progress. `message` gets the signal's name. Call `release()` when the job ends.
 */
export function interruptOnSignals(message: (signal: string) => string): {
  signal: AbortSignal;
  release: () => void;
} {
  const controller = new AbortController();
  const onSignal = (sig: StopSignal) => {
    if (controller.signal.aborted) quitNow(sig);
    stoppedBy = sig;
    note(message(sig === "SIGINT" ? "Ctrl-C" : sig));
    controller.abort();
  };
  for (const sig of STOP_SIGNALS) process.on(sig, onSignal);
  return {
    signal: controller.signal,
    release: () => {
      for (const sig of STOP_SIGNALS) process.off(sig, onSignal);
    },
  };
}

/** Ends the process for a signal, leaving no temporary file behind. */
export function quitNow(sig: StopSignal): never {
  removeTemporariesNow();
  stoppedBy = sig;
  note(`llmctl: stopped by ${sig === "SIGINT" ? "Ctrl-C" : sig}; files being written were removed`);
  process.exit(interruptedExitCode());
}

/**
 * Commands that do not handle the stop signals themselves still end on them as Node would, with 128 + n, but
 * without leaving the temporary file of a write in progress (a 1 GB export's, say).
 */
export function quitOnUnhandledSignals(): void {
  for (const sig of STOP_SIGNALS) {
    process.on(sig, () => {
      if (process.listenerCount(sig) === 1) quitNow(sig);
    });
  }
}
