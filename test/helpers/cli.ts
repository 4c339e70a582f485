/** Run the built CLI as a user would, capturing stdout, stderr and the exit code. */
import { spawn } from "node:child_process";
import { join } from "node:path";
import { REPO_ROOT, sharedPath } from "./shared.js";
import { writeConfigFile } from "./tiny-config.js";

export interface CliResult {
  code: number;
  stdout: string;
  stderr: string;
}

export function runCli(
  args: string[],
  opts: { env?: NodeJS.ProcessEnv; input?: string; cwd?: string; bin?: string } = {},
): Promise<CliResult> {
  return new Promise((resolvePromise, reject) => {
    const child = spawn(process.execPath, [opts.bin ?? join(REPO_ROOT, "bin", "llmctl"), ...args], {
      cwd: opts.cwd ?? REPO_ROOT,
      env: { ...process.env, ...opts.env },
      stdio: ["pipe", "pipe", "pipe"],
    });
    let stdout = "";
    let stderr = "";
    child.stdout.on("data", (d) => (stdout += d));
    child.stderr.on("data", (d) => (stderr += d));
    child.on("error", reject);
    child.on("close", (code) => resolvePromise({ code: code ?? -1, stdout, stderr }));
    child.stdin.end(opts.input ?? "");
  });
}

/**
 * `llmctl pretrain` arguments for a short run of a 1-block model (width `emb`, 32 positions, GPT-2's vocabulary)
 * on the-verdict: 1 epoch of 72 updates of 4 × 16 tokens, evaluated only at the first. Its config is written in
 * `dir`. At width 16 a checkpoint is 19.3 MB (6.4 model, 12.9 optimizer).
 */
export function tinyPretrainArgs(dir: string, out: string, emb = 16): string[] {
  const cfg = join(dir, `pretrain-${emb}.json`);
  writeConfigFile(
    cfg,
    { vocab_size: 50257, context_length: 32, emb_dim: emb, n_heads: 2, n_layers: 1, drop_rate: 0.1 },
    { epochs: 1, batch_size: 4, max_length: 16, eval_freq: 1000, eval_iter: 1, sample_tokens: 0 },
  );
  return ["pretrain", "--config", cfg, "--data", sharedPath("datasets", "the-verdict.txt"), "--out", out];
}
