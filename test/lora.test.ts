import { test, before } from "node:test";
import assert from "node:assert/strict";
import * as tf from "@tensorflow/tfjs";
import { useBackend } from "../src/backend/index.js";
import { type GPTConfig, loadConfigFile } from "../src/model/config.js";
import { buildGPT, type GPTModel } from "../src/model/gpt.js";
import { namedParameters } from "../src/train/adamw.js";
import { AdamW } from "../src/train/adamw.js";
import { testBackend } from "./helpers/backend.js";
import { tinyConfig } from "./helpers/tiny-config.js";

const small: GPTConfig = tinyConfig({ n_heads: 4, qkv_bias: true });

before(async () => {
  await useBackend(testBackend());
});

const ids = () =>
  tf.tensor2d(
    [
      [1, 5, 9, 3, 7, 2],
      [4, 4, 8, 1, 0, 6],
    ],
    [2, 6],
    "int32",
  );

function logits(gpt: GPTModel): Float32Array {
  return tf.tidy(() => gpt.forward(ids())).dataSync() as Float32Array;
}

test("the book's count: GPT-2 124M classifier, rank 16, alpha 16 → 2,666,528 trainable parameters", () => {
  const cfg = loadConfigFile("gpt2-124m").model;
  const gpt = buildGPT(cfg, { head: { kind: "classifier", num_classes: 2 }, initialize: false });
  try {
    gpt.addLora({ rank: 16, alpha: 16 });
    const params = namedParameters(gpt);
    assert.equal(
      params.reduce((n, p) => n + p.variable.size, 0),
      2_666_528,
    );
    // adapters only: 12 blocks × (q, k, v, c_proj, c_fc, mlp c_proj) + the head, each an A and a B
    assert.equal(params.length, 2 * (12 * 6 + 1));
    assert.ok(params.every((p) => /\.lora_[AB]$/.test(p.name)));
    assert.deepEqual(gpt.adapterWeights().get("h.0.attn.c_attn.q.lora_A")!.shape, [768, 16]);
    assert.deepEqual(gpt.adapterWeights().get("h.11.mlp.c_fc.lora_B")!.shape, [16, 3072]);
    assert.deepEqual(gpt.adapterWeights().get("score.lora_B")!.shape, [16, 2]);
  } finally {
    gpt.dispose();
  }
});

test("LoRA's A is kaiming_uniform_(a=√5): U(±1/√rank); B is zeros, so step 0 gives the base model's logits", () => {
  for (const head of [{ kind: "lm" as const }, { kind: "classifier" as const, num_classes: 3 }]) {
    for (const tied of [false, true]) {
      const gpt = buildGPT({ ...small, tied_head: tied }, { head, seed: 7 });
      try {
        const before = logits(gpt);
        gpt.addLora({ rank: 4, alpha: 8 }, 11);
        assert.deepEqual(logits(gpt), before);
        for (const [name, v] of gpt.adapterWeights()) {
          const x = v.read().dataSync();
          if (name.endsWith("lora_B"))
            assert.ok(
              x.every((e) => e === 0),
              name,
            );
          else {
            const max = Math.max(...x.map(Math.abs));
            assert.ok(max <= 0.5 && max > 0.3, `${name}: max |A| ${max}, bound 1/√4`);
          }
        }
      } finally {
        gpt.dispose();
      }
    }
  }
});

test("LoRA trains the adapters only: frozen weights get no gradient and no AdamW state, and keep their bits", async () => {
  const gpt = buildGPT(small, { head: { kind: "classifier", num_classes: 2 }, seed: 3 });
  try {
    gpt.addLora({ rank: 2, alpha: 4 }, 5);
    const base = new Map([...gpt.namedWeights()].map(([n, v]) => [n, v.read().dataSync().slice()]));
    const params = namedParameters(gpt);
    const opt = new AdamW(params, { weightDecay: 0.1 });
    const loss = () => tf.mean(tf.square(gpt.forward(ids(), { training: true }))) as tf.Scalar;
    for (let step = 0; step < 3; step++) {
      const { value, grads } = tf.variableGrads(
        loss,
        params.map((p) => p.variable),
      );
      const named = new Map(params.map((p) => [p.name, grads[p.variable.name]]));
      opt.applyGradients(named, 1e-2);
      tf.dispose([value, ...Object.values(grads)]);
    }
    assert.equal((await opt.stateArrays()).size, 2 * params.length);
    for (const [name, v] of gpt.namedWeights()) assert.deepEqual(v.read().dataSync(), base.get(name), name);
    const b = gpt.adapterWeights().get("h.1.mlp.c_proj.lora_B")!.read().dataSync();
    assert.ok(
      b.some((x) => x !== 0),
      "the adapters moved",
    );
    opt.dispose();
  } finally {
    gpt.dispose();
  }
});

test("the frozen projections' backward pass gives the adapters the same gradients as a trainable one", () => {
  const gpt = buildGPT(small, { seed: 9 });
  try {
    gpt.addLora({ rank: 3, alpha: 3 }, 2);
    // nonzero B, so every adapter's A has a gradient
    for (const [name, v] of gpt.adapterWeights())
      if (name.endsWith("lora_B"))
        tf.tidy(() => {
          v.write(tf.randomNormal(v.shape as number[], 0, 0.1, "float32", 1));
        });
    const vars = namedParameters(gpt).map((p) => p.variable);
    const loss = () => tf.mean(tf.square(gpt.forward(ids(), { training: true }))) as tf.Scalar;
    const grads = () => {
      const { value, grads } = tf.variableGrads(loss, vars);
      value.dispose();
      return vars.map((v) => grads[v.name].dataSync().slice());
    };
    const frozen = grads();
    for (const v of gpt.namedWeights().values()) v.trainable = true; // the ordinary linear ops again
    const plain = grads();
    frozen.forEach((g, i) => g.forEach((x, j) => assert.ok(Math.abs(x - plain[i][j]) <= 1e-6, `${vars[i].name}`)));
  } finally {
    gpt.dispose();
  }
});
