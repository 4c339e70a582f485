// test: first backend pass only (SVG plots, no tensors)
import { test } from "node:test";
import assert from "node:assert/strict";
import { niceTicks, formatTick, linePlotSvg } from "../src/plot/svg.js";
import { lossPlot } from "../src/train/run-dir.js";
import type { EvalRecord } from "../src/train/events.js";

test("nice ticks are round steps covering the range", () => {
  assert.deepEqual(niceTicks(0, 10), [0, 2, 4, 6, 8, 10]);
  assert.deepEqual(niceTicks(0.4, 9.8), [0, 2, 4, 6, 8, 10]);
  assert.deepEqual(niceTicks(512, 46080), [0, 10000, 20000, 30000, 40000, 50000]);
  assert.deepEqual(niceTicks(3, 3), [2.6, 2.8, 3, 3.2, 3.4]);
  assert.equal(formatTick(46080), "46.1k");
  assert.equal(formatTick(2_500_000), "2.5M");
  assert.equal(formatTick(0.25), "0.25");
});

test("the loss plot has both series, axis labels, and escapes text", () => {
  const evals: EvalRecord[] = [1, 6, 11].map((step, i) => ({
    type: "eval",
    step,
    epoch: 0,
    tokens_seen: step * 512,
    train_loss: 10 - 3 * i,
    val_loss: i === 1 ? null : 10 - i,
    lr: 4e-4,
    elapsed_seconds: i,
  }));
  const svg = lossPlot(evals);
  assert.ok(svg.startsWith('<svg xmlns="http://www.w3.org/2000/svg"'));
  assert.ok(svg.trimEnd().endsWith("</svg>"));
  assert.equal(svg.match(/<polyline /g)?.length, 2);
  // the validation line skips the evaluation without a validation loss: 2 points
  const val = svg.match(/<polyline points="([^"]+)"[^>]*stroke-dasharray/)![1];
  assert.equal(val.split(" ").length, 2);
  assert.match(svg, />tokens seen</);
  assert.match(svg, />training loss</);
  assert.match(svg, />validation loss</);
  assert.match(linePlotSvg({ xLabel: "a<b", yLabel: "y", series: [] }), /a&lt;b/);
});
