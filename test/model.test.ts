import { test, before } from "node:test";
import assert from "node:assert/strict";
import { mkdtempSync, writeFileSync, readFileSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import * as tf from "@tensorflow/tfjs";
import { useBackend } from "../src/backend/index.js";
import { type GPTConfig, countParameters, loadConfigFile, validateGPTConfig } from "../src/model/config.js";
import { buildGPT } from "../src/model/gpt.js";
import type { GPTLayer, LMHead } from "../src/model/layers.js";
import { summarize } from "../src/model/summary.js";
import { loadModelDir, saveModelDir } from "../src/model/model-dir.js";
import { readModelMeta } from "../src/model/model-meta.js";
import { ConfigError, FileFormatError } from "../src/errors.js";
import { runCli } from "./helpers/cli.js";
import { tinyConfig } from "./helpers/tiny-config.js";

const small: GPTConfig = tinyConfig({ n_heads: 4, drop_rate: 0.1 });

before(async () => {
  await useBackend("cpu");
});

test("parameter counts equal the book's (computed from the config, nothing allocated)", () => {
  const m124 = loadConfigFile("gpt2-124m").model;
  assert.equal(countParameters(m124), 163_009_536);
  assert.equal(countParameters({ ...m124, tied_head: true }), 124_412_160);
  assert.equal(countParameters({ ...m124, qkv_bias: true }), 163_037_184);
  assert.equal(countParameters({ ...m124, qkv_bias: true, tied_head: true }), 124_439_808);
  assert.equal(countParameters(loadConfigFile("gpt2-355m").model), 406_212_608);
  assert.equal(countParameters(loadConfigFile("gpt2-774m").model), 838_220_800);
  assert.equal(countParameters(loadConfigFile("gpt2-1558m").model), 1_637_792_000);
  // ch05 only shortens the context: 256 fewer-than-1024 position rows
  assert.equal(countParameters(loadConfigFile("gpt2-124m-ch05").model), 163_009_536 - (1024 - 256) * 768);
  // the book's ch06 classifier: the 124M GPT-2 (qkv bias, tied) with a 2-class head instead of the LM head
  assert.equal(
    countParameters({ ...m124, qkv_bias: true, tied_head: true }, { kind: "classifier", num_classes: 2 }),
    124_439_808 + 2 * 768 + 2,
  );
  assert.equal(summarize(m124).fp32_mb, 621.83);
});

test("a built model has exactly the counted parameters, layer by layer", () => {
  for (const variant of [
    { cfg: small, head: { kind: "lm" } as const },
    { cfg: { ...small, tied_head: true }, head: { kind: "lm" } as const },
    { cfg: { ...small, qkv_bias: true }, head: { kind: "lm" } as const },
    {
      cfg: { ...small, qkv_bias: true, tied_head: true, n_layers: 3 },
      head: { kind: "classifier", num_classes: 3 } as const,
    },
  ]) {
    const gpt = buildGPT(variant.cfg, { head: variant.head });
    try {
      assert.equal(gpt.model.countParams(), countParameters(variant.cfg, variant.head));
      assert.equal(gpt.countParameters(), countParameters(variant.cfg, variant.head));
      const rows = summarize(variant.cfg, variant.head).layers;
      const layers = gpt.model.layers.slice(1); // skip the input layer
      assert.deepEqual(
        layers.map((l) => [l.name, l.countParams()]),
        rows.map((r) => [r.name, r.parameters]),
      );
    } finally {
      gpt.dispose();
    }
  }
});

test("the 124M model, built once, has 163,009,536 parameters", () => {
  const gpt = buildGPT(loadConfigFile("gpt2-124m").model, { initialize: false });
  try {
    assert.equal(gpt.model.countParams(), 163_009_536);
    assert.deepEqual(gpt.namedWeights().get("lm_head.weight")!.shape, [50257, 768]);
    assert.deepEqual(gpt.namedWeights().get("h.11.mlp.c_proj.weight")!.shape, [3072, 768]);
    assert.deepEqual(gpt.namedWeights().get("wpe.weight")!.shape, [1024, 768]);
  } finally {
    gpt.dispose();
  }
});

test("weights carry the Hugging Face GPT-2 names and shapes", () => {
  const gpt = buildGPT({ ...small, qkv_bias: true, tied_head: true });
  try {
    const names = [...gpt.namedWeights().keys()];
    const block = (i: number) =>
      [
        "ln_1.weight",
        "ln_1.bias",
        "attn.c_attn.weight",
        "attn.c_attn.bias",
        "attn.c_proj.weight",
        "attn.c_proj.bias",
        "ln_2.weight",
        "ln_2.bias",
      ]
        .concat(["mlp.c_fc.weight", "mlp.c_fc.bias", "mlp.c_proj.weight", "mlp.c_proj.bias"])
        .map((n) => `h.${i}.${n}`);
    assert.deepEqual(
      names.sort(),
      ["wte.weight", "wpe.weight", ...block(0), ...block(1), "ln_f.weight", "ln_f.bias"].sort(),
    );
    const shapes = gpt.weightShapes();
    assert.deepEqual(shapes.get("h.0.attn.c_attn.weight"), [16, 48]);
    assert.deepEqual(shapes.get("h.0.attn.c_attn.bias"), [48]);
    assert.deepEqual(shapes.get("h.1.mlp.c_fc.weight"), [16, 64]);
    assert.deepEqual(shapes.get("h.1.mlp.c_proj.weight"), [64, 16]);
  } finally {
    gpt.dispose();
  }
  const untied = buildGPT(small, { head: { kind: "lm" } });
  const cls = buildGPT(small, { head: { kind: "classifier", num_classes: 2 } });
  try {
    assert.ok(!untied.namedWeights().has("h.0.attn.c_attn.bias"));
    assert.deepEqual(untied.weightShapes().get("lm_head.weight"), [97, 16]);
    assert.deepEqual(cls.weightShapes().get("score.weight"), [2, 16]);
    assert.deepEqual(cls.weightShapes().get("score.bias"), [2]);
    assert.ok(!cls.namedWeights().has("lm_head.weight"));
  } finally {
    untied.dispose();
    cls.dispose();
  }
});

test("every custom layer is registered and rebuilt whole from its getConfig (tfjs' serialization contract)", () => {
  const registered = tf.serialization.SerializationMap.getMap().classNameMap;
  for (const variant of [
    { cfg: { ...small, qkv_bias: true, tied_head: true }, head: { kind: "lm" } as const },
    { cfg: small, head: { kind: "lm" } as const },
    { cfg: small, head: { kind: "classifier", num_classes: 3 } as const },
  ]) {
    const gpt = buildGPT(variant.cfg, { head: variant.head });
    try {
      const layers: GPTLayer<tf.serialization.ConfigDict>[] = [
        gpt.wte,
        gpt.wpe!,
        ...gpt.blocks,
        ...gpt.blocks[0].parts,
        gpt.lnF,
        gpt.outHead,
      ];
      for (const layer of layers) {
        const className = (layer.constructor as unknown as { className: string }).className;
        assert.ok(registered[className], `${className} is registered`);
        const [cls, fromConfig] = registered[className];
        const copy = fromConfig(cls, layer.getConfig()) as GPTLayer<tf.serialization.ConfigDict>;
        assert.deepEqual(copy.getConfig(), layer.getConfig(), className);
        copy.build([]);
        const shapes = (l: GPTLayer<tf.serialization.ConfigDict>) => l.namedWeights().map(([n, v]) => [n, v.shape]);
        assert.deepEqual(shapes(copy), shapes(layer), `${className} builds the same weights`);
        for (const w of copy.weights) w.dispose();
      }
      if (variant.cfg.tied_head) {
        // a tied head's config says so; the embedding it reads is handed over with tie()
        const [cls, fromConfig] = registered.LMHead;
        const head = fromConfig(cls, gpt.outHead.getConfig()) as LMHead;
        assert.throws(() => head.headWeight(), /a tied head needs tie\(wte\)/);
        head.tie(gpt.wte);
        assert.equal(head.headWeight(), gpt.wte.weight.read());
      }
    } finally {
      gpt.dispose();
    }
  }
});

test("the same seed gives the same weights; a tied head reads wte", () => {
  const a = buildGPT({ ...small, tied_head: true }, { seed: 7 });
  const b = buildGPT({ ...small, tied_head: true }, { seed: 7 });
  const c = buildGPT({ ...small, tied_head: true }, { seed: 8 });
  try {
    const ids = tf.tensor2d([[1, 5, 9, 3]], [1, 4], "int32");
    const [la, lb, lc] = [a, b, c].map((g) => g.forward(ids));
    assert.deepEqual(la.dataSync(), lb.dataSync());
    assert.notDeepEqual(la.dataSync(), lc.dataSync());
    // logits = ln_f(h)·wteᵀ: zeroing wte row 5 zeroes logit 5 everywhere
    const wte = a.namedWeights().get("wte.weight")!;
    const mask = tf.tensor2d(
      Array.from({ length: 97 }, (_, i) => (i === 5 ? 0 : 1)),
      [97, 1],
    );
    wte.write(tf.mul(wte.read(), mask));
    const z = a.forward(ids).arraySync() as number[][][];
    assert.deepEqual(
      z[0].map((row) => row[5]),
      [0, 0, 0, 0],
    );
    tf.dispose([ids, la, lb, lc, mask]);
  } finally {
    [a, b, c].forEach((g) => g.dispose());
  }
});

test("forward: causal (a later token never changes earlier logits), dropout only when training, no leaks", () => {
  const gpt = buildGPT({ ...small, drop_rate: 0.5 });
  try {
    const x1 = tf.tensor2d([[3, 1, 4, 1, 5]], [1, 5], "int32");
    const x2 = tf.tensor2d([[3, 1, 4, 1, 9]], [1, 5], "int32");
    const y1 = gpt.forward(x1);
    const y2 = gpt.forward(x2);
    assert.deepEqual(y1.shape, [1, 5, 97]);
    const first4 = (y: tf.Tensor) => Array.from(tf.slice(y, [0, 0, 0], [1, 4, 97]).dataSync());
    assert.deepEqual(first4(y1), first4(y2));
    assert.notDeepEqual(
      Array.from(tf.slice(y1, [0, 4, 0], [1, 1, 97]).dataSync()),
      Array.from(tf.slice(y2, [0, 4, 0], [1, 1, 97]).dataSync()),
    );
    assert.deepEqual(gpt.forward(x1).dataSync(), y1.dataSync());
    assert.notDeepEqual(gpt.forward(x1, { training: true }).dataSync(), y1.dataSync());
    tf.dispose([x1, x2, y1, y2]);
    const ids = tf.tensor2d([[1, 2, 3]], [1, 3], "int32");
    gpt.forward(ids, { lastOnly: true }).dispose(); // the head's inference copy, kept until the weight changes
    const n0 = tf.memory().numTensors;
    gpt.forward(ids, { training: true }).dispose();
    gpt.forward(ids).dispose();
    gpt.forward(ids, { lastOnly: true }).dispose();
    assert.equal(tf.memory().numTensors, n0, "forward leaks tensors");
    ids.dispose();
  } finally {
    gpt.dispose();
  }
});

test("a sequence longer than the context is refused with a clear error", () => {
  const gpt = buildGPT(small);
  try {
    const ids = tf.zeros([1, 13], "int32") as tf.Tensor2D;
    assert.throws(() => gpt.forward(ids), /longer than the model's context of 12/);
    ids.dispose();
  } finally {
    gpt.dispose();
  }
});

test("freezing: trainableVariables follows layer.trainable; gradients reach every trainable weight", () => {
  const gpt = buildGPT({ ...small, tied_head: true, drop_rate: 0 });
  try {
    const all = gpt.trainableVariables();
    assert.equal(all.length, gpt.namedWeights().size);
    for (const layer of gpt.model.layers) layer.trainable = false;
    gpt.blocks[1].trainable = true;
    gpt.lnF.trainable = true;
    const some = gpt.trainableVariables();
    assert.equal(some.length, 11 + 2); // block 1 (no qkv bias: 11 tensors) + ln_f
    assert.equal(gpt.model.countParams(), countParameters({ ...small, tied_head: true }));
    const ids = tf.tensor2d([[1, 2, 3, 4]], [1, 4], "int32");
    const { value, grads } = tf.variableGrads(
      () => tf.mean(tf.square(gpt.forward(ids, { training: true }))) as tf.Scalar,
      some,
    );
    assert.equal(Object.keys(grads).length, some.length);
    for (const g of Object.values(grads)) assert.ok(Number.isFinite(tf.sum(tf.abs(g)).dataSync()[0]));
    assert.ok(Number.isFinite(value.dataSync()[0]));
    tf.dispose([ids, value, ...Object.values(grads)]);
  } finally {
    gpt.dispose();
  }
});

test("KV-cached inference gives the logits of the full forward pass", () => {
  const gpt = buildGPT({ ...small, qkv_bias: true });
  try {
    const seq = [5, 17, 2, 88, 40, 3, 61];
    const full = gpt.forward(tf.tensor2d([seq], [1, seq.length], "int32"));
    const cache = gpt.newCache();
    const chunks = [[5, 17, 2], [88], [40, 3], [61]];
    let pos = 0;
    for (const chunk of chunks) {
      const last = gpt.forward(tf.tensor2d([chunk], [1, chunk.length], "int32"), { lastOnly: true, cache });
      pos += chunk.length;
      const want = tf.slice(full, [0, pos - 1, 0], [1, 1, 97]).dataSync();
      const got = last.dataSync();
      const maxDiff = Math.max(...Array.from(got, (v, i) => Math.abs(v - want[i])));
      assert.ok(maxDiff < 1e-5, `position ${pos}: max diff ${maxDiff}`);
      assert.equal(cache.length, pos);
    }
    assert.throws(
      () => gpt.forward(tf.zeros([1, 6], "int32") as tf.Tensor2D, { lastOnly: true, cache }),
      /exceed the context/,
    );
    cache.dispose();
  } finally {
    gpt.dispose();
  }
});

test("inference reuses the head's transposed copy until a weight changes, then follows the new weights", () => {
  for (const tied_head of [false, true]) {
    const a = buildGPT({ ...small, tied_head }, { seed: 1 });
    const b = buildGPT({ ...small, tied_head }, { seed: 2 });
    try {
      const ids = tf.tensor2d([[3, 1, 4, 1, 5]], [1, 5], "int32");
      const n0 = tf.memory().numTensors;
      a.forward(ids, { lastOnly: true }).dispose();
      const n1 = tf.memory().numTensors;
      assert.equal(n1, n0 + 1, "inference keeps one copy of the head's weight, transposed");
      a.forward(ids, { lastOnly: true }).dispose();
      assert.equal(tf.memory().numTensors, n1, "the copy is reused while the weights stay");
      const before = Array.from(a.forward(ids, { lastOnly: true }).dataSync());
      // a takes b's weights: its next logits must be b's, not a stale head's
      a.setWeights(new Map([...b.namedWeights()].map(([name, v]) => [name, v.read()])));
      const want = b.forward(ids, { lastOnly: true }).dataSync();
      const got = a.forward(ids, { lastOnly: true }).dataSync();
      assert.notDeepEqual(Array.from(want), before);
      assert.ok(
        Math.max(...Array.from(got, (v, i) => Math.abs(v - want[i]))) < 1e-6,
        `tied ${tied_head}: stale head weights`,
      );
      ids.dispose();
    } finally {
      a.dispose();
      b.dispose();
    }
  }
});

test("setWeights checks names and shapes and names the tensor at fault", () => {
  const gpt = buildGPT(small);
  try {
    const good = new Map<string, Float32Array>();
    for (const [name, shape] of gpt.weightShapes())
      good.set(name, new Float32Array(shape.reduce((a, b) => a * b, 1)).fill(0.5));
    gpt.setWeights(good);
    assert.deepEqual(Array.from(gpt.namedWeights().get("h.1.ln_2.bias")!.read().dataSync()).slice(0, 2), [0.5, 0.5]);

    const missing = new Map(good);
    missing.delete("h.1.attn.c_proj.bias");
    assert.throws(
      () => gpt.setWeights(missing),
      (e: unknown) => e instanceof FileFormatError && /h\.1\.attn\.c_proj\.bias/.test(e.message),
    );
    const extra = new Map(good).set("h.0.attn.bias", new Float32Array(4));
    assert.throws(
      () => gpt.setWeights(extra),
      (e: unknown) => e instanceof FileFormatError && /h\.0\.attn\.bias/.test(e.message),
    );
    const wrong = new Map<string, Float32Array | tf.Tensor>(good).set("wpe.weight", tf.zeros([13, 16]));
    assert.throws(
      () => gpt.setWeights(wrong),
      (e: unknown) =>
        e instanceof FileFormatError && /'wpe\.weight' has shape \[13, 16\], expected \[12, 16\]/.test(e.message),
    );
  } finally {
    gpt.dispose();
  }
});

test("config validation names the key at fault", () => {
  assert.throws(
    () => validateGPTConfig({ ...small, emb_dims: 3 }),
    (e: unknown) => e instanceof ConfigError && /unknown model key 'emb_dims'/.test(e.message),
  );
  assert.throws(() => validateGPTConfig({ ...small, n_heads: 3 }), /emb_dim 16 does not divide into n_heads 3/);
  const noLayers: Partial<GPTConfig> = { ...small };
  delete noLayers.n_layers;
  assert.throws(() => validateGPTConfig(noLayers), /'n_layers' is missing/);
  assert.throws(() => validateGPTConfig({ ...small, drop_rate: 1.5 }), /'drop_rate'/);
  assert.throws(() => validateGPTConfig({ ...small, qkv_bias: "yes" }), /'qkv_bias' must be true or false/);
  const dir = mkdtempSync(join(tmpdir(), "llmctl-cfg-"));
  try {
    writeFileSync(join(dir, "bad.json"), "{ model: ");
    assert.throws(() => loadConfigFile(join(dir, "bad.json")), /not valid JSON/);
    writeFileSync(join(dir, "notrain.json"), JSON.stringify({ model: small }));
    assert.deepEqual(loadConfigFile(join(dir, "notrain.json")), { model: small, train: {} });
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});

test("a config too big for this machine's memory is refused from its numbers, naming the count and the limit", async () => {
  const tiny = loadConfigFile("gpt2-tiny").model;
  for (const [over, count] of [
    [{ n_layers: 1_000_000 }, "197,900,882,432"],
    [{ emb_dim: 1e9, n_heads: 1 }, "24,000,100,664,000,000,000"],
    [{ vocab_size: 1e9 }, "256,000,412,416"],
  ] as const) {
    assert.throws(
      () => validateGPTConfig({ ...tiny, ...over }, "big.json"),
      (err: unknown) =>
        err instanceof ConfigError &&
        err.message.startsWith(`big.json: the model has ${count} parameters, `) &&
        /GiB as float32; this machine has \d+\.\d GiB of memory/.test(err.message),
    );
  }
  // the CLI refuses it before building anything; info on a deep but buildable config lists every layer
  const dir = mkdtempSync(join(tmpdir(), "llmctl-big-"));
  const cfg = (model: object) => {
    const path = join(dir, `${Object.values(model).join("-")}.json`);
    writeFileSync(path, JSON.stringify({ model: { ...tiny, ...model } }));
    return path;
  };
  const pre = await runCli(["pretrain", "--config", cfg({ n_layers: 1_000_000 }), "--out", join(dir, "run")]);
  assert.equal(pre.code, 1);
  assert.match(pre.stderr, /^llmctl: .*197,900,882,432 parameters.*— lower n_layers/);
  const deep = await runCli(["info", cfg({ n_layers: 150_000, emb_dim: 8, n_heads: 1 }), "--json"]);
  assert.equal(deep.code, 0, deep.stderr);
  const info = JSON.parse(deep.stdout);
  assert.equal(info.layers.length, 150_004);
  assert.equal(info.parameters, countParameters({ ...tiny, n_layers: 150_000, emb_dim: 8, n_heads: 1 }));
  const table = await runCli(["info", cfg({ n_layers: 150_000, emb_dim: 8, n_heads: 1 })]);
  assert.equal(table.code, 0, table.stderr);
  assert.match(table.stdout, /h\.149999 +TransformerBlock/);
});

test("model directory: save and load round-trip the logits; bad directories give clear errors", async () => {
  const dir = mkdtempSync(join(tmpdir(), "llmctl-modeldir-"));
  const gpt = buildGPT({ ...small, qkv_bias: true, tied_head: true }, { seed: 3 });
  try {
    await saveModelDir(join(dir, "m"), gpt, { source: "test" });
    const meta = await readModelMeta(join(dir, "m"));
    assert.deepEqual(meta, {
      format: "llmctl-model",
      version: 1,
      model: gpt.config,
      tokenizer: "gpt2",
      head: { kind: "lm" },
      source: "test",
    });
    const { gpt: loaded } = await loadModelDir(join(dir, "m"));
    const ids = tf.tensor2d([[4, 8, 15, 16, 23, 42]], [1, 6], "int32");
    assert.deepEqual(loaded.forward(ids).dataSync(), gpt.forward(ids).dataSync());
    loaded.dispose();

    await assert.rejects(
      loadModelDir(join(dir, "nope")),
      (e: unknown) => e instanceof FileFormatError && /model directory not found/.test(e.message),
    );
    // a config that disagrees with the weights: the tensor and both shapes are named
    const cfgPath = join(dir, "m", "config.json");
    const cfg = JSON.parse(readFileSync(cfgPath, "utf8"));
    writeFileSync(cfgPath, JSON.stringify({ ...cfg, model: { ...cfg.model, context_length: 24 } }));
    await assert.rejects(loadModelDir(join(dir, "m")), /'wpe\.weight' has shape \[12, 16\], expected \[24, 16\]/);
    writeFileSync(cfgPath, JSON.stringify({ ...cfg, model: { ...cfg.model, qkv_bias: false } }));
    await assert.rejects(loadModelDir(join(dir, "m")), /no place for: h\.0\.attn\.c_attn\.bias/);
    // a misspelt top-level key is named, not ignored
    writeFileSync(cfgPath, JSON.stringify({ ...cfg, promt_style: "alpaca" }));
    await assert.rejects(
      loadModelDir(join(dir, "m")),
      (e: unknown) => e instanceof FileFormatError && /unknown key 'promt_style'/.test(e.message),
    );
    writeFileSync(cfgPath, JSON.stringify(cfg));
    // truncated weights
    const w = readFileSync(join(dir, "m", "model.safetensors"));
    writeFileSync(join(dir, "m", "model.safetensors"), w.subarray(0, w.length - 100));
    await assert.rejects(loadModelDir(join(dir, "m")), (e: unknown) => e instanceof FileFormatError);
    rmSync(join(dir, "m", "model.safetensors"));
    await assert.rejects(loadModelDir(join(dir, "m")), /has no model\.safetensors/);
  } finally {
    gpt.dispose();
    rmSync(dir, { recursive: true, force: true });
  }
});

test("llmctl info: parameters and fp32 size from a config (JSON) and a model directory", async () => {
  const r = await runCli(["info", "gpt2-124m", "--json"]);
  assert.equal(r.code, 0, r.stderr);
  const j = JSON.parse(r.stdout);
  assert.equal(j.parameters, 163_009_536);
  assert.equal(j.fp32_mb, 621.83);
  assert.equal(j.fp32_bytes, 163_009_536 * 4);
  assert.equal(j.layers.length, 12 + 4); // wte, wpe, h.0..h.11, ln_f, lm_head
  const xl = JSON.parse((await runCli(["info", "configs/gpt2-1558m.json", "--json"])).stdout);
  assert.equal(xl.parameters, 1_637_792_000);
  const text = await runCli(["info", "gpt2-124m"]);
  assert.match(text.stdout, /h\.11\s+TransformerBlock\s+\[B, T, 768\]\s+7,085,568/);
  assert.match(text.stdout, /parameters: 163,009,536/);
  assert.match(text.stdout, /621\.83 MB/);

  const dir = mkdtempSync(join(tmpdir(), "llmctl-info-"));
  const gpt = buildGPT(small, { head: { kind: "classifier", num_classes: 2 } });
  try {
    await saveModelDir(dir, gpt, { labels: ["ham", "spam"] });
    const d = JSON.parse((await runCli(["info", dir, "--json"])).stdout);
    assert.equal(d.kind, "model-dir");
    assert.equal(d.parameters, countParameters(small, { kind: "classifier", num_classes: 2 }));
    assert.deepEqual(d.head, { kind: "classifier", num_classes: 2, labels: ["ham", "spam"], pool: "last" });
  } finally {
    gpt.dispose();
    rmSync(dir, { recursive: true, force: true });
  }
  const missing = await runCli(["info", "no-such-config"]);
  assert.equal(missing.code, 1);
  assert.match(missing.stderr, /config not found: no-such-config/);
});

test("init 'torch' draws PyTorch's layer defaults (the book's from-scratch runs); LayerNorm stays ones/zeros", async () => {
  const { buildGPT } = await import("../src/model/gpt.js");
  const cfg = {
    vocab_size: 500,
    context_length: 16,
    emb_dim: 32,
    n_heads: 4,
    n_layers: 2,
    drop_rate: 0,
    qkv_bias: true,
    tied_head: false,
    init: "torch" as const,
  };
  const gpt = buildGPT(cfg, { seed: 7 });
  try {
    const w = (name: string) => gpt.namedWeights().get(name)!.read().dataSync() as Float32Array;
    const std = (a: Float32Array) => Math.sqrt(a.reduce((s, x) => s + x * x, 0) / a.length);
    const maxAbs = (a: Float32Array) => a.reduce((m, x) => Math.max(m, Math.abs(x)), 0);
    assert.ok(Math.abs(std(w("wte.weight")) - 1) < 0.05, "wte ~ N(0, 1)");
    assert.ok(Math.abs(std(w("wpe.weight")) - 1) < 0.2, "wpe ~ N(0, 1)");
    for (const [name, fanIn] of [
      ["h.0.attn.c_attn.weight", 32],
      ["h.1.mlp.c_proj.weight", 128],
      ["h.1.mlp.c_proj.bias", 128],
      ["lm_head.weight", 32],
      ["h.0.attn.c_attn.bias", 32],
    ] as const) {
      const a = w(name);
      const bound = 1 / Math.sqrt(fanIn);
      assert.ok(maxAbs(a) <= bound && maxAbs(a) > 0.9 * bound, `${name} ~ U(±1/√${fanIn})`);
      assert.ok(Math.abs(std(a) - bound / Math.sqrt(3)) < 0.15 * bound, `${name} has a uniform's spread`);
    }
    assert.ok(w("h.0.ln_1.weight").every((x) => x === 1) && w("ln_f.bias").every((x) => x === 0));
  } finally {
    gpt.dispose();
  }
});
