/**
 * AdamW (Loshchilov & Hutter) exactly as PyTorch's `torch.optim.AdamW` computes it, plus global-norm gradient
 * clipping as `torch.nn.utils.clip_grad_norm_`.
 *
 * Parameters are addressed by stable names (the Hugging Face GPT-2 names from `namedWeights()`), not by
 * TF.js variable names, which get `_1` suffixes depending on what else was built in the process. That is what
 * makes the optimizer state savable in one run and restorable in another.
 */
import * as tf from "@tensorflow/tfjs";
import { FileFormatError } from "../errors.js";

/** A trainable parameter under its stable name. */
export interface NamedVariable {
  name: string;
  variable: tf.Variable;
}

export interface AdamWOptions {
  beta1?: number;
  beta2?: number;
  epsilon?: number;
  /** decoupled weight decay λ: p ← p − lr·λ·p before the Adam step (PyTorch default 0.01; the book uses 0.1) */
  weightDecay?: number;
}

export class AdamW {
  readonly beta1: number;
  readonly beta2: number;
  readonly epsilon: number;
  readonly weightDecay: number;
  /** number of updates applied so far (PyTorch's `state["step"]`), used for the bias correction */
  step = 0;
  // The moments live in JS memory, not in backend tensors: for GPT-2 124M they are 1.3 GB, which together
  // with weights, gradients and activations would not fit the wasm backend's 4 GB heap. The update is one
  // fused loop per parameter instead of ~14 full-size tensor ops (and their full-size temporaries).
  private readonly m = new Map<string, Float32Array>();
  private readonly v = new Map<string, Float32Array>();

  constructor(
    readonly params: NamedVariable[],
    opts: AdamWOptions = {},
  ) {
    this.beta1 = opts.beta1 ?? 0.9;
    this.beta2 = opts.beta2 ?? 0.999;
    this.epsilon = opts.epsilon ?? 1e-8;
    this.weightDecay = opts.weightDecay ?? 0.01;
    for (const { name, variable } of params) {
      if (this.m.has(name)) throw new Error(`AdamW: parameter '${name}' given twice`);
      this.m.set(name, new Float32Array(variable.size));
      this.v.set(name, new Float32Array(variable.size));
    }
  }

  /**
   * One update of every parameter that has a gradient (parameters without one, e.g. frozen, are skipped).
   * The gradients are multiplied by `gradScale` first (1/micro-batches for accumulation, times the clipping
   * coefficient), which saves a full pass over them. Does not dispose `grads`.
   */
  applyGradients(grads: Map<string, tf.Tensor>, lr: number, gradScale = 1): void {
    this.step += 1;
    const { beta1: b1, beta2: b2, epsilon: eps } = this;
    const bc1 = 1 - Math.pow(b1, this.step);
    const sqrtBc2 = Math.sqrt(1 - Math.pow(b2, this.step));
    const decay = 1 - lr * this.weightDecay;
    const stepSize = lr / bc1;
    for (const { name, variable } of this.params) {
      const gt = grads.get(name);
      if (!gt) continue;
      const g = gt.dataSync() as Float32Array;
      // dataSync may return the backend's own buffer (cpu), so the new values go into a fresh array
      const p = variable.dataSync() as Float32Array;
      const m = this.m.get(name)!;
      const v = this.v.get(name)!;
      const out = new Float32Array(p.length);
      for (let i = 0; i < p.length; i++) {
        const gi = g[i] * gradScale;
        const mi = b1 * m[i] + (1 - b1) * gi;
        const vi = b2 * v[i] + (1 - b2) * gi * gi;
        m[i] = mi;
        v[i] = vi;
        // PyTorch: denom = sqrt(v)/sqrt(bc2) + eps; p ← p·(1 − lr·λ) − (lr/bc1)·m/denom
        out[i] = p[i] * decay - (stepSize * mi) / (Math.sqrt(vi) / sqrtBc2 + eps);
      }
      tf.tidy(() => variable.assign(tf.tensor(out, variable.shape, "float32")));
    }
  }

  /** The moment estimates as `m.<name>` / `v.<name>` (for a safetensors checkpoint); the arrays stay owned here. */
  stateArrays(): Map<string, { shape: number[]; data: Float32Array }> {
    const out = new Map<string, { shape: number[]; data: Float32Array }>();
    for (const { name, variable } of this.params) {
      out.set(`m.${name}`, { shape: variable.shape, data: this.m.get(name)! });
      out.set(`v.${name}`, { shape: variable.shape, data: this.v.get(name)! });
    }
    return out;
  }

  /** Restore what `stateArrays()` saved; every parameter's m and v must be present with the right size. */
  loadState(step: number, read: (key: string) => Float32Array | undefined): void {
    for (const { name, variable } of this.params) {
      for (const [key, target] of [
        [`m.${name}`, this.m.get(name)!],
        [`v.${name}`, this.v.get(name)!],
      ] as const) {
        const data = read(key);
        if (!data) throw new FileFormatError(`optimizer state has no '${key}'`, "the checkpoint does not belong to this model; start without --resume");
        if (data.length !== variable.size) {
          throw new FileFormatError(`optimizer state '${key}' has ${data.length} values, expected ${variable.size}`, "the checkpoint does not belong to this model");
        }
        target.set(data);
      }
    }
    this.step = step;
  }

  /** Release the moments (they are plain memory; this only drops the references). */
  dispose(): void {
    this.m.clear();
    this.v.clear();
  }
}

/** The L2 norm over all gradients together, as one number (one full-size temporary at a time). */
export function globalNorm(grads: Iterable<tf.Tensor>): number {
  let sumSq = 0;
  for (const g of grads) sumSq += tf.tidy(() => tf.sum(tf.square(g)).dataSync()[0]);
  return Math.sqrt(sumSq);
}

/**
 * `torch.nn.utils.clip_grad_norm_`'s factor: maxNorm / (norm + 1e-6) when the norm exceeds maxNorm, else 1.
 * Pass it to AdamW.applyGradients as (part of) gradScale.
 */
export function clipCoefficient(norm: number, maxNorm: number): number {
  const coef = maxNorm / (norm + 1e-6);
  return coef < 1 ? coef : 1;
}

/**
 * `torch.nn.utils.clip_grad_norm_` on the tensors themselves: when the global norm exceeds `maxNorm`, scale
 * every gradient by maxNorm / (norm + 1e-6). Returns the norm before clipping and the (possibly new)
 * gradients; gradients that were replaced are disposed. (The Trainer folds the factor into AdamW instead.)
 */
export function clipByGlobalNorm(grads: Map<string, tf.Tensor>, maxNorm: number): { norm: number; grads: Map<string, tf.Tensor> } {
  const norm = globalNorm(grads.values());
  const coef = clipCoefficient(norm, maxNorm);
  if (coef === 1) return { norm, grads };
  const clipped = new Map<string, tf.Tensor>();
  for (const [name, g] of grads) {
    clipped.set(name, tf.mul(g, coef));
    g.dispose();
  }
  return { norm, grads: clipped };
}
