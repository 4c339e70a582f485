// test: first backend pass only (reads the sources' imports; nothing runs)
// The rules docs/architecture.md states, checked on the sources: no import cycles (type imports included),
// inference never reaches into training, a training step's gradients are taken in one file.
import { test } from "node:test";
import assert from "node:assert/strict";
import { readdirSync, readFileSync } from "node:fs";
import { dirname, join, relative, resolve } from "node:path";
import { REPO_ROOT } from "./helpers/shared.js";

const SRC = join(REPO_ROOT, "src");

function sources(dir: string): string[] {
  return readdirSync(dir, { withFileTypes: true }).flatMap((e) =>
    e.isDirectory() ? sources(join(dir, e.name)) : e.name.endsWith(".ts") ? [join(dir, e.name)] : [],
  );
}

/** Each source file (relative to src/) → the src files it imports, `import type` and `export … from` included. */
function importGraph(): Map<string, string[]> {
  const graph = new Map<string, string[]>();
  for (const file of sources(SRC)) {
    const text = readFileSync(file, "utf8");
    const targets = [
      ...text.matchAll(/(?:import|export)\s[^;]*?from\s+"(\.[^"]+)"/g),
      ...text.matchAll(/import\("(\.[^"]+)"\)/g),
    ].map((m) => relative(SRC, resolve(dirname(file), m[1].replace(/\.js$/, ".ts"))));
    graph.set(relative(SRC, file), [...new Set(targets)]);
  }
  return graph;
}

test("the import graph is read: every import names a source file", () => {
  const graph = importGraph();
  assert.ok(graph.size > 50, `only ${graph.size} source files`);
  for (const [file, targets] of graph)
    for (const t of targets) assert.ok(graph.has(t), `${file} imports ${t}, which is not a source file`);
  assert.ok(graph.get("train/run.ts")!.includes("train/trainer.ts"), "the parser sees run.ts's imports");
});

test("no import cycles, type imports included", () => {
  const graph = importGraph();
  const state = new Map<string, "open" | "done">();
  const cycles: string[] = [];
  const visit = (file: string, path: string[]) => {
    if (state.get(file) === "done") return;
    if (state.get(file) === "open") {
      cycles.push([...path.slice(path.indexOf(file)), file].join(" → "));
      return;
    }
    state.set(file, "open");
    for (const t of graph.get(file) ?? []) visit(t, [...path, file]);
    state.set(file, "done");
  };
  for (const file of graph.keys()) visit(file, []);
  assert.deepEqual(cycles, []);
});

test("inference never imports training: generate/, inspect/, serve/, judge/, weights/ and the inference commands", () => {
  const inference =
    /^(generate|inspect|serve|judge|weights)\/|^cli\/commands\/(generate|chat|instruct|serve|export|evaluate|classify|inspect)\.ts$/;
  const offending = [...importGraph()]
    .filter(([file]) => inference.test(file))
    .flatMap(([file, targets]) => targets.filter((t) => /^(train|finetune)\//.test(t)).map((t) => `${file} → ${t}`));
  assert.deepEqual(offending, []);
});

test("a training step's gradients are taken in one file, train/step.ts", () => {
  // backend/ holds the ops' own backward passes (a recomputed block takes its gradients there), not a step's
  const taking = sources(SRC)
    .filter((f) => !relative(SRC, f).startsWith("backend/"))
    .filter((f) => /tf\.variableGrads\(|tf\.valueAndGrads?\(|tf\.grads\(/.test(readFileSync(f, "utf8")))
    .map((f) => relative(SRC, f));
  assert.deepEqual(taking, ["train/step.ts"]);
});
