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

/** A file or directory the system would not read or write: disk full, no permission, a bad path. */
export class FileSystemError extends LlmctlError {}

/** What each filesystem error code means to someone at a shell, and what to do about it. */
const FS_ERRORS: Record<string, (path: string) => [message: string, fix: string]> = {
  ENOSPC: (p) => [
    `no space left on the device writing ${p}`,
    "free some space (or choose another directory) and run the command again",
  ],
  EDQUOT: (p) => [
    `disk quota exceeded writing ${p}`,
    "free some space (or choose another directory) and run the command again",
  ],
  ENOENT: (p) => [`${p}: no such file or directory`, "check the path"],
  EACCES: (p) => [`${p}: permission denied`, "choose a path you can write to, or change its permissions"],
  EPERM: (p) => [`${p}: operation not permitted`, "choose a path you can write to, or change its permissions"],
  EROFS: (p) => [`${p} is on a read-only file system`, "choose a directory on a writable file system"],
  EISDIR: (p) => [`${p} is a directory`, "give a file's path, not a directory's"],
  ENOTDIR: (p) => [`${p}: a part of the path is a file, not a directory`, "check the path"],
  EEXIST: (p) => [`${p} already exists`, "remove it or choose another path"],
  EMFILE: (p) => [`too many open files (opening ${p})`, "raise the limit (ulimit -n) or close other programs"],
  ENFILE: (p) => [`too many open files in the system (opening ${p})`, "close other programs and run the command again"],
  ENAMETOOLONG: (p) => [
    `${p}: a name in the path is too long`,
    "use a shorter name (at most 255 bytes for each part of the path)",
  ],
};

/**
 * The one mapping from Node's filesystem errors to llmctl's: an error with a known `code` becomes a
 * FileSystemError naming `path` (or the path Node gives) and the fix; anything else is returned as it is.
 */
export function fileSystemError(err: unknown, path?: string): unknown {
  if (err instanceof LlmctlError || !(err instanceof Error)) return err;
  const e = err as NodeJS.ErrnoException;
  const describe = e.code === undefined ? undefined : FS_ERRORS[e.code];
  const where = path ?? e.path;
  if (!describe || where === undefined) return err;
  const [message, fix] = describe(where);
  return new FileSystemError(message, fix, { cause: err });
}
