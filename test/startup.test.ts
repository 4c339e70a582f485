// test: first backend pass only (start-up imports, no backend loads)
/**
 * The CLI answers at once: `--help`, a command's `--help` and `tokenize` never load TF.js (its import is
 * what made every command take seconds). Checked by running them with a hook that fails any @tensorflow
 * import, not by timing them.
 */
import { test } from "node:test";
import assert from "node:assert/strict";
import { join } from "node:path";
import { runCli } from "./helpers/cli.js";
import { REPO_ROOT } from "./helpers/shared.js";

const refuse = { NODE_OPTIONS: `--import=${join(REPO_ROOT, "dist", "test", "helpers", "refuse-tensorflow.js")}` };

test("--help, every command's --help and tokenize run without importing @tensorflow", async () => {
  const help = await runCli(["--help"], { env: refuse });
  assert.equal(help.code, 0, help.stderr);
  assert.match(help.stdout, /llmctl pretrain/);
  const commands = [["pretrain"], ["finetune", "spam"], ["finetune", "instruct"], ["generate"], ["load-gpt2"]];
  for (const command of [...commands, ["export"], ["chat"], ["serve"], ["bench"], ["info"]]) {
    const r = await runCli([...command, "--help"], { env: refuse });
    assert.equal(r.code, 0, `${command.join(" ")}: ${r.stderr}`);
  }
  const tok = await runCli(["tokenize", "Every effort moves you"], { env: refuse });
  assert.equal(tok.code, 0, tok.stderr);
  assert.equal(tok.stdout, "6109 3626 6100 345\n");
});

test("the hook does catch TF.js: a command that computes fails under it", async () => {
  const r = await runCli(["doctor", "--json", "--no-speed"], { env: refuse });
  assert.notEqual(r.code, 0);
  assert.match(r.stderr, /imported @tensorflow\/tfjs/);
});
