/**
 * The GPT-2 building blocks as TF.js custom layers (the tfjs-layers contract: weights made in build() with
 * addWeight, call() free of side effects, computeOutputShape, getConfig + static className, registered once),
 * so `model.summary()`, `layer.trainable` and freezing work as for built-in layers.
 *
 * Conventions: B batch, T sequence length, D emb_dim, H heads, hd = D/H head size, V vocabulary.
 * Projection kernels are [in, out] and applied as x·W + b (GPT-2's Conv1D layout, the same as a TF.js Dense
 * kernel); matmuls run on 2-D [B*T, D] views through ../backend/fast-ops.ts, whose ops have hand-written
 * gradients that stay on the wasm backend's fast paths and keep only what the backward pass reads.
 */
import * as tf from "@tensorflow/tfjs";
import * as fast from "../backend/fast-ops.js";

type Shape = (number | null)[];
type LayerArgs = NonNullable<ConstructorParameters<typeof tf.layers.Layer>[0]>;
export interface CallArgs {
  training?: boolean;
}

const INIT_STD = 0.02;

function single(inputs: tf.Tensor | tf.Tensor[]): tf.Tensor {
  return Array.isArray(inputs) ? inputs[0] : inputs;
}

function singleShape(shape: Shape | Shape[]): Shape {
  return Array.isArray(shape[0]) ? (shape[0] as Shape) : (shape as Shape);
}

function normal(seed: number, stddev = INIT_STD): ReturnType<typeof tf.initializers.randomNormal> {
  return tf.initializers.randomNormal({ mean: 0, stddev, seed });
}

/** Dropout only while training (inverted dropout: kept values are scaled by 1/(1-rate), as tf.dropout). */
export const dropout = fast.dropout;

/** GELU, tanh approximation (GPT-2's "gelu_new"): 0.5·x·(1 + tanh(√(2/π)·(x + 0.044715·x³))). */
export const gelu = fast.gelu;

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

// ---------------------------------------------------------------------------------------------------------

/** LayerNorm over the last axis: eps 1e-5, biased variance (as PyTorch and GPT-2). Weights `weight`, `bias`. */
export class LayerNorm extends tf.layers.Layer {
  static readonly className = "LayerNorm";
  readonly epsilon: number;
  weight!: tf.LayerVariable;
  bias!: tf.LayerVariable;

  constructor(args: LayerArgs & { epsilon?: number } = {}) {
    super(args);
    this.epsilon = args.epsilon ?? 1e-5;
  }

  override build(inputShape: Shape | Shape[]): void {
    const d = singleShape(inputShape).at(-1) as number;
    this.weight = this.addWeight("weight", [d], "float32", tf.initializers.ones());
    this.bias = this.addWeight("bias", [d], "float32", tf.initializers.zeros());
    this.built = true;
  }

  override call(inputs: tf.Tensor | tf.Tensor[]): tf.Tensor {
    return fast.layerNorm(single(inputs), this.weight.read(), this.bias.read(), this.epsilon); // biased variance, as GPT-2
  }

  override computeOutputShape(inputShape: Shape | Shape[]): Shape {
    return singleShape(inputShape);
  }

  override getConfig(): tf.serialization.ConfigDict {
    return { ...super.getConfig(), epsilon: this.epsilon };
  }
}

// ---------------------------------------------------------------------------------------------------------

export interface EmbeddingArgs extends LayerArgs {
  vocabSize: number;
  contextLength: number;
  embDim: number;
  dropRate: number;
  seed: number;
}

/** Token + learned position embedding, then dropout: ids [B,T] int32 → [B,T,D]. Weights `wte` [V,D], `wpe` [ctx,D]. */
export class GPTEmbedding extends tf.layers.Layer {
  static readonly className = "GPTEmbedding";
  readonly vocabSize: number;
  readonly contextLength: number;
  readonly embDim: number;
  readonly dropRate: number;
  readonly seed: number;
  wte!: tf.LayerVariable;
  wpe!: tf.LayerVariable;

  constructor(args: EmbeddingArgs) {
    super(args);
    this.vocabSize = args.vocabSize;
    this.contextLength = args.contextLength;
    this.embDim = args.embDim;
    this.dropRate = args.dropRate;
    this.seed = args.seed;
  }

  override build(): void {
    this.wte = this.addWeight("wte", [this.vocabSize, this.embDim], "float32", normal(this.seed));
    this.wpe = this.addWeight("wpe", [this.contextLength, this.embDim], "float32", normal(this.seed + 1));
    this.built = true;
  }

  /** ids [B,T] at positions start..start+T-1 → [B,T,D]. */
  embed(ids: tf.Tensor, start: number, training: boolean): tf.Tensor3D {
    return tf.tidy(() => {
      const [, T] = ids.shape as [number, number];
      const tok = tf.gather(this.wte.read(), ids.dtype === "int32" ? ids : tf.cast(ids, "int32")); // [B,T,D]
      const pos = tf.slice(this.wpe.read(), [start, 0], [T, this.embDim]); // [T,D], broadcast over B
      return dropout(tf.add(tok, pos) as tf.Tensor3D, this.dropRate, training);
    });
  }

  override call(inputs: tf.Tensor | tf.Tensor[], kwargs: CallArgs): tf.Tensor {
    return this.embed(single(inputs), 0, kwargs?.training ?? false);
  }

  override computeOutputShape(inputShape: Shape | Shape[]): Shape {
    const [b, t] = singleShape(inputShape);
    return [b, t, this.embDim];
  }

  override getConfig(): tf.serialization.ConfigDict {
    return {
      ...super.getConfig(),
      vocabSize: this.vocabSize,
      contextLength: this.contextLength,
      embDim: this.embDim,
      dropRate: this.dropRate,
      seed: this.seed,
    };
  }
}

// ---------------------------------------------------------------------------------------------------------

/** Keys and values of one attention layer for the positions seen so far (for incremental decoding). */
export interface LayerKV {
  /** keys, already transposed for q·kᵀ: [B,H,hd,Tk] */
  kT: tf.Tensor4D;
  /** values [B,H,Tk,hd] */
  v: tf.Tensor4D;
}

export interface AttentionArgs extends LayerArgs {
  embDim: number;
  numHeads: number;
  dropRate: number;
  qkvBias: boolean;
  /** blocks in the model: the output projection starts smaller (0.02/√(2·n_layers), GPT-2's residual scaling) */
  numLayers: number;
  seed: number;
}

/**
 * Causal multi-head self-attention: one fused q/k/v projection `c_attn` [D,3D] (+ optional bias [3D]), scaled
 * dot-product scores masked to the past, softmax, dropout on the weights, heads concatenated, output projection
 * `c_proj` [D,D] + bias [D].
 */
export class CausalSelfAttention extends tf.layers.Layer {
  static readonly className = "CausalSelfAttention";
  readonly embDim: number;
  readonly numHeads: number;
  readonly headDim: number;
  readonly dropRate: number;
  readonly qkvBias: boolean;
  readonly numLayers: number;
  readonly seed: number;
  cAttnWeight!: tf.LayerVariable;
  cAttnBias: tf.LayerVariable | null = null;
  cProjWeight!: tf.LayerVariable;
  cProjBias!: tf.LayerVariable;

  constructor(args: AttentionArgs) {
    super(args);
    this.embDim = args.embDim;
    this.numHeads = args.numHeads;
    this.headDim = args.embDim / args.numHeads;
    this.dropRate = args.dropRate;
    this.qkvBias = args.qkvBias;
    this.numLayers = args.numLayers;
    this.seed = args.seed;
  }

  override build(): void {
    const D = this.embDim;
    this.cAttnWeight = this.addWeight("c_attn.weight", [D, 3 * D], "float32", normal(this.seed));
    if (this.qkvBias) this.cAttnBias = this.addWeight("c_attn.bias", [3 * D], "float32", tf.initializers.zeros());
    const projStd = INIT_STD / Math.sqrt(2 * this.numLayers);
    this.cProjWeight = this.addWeight("c_proj.weight", [D, D], "float32", normal(this.seed + 1, projStd));
    this.cProjBias = this.addWeight("c_proj.bias", [D], "float32", tf.initializers.zeros());
    this.built = true;
  }

  /** x [B,T,D] → q [B,H,T,hd], kᵀ [B,H,hd,T], v [B,H,T,hd]. */
  private project(x: tf.Tensor3D): { q: tf.Tensor4D; kT: tf.Tensor4D; v: tf.Tensor4D } {
    const [B, T, D] = x.shape;
    const H = this.numHeads;
    const hd = this.headDim;
    const qkv = fast.linear(
      tf.reshape(x, [B * T, D]) as tf.Tensor2D,
      this.cAttnWeight.read() as tf.Tensor2D,
      this.cAttnBias?.read() as tf.Tensor1D | undefined,
    ); // [B*T,3D]
    const [q, k, v] = tf.split(qkv, 3, 1); // each [B*T,D]; head h owns columns h*hd..(h+1)*hd-1
    return {
      q: tf.transpose(tf.reshape(q, [B, T, H, hd]), [0, 2, 1, 3]) as tf.Tensor4D,
      kT: tf.transpose(tf.reshape(k, [B, T, H, hd]), [0, 2, 3, 1]) as tf.Tensor4D,
      v: tf.transpose(tf.reshape(v, [B, T, H, hd]), [0, 2, 1, 3]) as tf.Tensor4D,
    };
  }

  /** softmax(q·kᵀ/√hd, masked to the past)·v, heads merged and projected: → [B,Tq,D]. */
  private attend(q: tf.Tensor4D, kT: tf.Tensor4D, v: tf.Tensor4D, training: boolean): tf.Tensor3D {
    const [B, , Tq] = q.shape;
    const Tk = kT.shape[3];
    const mask = Tq > 1 ? causalMask(Tq, Tk) : null; // a single new query may see every key
    const y = tf.transpose(fast.attention(q, kT, v, { mask, dropRate: this.dropRate, training }), [0, 2, 1, 3]); // [B,Tq,H,hd]
    const out = fast.linear(
      tf.reshape(y, [B * Tq, this.embDim]) as tf.Tensor2D,
      this.cProjWeight.read() as tf.Tensor2D,
      this.cProjBias.read() as tf.Tensor1D,
    );
    return tf.reshape(out, [B, Tq, this.embDim]);
  }

  override call(inputs: tf.Tensor | tf.Tensor[], kwargs: CallArgs): tf.Tensor {
    return tf.tidy(() => {
      const { q, kT, v } = this.project(single(inputs) as tf.Tensor3D);
      return this.attend(q, kT, v, kwargs?.training ?? false);
    });
  }

  /**
   * Inference on new positions x [B,T,D] given the keys/values of the positions before them (or null):
   * returns the output and the extended keys/values (new tensors; the caller owns and disposes both).
   */
  callCached(x: tf.Tensor3D, past: LayerKV | null): { y: tf.Tensor3D; kv: LayerKV } {
    const { q, kT, v } = this.project(x);
    const allKT = past ? (tf.concat([past.kT, kT], 3) as tf.Tensor4D) : kT; // [B,H,hd,Tpast+T]
    const allV = past ? (tf.concat([past.v, v], 2) as tf.Tensor4D) : v; // [B,H,Tpast+T,hd]
    return { y: this.attend(q, allKT, allV, false), kv: { kT: allKT, v: allV } };
  }

  override computeOutputShape(inputShape: Shape | Shape[]): Shape {
    return singleShape(inputShape);
  }

  override getConfig(): tf.serialization.ConfigDict {
    return {
      ...super.getConfig(),
      embDim: this.embDim,
      numHeads: this.numHeads,
      dropRate: this.dropRate,
      qkvBias: this.qkvBias,
      numLayers: this.numLayers,
      seed: this.seed,
    };
  }
}

// ---------------------------------------------------------------------------------------------------------

export interface FeedForwardArgs extends LayerArgs {
  embDim: number;
  numLayers: number;
  seed: number;
}

/** The MLP: `c_fc` [D,4D] + bias, GELU (tanh), `c_proj` [4D,D] + bias. */
export class FeedForward extends tf.layers.Layer {
  static readonly className = "FeedForward";
  readonly embDim: number;
  readonly numLayers: number;
  readonly seed: number;
  cFcWeight!: tf.LayerVariable;
  cFcBias!: tf.LayerVariable;
  cProjWeight!: tf.LayerVariable;
  cProjBias!: tf.LayerVariable;

  constructor(args: FeedForwardArgs) {
    super(args);
    this.embDim = args.embDim;
    this.numLayers = args.numLayers;
    this.seed = args.seed;
  }

  override build(): void {
    const D = this.embDim;
    this.cFcWeight = this.addWeight("c_fc.weight", [D, 4 * D], "float32", normal(this.seed));
    this.cFcBias = this.addWeight("c_fc.bias", [4 * D], "float32", tf.initializers.zeros());
    const projStd = INIT_STD / Math.sqrt(2 * this.numLayers);
    this.cProjWeight = this.addWeight("c_proj.weight", [4 * D, D], "float32", normal(this.seed + 1, projStd));
    this.cProjBias = this.addWeight("c_proj.bias", [D], "float32", tf.initializers.zeros());
    this.built = true;
  }

  override call(inputs: tf.Tensor | tf.Tensor[]): tf.Tensor {
    return tf.tidy(() => {
      const x = single(inputs) as tf.Tensor3D;
      const [B, T, D] = x.shape;
      const h = gelu(
        fast.linear(
          tf.reshape(x, [B * T, D]) as tf.Tensor2D,
          this.cFcWeight.read() as tf.Tensor2D,
          this.cFcBias.read() as tf.Tensor1D,
        ),
      ); // [B*T,4D]
      const out = fast.linear(h, this.cProjWeight.read() as tf.Tensor2D, this.cProjBias.read() as tf.Tensor1D); // [B*T,D]
      return tf.reshape(out, [B, T, D]);
    });
  }

  override computeOutputShape(inputShape: Shape | Shape[]): Shape {
    return singleShape(inputShape);
  }

  override getConfig(): tf.serialization.ConfigDict {
    return { ...super.getConfig(), embDim: this.embDim, numLayers: this.numLayers, seed: this.seed };
  }
}

// ---------------------------------------------------------------------------------------------------------

export interface BlockArgs extends LayerArgs {
  embDim: number;
  numHeads: number;
  dropRate: number;
  qkvBias: boolean;
  numLayers: number;
  seed: number;
}

/**
 * One pre-LayerNorm transformer block: x + drop(attn(ln_1(x))), then h + drop(mlp(ln_2(h))).
 * Its four parts are layers of their own; the block reports their weights as its own (as tfjs' Wrapper does),
 * so setting `block.trainable = false` freezes all of them.
 */
export class TransformerBlock extends tf.layers.Layer {
  static readonly className = "TransformerBlock";
  readonly embDim: number;
  readonly numHeads: number;
  readonly dropRate: number;
  readonly qkvBias: boolean;
  readonly numLayers: number;
  readonly seed: number;
  readonly ln1: LayerNorm;
  readonly attn: CausalSelfAttention;
  readonly ln2: LayerNorm;
  readonly mlp: FeedForward;

  constructor(args: BlockArgs) {
    super(args);
    this.embDim = args.embDim;
    this.numHeads = args.numHeads;
    this.dropRate = args.dropRate;
    this.qkvBias = args.qkvBias;
    this.numLayers = args.numLayers;
    this.seed = args.seed;
    const prefix = args.name ?? "block";
    this.ln1 = new LayerNorm({ name: `${prefix}.ln_1` });
    this.attn = new CausalSelfAttention({ ...args, name: `${prefix}.attn`, seed: args.seed });
    this.ln2 = new LayerNorm({ name: `${prefix}.ln_2` });
    this.mlp = new FeedForward({
      embDim: args.embDim,
      numLayers: args.numLayers,
      name: `${prefix}.mlp`,
      seed: args.seed + 2,
    });
  }

  private get parts(): tf.layers.Layer[] {
    // undefined while the base constructor runs
    return this.mlp ? [this.ln1, this.attn, this.ln2, this.mlp] : [];
  }

  override build(inputShape: Shape | Shape[]): void {
    for (const part of this.parts) {
      part.build(inputShape);
      part.built = true;
    }
    this.built = true;
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

  override call(inputs: tf.Tensor | tf.Tensor[], kwargs: CallArgs): tf.Tensor {
    const training = kwargs?.training ?? false;
    return tf.tidy(() => {
      const x = single(inputs); // [B,T,D] residual stream
      const h = tf.add(x, dropout(this.attn.call(this.ln1.call(x), kwargs) as tf.Tensor, this.dropRate, training));
      return tf.add(h, dropout(this.mlp.call(this.ln2.call(h)) as tf.Tensor, this.dropRate, training));
    });
  }

  /** Inference with a KV cache: see CausalSelfAttention.callCached. */
  callCached(x: tf.Tensor3D, past: LayerKV | null): { y: tf.Tensor3D; kv: LayerKV } {
    const a = this.attn.callCached(this.ln1.call(x) as tf.Tensor3D, past);
    const h = tf.add(x, a.y);
    return { y: tf.add(h, this.mlp.call(this.ln2.call(h))), kv: a.kv };
  }

  override computeOutputShape(inputShape: Shape | Shape[]): Shape {
    return singleShape(inputShape);
  }

  override getConfig(): tf.serialization.ConfigDict {
    return {
      ...super.getConfig(),
      embDim: this.embDim,
      numHeads: this.numHeads,
      dropRate: this.dropRate,
      qkvBias: this.qkvBias,
      numLayers: this.numLayers,
      seed: this.seed,
    };
  }
}

// ---------------------------------------------------------------------------------------------------------

/**
 * A head weight transposed for inference, kept from call to call and made again when the weight changes (a
 * variable gets a new dataId on every assign). Transposing GPT-2's [50257,D] head and XNNPACK packing the copy
 * took longer than generating 32 KV-cached tokens of gpt2-tiny; generation pays it once per weight now.
 */
class TransposedCopy {
  private source?: object;
  private copy?: tf.Tensor2D;

  of(w: tf.Tensor2D): tf.Tensor2D {
    if (this.copy && this.source === w.dataId) return this.copy;
    this.dispose();
    this.copy = tf.keep(tf.transpose(w));
    this.source = w.dataId;
    return this.copy;
  }

  dispose(): void {
    this.copy?.dispose();
    this.copy = this.source = undefined;
  }
}

/**
 * What turns the final hidden states into scores: h [B,T,D] → [B,T,out] = h·Wᵀ (+ b), with W [out,D] in
 * PyTorch's Linear layout. Wᵀ is materialised with an explicit transpose: the wasm backend is slow with
 * transposed matmul operands.
 */
export abstract class OutputHead extends tf.layers.Layer {
  private readonly transposed = new TransposedCopy();

  constructor(
    args: LayerArgs,
    /** scores per position: the vocabulary size, or the number of classes */
    readonly outDim: number,
    readonly embDim: number,
    readonly seed: number,
  ) {
    super(args);
  }

  /** W [out,D] */
  abstract headWeight(): tf.Tensor2D;

  /** b [out], for heads that have one */
  protected headBias(): tf.Tensor1D | null {
    return null;
  }

  /** h [N,D] → [N,out]; `weightT` is the head weight already transposed to [D,out] (inference reuses one). */
  project(h: tf.Tensor2D, weightT?: tf.Tensor2D): tf.Tensor2D {
    return tf.tidy(() => {
      const y = fast.matMulBT(h, this.headWeight(), weightT);
      const b = this.headBias();
      return b ? tf.add(y, b) : y;
    });
  }

  /** the head weight transposed to [D,out] for inference; owned by the head (do not dispose), see TransposedCopy */
  transposedWeight(): tf.Tensor2D {
    return this.transposed.of(this.headWeight());
  }

  override dispose(): ReturnType<tf.layers.Layer["dispose"]> {
    this.transposed.dispose();
    return super.dispose();
  }

  override call(inputs: tf.Tensor | tf.Tensor[]): tf.Tensor {
    return tf.tidy(() => {
      const h = single(inputs) as tf.Tensor3D;
      const [B, T, D] = h.shape;
      return tf.reshape(this.project(tf.reshape(h, [B * T, D])), [B, T, this.outDim]);
    });
  }

  override computeOutputShape(inputShape: Shape | Shape[]): Shape {
    const [b, t] = singleShape(inputShape);
    return [b, t, this.outDim];
  }
}

export interface LMHeadArgs extends LayerArgs {
  vocabSize: number;
  embDim: number;
  /** tie the head to this embedding's `wte` instead of owning `lm_head.weight` */
  tiedTo?: GPTEmbedding;
  seed: number;
}

/**
 * Next-token logits: h [B,T,D] → [B,T,V], no bias: its own `lm_head.weight` [V,D] (untied, as the book trains)
 * or the token embedding `wte` (tied, as GPT-2 ships).
 */
export class LMHead extends OutputHead {
  static readonly className = "LMHead";
  readonly tiedTo: GPTEmbedding | null;
  weight: tf.LayerVariable | null = null;

  constructor(args: LMHeadArgs) {
    super(args, args.vocabSize, args.embDim, args.seed);
    this.tiedTo = args.tiedTo ?? null;
  }

  override build(): void {
    if (!this.tiedTo) this.weight = this.addWeight("weight", [this.outDim, this.embDim], "float32", normal(this.seed));
    this.built = true;
  }

  headWeight(): tf.Tensor2D {
    return (this.tiedTo ? this.tiedTo.wte.read() : this.weight!.read()) as tf.Tensor2D;
  }

  override getConfig(): tf.serialization.ConfigDict {
    return {
      ...super.getConfig(),
      vocabSize: this.outDim,
      embDim: this.embDim,
      tied: this.tiedTo !== null,
      seed: this.seed,
    };
  }
}

export interface ClassifierHeadArgs extends LayerArgs {
  numClasses: number;
  embDim: number;
  seed: number;
}

/** Chapter 6's classifier: h [B,T,D] → [B,T,C] with `score.weight` [C,D] and `score.bias` [C]. */
export class ClassifierHead extends OutputHead {
  static readonly className = "ClassifierHead";
  weight!: tf.LayerVariable;
  bias!: tf.LayerVariable;

  constructor(args: ClassifierHeadArgs) {
    super(args, args.numClasses, args.embDim, args.seed);
  }

  override build(): void {
    this.weight = this.addWeight("weight", [this.outDim, this.embDim], "float32", normal(this.seed));
    this.bias = this.addWeight("bias", [this.outDim], "float32", tf.initializers.zeros());
    this.built = true;
  }

  headWeight(): tf.Tensor2D {
    return this.weight.read() as tf.Tensor2D;
  }

  protected override headBias(): tf.Tensor1D {
    return this.bias.read() as tf.Tensor1D;
  }

  override getConfig(): tf.serialization.ConfigDict {
    return { ...super.getConfig(), numClasses: this.outDim, embDim: this.embDim, seed: this.seed };
  }
}

for (const cls of [
  LayerNorm,
  GPTEmbedding,
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
