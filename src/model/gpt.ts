/**
 * The GPT model (book ch04, nanoGPT's model.py): token + position embedding → n_layers pre-LN transformer
 * blocks → final LayerNorm → head. Built as a tf.LayersModel of our custom layers (./layers.ts), named as the
 * Hugging Face GPT-2 weights they hold, so loading OpenAI weights is a loop over names.
 *
 * The same model is a Llama 3 or a Qwen3 when its config says so (docs/families.md): RMSNorm for LayerNorm,
 * SwiGLU for GELU, RoPE for the position table, grouped-query attention, Qwen3's q/k norm, and the layers
 * named as those checkpoints name them (embed_tokens, layers.i.self_attn.q_proj, norm, lm_head).
 */
import * as tf from "@tensorflow/tfjs";
import { UsageError } from "../errors.js";
import { Rng } from "../data/rng.js";
import { dropout, recomputed, type MaskSeeds } from "../backend/transformer-ops.js";
import { type GPTConfig, type HeadSpec, NAMES, architecture, checkWeightShapes, parameterShapes } from "./config.js";
import {
  ClassifierHead,
  KVSlot,
  LMHead,
  PositionEmbedding,
  TokenEmbedding,
  TransformerBlock,
  makeNorm,
  type GPTLayer,
  type LoraSettings,
  type Norm,
} from "./layers.js";

export type { GPTConfig, HeadSpec } from "./config.js";
export type { LoraSettings } from "./layers.js";

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

/** Dropout on or off for one pass over a batch (what the Trainer hands its loss function). */
export interface ForwardMode {
  /** dropout on */
  training?: boolean;
  /** seeds the dropout masks, so a training step's masks are a function of it (fresh masks when omitted) */
  seed?: number;
}

export interface ForwardOptions extends ForwardMode {
  /** incremental decoding: ids sit at positions cache.length.., and the cache is extended by them */
  cache?: KVCache;
  /** the scores of the last position only, [B,V] (inference: the head skips every other position) */
  lastOnly?: boolean;
}

/** Keys and values of every block for the positions fed so far (incremental decoding). */
export class KVCache {
  readonly layers: KVSlot[];
  /** positions held */
  length = 0;

  constructor(numLayers: number) {
    this.layers = Array.from({ length: numLayers }, () => new KVSlot());
  }

  dispose(): void {
    for (const slot of this.layers) slot.dispose();
    this.length = 0;
  }
}

export class GPTModel {
  readonly config: GPTConfig;
  readonly head: HeadSpec;
  /** the layers as a tf.LayersModel: ids [B,T] int32 → [B,T,V or C] (summary(), trainable, freezing) */
  readonly model: tf.LayersModel;
  readonly wte: TokenEmbedding;
  /** the learned position table; null for a model with rotary positions (RoPE) */
  readonly wpe: PositionEmbedding | null;
  readonly blocks: TransformerBlock[];
  readonly lnF: Norm;
  readonly outHead: LMHead | ClassifierHead;
  /** Appendix E's LoRA, once addLora has put the adapters on */
  lora: LoraSettings | null = null;
  /**
   * Training keeps only each block's input and recomputes the rest in the backward pass (activation
   * checkpointing): about a third more compute for a fraction of the activation memory. The pre-flight turns it
   * on when a step would not fit otherwise (train/preflight.ts).
   */
  recomputeBlocks = false;

  constructor(cfg: GPTConfig, opts: BuildOptions = {}) {
    this.config = cfg;
    this.head = opts.head ?? { kind: "lm" };
    const rng = new Rng(opts.seed ?? 123);
    // each layer draws from its own seed so the init does not depend on the order weights are created in
    const seed = () => rng.int(2 ** 30);
    const D = cfg.emb_dim;
    const arch = architecture(cfg);
    const names = NAMES[arch.names];
    const embSeed = seed();
    this.wte = new TokenEmbedding({ name: names.embed, vocabSize: cfg.vocab_size, embDim: D, seed: embSeed });
    this.wpe =
      arch.positions === "learned"
        ? new PositionEmbedding({ name: "wpe", contextLength: cfg.context_length, embDim: D, seed: embSeed + 1 })
        : null;
    this.blocks = Array.from(
      { length: cfg.n_layers },
      (_, i) =>
        new TransformerBlock({
          name: `${names.block}.${i}`,
          embDim: D,
          numHeads: cfg.n_heads,
          dropRate: cfg.drop_rate,
          qkvBias: cfg.qkv_bias,
          numLayers: cfg.n_layers,
          seed: seed(),
          arch,
        }),
    );
    this.lnF = makeNorm(names.lnF, D, arch);
    const headSeed = seed();
    if (this.head.kind === "classifier") {
      this.outHead = new ClassifierHead({
        name: "score",
        numClasses: this.head.num_classes,
        embDim: D,
        seed: headSeed,
      });
    } else {
      this.outHead = new LMHead({
        name: "lm_head",
        vocabSize: cfg.vocab_size,
        embDim: D,
        tied: cfg.tied_head,
        seed: headSeed,
      });
      if (cfg.tied_head) this.outHead.tie(this.wte);
    }
    const zeros = opts.initialize === false;
    if (zeros) for (const layer of this.layers()) layer.setFastWeightInitDuringBuild(true);

    const ids = tf.input({ shape: [null], dtype: "int32", name: "ids" }); // [B,T]
    let x = this.wte.apply(ids) as tf.SymbolicTensor; // [B,T,D]
    if (this.wpe) x = this.wpe.apply(x) as tf.SymbolicTensor;
    for (const block of this.blocks) x = block.apply(x) as tf.SymbolicTensor; // [B,T,D]
    const out = this.outHead.apply(this.lnF.apply(x)) as tf.SymbolicTensor; // [B,T,V or C]
    this.model = tf.model({ inputs: ids, outputs: out, name: "gpt" });

    if (!zeros && cfg.init === "torch") this.initLikePyTorch(seed);
    if (zeros) {
      // fast init only fills with zeros; norm scales must still start at one
      for (const w of this.normScales()) {
        tf.tidy(() => {
          w.write(tf.onesLike(w.read()));
        });
      }
    }
  }

  /** the top-level layers, input to output */
  private layers(): GPTLayer<tf.serialization.ConfigDict>[] {
    return [this.wte, ...(this.wpe ? [this.wpe] : []), ...this.blocks, this.lnF, this.outHead];
  }

  /** every norm's scale (LayerNorm, RMSNorm, Qwen3's q_norm and k_norm), which starts at one */
  private normScales(): tf.LayerVariable[] {
    const perBlock = this.blocks.flatMap((b) => [b.ln1.weight, b.ln2.weight, b.attn.qNormWeight, b.attn.kNormWeight]);
    return [this.lnF.weight, ...perBlock].filter((w): w is tf.LayerVariable => w !== null);
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
    const norms = new Set<tf.LayerVariable>(this.normScales());
    for (const n of [this.lnF, ...this.blocks.flatMap((b) => [b.ln1, b.ln2])]) if ("bias" in n) norms.add(n.bias);
    const embeddings = new Set([this.wte.weight, this.wpe?.weight]);
    for (const [name, v] of named) {
      const shape = v.shape as number[];
      if (norms.has(v)) continue; // norms stay ones / zeros
      tf.tidy(() => {
        if (embeddings.has(v)) {
          v.write(tf.randomNormal(shape, 0, 1, "float32", seed()));
          return;
        }
        const weight = named.get(name.replace(/\.bias$/, ".weight"))!;
        const bound = 1 / Math.sqrt(fanIn(name.replace(/\.bias$/, ".weight"), weight.shape as number[]));
        v.write(tf.randomUniform(shape, -bound, bound, "float32", seed()));
      });
    }
  }

  /**
   * ids [B,T] int32 → logits [B,T,V] (or [B,T,C] for a classifier); with `lastOnly`, those of the last
   * position, [B,V]. With `cache`, ids continue the cached positions and the cache is extended by them (each
   * new token costs one position, not the whole window). Dropout only when `training`.
   */
  forward(ids: tf.Tensor2D, opts: ForwardOptions & { lastOnly: true }): tf.Tensor2D;
  forward(ids: tf.Tensor2D, opts?: ForwardOptions): tf.Tensor3D;
  forward(ids: tf.Tensor2D, opts: ForwardOptions = {}): tf.Tensor2D | tf.Tensor3D {
    const { cache, lastOnly = false } = opts;
    const start = cache?.length ?? 0;
    this.checkIds(ids, start);
    const seeds: MaskSeeds | undefined = opts.training ? maskSeeds(opts.seed) : undefined;
    const dropRate = this.config.drop_rate;
    try {
      const out = tf.tidy(() => {
        let x = dropout(this.embed(ids, start), dropRate, seeds) as tf.Tensor3D; // [B,T,D]
        const recompute = this.recomputeBlocks && opts.training === true && !cache ? this.blockVariables() : null;
        this.blocks.forEach((block, i) => {
          const run = (xi: tf.Tensor3D, dropout?: MaskSeeds) =>
            block.call(xi, { dropout, past: cache?.layers[i] }) as tf.Tensor3D;
          x = recompute ? recomputed(run, x, recompute[i], seeds) : run(x, seeds);
        });
        if (!lastOnly) return this.outHead.call(this.lnF.call(x)) as tf.Tensor3D; // [B,T,V]
        const [B, T, D] = x.shape;
        const last = tf.reshape(tf.slice(x, [0, T - 1, 0], [B, 1, D]), [B, D]); // [B,D]
        return this.outHead.scores(this.lnF.call(last) as tf.Tensor2D, true); // [B,V]
      });
      if (cache) cache.length = start + ids.shape[1];
      return out;
    } catch (err) {
      cache?.dispose(); // some layers may have taken the new positions and others not
      throw err;
    }
  }

  /** ids [B,T] at positions start.. → token embeddings plus position embeddings (RoPE: added in attention) [B,T,D] */
  private embed(ids: tf.Tensor2D, start: number): tf.Tensor3D {
    const x = this.wte.call(ids) as tf.Tensor3D;
    return this.wpe ? (this.wpe.call(x, { start }) as tf.Tensor3D) : x;
  }

  private checkIds(ids: tf.Tensor, start: number): void {
    if (ids.rank !== 2) throw new UsageError(`token ids must be a [batch, time] tensor, got shape [${ids.shape}]`);
    const T = ids.shape[1] ?? 0;
    const ctx = this.config.context_length;
    if (start === 0 && T > ctx) {
      throw new UsageError(
        `a sequence of ${T} tokens is longer than the model's context of ${ctx}`,
        `crop inputs to the last ${ctx} tokens`,
      );
    }
    if (start + T > ctx) {
      throw new UsageError(
        `the KV cache holds ${start} positions; ${T} more exceed the context of ${ctx}`,
        "start a new cache on the cropped window",
      );
    }
  }

  /**
   * The attention weights of block `layer` for ids [B,T] (inference: no dropout, no cache): [B,H,T,T], row i
   * the distribution of query i over the keys 0..i.
   */
  attentionWeights(ids: tf.Tensor2D, layer: number): tf.Tensor4D {
    this.checkIds(ids, 0);
    return tf.tidy(() => {
      let x = this.embed(ids, 0); // [B,T,D]
      for (const block of this.blocks.slice(0, layer)) x = block.call(x) as tf.Tensor3D;
      const block = this.blocks[layer];
      return block.attn.attentionWeights(block.ln1.call(x) as tf.Tensor3D);
    });
  }

  newCache(): KVCache {
    return new KVCache(this.blocks.length);
  }

  /** Every weight by its Hugging Face GPT-2 name (no `transformer.` prefix), in parameterShapes' order. */
  namedWeights(): Map<string, tf.LayerVariable> {
    return new Map(this.layers().flatMap((layer) => layer.namedWeights()));
  }

  /**
   * Replace every weight. All names and shapes are checked before anything is written, so a bad file leaves
   * the model as it was. A Float32Array is taken in the named weight's shape (its length must match).
   */
  setWeights(tensors: Map<string, Float32Array | tf.Tensor>): void {
    const found = new Map<string, number[] | number>();
    for (const [name, value] of tensors) found.set(name, value instanceof tf.Tensor ? value.shape : value.length);
    checkWeightShapes(this.weightShapes(), found, "the weights");
    for (const [name, variable] of this.namedWeights()) {
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

  /**
   * The book's `replace_linear_with_lora` after freezing the model: an adapter beside every projection — q, k
   * and v each their own over the fused c_attn, the attention's c_proj, both MLP layers — and beside the output
   * head; every other weight frozen, so only the adapters train. The A matrices are drawn from `seed`.
   */
  addLora(lora: LoraSettings, seed = 123): void {
    if (this.lora) throw new UsageError("this model has LoRA adapters already");
    if (architecture(this.config).names !== "gpt2")
      throw new UsageError("LoRA works on GPT-2-family models for now", "finetune without --lora");
    const rng = new Rng(seed);
    const next = () => rng.int(2 ** 30);
    const D = this.config.emb_dim;
    // tfjs' Layer.trainable setter sets every weight of the layer: layers first, then the weights
    for (const layer of this.layers()) layer.trainable = true;
    for (const v of this.namedWeights().values()) v.trainable = false;
    for (const block of this.blocks) {
      for (const part of [block.attn, block.mlp]) {
        for (const [local, inDim, outDim] of part.projections()) part.addAdapter(local, inDim, outDim, lora, next());
      }
    }
    this.outHead.addAdapter("", D, this.outHead.outDim, lora, next());
    this.lora = { rank: lora.rank, alpha: lora.alpha };
  }

  /** The LoRA adapters' weights by name (`h.0.attn.c_attn.q.lora_A`, …, `score.lora_B`); empty without LoRA. */
  adapterWeights(): Map<string, tf.LayerVariable> {
    return new Map(this.layers().flatMap((layer) => layer.namedAdapters()));
  }

  /** name → shape of every weight: the parameter table of this model's config and head */
  weightShapes(): Map<string, number[]> {
    return parameterShapes(this.config, this.head);
  }

  /** The variables an optimizer should update: those of layers (and weights) marked trainable, each once. */
  trainableVariables(): tf.Variable[] {
    return [...new Set(this.model.trainableWeights.map((w) => w.read() as tf.Variable))];
  }

  /** Each block's trainable variables (those its recomputed backward pass gives gradients to), by block. */
  private blockVariables(): tf.Variable[][] {
    const byName = new Map(this.trainableVariables().map((v) => [v.name, v]));
    const out = this.blocks.map(() => new Set<tf.Variable>());
    for (const [name, lv] of [...this.namedWeights(), ...this.adapterWeights()]) {
      const block = /^(?:h|layers)\.(\d+)\./.exec(name);
      const variable = byName.get(lv.name);
      if (block && variable && lv.trainable) out[Number(block[1])].add(variable);
    }
    return out.map((set) => [...set]);
  }

  /** Parameters actually allocated (a tied head counts once). */
  countParameters(): number {
    let n = 0;
    for (const v of this.namedWeights().values()) n += v.shape.reduce((a: number, b) => a * (b as number), 1);
    return n;
  }

  dispose(): void {
    this.model.dispose();
  }
}

/** The mask seeds of one pass: drawn from a generator seeded with `seed`, or Math.random's without one. */
function maskSeeds(seed: number | undefined): MaskSeeds {
  if (seed === undefined) return Math.random;
  const rng = new Rng(seed);
  return () => rng.random();
}

/** Build a GPT for a config (random weights from `seed`, or zeros with `initialize: false`). */
export function buildGPT(cfg: GPTConfig, opts: BuildOptions = {}): GPTModel {
  return new GPTModel(cfg, opts);
}
