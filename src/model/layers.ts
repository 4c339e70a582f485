/**
 * The GPT-2 building blocks (and the Llama family's swaps: RMSNorm, SwiGLU, RoPE, grouped-query attention,
 * Qwen3's q/k norm; docs/families.md) as TF.js custom layers (the tfjs-layers contract: weights made in build() with
 * addWeight, call() free of side effects on the layer, computeOutputShape, getConfig + static className,
 * registered once), so `model.summary()`, `layer.trainable` and freezing work as for built-in layers.
 *
 * Layer names are the prefixes of the Hugging Face GPT-2 weight names (`wte`, `h.0`, `h.0.attn`, `ln_f`, …):
 * a layer's weight `c_attn.weight` is the model's `h.0.attn.c_attn.weight`; the Llama family's are Llama's
 * (`embed_tokens`, `layers.0.self_attn` holding `q_proj.weight`, `norm`, …).
 *
 * Conventions: B batch, T sequence length, D emb_dim, H heads, KV key/value heads, hd head size (D/H unless
 * head_dim says otherwise), F the MLP's width, V vocabulary.
 * Projection kernels are [in, out] and applied as x·W + b (GPT-2's Conv1D layout, the same as a TF.js Dense
 * kernel); matmuls run on 2-D [B*T, D] views through ../backend/transformer-ops.ts, whose ops have
 * hand-written gradients that stay on the wasm backend's fast paths and keep only what the backward pass reads.
 */
import * as tf from "@tensorflow/tfjs";
import * as ops from "../backend/transformer-ops.js";
import { NAMES, type Architecture } from "./config.js";
import { ropeTables } from "./rope.js";

type Shape = (number | null)[];
type LayerArgs = NonNullable<ConstructorParameters<typeof tf.layers.Layer>[0]>;
type Initializer = ReturnType<typeof tf.initializers.zeros>;

/** What a forward pass tells the layers it calls. */
export interface CallArgs {
  /** training: dropout is on, each mask seeded by the next draw (see transformer-ops' MaskSeeds) */
  dropout?: ops.MaskSeeds;
}

const INIT_STD = 0.02;

/** Appendix E's LoRA: adapters of rank `rank` whose product x·A·B is scaled by alpha/rank. */
export interface LoraSettings {
  rank: number;
  alpha: number;
}

/** One projection's LoRA adapter: A [in,rank], B [rank,out]. */
interface Adapter {
  a: tf.LayerVariable;
  b: tf.LayerVariable;
  scale: number;
}

function single(inputs: tf.Tensor | tf.Tensor[]): tf.Tensor {
  return Array.isArray(inputs) ? inputs[0] : inputs;
}

function singleShape(shape: Shape | Shape[]): Shape {
  return Array.isArray(shape[0]) ? (shape[0] as Shape) : (shape as Shape);
}

function normal(seed: number, stddev = INIT_STD): Initializer {
  return tf.initializers.randomNormal({ mean: 0, stddev, seed });
}

/** tfjs' own layer arguments: getConfig writes the ones that are set, next to a layer's config */
const LAYER_ARG_KEYS = [
  "name",
  "trainable",
  "dtype",
  "batchInputShape",
  "inputShape",
  "batchSize",
  "inputDType",
  "weights",
];

/**
 * A layer built from one typed config `C` (plus tfjs' own name/trainable), which getConfig returns whole, so
 * `new Layer(layer.getConfig())` — what tf.serialization does — rebuilds the same layer. Its weights are made
 * with `param` and listed by `namedWeights` under the layer's name.
 */
export abstract class GPTLayer<C extends tf.serialization.ConfigDict> extends tf.layers.Layer {
  readonly cfg: C;
  private readonly params = new Map<string, tf.LayerVariable>();
  private readonly adapters = new Map<string, Adapter>();

  constructor(args: C & LayerArgs) {
    super(args);
    const cfg: Record<string, unknown> = { ...args };
    for (const key of LAYER_ARG_KEYS) delete cfg[key];
    this.cfg = cfg as C;
  }

  /** a weight of this layer, `local` being its name inside the layer (e.g. "c_attn.weight") */
  protected param(local: string, shape: number[], init: Initializer): tf.LayerVariable {
    const v = this.addWeight(local, shape, "float32", init);
    this.params.set(local, v);
    return v;
  }

  /** the layer's weights under the model's names (`${layer name}.${local}`), in the order they were made */
  namedWeights(): [string, tf.LayerVariable][] {
    return [...this.params].map(([local, v]) => [`${this.name}.${local}`, v]);
  }

  /**
   * Give the projection `local` (a weight's name without `.weight`; "" for a head's own weight) a LoRA adapter,
   * the book's LoRALayer: A [in,rank] drawn as torch.nn.init.kaiming_uniform_(A, a=√5) draws it — U(±1/√rank),
   * torch taking A's second dimension as its fan-in — and B [rank,out] zeros, so the layer computes exactly
   * what it did until B is trained. Its weights are `${local}.lora_A` and `${local}.lora_B`.
   */
  addAdapter(local: string, inDim: number, outDim: number, lora: LoraSettings, seed: number): void {
    if (this.adapters.has(local)) throw new Error(`${this.name}: '${local}' has an adapter already`);
    const prefix = local ? `${local}.` : "";
    const zeros = tf.initializers.zeros();
    // written after addWeight: a loaded model's layers make every new weight zeros (fast init)
    const a = this.addWeight(`${prefix}lora_A`, [inDim, lora.rank], "float32", zeros);
    const b = this.addWeight(`${prefix}lora_B`, [lora.rank, outDim], "float32", zeros);
    const bound = 1 / Math.sqrt(lora.rank);
    tf.tidy(() => {
      a.write(tf.randomUniform([inDim, lora.rank], -bound, bound, "float32", seed));
    });
    this.adapters.set(local, { a, b, scale: lora.alpha / lora.rank });
  }

  /** the adapters' weights under the model's names (`h.0.attn.c_attn.q.lora_A`, `score.lora_B`, …) */
  namedAdapters(): [string, tf.LayerVariable][] {
    return [...this.adapters].flatMap(([local, { a, b }]) => {
      const prefix = local ? `${this.name}.${local}` : this.name;
      return [
        [`${prefix}.lora_A`, a],
        [`${prefix}.lora_B`, b],
      ] as [string, tf.LayerVariable][];
    });
  }

  /** y [N,out] plus the adapter term x·A·B·(alpha/rank) of `local` for x [N,in], when it has an adapter */
  protected withAdapter(local: string, x: tf.Tensor2D, y: tf.Tensor2D): tf.Tensor2D {
    const ad = this.adapters.get(local);
    if (!ad) return y;
    // the scale on the [N,rank] product, the smallest tensor of the three
    const xa = tf.mul(tf.matMul(x, ad.a.read() as tf.Tensor2D), ad.scale) as tf.Tensor2D; // [N,rank]
    return tf.add(y, tf.matMul(xa, ad.b.read() as tf.Tensor2D));
  }

  /** a weight this pass leaves unchanged: its layer or the weight itself is frozen (no gradient to compute) */
  protected frozen(w: tf.LayerVariable): boolean {
    return !this.trainable || !w.trainable;
  }

  /** x [N,in] · W (+ b) with W [in,out], plus the projection's adapter term: GPT-2's Conv1D, LoRA's Linear */
  protected project(local: string, x: tf.Tensor2D, w: tf.LayerVariable, b: tf.LayerVariable | null): tf.Tensor2D {
    const y = ops.linear(x, w.read() as tf.Tensor2D, b?.read() as tf.Tensor1D | undefined, this.frozen(w));
    return this.withAdapter(local, x, y);
  }

  override computeOutputShape(inputShape: Shape | Shape[]): Shape {
    return singleShape(inputShape);
  }

  override getConfig(): tf.serialization.ConfigDict {
    return { ...super.getConfig(), ...this.cfg };
  }
}

// ---------------------------------------------------------------------------------------------------------

/** LayerNorm over the last axis: eps 1e-5, biased variance (as PyTorch and GPT-2). Weights `weight`, `bias`. */
export class LayerNorm extends GPTLayer<{ embDim: number; epsilon?: number }> {
  static readonly className = "LayerNorm";
  weight!: tf.LayerVariable;
  bias!: tf.LayerVariable;

  override build(): void {
    this.weight = this.param("weight", [this.cfg.embDim], tf.initializers.ones());
    this.bias = this.param("bias", [this.cfg.embDim], tf.initializers.zeros());
    this.built = true;
  }

  override call(inputs: tf.Tensor | tf.Tensor[]): tf.Tensor {
    return ops.layerNorm(single(inputs), this.weight.read(), this.bias.read(), this.cfg.epsilon ?? 1e-5);
  }
}

/** RMSNorm over the last axis (Llama, Qwen3): x / √(mean(x²) + eps) · weight, no bias. Weight `weight` [width]. */
export class RMSNorm extends GPTLayer<{ embDim: number; epsilon?: number }> {
  static readonly className = "RMSNorm";
  weight!: tf.LayerVariable;

  override build(): void {
    this.weight = this.param("weight", [this.cfg.embDim], tf.initializers.ones());
    this.built = true;
  }

  override call(inputs: tf.Tensor | tf.Tensor[]): tf.Tensor {
    return ops.rmsNorm(single(inputs), this.weight.read(), this.cfg.epsilon ?? 1e-5);
  }
}

export type Norm = LayerNorm | RMSNorm;

/** The norm a model's architecture names, over `width` values. */
export function makeNorm(name: string, width: number, arch?: Architecture): Norm {
  if (arch?.norm === "rmsnorm") return new RMSNorm({ name, embDim: width, epsilon: arch.normEps });
  return new LayerNorm({ name, embDim: width, ...(arch && arch.normEps !== 1e-5 ? { epsilon: arch.normEps } : {}) });
}

// ---------------------------------------------------------------------------------------------------------

/** The token embedding `wte`: ids [B,T] int32 → rows of `weight` [V,D], [B,T,D]. A tied LM head reads it too. */
export class TokenEmbedding extends GPTLayer<{ vocabSize: number; embDim: number; seed: number }> {
  static readonly className = "TokenEmbedding";
  weight!: tf.LayerVariable;

  override build(): void {
    this.weight = this.param("weight", [this.cfg.vocabSize, this.cfg.embDim], normal(this.cfg.seed));
    this.built = true;
  }

  override call(inputs: tf.Tensor | tf.Tensor[]): tf.Tensor {
    const ids = single(inputs);
    return tf.gather(this.weight.read(), ids.dtype === "int32" ? ids : tf.cast(ids, "int32"));
  }

  override computeOutputShape(inputShape: Shape | Shape[]): Shape {
    const [b, t] = singleShape(inputShape);
    return [b, t, this.cfg.embDim];
  }
}

/** The learned position embedding `wpe` [ctx,D], added to token embeddings x [B,T,D] at positions start.. */
export class PositionEmbedding extends GPTLayer<{ contextLength: number; embDim: number; seed: number }> {
  static readonly className = "PositionEmbedding";
  weight!: tf.LayerVariable;

  override build(): void {
    this.weight = this.param("weight", [this.cfg.contextLength, this.cfg.embDim], normal(this.cfg.seed));
    this.built = true;
  }

  override call(inputs: tf.Tensor | tf.Tensor[], kwargs?: { start?: number }): tf.Tensor {
    const x = single(inputs);
    const pos = tf.slice(this.weight.read(), [kwargs?.start ?? 0, 0], [x.shape[1]!, this.cfg.embDim]); // [T,D]
    return tf.add(x, pos); // broadcast over B
  }
}

// ---------------------------------------------------------------------------------------------------------

/** Keys and values of one attention layer for the positions seen so far (for incremental decoding). */
export interface LayerKV {
  /** keys, already transposed for q·kᵀ: [B,KV,hd,Tk] (KV key/value heads: H unless grouped-query) */
  kT: tf.Tensor4D;
  /** values [B,KV,Tk,hd] */
  v: tf.Tensor4D;
}

/**
 * One attention layer's part of a KV cache. Its holder (KVCache) owns the tensors; `extend` replaces them by
 * the keys/values followed by new ones.
 */
export class KVSlot {
  kv: LayerKV | null = null;

  /** the held keys/values followed by kT [B,H,hd,T] and v [B,H,T,hd]; kept past the caller's tf.tidy */
  extend(kT: tf.Tensor4D, v: tf.Tensor4D): LayerKV {
    const past = this.kv;
    const next = past ? { kT: tf.concat([past.kT, kT], 3), v: tf.concat([past.v, v], 2) } : { kT, v };
    this.kv = { kT: tf.keep(next.kT), v: tf.keep(next.v) };
    if (past) tf.dispose([past.kT, past.v]);
    return this.kv;
  }

  dispose(): void {
    if (this.kv) tf.dispose([this.kv.kT, this.kv.v]);
    this.kv = null;
  }
}

type BlockConfig = {
  embDim: number;
  numHeads: number;
  dropRate: number;
  qkvBias: boolean;
  /** blocks in the model: the output projections start smaller (0.02/√(2·n_layers), GPT-2's residual scaling) */
  numLayers: number;
  seed: number;
  /** the family keys resolved (config.ts architecture); absent, GPT-2's */
  arch?: Architecture;
};

export interface BlockCallArgs extends CallArgs {
  /** this layer's part of a KV cache: attend to its positions too, then extend it by the new ones */
  past?: KVSlot;
}

/**
 * Causal self-attention. GPT-2's: one fused q/k/v projection `c_attn` [D,3D] (+ optional bias [3D]), H heads of
 * hd = D/H, output projection `c_proj` [D,D] + bias [D]. The Llama family's (`arch.names` "llama"): `q_proj`
 * [D,H·hd], `k_proj` and `v_proj` [D,KV·hd] (grouped-query: KV key/value heads, each serving H/KV query heads),
 * `o_proj` [H·hd,D], biases only with attention_bias, head size hd of its own; Qwen3 adds `q_norm` and `k_norm`
 * [hd], an RMSNorm of each query and key head before RoPE. Then the same core: positions rotated (RoPE) when the
 * model has no position table, scaled dot-product scores masked to the past, softmax, dropout on the weights,
 * heads concatenated, output projection.
 */
export class CausalSelfAttention extends GPTLayer<BlockConfig> {
  static readonly className = "CausalSelfAttention";
  cAttnWeight!: tf.LayerVariable;
  cAttnBias: tf.LayerVariable | null = null;
  cProjWeight!: tf.LayerVariable;
  cProjBias!: tf.LayerVariable;
  /** Llama-family projections q_proj, k_proj, v_proj, o_proj: weight [in,out] and bias */
  private readonly projs = new Map<string, { w: tf.LayerVariable; b: tf.LayerVariable | null }>();
  /** Qwen3's q_norm and k_norm weights [hd] */
  qNormWeight: tf.LayerVariable | null = null;
  kNormWeight: tf.LayerVariable | null = null;

  /** H query heads, KV key/value heads of hd values */
  private get dims(): { H: number; KV: number; hd: number } {
    const { embDim: D, numHeads: H, arch } = this.cfg;
    return { H, KV: arch?.nKvHeads ?? H, hd: arch?.headDim ?? D / H };
  }

  private get llamaNames(): boolean {
    return this.cfg.arch?.names === "llama";
  }

  override build(): void {
    const { embDim: D, seed, qkvBias, numLayers, arch } = this.cfg;
    const residualInit = normal(seed + 1, INIT_STD / Math.sqrt(2 * numLayers));
    if (!this.llamaNames) {
      this.cAttnWeight = this.param("c_attn.weight", [D, 3 * D], normal(seed));
      if (qkvBias) this.cAttnBias = this.param("c_attn.bias", [3 * D], tf.initializers.zeros());
      this.cProjWeight = this.param("c_proj.weight", [D, D], residualInit);
      this.cProjBias = this.param("c_proj.bias", [D], tf.initializers.zeros());
    } else {
      const { H, KV, hd } = this.dims;
      const bias = arch!.attentionBias;
      const shapes = [
        ["q_proj", D, H * hd],
        ["k_proj", D, KV * hd],
        ["v_proj", D, KV * hd],
        ["o_proj", H * hd, D],
      ] as const;
      shapes.forEach(([proj, inDim, outDim], i) => {
        const w = this.param(
          `${proj}.weight`,
          [inDim, outDim],
          proj === "o_proj" ? residualInit : normal(seed + 2 + i),
        );
        const b = bias ? this.param(`${proj}.bias`, [outDim], tf.initializers.zeros()) : null;
        this.projs.set(proj, { w, b });
      });
      if (arch!.qkNorm) {
        // an RMSNorm over each head's hd values
        this.qNormWeight = this.param("q_norm.weight", [hd], tf.initializers.ones());
        this.kNormWeight = this.param("k_norm.weight", [hd], tf.initializers.ones());
      }
    }
    this.built = true;
  }

  /** the projections LoRA may adapt: [local name, in, out] */
  projections(): [string, number, number][] {
    const D = this.cfg.embDim;
    if (!this.llamaNames) return [...QKV.map((p): [string, number, number] => [p, D, D]), ["c_proj", D, D]];
    return [...this.projs].map(([proj, { w }]) => [proj, w.shape[0] as number, w.shape[1] as number]);
  }

  /** x [B,T,D] → [B,T,D]; with `past`, the new positions also attend to the cached ones (and are cached). */
  override call(inputs: tf.Tensor | tf.Tensor[], kwargs: BlockCallArgs = {}): tf.Tensor {
    return tf.tidy(() => {
      const x = single(inputs) as tf.Tensor3D;
      const [B, T, D] = x.shape;
      const { H, hd } = this.dims;
      const { q, kT, v, mask } = this.queriesKeysValues(x, kwargs.past);
      const y = ops.attention(q, kT, v, { mask, dropRate: this.cfg.dropRate, seeds: kwargs.dropout }); // [B,H,T,hd]
      // heads side by side again
      const heads2 = tf.reshape(T === 1 ? y : tf.transpose(y, [0, 2, 1, 3]), [B * T, H * hd]) as tf.Tensor2D;
      const out = this.llamaNames
        ? this.projectNamed("o_proj", heads2)
        : this.project("c_proj", heads2, this.cProjWeight, this.cProjBias);
      return tf.reshape(out, [B, T, D]);
    });
  }

  /** The attention weights softmax(q·kᵀ/√hd + causal mask) of x [B,T,D] (no cache, no dropout): [B,H,T,T]. */
  attentionWeights(x: tf.Tensor3D): tf.Tensor4D {
    return tf.tidy(() => {
      const { q, kT, mask } = this.queriesKeysValues(x);
      return ops.attentionWeights(q, kT, mask);
    });
  }

  private projectNamed(proj: string, x: tf.Tensor2D): tf.Tensor2D {
    const { w, b } = this.projs.get(proj)!;
    return this.project(proj, x, w, b);
  }

  /** q [B*T,H·hd], k and v [B*T,KV·hd] of x [B*T,D] */
  private projectQKV(x2: tf.Tensor2D): tf.Tensor2D[] {
    if (this.llamaNames) return ["q_proj", "k_proj", "v_proj"].map((p) => this.projectNamed(p, x2));
    const qkv = ops.linear(
      x2,
      this.cAttnWeight.read() as tf.Tensor2D,
      this.cAttnBias?.read() as tf.Tensor1D | undefined,
      this.frozen(this.cAttnWeight),
    ); // [B*T,3D]
    // each [B*T,D]; head h owns columns h*hd..(h+1)*hd-1. LoRA adapts q, k and v apart (the book's three Linears)
    return tf.split(qkv, 3, 1).map((t, i) => this.withAdapter(QKV[i], x2, t as tf.Tensor2D));
  }

  /**
   * q [B,H,T,hd], kᵀ [B,H,hd,Tk] and v [B,H,Tk,hd] of x [B,T,D] (with `past`, Tk counts the cached positions
   * too, and the cache is extended), and the causal mask [T,Tk] (null for a single query, which sees every key).
   * The cache holds the KV key/value heads; they are repeated for their query heads after it.
   */
  private queriesKeysValues(x: tf.Tensor3D, past?: KVSlot) {
    const [B, T, D] = x.shape;
    const { H, KV, hd } = this.dims;
    const [q, k, v] = this.projectQKV(tf.reshape(x, [B * T, D]) as tf.Tensor2D);
    // [B,T,n,hd] permuted; for one position (a KV-cached token) these permutations keep the order in memory,
    // so one reshape does what a reshape and a transpose do
    const heads = (t: tf.Tensor, n: number, perm: number[]): tf.Tensor4D => {
      const shape: [number, number, number, number] = [B, T, n, hd];
      if (T > 1) return tf.transpose(tf.reshape(t, shape), perm);
      return tf.reshape(t, perm.map((i) => shape[i]) as typeof shape);
    };
    let qh = heads(q, H, [0, 2, 1, 3]); // [B,H,T,hd]
    let kT: tf.Tensor4D;
    const rope = this.cfg.arch?.positions === "rope";
    if (!rope && !this.qNormWeight) {
      kT = heads(k, KV, [0, 2, 3, 1]); // [B,KV,hd,T]
    } else {
      let kh = heads(k, KV, [0, 2, 1, 3]); // [B,KV,T,hd]
      if (this.qNormWeight && this.kNormWeight) {
        const eps = this.cfg.arch!.normEps;
        qh = ops.rmsNorm(qh, this.qNormWeight.read(), eps);
        kh = ops.rmsNorm(kh, this.kNormWeight.read(), eps);
      }
      if (rope) {
        const arch = this.cfg.arch!;
        const start = past?.kv?.kT.shape[3] ?? 0; // the positions already cached
        const { cos, sin } = ropeTables(hd, arch.ropeTheta, arch.ropeScaling, start, T); // [T,hd]
        qh = ops.rope(qh, cos, sin);
        kh = ops.rope(kh, cos, sin);
      }
      kT = tf.transpose(kh, [0, 1, 3, 2]); // [B,KV,hd,T]
    }
    let vh = heads(v, KV, [0, 2, 1, 3]); // [B,KV,T,hd]
    if (past) ({ kT, v: vh } = past.extend(kT, vh)); // [B,KV,hd,Tpast+T], [B,KV,Tpast+T,hd]
    if (KV < H) [kT, vh] = [repeatHeads(kT, H / KV), repeatHeads(vh, H / KV)]; // [B,H,…]
    const Tk = kT.shape[3];
    const mask = T > 1 ? causalMask(T, Tk) : null; // a single new query may see every key
    return { q: qh, kT, v: vh, mask };
  }
}

/**
 * Grouped-query attention's sharing: t [B,KV,a,b] → [B,KV·n,a,b], each key/value head repeated for the n query
 * heads it serves (head h reads KV head ⌊h/n⌋, transformers' repeat_kv).
 */
function repeatHeads(t: tf.Tensor4D, n: number): tf.Tensor4D {
  const [B, KV, a, b] = t.shape;
  // rank 4 throughout: tfjs differentiates tile up to rank 4
  return tf.reshape(tf.tile(tf.reshape(t, [B, KV, 1, a * b]), [1, 1, n, 1]), [B, KV * n, a, b]);
}

/** the adapters over c_attn's three column blocks */
export const QKV = ["c_attn.q", "c_attn.k", "c_attn.v"] as const;

const maskCache = new Map<string, Float32Array>();

/**
 * Additive causal mask [Tq, Tk] for queries that are the last Tq of Tk positions: query i sits at key position
 * Tk-Tq+i and may see keys j ≤ Tk-Tq+i. Masked scores get -1e9 rather than -Infinity: exp() still rounds them
 * to exactly 0, and no inf-inf NaN can appear. The values are plain JS memory, so caching them is backend-safe.
 */
function causalMask(Tq: number, Tk: number): tf.Tensor2D {
  const key = `${Tq},${Tk}`;
  let data = maskCache.get(key);
  if (!data) {
    data = new Float32Array(Tq * Tk);
    for (let i = 0; i < Tq; i++) data.fill(-1e9, i * Tk + (Tk - Tq + i) + 1, (i + 1) * Tk);
    if (maskCache.size > 16) maskCache.clear();
    maskCache.set(key, data);
  }
  return tf.tensor2d(data, [Tq, Tk]);
}

/**
 * The MLP. GPT-2's: `c_fc` [D,F] + bias, GELU (tanh, GPT-2's "gelu_new"), `c_proj` [F,D] + bias. The Llama
 * family's SwiGLU (`mlp` "swiglu"): `down_proj`(SiLU(`gate_proj` x) · `up_proj` x), [D,F], [D,F], [F,D], no biases.
 * F is hidden_dim (default 4D).
 */
export class FeedForward extends GPTLayer<{
  embDim: number;
  numLayers: number;
  seed: number;
  mlp?: "gelu" | "swiglu";
  hiddenDim?: number;
}> {
  static readonly className = "FeedForward";
  cFcWeight!: tf.LayerVariable;
  cFcBias!: tf.LayerVariable;
  cProjWeight!: tf.LayerVariable;
  cProjBias!: tf.LayerVariable;
  /** SwiGLU's gate_proj, up_proj, down_proj */
  gateWeight!: tf.LayerVariable;
  upWeight!: tf.LayerVariable;
  downWeight!: tf.LayerVariable;

  private get swiglu(): boolean {
    return this.cfg.mlp === "swiglu";
  }

  private get hidden(): number {
    return this.cfg.hiddenDim ?? 4 * this.cfg.embDim;
  }

  override build(): void {
    const { embDim: D, seed, numLayers } = this.cfg;
    const F = this.hidden;
    const residualInit = normal(seed + 1, INIT_STD / Math.sqrt(2 * numLayers));
    if (this.swiglu) {
      this.gateWeight = this.param("gate_proj.weight", [D, F], normal(seed));
      this.upWeight = this.param("up_proj.weight", [D, F], normal(seed + 2));
      this.downWeight = this.param("down_proj.weight", [F, D], residualInit);
    } else {
      this.cFcWeight = this.param("c_fc.weight", [D, F], normal(seed));
      this.cFcBias = this.param("c_fc.bias", [F], tf.initializers.zeros());
      this.cProjWeight = this.param("c_proj.weight", [F, D], residualInit);
      this.cProjBias = this.param("c_proj.bias", [D], tf.initializers.zeros());
    }
    this.built = true;
  }

  /** the projections LoRA may adapt: [local name, in, out] */
  projections(): [string, number, number][] {
    const [D, F] = [this.cfg.embDim, this.hidden];
    if (this.swiglu)
      return [
        ["gate_proj", D, F],
        ["up_proj", D, F],
        ["down_proj", F, D],
      ];
    return [
      ["c_fc", D, F],
      ["c_proj", F, D],
    ];
  }

  override call(inputs: tf.Tensor | tf.Tensor[]): tf.Tensor {
    return tf.tidy(() => {
      const x = single(inputs) as tf.Tensor3D;
      const [B, T, D] = x.shape;
      const x2 = tf.reshape(x, [B * T, D]) as tf.Tensor2D;
      let out: tf.Tensor2D;
      if (this.swiglu) {
        const gate = ops.silu(this.project("gate_proj", x2, this.gateWeight, null)); // [B*T,F]
        const h = tf.mul(gate, this.project("up_proj", x2, this.upWeight, null)) as tf.Tensor2D; // [B*T,F]
        out = this.project("down_proj", h, this.downWeight, null); // [B*T,D]
      } else {
        const h = ops.gelu(this.project("c_fc", x2, this.cFcWeight, this.cFcBias)); // [B*T,F]
        out = this.project("c_proj", h, this.cProjWeight, this.cProjBias); // [B*T,D]
      }
      return tf.reshape(out, [B, T, D]);
    });
  }
}

// ---------------------------------------------------------------------------------------------------------

/**
 * One pre-norm transformer block `h.i`: x + drop(attn(ln_1(x))), then h + drop(mlp(ln_2(h))).
 *
 *     x ──┬─ ln_1 ─ attn ─ drop ─(+)──┬─ ln_2 ─ mlp ─ drop ─(+)── out
 *         └───────────────────────────┘└──────────────────────────┘
 *
 * Its four parts are layers of their own (`h.i.ln_1`, `h.i.attn`, `h.i.ln_2`, `h.i.mlp`; in the Llama family's
 * names `layers.i.input_layernorm`, `.self_attn`, `.post_attention_layernorm`, `.mlp`); the block reports
 * their weights as its own (as tfjs' Wrapper does), so setting `block.trainable = false` freezes all of them.
 */
export class TransformerBlock extends GPTLayer<BlockConfig> {
  static readonly className = "TransformerBlock";
  readonly ln1: Norm;
  readonly attn: CausalSelfAttention;
  readonly ln2: Norm;
  readonly mlp: FeedForward;

  constructor(args: BlockConfig & LayerArgs) {
    super(args);
    const { embDim, numLayers, seed, arch } = this.cfg;
    const n = NAMES[arch?.names ?? "gpt2"];
    this.ln1 = makeNorm(`${this.name}.${n.ln1}`, embDim, arch);
    this.attn = new CausalSelfAttention({ ...this.cfg, name: `${this.name}.${n.attn}` });
    this.ln2 = makeNorm(`${this.name}.${n.ln2}`, embDim, arch);
    const mlp = arch ? { mlp: arch.mlp, hiddenDim: arch.hiddenDim } : {};
    this.mlp = new FeedForward({ name: `${this.name}.mlp`, embDim, numLayers, seed: seed + 2, ...mlp });
  }

  /** the parts in the order their weights are listed */
  get parts(): GPTLayer<tf.serialization.ConfigDict>[] {
    // undefined while the base constructor runs
    return this.mlp ? [this.ln1, this.attn, this.ln2, this.mlp] : [];
  }

  override build(): void {
    for (const part of this.parts) {
      part.build([]);
      part.built = true;
    }
    this.built = true;
  }

  override namedWeights(): [string, tf.LayerVariable][] {
    return this.parts.flatMap((p) => p.namedWeights());
  }

  override namedAdapters(): [string, tf.LayerVariable][] {
    return this.parts.flatMap((p) => p.namedAdapters());
  }

  override get trainable(): boolean {
    return super.trainable;
  }

  override set trainable(value: boolean) {
    super.trainable = value;
    for (const part of this.parts) part.trainable = value;
  }

  override get trainableWeights(): tf.LayerVariable[] {
    return this.trainable ? this.parts.flatMap((p) => p.trainableWeights) : [];
  }

  override set trainableWeights(weights: tf.LayerVariable[]) {
    super.trainableWeights = weights;
  }

  override get nonTrainableWeights(): tf.LayerVariable[] {
    return this.trainable ? this.parts.flatMap((p) => p.nonTrainableWeights) : this.parts.flatMap((p) => p.weights);
  }

  override set nonTrainableWeights(weights: tf.LayerVariable[]) {
    super.nonTrainableWeights = weights;
  }

  override setFastWeightInitDuringBuild(value: boolean): void {
    super.setFastWeightInitDuringBuild(value);
    for (const part of this.parts) part.setFastWeightInitDuringBuild(value);
  }

  /** x [B,T,D] (the residual stream) → [B,T,D] */
  override call(inputs: tf.Tensor | tf.Tensor[], kwargs: BlockCallArgs = {}): tf.Tensor {
    const { dropRate } = this.cfg;
    return tf.tidy(() => {
      const x = single(inputs);
      const h = tf.add(x, ops.dropout(this.attn.call(this.ln1.call(x), kwargs), dropRate, kwargs.dropout));
      return tf.add(h, ops.dropout(this.mlp.call(this.ln2.call(h)), dropRate, kwargs.dropout));
    });
  }
}

// ---------------------------------------------------------------------------------------------------------

/**
 * What turns the final hidden states into scores: h [B,T,D] → [B,T,out] = h·Wᵀ (+ b), with W [out,D] in
 * PyTorch's Linear layout.
 */
export abstract class OutputHead<C extends { embDim: number; seed: number }> extends GPTLayer<C> {
  /** wᵀ for generation, which multiplies by the same weight token after token */
  private readonly transposed = new ops.TransposedCopy();

  /** scores per position: the vocabulary size, or the number of classes */
  abstract readonly outDim: number;

  /** the variable of W [out,D] */
  protected abstract weightVariable(): tf.LayerVariable;

  /** W [out,D] */
  headWeight(): tf.Tensor2D {
    return this.weightVariable().read() as tf.Tensor2D;
  }

  /** b [out], for heads that have one */
  protected headBias(): tf.Tensor1D | null {
    return null;
  }

  /** h [N,D] → [N,out]; `repeated`: the same weights will be applied again (generation), keep Wᵀ */
  scores(h: tf.Tensor2D, repeated = false): tf.Tensor2D {
    return tf.tidy(() => {
      const frozen = this.frozen(this.weightVariable());
      const y = ops.matMulBT(h, this.headWeight(), repeated ? this.transposed : undefined, frozen);
      const b = this.headBias();
      return this.withAdapter("", h, b ? tf.add(y, b) : y);
    });
  }

  override dispose(): ReturnType<tf.layers.Layer["dispose"]> {
    this.transposed.dispose();
    return super.dispose();
  }

  override call(inputs: tf.Tensor | tf.Tensor[]): tf.Tensor {
    return tf.tidy(() => {
      const h = single(inputs) as tf.Tensor3D;
      const [B, T, D] = h.shape;
      return tf.reshape(this.scores(tf.reshape(h, [B * T, D])), [B, T, this.outDim]);
    });
  }

  override computeOutputShape(inputShape: Shape | Shape[]): Shape {
    const [b, t] = singleShape(inputShape);
    return [b, t, this.outDim];
  }
}

/**
 * Next-token logits `lm_head`: h [B,T,D] → [B,T,V], no bias: its own `weight` [V,D] (untied, as the book
 * trains) or, `tied`, the token embedding's (as GPT-2 ships), which the model hands it with `tie`.
 */
export class LMHead extends OutputHead<{ vocabSize: number; embDim: number; tied: boolean; seed: number }> {
  static readonly className = "LMHead";
  weight: tf.LayerVariable | null = null;
  private wte: TokenEmbedding | null = null;

  get outDim(): number {
    return this.cfg.vocabSize;
  }

  /** a tied head reads this embedding's weight */
  tie(wte: TokenEmbedding): void {
    if (!this.cfg.tied) throw new Error("LMHead.tie: this head has a weight of its own");
    this.wte = wte;
  }

  override build(): void {
    if (!this.cfg.tied)
      this.weight = this.param("weight", [this.cfg.vocabSize, this.cfg.embDim], normal(this.cfg.seed));
    this.built = true;
  }

  protected weightVariable(): tf.LayerVariable {
    if (!this.cfg.tied) return this.weight!;
    if (!this.wte) throw new Error("LMHead: a tied head needs tie(wte) before it is called");
    return this.wte.weight;
  }
}

/** Chapter 6's classifier `score`: h [B,T,D] → [B,T,C] with `weight` [C,D] and `bias` [C]. */
export class ClassifierHead extends OutputHead<{ numClasses: number; embDim: number; seed: number }> {
  static readonly className = "ClassifierHead";
  weight!: tf.LayerVariable;
  bias!: tf.LayerVariable;

  get outDim(): number {
    return this.cfg.numClasses;
  }

  override build(): void {
    this.weight = this.param("weight", [this.cfg.numClasses, this.cfg.embDim], normal(this.cfg.seed));
    this.bias = this.param("bias", [this.cfg.numClasses], tf.initializers.zeros());
    this.built = true;
  }

  protected weightVariable(): tf.LayerVariable {
    return this.weight;
  }

  protected override headBias(): tf.Tensor1D {
    return this.bias.read() as tf.Tensor1D;
  }
}

for (const cls of [
  LayerNorm,
  RMSNorm,
  TokenEmbedding,
  PositionEmbedding,
  CausalSelfAttention,
  FeedForward,
  TransformerBlock,
  LMHead,
  ClassifierHead,
]) {
  tf.serialization.registerClass(
    cls as unknown as tf.serialization.SerializableConstructor<tf.serialization.Serializable>,
  );
}
