/** A real `llmctl serve` child process on 127.0.0.1 (a free port), for tests that talk to it as clients do. */
import { spawn, type ChildProcess } from "node:child_process";
import { join } from "node:path";
import { REPO_ROOT } from "./shared.js";
import { cliEnv } from "./backend.js";

export interface ServeProcess {
  /** e.g. "http://127.0.0.1:41234/" */
  url: string;
  child: ChildProcess;
  /** stderr so far (with --verbose: one line per finished request) */
  stderr(): string;
  /** resolves with the first stderr match of `re`, or rejects after `ms` */
  waitForStderr(re: RegExp, ms?: number): Promise<RegExpMatchArray>;
  /** send `signal` (default SIGINT, as Ctrl-C does) and resolve with the exit code */
  stop(signal?: NodeJS.Signals): Promise<number | null>;
}

export async function startServe(args: string[]): Promise<ServeProcess> {
  const child = spawn(
    process.execPath,
    [join(REPO_ROOT, "bin", "llmctl"), "serve", "--port", "0", "--verbose", ...args],
    { env: { ...process.env, ...cliEnv() }, stdio: ["ignore", "pipe", "pipe"] },
  );
  let stdout = "";
  let stderr = "";
  child.stderr!.on("data", (d) => (stderr += d));
  const exited = new Promise<number | null>((resolve) => child.on("close", (code) => resolve(code)));
  const url = await new Promise<string>((resolve, reject) => {
    const timer = setTimeout(
      () => reject(new Error(`llmctl serve printed no URL in 120 s; stderr: ${stderr}`)),
      120_000,
    );
    child.stdout!.on("data", (d) => {
      stdout += d;
      const m = stdout.match(/http:\/\/127\.0\.0\.1:\d+\//);
      if (m) {
        clearTimeout(timer);
        resolve(m[0]);
      }
    });
    void exited.then((code) => reject(new Error(`llmctl serve exited with ${code}: ${stderr}`)));
  });
  return {
    url,
    child,
    stderr: () => stderr,
    waitForStderr: async (re, ms = 60_000) => {
      const until = Date.now() + ms;
      for (;;) {
        const m = stderr.match(re);
        if (m) return m;
        if (Date.now() > until) throw new Error(`no ${re} in llmctl serve's stderr after ${ms} ms:\n${stderr}`);
        await new Promise((r) => setTimeout(r, 50));
      }
    },
    stop: (signal = "SIGINT") => {
      if (child.exitCode === null) child.kill(signal);
      return exited;
    },
  };
}
