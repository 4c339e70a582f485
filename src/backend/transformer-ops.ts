/**
 * The transformer's ops (linear, x·wᵀ, GELU, LayerNorm, dropout, attention) with hand-written gradients, so
 * that training runs on the wasm backend's fast paths and keeps only what the backward pass needs.
 *
 * Why: tfjs-backend-wasm sends a matmul to XNNPACK only when both operands are plain (no transpose flag) and
 * unbatched; anything else (every matmul gradient tfjs derives has a transposed operand; attention's per-head
 * products are batched) runs a naive loop about ten times slower. And autodiff through composite ops (GELU's
 * eight elementwise ops, LayerNorm's moments, dropout's random chain) keeps every
 * intermediate alive until the backward pass: on GPT-2 124M at batch 2 × 256 tokens that was ~230 MB per
 * block and ran the 4 GB wasm heap out before the first backward pass.
 *
 * So every product here is a plain 2-D matmul on wasm (explicit transposes are memory-bound and cheap;
 * batched products loop over their 2-D slices), each op computes its gradient itself, and each saves only
 * what its gradient reads. On other backends the same ops use tfjs' transpose flags and batched matmuls, which
 * are fast there. Forward values equal the plain tfjs compositions op for op. The savings last past the
 * forward pass only with the freeing backprop (./backprop.ts), which useBackend installs.
 */
import * as tf from "@tensorflow/tfjs";
import { normalizeLastAxis } from "./tensorflow-ops.js";

function onWasm(): boolean {
  return tf.getBackend() === "wasm";
}

/**
 * A gradient tape is recording what runs here: tf.grads / tf.variableGrads is running, and not inside another
 * op's forward function (a customGrad's inner ops are not taped: tfjs' own isTapeOn).
 */
function recording(): boolean {
  const { state } = tf.engine() as unknown as { state: { gradientDepth: number; kernelDepth: number } };
  return state.gradientDepth > 0 && state.kernelDepth === 0;
}

let keepPacks = true;

/**
 * Whether wasm may keep XNNPACK's packed copy of each weight from product to product (see operand): yes for
 * generation, which reuses them for every token; no for a training job, whose evaluations would otherwise pack
 * every weight once more and keep it (GPT-2 355M: 1.4 GB of the 4 GB heap beside the step).
 */
export function keepPackedWeights(keep: boolean): void {
  keepPacks = keep;
}

/**
 * `w` as a matmul's right operand. XNNPACK packs that operand and wasm caches the packed copy until the
 * operand's tensor is disposed; for a weight that is the whole training step (the packed weights of GPT-2 124M
 * together: ~600 MB of a 4 GB heap). Under a gradient tape, or in a training job (keepPackedWeights), the product
 * takes a throw-away copy, freed with the op, and its packing with it. In inference the cache is what we want.
 */
function operand<T extends tf.Tensor>(w: T): T {
  const { state } = tf.engine() as unknown as { state: { gradientDepth: number } };
  return onWasm() && (!keepPacks || state.gradientDepth > 0) ? (tf.mul(w, 1) as T) : w;
}

/**
 * The gradient of an op, freeing what the op saved for it as soon as it has been used. tfjs keeps every saved
 * tensor until the whole backward pass ends; freeing each as its op's gradient is done lets activations go
 * while gradients arrive, instead of holding both at the end of the pass. (Each gradFunc runs once per pass.)
 */
function gradientThenFree(saved: tf.Tensor[], grads: () => tf.Tensor | tf.Tensor[]): tf.Tensor | tf.Tensor[] {
  const out = tf.tidy(grads);
  tf.dispose(saved);
  return out;
}

/** a·b for 2-D operands, optionally transposed; on wasm the transposes are materialised first. */
function mm(a: tf.Tensor2D, b: tf.Tensor2D, transposeA = false, transposeB = false): tf.Tensor2D {
  if (!onWasm()) return tf.matMul(a, b, transposeA, transposeB);
  return tf.matMul(transposeA ? tf.transpose(a) : a, transposeB ? tf.transpose(b) : b);
}

/** Below this many rows per slice, wasm's own batched kernel beats a loop of 2-D products (see batchMatMul). */
const LOOP_MIN_ROWS = 32;

/**
 * Batched a·b: a [...,M,K], b [...,K,N] → [...,M,N] over the same leading (batch) axes, each optionally
 * transposed in its last two axes. On wasm, one plain 2-D product per slice: measured 2.3× faster than wasm's
 * batched kernel at [24,256,64]·[24,64,256]. Each 2-D product sets up (and packs b for) an XNNPACK operator,
 * ~0.5 ms, so for a few rows — a new token's query in KV-cached generation — the batched kernel is faster
 * (0.7 ms vs 6.4 ms at [12,1,64]·[12,64,256]).
 */
export function batchMatMul<T extends tf.Tensor3D | tf.Tensor4D>(
  a: T,
  b: T,
  transposeA = false,
  transposeB = false,
): T {
  const r = a.rank;
  const rows = transposeA ? a.shape[r - 1] : a.shape[r - 2];
  if (!onWasm() || rows < LOOP_MIN_ROWS) return tf.matMul(a, b, transposeA, transposeB) as T;
  return tf.tidy(() => {
    const slices = (t: tf.Tensor, transpose: boolean) => {
      const t3 = t.rank === 3 ? t : tf.reshape(t, [-1, ...t.shape.slice(-2)]);
      return tf.unstack(transpose ? tf.transpose(t3, [0, 2, 1]) : t3) as tf.Tensor2D[];
    };
    const bs = slices(b, transposeB);
    const y = tf.stack(slices(a, transposeA).map((ai, i) => tf.matMul(ai, bs[i]))) as tf.Tensor3D; // [G,M,N]
    return (r === 3 ? y : tf.reshape(y, [...a.shape.slice(0, -2), ...y.shape.slice(1)] as T["shape"])) as T;
  });
}

// ---------------------------------------------------------------------------------------------------------

const linearBias = tf.customGrad((x, w, b, save) => {
  (save as tf.GradSaveFunc)([x as tf.Tensor, w as tf.Tensor]);
  return {
    value: tf.fused.matMul({ a: x as tf.Tensor2D, b: operand(w as tf.Tensor2D), bias: b as tf.Tensor1D }), // [N,M]
    gradFunc: (dy: tf.Tensor, saved: tf.Tensor[]) =>
      gradientThenFree(saved, () => [
        mm(dy as tf.Tensor2D, saved[1] as tf.Tensor2D, false, true), // dX = dY·Wᵀ [N,K]
        mm(saved[0] as tf.Tensor2D, dy as tf.Tensor2D, true, false), // dW = Xᵀ·dY [K,M]
        tf.sum(dy, 0), // db [M]
      ]),
  };
});

const linearNoBias = tf.customGrad((x, w, save) => {
  (save as tf.GradSaveFunc)([x as tf.Tensor, w as tf.Tensor]);
  return {
    value: tf.matMul(x as tf.Tensor2D, operand(w as tf.Tensor2D)),
    gradFunc: (dy: tf.Tensor, saved: tf.Tensor[]) =>
      gradientThenFree(saved, () => [
        mm(dy as tf.Tensor2D, saved[1] as tf.Tensor2D, false, true),
        mm(saved[0] as tf.Tensor2D, dy as tf.Tensor2D, true, false),
      ]),
  };
});

/**
 * x·w (+ b) where w and b are frozen (LoRA's base weights): the gradient is dX = dY·Wᵀ alone, so the backward
 * pass neither computes Xᵀ·dY nor keeps x alive for it.
 */
function frozenLinear(x: tf.Tensor2D, w: tf.Tensor2D, b?: tf.Tensor1D | null): tf.Tensor2D {
  const op = tf.customGrad((xi, save) => {
    (save as tf.GradSaveFunc)([w]);
    const a = xi as tf.Tensor2D;
    return {
      value: b ? tf.fused.matMul({ a, b: operand(w), bias: b }) : tf.matMul(a, operand(w)), // [N,M]
      gradFunc: (dy: tf.Tensor, saved: tf.Tensor[]) =>
        gradientThenFree(saved, () => mm(dy as tf.Tensor2D, saved[0] as tf.Tensor2D, false, true)), // [N,K]
    };
  });
  return op(x) as tf.Tensor2D;
}

/**
 * x [N,K] · w [K,M] (+ b [M]) → [N,M]; GPT-2's Conv1D layout (a TF.js Dense kernel). `frozen`: w and b get no
 * gradient (see frozenLinear).
 */
export function linear(x: tf.Tensor2D, w: tf.Tensor2D, b?: tf.Tensor1D | null, frozen = false): tf.Tensor2D {
  // Without a tape (inference) the plain ops skip customGrad's bookkeeping: ~25% of a tiny model's token time.
  // A product and an add, not tf.fused.matMul: that op reshapes a, b and its result around the kernel (and
  // tfjs-node's kernel is a product and an add itself), 4–6 kernels where these are 2.
  if (!recording()) return b ? tf.add(tf.matMul(x, operand(w)), b) : tf.matMul(x, operand(w));
  if (frozen) return frozenLinear(x, w, b);
  return (b ? linearBias(x, w, b) : linearNoBias(x, w)) as tf.Tensor2D;
}

const matMulBTOp = tf.customGrad((x, w, save) => {
  (save as tf.GradSaveFunc)([x as tf.Tensor, w as tf.Tensor]);
  return {
    value: mm(x as tf.Tensor2D, w as tf.Tensor2D, false, true), // [N,M]
    gradFunc: (dy: tf.Tensor, saved: tf.Tensor[]) =>
      gradientThenFree(saved, () => [
        tf.matMul(dy as tf.Tensor2D, operand(saved[1] as tf.Tensor2D)), // dX = dY·W [N,K], already plain
        // dW = dYᵀ·X [M,K]: transposing dY [N,M] moves N·M values; the alternative (Xᵀ·dY)ᵀ moves K·M
        mm(dy as tf.Tensor2D, saved[0] as tf.Tensor2D, true, false),
      ]),
  };
});

/**
 * A weight's transpose kept from call to call, made again when the weight changes (a variable gets a new
 * dataId on every assign). wasm multiplies by a transposed operand ten times slower than by a plain one, and
 * XNNPACK packs a plain right operand once per tensor: transposing GPT-2's [50257,D] head and packing the copy
 * took longer than generating 32 KV-cached tokens of gpt2-tiny, so generation pays it once per weight.
 */
export class TransposedCopy {
  private source?: object;
  private copy?: tf.Tensor2D;

  /** wᵀ, owned by this object (do not dispose it) */
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
 * x [N,K] · wᵀ with w [M,K] → [N,M]: PyTorch's Linear layout, as the LM head (w = lm_head.weight or wte
 * [V,D]) and the classifier head use. Give `transposed` where the same w is multiplied again and again without
 * a gradient (generation): the product then reuses its copy of wᵀ.
 */
export function matMulBT(x: tf.Tensor2D, w: tf.Tensor2D, transposed?: TransposedCopy, frozen = false): tf.Tensor2D {
  if (transposed && keepPacks && !recording()) return tf.matMul(x, transposed.of(w));
  if (frozen && recording()) {
    // w gets no gradient: dX = dY·W only (as frozenLinear)
    const op = tf.customGrad((xi, save) => {
      (save as tf.GradSaveFunc)([w]);
      return {
        value: mm(xi as tf.Tensor2D, w, false, true),
        gradFunc: (dy: tf.Tensor, saved: tf.Tensor[]) =>
          gradientThenFree(saved, () => tf.matMul(dy as tf.Tensor2D, operand(saved[0] as tf.Tensor2D))),
      };
    });
    return op(x) as tf.Tensor2D;
  }
  return matMulBTOp(x, w) as tf.Tensor2D;
}

// ---------------------------------------------------------------------------------------------------------

const GELU_C = Math.sqrt(2 / Math.PI);

/** tanh(√(2/π)·(x + 0.044715·x³)) */
function geluTanh(x: tf.Tensor): tf.Tensor {
  return tf.tanh(tf.mul(GELU_C, tf.add(x, tf.mul(0.044715, tf.mul(tf.mul(x, x), x)))));
}

function geluValue(x: tf.Tensor): tf.Tensor {
  return tf.mul(tf.mul(0.5, x), tf.add(1, geluTanh(x)));
}

/**
 * The same GELU in six kernels instead of nine, for inference: 0.5·(1 + tanh(z)) = sigmoid(2z), so
 * GELU(x) = x·sigmoid(x·(2√(2/π) + 2√(2/π)·0.044715·x²)). Equal to geluValue up to float rounding (~1e-7
 * relative). In KV-cached generation every token runs each kernel once per block, and a kernel's fixed cost
 * (~0.05–0.1 ms) is what a one-row tensor costs.
 */
function geluInference(x: tf.Tensor): tf.Tensor {
  const inner = tf.mul(x, tf.add(tf.mul(tf.square(x), 2 * GELU_C * 0.044715), 2 * GELU_C));
  return tf.mul(x, tf.sigmoid(inner));
}

const geluOp = tf.customGrad((x, save) => {
  const xt = x as tf.Tensor;
  (save as tf.GradSaveFunc)([xt]);
  return {
    value: geluValue(xt),
    // d/dx = 0.5·(1 + t) + 0.5·x·(1 − t²)·√(2/π)·(1 + 3·0.044715·x²); t is recomputed rather than kept
    gradFunc: (dy: tf.Tensor, saved: tf.Tensor[]) =>
      gradientThenFree(saved, () => {
        const xs = saved[0];
        const t = geluTanh(xs);
        const inner = tf.mul(GELU_C, tf.add(1, tf.mul(3 * 0.044715, tf.square(xs))));
        const d = tf.add(tf.mul(0.5, tf.add(1, t)), tf.mul(tf.mul(tf.mul(0.5, xs), tf.sub(1, tf.square(t))), inner));
        return tf.mul(dy, d);
      }),
  };
});

/** GELU, tanh approximation (GPT-2's "gelu_new"): 0.5·x·(1 + tanh(√(2/π)·(x + 0.044715·x³))). */
export function gelu<T extends tf.Tensor>(x: T): T {
  if (!recording()) return tf.tidy(() => geluInference(x)) as T;
  return geluOp(x) as T;
}

// ---------------------------------------------------------------------------------------------------------

/**
 * Where dropout masks come from while training: each call gives the seed of the next mask. A seeded generator
 * makes a training step's masks a pure function of its seed (exact resume); `Math.random` draws fresh ones.
 */
export type MaskSeeds = () => number;

/** tf.dropout's keep mask, drawn as tf.dropout draws it with this seed: 0 or 1/(1−rate). */
function dropoutMask(shape: number[], rate: number, seed: number): tf.Tensor {
  const keep = 1 - rate;
  return tf.div(tf.floor(tf.add(tf.randomUniform(shape, 0, 1, "float32", seed), keep)), keep);
}

/**
 * Inverted dropout while training (`seeds` given; the values tf.dropout gives with the same seed), keeping
 * only the mask for the gradient. Without `seeds` (inference) x is returned as it is.
 */
export function dropout<T extends tf.Tensor>(x: T, rate: number, seeds?: MaskSeeds): T {
  if (!seeds || rate <= 0) return x;
  const seed = seeds();
  const op = tf.customGrad((xi, save) => {
    const mask = dropoutMask((xi as tf.Tensor).shape, rate, seed);
    (save as tf.GradSaveFunc)([mask]);
    return {
      value: tf.mul(xi as tf.Tensor, mask),
      gradFunc: (dy: tf.Tensor, saved: tf.Tensor[]) => gradientThenFree(saved, () => tf.mul(dy, saved[0])),
    };
  });
  return op(x) as T;
}

// ---------------------------------------------------------------------------------------------------------

const layerNormOps = new Map<number, ReturnType<typeof makeLayerNorm>>();

/**
 * x̂ = (x − mean)/σ over the last axis (biased variance, as PyTorch and GPT-2) and 1/σ [...,1]: tf.moments'
 * values in seven kernels (it adds a Cast and a Reshape, and x − mean twice).
 */
function normalize(x: tf.Tensor, epsilon: number): { xhat: tf.Tensor; rstd: tf.Tensor } {
  const centred = tf.sub(x, tf.mean(x, -1, true));
  const rstd = tf.rsqrt(tf.add(tf.mean(tf.square(centred), -1, true), epsilon));
  return { xhat: tf.mul(centred, rstd), rstd };
}

function makeLayerNorm(epsilon: number) {
  return tf.customGrad((x, gamma, beta, save) => {
    const { xhat, rstd } = normalize(x as tf.Tensor, epsilon);
    (save as tf.GradSaveFunc)([xhat, rstd, gamma as tf.Tensor]);
    return {
      value: tf.add(tf.mul(xhat, gamma as tf.Tensor), beta as tf.Tensor),
      gradFunc: (dy: tf.Tensor, saved: tf.Tensor[]) =>
        gradientThenFree(saved, () => {
          const [xh, rs, g] = saved;
          const D = dy.shape[dy.rank - 1];
          const rows = dy.size / D;
          const dy2 = tf.reshape(dy, [rows, D]);
          const xh2 = tf.reshape(xh, [rows, D]);
          const dGamma = tf.sum(tf.mul(dy2, xh2), 0);
          const dBeta = tf.sum(dy2, 0);
          // dx = rstd·(dx̂ − mean(dx̂) − x̂·mean(dx̂·x̂)) with dx̂ = dy·γ
          const dxh = tf.mul(dy2, g);
          const m1 = tf.mean(dxh, 1, true);
          const m2 = tf.mean(tf.mul(dxh, xh2), 1, true);
          const dx = tf.mul(tf.sub(tf.sub(dxh, m1), tf.mul(xh2, m2)), tf.reshape(rs, [rows, 1]));
          return [tf.reshape(dx, dy.shape), dGamma, dBeta];
        }),
    };
  });
}

/** LayerNorm over the last axis (biased variance), keeping only x̂ and 1/σ for the gradient. */
export function layerNorm<T extends tf.Tensor>(x: T, gamma: tf.Tensor, beta: tf.Tensor, epsilon = 1e-5): T {
  if (!recording()) {
    return tf.tidy(() => {
      const xhat = tf.getBackend() === "tensorflow" ? normalizeLastAxis(x, epsilon) : normalize(x, epsilon).xhat;
      return tf.add(tf.mul(xhat, gamma), beta);
    }) as T;
  }
  let op = layerNormOps.get(epsilon);
  if (!op) layerNormOps.set(epsilon, (op = makeLayerNorm(epsilon)));
  return op(x, gamma, beta) as T;
}

// ---------------------------------------------------------------------------------------------------------

export interface AttentionOptions {
  /** additive mask [Tq,Tk] (0 where a query may look, a large negative number where not), or null */
  mask: tf.Tensor2D | null;
  /** dropout on the attention weights, while training (`seeds` given) */
  dropRate: number;
  seeds?: MaskSeeds;
}

/**
 * softmax(q·kᵀ/√hd + mask) for q [B,H,Tq,hd], kᵀ [B,H,hd,Tk]: the attention weights [B,H,Tq,Tk], each row a
 * distribution over the keys a query may see (what `inspect attention` draws).
 */
export function attentionWeights(q: tf.Tensor4D, kT: tf.Tensor4D, mask: tf.Tensor2D | null): tf.Tensor4D {
  return tf.tidy(() => {
    const scores = batchMatMul(tf.mul(q, 1 / Math.sqrt(q.shape[3])) as tf.Tensor4D, kT); // [B,H,Tq,Tk]
    return tf.softmax(mask ? tf.add(scores, mask) : scores) as tf.Tensor4D;
  });
}

/**
 * softmax(q·kᵀ/√hd + mask) (with dropout) · v for q [B,H,Tq,hd], kᵀ [B,H,hd,Tk], v [B,H,Tk,hd] → [B,H,Tq,hd],
 * the core of causal self-attention as one op. The backward pass keeps q, kᵀ, v, the softmax weights and the
 * dropout mask; the score tensors in between are freed at once.
 */
export function attention(q: tf.Tensor4D, kT: tf.Tensor4D, v: tf.Tensor4D, opts: AttentionOptions): tf.Tensor4D {
  const [B, H, Tq, hd] = q.shape;
  const Tk = kT.shape[3];
  const G = B * H;
  const scale = 1 / Math.sqrt(hd);
  const seed = opts.seeds && opts.dropRate > 0 ? opts.seeds() : null; // the dropout mask's, drawn once per call
  if (!recording()) {
    // batched over [B,H] as they are: reshapes are kernels too, and generation runs these per token and block
    return tf.tidy(() => {
      const p = attentionWeights(q, kT, opts.mask); // [B,H,Tq,Tk]
      const pd = seed !== null ? (tf.mul(p, dropoutMask(p.shape, opts.dropRate, seed)) as tf.Tensor4D) : p;
      return batchMatMul(pd, v); // [B,H,Tq,hd]
    });
  }
  const op = tf.customGrad((qi, kTi, vi, save) => {
    const q3 = tf.reshape(qi as tf.Tensor, [G, Tq, hd]) as tf.Tensor3D;
    const kT3 = tf.reshape(kTi as tf.Tensor, [G, hd, Tk]) as tf.Tensor3D;
    const v3 = tf.reshape(vi as tf.Tensor, [G, Tk, hd]) as tf.Tensor3D;
    let scores = tf.reshape(batchMatMul(tf.mul(q3, scale), kT3), [B, H, Tq, Tk]); // [B,H,Tq,Tk]
    if (opts.mask) scores = tf.add(scores, opts.mask);
    const p = tf.softmax(scores);
    const mask = seed !== null ? dropoutMask(p.shape, opts.dropRate, seed) : null;
    const pd = mask ? tf.mul(p, mask) : p;
    (save as tf.GradSaveFunc)(mask ? [q3, kT3, v3, p, mask] : [q3, kT3, v3, p]);
    return {
      value: tf.reshape(batchMatMul(tf.reshape(pd, [G, Tq, Tk]) as tf.Tensor3D, v3), [B, H, Tq, hd]) as tf.Tensor4D,
      gradFunc: (dy: tf.Tensor, saved: tf.Tensor[]) =>
        gradientThenFree(saved, () => {
          const [qs, kTs, vs, ps, ms] = saved as [
            tf.Tensor3D,
            tf.Tensor3D,
            tf.Tensor3D,
            tf.Tensor,
            tf.Tensor | undefined,
          ];
          const dy3 = tf.reshape(dy, [G, Tq, hd]) as tf.Tensor3D;
          const p3 = tf.reshape(ps, [G, Tq, Tk]) as tf.Tensor3D;
          const pd3 = ms ? (tf.mul(p3, tf.reshape(ms, [G, Tq, Tk])) as tf.Tensor3D) : p3;
          const dV = batchMatMul(pd3, dy3, true, false); // [G,Tk,hd]
          let dP = batchMatMul(dy3, vs, false, true); // [G,Tq,Tk]
          if (ms) dP = tf.mul(dP, tf.reshape(ms, [G, Tq, Tk]));
          // softmax backward: dS = p·(dP − Σ_k dP·p)
          const dS = tf.mul(p3, tf.sub(dP, tf.sum(tf.mul(dP, p3), 2, true))) as tf.Tensor3D;
          const dQ = tf.mul(batchMatMul(dS, kTs, false, true), scale); // [G,Tq,hd]
          const dKT = batchMatMul(tf.mul(qs, scale) as tf.Tensor3D, dS, true, false); // [G,hd,Tk]
          return [tf.reshape(dQ, [B, H, Tq, hd]), tf.reshape(dKT, [B, H, hd, Tk]), tf.reshape(dV, [B, H, Tk, hd])];
        }),
    };
  });
  return op(q, kT, v) as tf.Tensor4D;
}

// ---------------------------------------------------------------------------------------------------------

/**
 * f(x), keeping nothing of f for the backward pass but x (activation checkpointing): the forward runs f without
 * a tape, and the backward pass runs it again under its own tape for the gradients of x and of `variables`,
 * the trainable weights f reads. Its dropout masks come out the same both times: the seeds f draws in the
 * forward are recorded and replayed. Costs one more forward of f per step; saves all of f's activations.
 */
export function recomputed<T extends tf.Tensor>(
  f: (x: T, seeds?: MaskSeeds) => T,
  x: T,
  variables: tf.Variable[],
  seeds?: MaskSeeds,
): T {
  if (!recording()) return f(x, seeds);
  const drawn: number[] = [];
  const record = seeds && (() => drawn[drawn.push(seeds()) - 1]);
  const op = tf.customGrad((...args) => {
    const xi = args[0] as T;
    (args[args.length - 1] as tf.GradSaveFunc)([xi]);
    return {
      value: f(xi, record),
      gradFunc: (dy: tf.Tensor, saved: tf.Tensor[]) => {
        let next = 0;
        const replay = seeds && (() => drawn[next++]);
        const grads = tf.grads((xr: tf.Tensor) => f(xr as T, replay))([saved[0], ...variables], dy);
        tf.dispose(saved);
        return grads;
      },
    };
  });
  return op(x, ...variables) as T;
}

// ---------------------------------------------------------------------------------------------------------
// The Llama-family ops: RMSNorm, SiLU and RoPE. Plain tf compositions, differentiated by tf's own autodiff
// (correct, and they keep their intermediates for the backward pass); hand-written gradients like the ones
// above would make them cheaper to train, later.

/** RMSNorm over the last axis (Llama, Qwen3): x / √(mean(x²) + eps) · gamma, in float32 as transformers does. */
export function rmsNorm<T extends tf.Tensor>(x: T, gamma: tf.Tensor, epsilon = 1e-5): T {
  return tf.tidy(() => tf.mul(tf.mul(x, tf.rsqrt(tf.add(tf.mean(tf.square(x), -1, true), epsilon))), gamma)) as T;
}

/** SiLU (swish): x·σ(x), the gate of SwiGLU. */
export function silu<T extends tf.Tensor>(x: T): T {
  return tf.tidy(() => tf.mul(x, tf.sigmoid(x))) as T;
}

/**
 * Rotary position embedding in Hugging Face's rotate_half convention: x·cos + rotate_half(x)·sin, for x
 * [B,H,T,hd] and tables cos, sin [T,hd] (angle pos·invFreq[i mod hd/2]), rotate_half(x) = [−x₂, x₁] with x₁, x₂
 * the halves of the head. (Meta's checkpoints rotate interleaved pairs; transformers' conversion permutes q_proj
 * and k_proj so the halves convention holds for the weights on the Hub.)
 */
export function rope(x: tf.Tensor4D, cos: tf.Tensor2D, sin: tf.Tensor2D): tf.Tensor4D {
  return tf.tidy(() => {
    const [x1, x2] = tf.split(x, 2, 3);
    const rotated = tf.concat([tf.neg(x2), x1], 3);
    return tf.add(tf.mul(x, cos), tf.mul(rotated, sin)) as tf.Tensor4D;
  });
}
