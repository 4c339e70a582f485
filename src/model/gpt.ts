/**
 * The GPT model (book ch04, nanoGPT's model.py): token + position embedding → n_layers pre-LN transformer
 * blocks → final LayerNorm → head. Built as a tf.LayersModel of our custom layers (./layers.ts) and addressed by
 * Hugging Face GPT-2 weight names, so loading OpenAI weights is a loop over names.
 */
import * as tf from "@tensorflow/tfjs";
import { FileFormatError, UsageError } from "../errors.js";
import { Rng } from "../data/rng.js";
import { type GPTConfig, type HeadSpec, countParameters } from "./config.js";
import { ClassifierHead, GPTEmbedding, LayerNorm, LMHead, TransformerBlock, type LayerKV } from "./layers.js";

export type { GPTConfig, HeadSpec } from "./config.js";

export interface BuildOptions {
  /** default `{ kind: "lm" }` */
  head?: HeadSpec;
  /** seeds the weight initialisation (default 123) */
  seed?: number;
  /**
   * false: start every weight at zero instead of drawing random values — for models whose weights are loaded
   * right after (drawing 163M normal numbers for the 124M model takes seconds).
   */
  initialize?: boolean;
}

/** Keys and values of every block for the positions fed so far (incremental decoding). */
export class KVCache {
  layers: (LayerKV | null)[];
  /** positions held */
  length = 0;

  constructor(numLayers: number) {
    this.layers = new Array<LayerKV | null>(numLayers).fill(null);
  }

  /** take ownership of new per-layer tensors, freeing the old ones */
  replace(layers: LayerKV[], length: number): void {
    this.dispose();
    this.layers = layers;
    this.length = length;
  }

  dispose(): void {
    for (const kv of this.layers) {
      kv?.kT.dispose();
      kv?.v.dispose();
    }
    this.layers = this.layers.map(() => null);
    this.length = 0;
  }
}

export class GPTModel {
  readonly config: GPTConfig;
  readonly head: HeadSpec;
  /** the layers as a tf.LayersModel: ids [B,T] int32 → [B,T,V or C] (summary(), trainable, freezing) */
  readonly model: tf.LayersModel;
  readonly embedding: GPTEmbedding;
  readonly blocks: TransformerBlock[];
  readonly lnF: LayerNorm;
  readonly outHead: LMHead | ClassifierHead;

  constructor(cfg: GPTConfig, opts: BuildOptions = {}) {
    this.config = cfg;
    this.head = opts.head ?? { kind: "lm" };
    const rng = new Rng(opts.seed ?? 123);
    // each layer draws from its own seed so the init does not depend on the order weights are created in
    const seed = () => rng.int(2 ** 30);
    const zeros = opts.initialize === false;
    const common = { dropRate: cfg.drop_rate, embDim: cfg.emb_dim };
    this.embedding = new GPTEmbedding({
      name: "embedding",
      vocabSize: cfg.vocab_size,
      contextLength: cfg.context_length,
      seed: seed(),
      ...common,
    });
    this.blocks = [];
    for (let i = 0; i < cfg.n_layers; i++) {
      this.blocks.push(
        new TransformerBlock({
          name: `h_${i}`,
          numHeads: cfg.n_heads,
          qkvBias: cfg.qkv_bias,
          numLayers: cfg.n_layers,
          seed: seed(),
          ...common,
        }),
      );
    }
    this.lnF = new LayerNorm({ name: "ln_f" });
    this.outHead =
      this.head.kind === "classifier"
        ? new ClassifierHead({ name: "score", numClasses: this.head.numClasses, embDim: cfg.emb_dim, seed: seed() })
        : new LMHead({
            name: "lm_head",
            vocabSize: cfg.vocab_size,
            embDim: cfg.emb_dim,
            tiedTo: cfg.tied_head ? this.embedding : undefined,
            seed: seed(),
          });
    if (zeros) {
      for (const layer of [
        this.embedding,
        ...this.blocks,
        ...this.blocks.flatMap((b) => [b.ln1, b.attn, b.ln2, b.mlp]),
        this.lnF,
        this.outHead,
      ]) {
        layer.setFastWeightInitDuringBuild(true);
      }
    }

    const ids = tf.input({ shape: [null], dtype: "int32", name: "ids" }); // [B,T]
    let x = this.embedding.apply(ids) as tf.SymbolicTensor; // [B,T,D]
    for (const block of this.blocks) x = block.apply(x) as tf.SymbolicTensor; // [B,T,D]
    x = this.lnF.apply(x) as tf.SymbolicTensor;
    const out = this.outHead.apply(x) as tf.SymbolicTensor; // [B,T,V or C]
    this.model = tf.model({ inputs: ids, outputs: out, name: "gpt" });
    if (!zeros && cfg.init === "torch") this.initLikePyTorch(seed);
    if (zeros) {
      // fast init only fills with zeros; LayerNorm scales must still start at one
      for (const ln of [this.lnF, ...this.blocks.flatMap((b) => [b.ln1, b.ln2])]) {
        tf.tidy(() => {
          ln.weight.write(tf.onesLike(ln.weight.read()));
        });
      }
    }
  }

  /**
   * Redraw the weights as PyTorch's layers initialise themselves, which is what the book's from-scratch runs
   * train from: nn.Embedding N(0, 1); nn.Linear weight and bias U(±1/√fan_in). With GPT-2's N(0, 0.02) the
   * book's ch05 recipe stalls at the unigram loss (~6) on the-verdict; with these it follows the book's curve.
   */
  private initLikePyTorch(seed: () => number): void {
    const named = this.namedWeights();
    // fan_in of each linear weight: [in, out] layout for the GPT-2 Conv1D weights, [out, in] for the heads
    const fanIn = (name: string, shape: number[]) =>
      name === "lm_head.weight" || name === "score.weight" ? shape[1] : shape[0];
    for (const [name, v] of named) {
      const shape = v.shape as number[];
      if (/(^|\.)ln_(1|2|f)\./.test(name) || name.startsWith("ln_f.")) continue; // LayerNorm stays ones / zeros
      tf.tidy(() => {
        if (name === "wte.weight" || name === "wpe.weight") {
          v.write(tf.randomNormal(shape, 0, 1, "float32", seed()));
          return;
        }
        const weightName = name.replace(/\.bias$/, ".weight");
        const weight = named.get(weightName);
        if (!weight) return;
        const bound = 1 / Math.sqrt(fanIn(weightName, weight.shape as number[]));
        v.write(tf.randomUniform(shape, -bound, bound, "float32", seed()));
      });
    }
  }

  private checkIds(ids: tf.Tensor): void {
    if (ids.rank !== 2) throw new UsageError(`token ids must be a [batch, time] tensor, got shape [${ids.shape}]`);
    if ((ids.shape[1] ?? 0) > this.config.context_length) {
      throw new UsageError(
        `a sequence of ${ids.shape[1]} tokens is longer than the model's context of ${this.config.context_length}`,
        `crop inputs to the last ${this.config.context_length} tokens`,
      );
    }
  }

  /** ids [B,T] int32 → logits [B,T,V] (or [B,T,C] for a classifier). Dropout only when training. */
  forward(ids: tf.Tensor2D, training: boolean): tf.Tensor3D {
    this.checkIds(ids);
    const kwargs = { training };
    return tf.tidy(() => {
      let x = this.embedding.call(ids, kwargs) as tf.Tensor3D; // [B,T,D]
      for (const block of this.blocks) x = block.call(x, kwargs) as tf.Tensor3D;
      return this.outHead.call(this.lnF.call(x)) as tf.Tensor3D;
    });
  }

  /**
   * Inference: the scores at the last position only, ids [B,T] → [B,V]. Skips the head on every other
   * position.
   */
  forwardLast(ids: tf.Tensor2D): tf.Tensor2D {
    this.checkIds(ids);
    return tf.tidy(() => {
      let x = this.embedding.embed(ids, 0, false);
      for (const block of this.blocks) x = block.call(x, {}) as tf.Tensor3D;
      return this.lastLogits(x);
    });
  }

  private lastLogits(x: tf.Tensor3D): tf.Tensor2D {
    const [B, T, D] = x.shape;
    const last = tf.reshape(tf.slice(x, [0, T - 1, 0], [B, 1, D]), [B, D]) as tf.Tensor2D;
    const head = this.outHead;
    return head.project(this.lnF.call(last) as tf.Tensor2D, head.transposedWeight());
  }

  /**
   * Inference with a KV cache: feed ids [B,T] at positions cache.length.., extend the cache in place and
   * return the scores at the last new position [B,V]. Each new token costs one position, not the whole window.
   */
  forwardCached(ids: tf.Tensor2D, cache: KVCache): tf.Tensor2D {
    const start = cache.length;
    const T = ids.shape[1];
    if (start + T > this.config.context_length) {
      throw new UsageError(
        `the KV cache holds ${start} positions; ${T} more exceed the context of ${this.config.context_length}`,
        "start a new cache on the cropped window",
      );
    }
    const next: LayerKV[] = [];
    const logits = tf.tidy(() => {
      let x = this.embedding.embed(ids, start, false); // [B,T,D] at positions start..start+T-1
      this.blocks.forEach((block, i) => {
        const r = block.callCached(x, cache.layers[i]);
        next.push({ kT: tf.keep(r.kv.kT), v: tf.keep(r.kv.v) });
        x = r.y;
      });
      return this.lastLogits(x);
    });
    cache.replace(next, start + T);
    return logits;
  }

  newCache(): KVCache {
    return new KVCache(this.blocks.length);
  }

  /** Every weight by its Hugging Face GPT-2 name (no `transformer.` prefix); see docs/model-directory.md. */
  namedWeights(): Map<string, tf.LayerVariable> {
    const m = new Map<string, tf.LayerVariable>();
    m.set("wte.weight", this.embedding.wte);
    m.set("wpe.weight", this.embedding.wpe);
    this.blocks.forEach((b, i) => {
      const p = `h.${i}.`;
      m.set(`${p}ln_1.weight`, b.ln1.weight);
      m.set(`${p}ln_1.bias`, b.ln1.bias);
      m.set(`${p}attn.c_attn.weight`, b.attn.cAttnWeight);
      if (b.attn.cAttnBias) m.set(`${p}attn.c_attn.bias`, b.attn.cAttnBias);
      m.set(`${p}attn.c_proj.weight`, b.attn.cProjWeight);
      m.set(`${p}attn.c_proj.bias`, b.attn.cProjBias);
      m.set(`${p}ln_2.weight`, b.ln2.weight);
      m.set(`${p}ln_2.bias`, b.ln2.bias);
      m.set(`${p}mlp.c_fc.weight`, b.mlp.cFcWeight);
      m.set(`${p}mlp.c_fc.bias`, b.mlp.cFcBias);
      m.set(`${p}mlp.c_proj.weight`, b.mlp.cProjWeight);
      m.set(`${p}mlp.c_proj.bias`, b.mlp.cProjBias);
    });
    m.set("ln_f.weight", this.lnF.weight);
    m.set("ln_f.bias", this.lnF.bias);
    if (this.outHead instanceof ClassifierHead) {
      m.set("score.weight", this.outHead.weight);
      m.set("score.bias", this.outHead.bias);
    } else if (this.outHead.weight) {
      m.set("lm_head.weight", this.outHead.weight);
    }
    return m;
  }

  /**
   * Replace every weight. All names and shapes are checked before anything is written, so a bad file leaves
   * the model as it was. A Float32Array is taken in the named weight's shape (its length must match).
   */
  setWeights(tensors: Map<string, Float32Array | tf.Tensor>): void {
    const named = this.namedWeights();
    const found = new Map<string, number[] | number>();
    for (const [name, value] of tensors) found.set(name, value instanceof tf.Tensor ? value.shape : value.length);
    checkWeightShapes(this.weightShapes(), found, "the weights");
    for (const [name, variable] of named) {
      const value = tensors.get(name)!;
      tf.tidy(() => {
        const t =
          value instanceof tf.Tensor
            ? value.dtype === "float32"
              ? value
              : tf.cast(value, "float32")
            : tf.tensor(value, variable.shape as number[], "float32");
        variable.write(t);
      });
    }
  }

  /** name → shape of every weight namedWeights() holds */
  weightShapes(): Map<string, number[]> {
    const m = new Map<string, number[]>();
    for (const [name, v] of this.namedWeights()) m.set(name, v.shape as number[]);
    return m;
  }

  /** The variables an optimizer should update: those of layers (and weights) marked trainable, each once. */
  trainableVariables(): tf.Variable[] {
    return [...new Set(this.model.trainableWeights.map((w) => w.read() as tf.Variable))];
  }

  /** Parameters actually allocated (a tied head counts once). */
  countParameters(): number {
    let n = 0;
    for (const v of this.namedWeights().values()) n += v.shape.reduce((a: number, b) => a * (b as number), 1);
    return n;
  }

  /** The analytic count for this config and head (equals countParameters() for a built model). */
  expectedParameters(): number {
    return countParameters(this.config, this.head);
  }

  dispose(): void {
    this.model.dispose();
  }
}

/**
 * Check a set of tensors against the weights a model needs: every name present, none extra, every shape equal
 * (a bare number is an element count, for data without a shape). Throws FileFormatError naming the tensor.
 */
export function checkWeightShapes(
  expected: Map<string, number[]>,
  found: Map<string, number[] | number>,
  where: string,
): void {
  const fix = "load weights written for this model config (check qkv_bias, tied_head, n_layers, emb_dim and the head)";
  const missing = [...expected.keys()].filter((k) => !found.has(k));
  if (missing.length > 0)
    throw new FileFormatError(`${where} lack ${missing.length} tensor(s) the model needs: ${listNames(missing)}`, fix);
  const extra = [...found.keys()].filter((k) => !expected.has(k));
  if (extra.length > 0)
    throw new FileFormatError(
      `${where} hold ${extra.length} tensor(s) this model has no place for: ${listNames(extra)}`,
      fix,
    );
  for (const [name, shape] of expected) {
    const got = found.get(name)!;
    const size = shape.reduce((a, b) => a * b, 1);
    if (typeof got === "number" ? got !== size : !arraysEqual(got, shape)) {
      const desc = typeof got === "number" ? `${got} values` : `shape [${got.join(", ")}]`;
      throw new FileFormatError(`${where}: tensor '${name}' has ${desc}, the model expects [${shape.join(", ")}]`, fix);
    }
  }
}

function listNames(names: string[]): string {
  return names.length <= 5 ? names.join(", ") : `${names.slice(0, 5).join(", ")}, … (${names.length - 5} more)`;
}

function arraysEqual(a: readonly number[], b: readonly number[]): boolean {
  return a.length === b.length && a.every((v, i) => v === b[i]);
}

/** Build a GPT for a config (random weights from `seed`, or zeros with `initialize: false`). */
export function buildGPT(cfg: GPTConfig, opts: BuildOptions = {}): GPTModel {
  return new GPTModel(cfg, opts);
}
