// test: first backend pass only (which files a command may write; refused before anything is computed)
import { test, before } from "node:test";
import assert from "node:assert/strict";
import { cpSync, linkSync, mkdirSync, mkdtempSync, readFileSync, symlinkSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { runCli } from "./helpers/cli.js";
import { sharedPath } from "./helpers/shared.js";

let work = "";
let model = "";
before(async () => {
  work = mkdtempSync(join(tmpdir(), "llmctl-io-"));
  model = join(work, "base");
  const r = await runCli(["load-gpt2", "--from", sharedPath("fixtures", "gpt2-tiny", "hf"), "--out", model]);
  assert.equal(r.code, 0, r.stderr);
});

/** Runs the command and checks it is refused in one line (exit 2) and that `kept` files are byte for byte as they were. */
async function refused(args: string[], kept: string[], said: RegExp): Promise<void> {
  const before = kept.map((f) => readFileSync(f));
  const r = await runCli(args);
  assert.equal(r.code, 2, `${args.join(" ")}: ${r.stderr}`);
  assert.equal(r.stderr.trim().split("\n").length, 1, r.stderr);
  assert.match(r.stderr, said);
  kept.forEach((f, i) => assert.ok(readFileSync(f).equals(before[i]), `${f} changed`));
}

test("no command writes over a file it reads, --force or not: same path, a link to it, a hard link, ..", async () => {
  const d = mkdtempSync(join(work, "same-"));
  const corpus = join(d, "corpus.txt");
  writeFileSync(corpus, "Every effort moves you");
  symlinkSync("corpus.txt", join(d, "link.txt"));
  linkSync(corpus, join(d, "hard.txt"));
  mkdirSync(join(d, "sub"));
  for (const out of [corpus, join(d, "link.txt"), join(d, "hard.txt"), join(d, "sub", "..", "corpus.txt")]) {
    await refused(
      ["tokenize", "--file", corpus, "--out", out],
      [corpus],
      /--out .* is --file .*which this command reads/,
    );
  }
  const responses = join(d, "responses.json");
  writeFileSync(responses, JSON.stringify([{ instruction: "a", output: "b", model_response: "b" }]));
  await refused(["evaluate", "-r", responses, "-o", responses], [responses], /--out .* is --responses .*reads/);
});

test("load-gpt2 --from X --out X (or --out the folder that holds X) is refused with --force; X is untouched", async () => {
  const hf = join(work, "hf-copy");
  cpSync(sharedPath("fixtures", "gpt2-tiny", "hf"), hf, { recursive: true });
  const weights = join(hf, "model.safetensors");
  await refused(["load-gpt2", "--from", hf, "--out", hf, "--force"], [weights], /--out .* is --from .*reads/);
  await refused(["load-gpt2", "--from", weights, "--out", hf, "--force"], [weights], /--out .* holds --from .*reads/);
});

test("exporting a LoRA model onto its own base is refused, --force or not; the base is untouched", async () => {
  const lora = join(work, "lora");
  mkdirSync(lora);
  const meta = JSON.parse(readFileSync(join(model, "config.json"), "utf8")) as Record<string, unknown>;
  meta.lora = { rank: 2, alpha: 2, base: "../base", base_sha256: "0".repeat(64), own_weights: [] };
  writeFileSync(join(lora, "config.json"), JSON.stringify(meta));
  const kept = [join(model, "model.safetensors"), join(model, "config.json")];
  for (const format of ["hf", "llmctl"]) {
    await refused(
      ["export", "-m", lora, "--format", format, "--out", model, "--force"],
      kept,
      /--out .* is its LoRA base .*reads/,
    );
  }
  await refused(
    ["export", "-m", lora, "--format", "gguf", "--out", join(model, "model.safetensors"), "--force"],
    kept,
    /--out .* is inside its LoRA base .*reads/,
  );
});

test("export writes no file the user did not name: HF files or a Modelfile already there need --force", async () => {
  const hfOut = join(work, "hf-out");
  mkdirSync(hfOut);
  writeFileSync(join(hfOut, "config.json"), "{}");
  writeFileSync(join(hfOut, "vocab.json"), "{}");
  await refused(
    ["export", "-m", model, "--format", "hf", "--out", hfOut],
    [join(hfOut, "config.json"), join(hfOut, "vocab.json")],
    /already holds config.json, vocab.json, which the export would replace — .*--force/,
  );
  const ggufDir = join(work, "gguf-out");
  mkdirSync(ggufDir);
  writeFileSync(join(ggufDir, "Modelfile"), "FROM ./mine.gguf\n");
  await refused(
    ["export", "-m", model, "--format", "gguf", "--out", join(ggufDir, "tiny.gguf")],
    [join(ggufDir, "Modelfile")],
    /Modelfile already exists.*--force/,
  );
  const forced = await runCli([
    "export",
    "-m",
    model,
    "--format",
    "gguf",
    "--out",
    join(ggufDir, "tiny.gguf"),
    "--force",
  ]);
  assert.equal(forced.code, 0, forced.stderr);
  assert.match(readFileSync(join(ggufDir, "Modelfile"), "utf8"), /tiny\.gguf/);
});
