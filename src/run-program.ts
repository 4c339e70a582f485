/** Running another program (python, a reference implementation) to completion, its output collected. */
import { spawn } from "node:child_process";

/** Run `cmd` with `args` and collect its output; a program that cannot start is code −1 with the reason. */
export function runProgram(cmd: string, args: string[]): Promise<{ code: number; stdout: string; stderr: string }> {
  return new Promise((resolvePromise) => {
    const child = spawn(cmd, args, { stdio: ["ignore", "pipe", "pipe"] });
    let stdout = "";
    let stderr = "";
    child.stdout.on("data", (d) => (stdout += d));
    child.stderr.on("data", (d) => (stderr += d));
    child.on("error", (err) => resolvePromise({ code: -1, stdout, stderr: String(err) }));
    child.on("close", (code) => resolvePromise({ code: code ?? -1, stdout, stderr }));
  });
}
