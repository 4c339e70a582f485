/**
 * Typed errors. Library code throws these; the CLI turns them into one-line messages and exit codes.
 * A message names the problem; `fix` says what to do about it.
 */
export class LlmctlError extends Error {
  readonly fix?: string;
  readonly exitCode: number = 1;
  constructor(message: string, fix?: string, options?: { cause?: unknown }) {
    super(message, options);
    this.name = new.target.name;
    this.fix = fix;
  }
}

/** Wrong arguments or options: exit code 2. */
export class UsageError extends LlmctlError {
  override readonly exitCode = 2;
}

/** A file that is missing, unreadable, corrupt or of the wrong shape. */
export class FileFormatError extends LlmctlError {}

/** A config value out of range or of the wrong type. */
export class ConfigError extends LlmctlError {}

/** A backend that cannot be loaded. */
export class BackendError extends LlmctlError {}

/** A download or HTTP failure. */
export class NetworkError extends LlmctlError {}

/** Training diverged or was interrupted. */
export class TrainingError extends LlmctlError {}

/** Raised when the user interrupts (Ctrl-C) a long job; the CLI exits 130. */
export class InterruptedError extends LlmctlError {
  override readonly exitCode = 130;
}

/** The one line the CLI prints for an error: the problem, then the fix. */
export function errorLine(err: LlmctlError): string {
  return err.fix ? `${err.message} — ${err.fix}` : err.message;
}
