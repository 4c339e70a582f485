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
  private readonly m = new Map<string, tf.Variable>();
  private readonly v = new Map<string, tf.Variable>();

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
      this.m.set(name, tf.variable(tf.zerosLike(variable), false));
      this.v.set(name, tf.variable(tf.zerosLike(variable), false));
    }
  }

  /**
   * One update of every parameter that has a gradient (parameters without one, e.g. frozen, are skipped).
   * Does not dispose `grads`.
   */
  applyGradients(grads: Map<string, tf.Tensor>, lr: number): void {
    this.step += 1;
    const bc1 = 1 - Math.pow(this.beta1, this.step);
    const bc2 = 1 - Math.pow(this.beta2, this.step);
    for (const { name, variable } of this.params) {
      const g = grads.get(name);
      if (!g) continue;
      const m = this.m.get(name)!;
      const v = this.v.get(name)!;
      tf.tidy(() => {
        const mNew = tf.add(tf.mul(m, this.beta1), tf.mul(g, 1 - this.beta1));
        const vNew = tf.add(tf.mul(v, this.beta2), tf.mul(tf.square(g), 1 - this.beta2));
        m.assign(mNew);
        v.assign(vNew);
        // PyTorch: denom = sqrt(v)/sqrt(bc2) + eps; p ← p·(1 − lr·λ) − (lr/bc1)·m/denom
        const denom = tf.add(tf.div(tf.sqrt(vNew), Math.sqrt(bc2)), this.epsilon);
        const decayed = this.weightDecay !== 0 ? tf.mul(variable, 1 - lr * this.weightDecay) : variable;
        variable.assign(tf.sub(decayed, tf.mul(tf.div(mNew, denom), lr / bc1)));
      });
    }
  }

  /** The moment estimates as `m.<name>` / `v.<name>` (for a safetensors checkpoint); the tensors stay owned here. */
  stateTensors(): Map<string, tf.Tensor> {
    const out = new Map<string, tf.Tensor>();
    for (const { name } of this.params) {
      out.set(`m.${name}`, this.m.get(name)!);
      out.set(`v.${name}`, this.v.get(name)!);
    }
    return out;
  }

  /** Restore what `stateTensors()` saved; every parameter's m and v must be present with the right size. */
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
        tf.tidy(() => target.assign(tf.tensor(data, variable.shape, "float32")));
      }
    }
    this.step = step;
  }

  dispose(): void {
    for (const t of [...this.m.values(), ...this.v.values()]) t.dispose();
    this.m.clear();
    this.v.clear();
  }
}

/** The L2 norm over all gradients together, as one number. */
export function globalNorm(grads: Iterable<tf.Tensor>): number {
  return tf.tidy(() => {
    const parts = [...grads].map((g) => tf.sum(tf.square(g)));
    return parts.length ? Math.sqrt(tf.addN(parts).dataSync()[0]) : 0;
  });
}

/**
 * `torch.nn.utils.clip_grad_norm_`: when the global norm exceeds `maxNorm`, scale every gradient by
 * maxNorm / (norm + 1e-6). Returns the norm before clipping and the (possibly new) gradients; gradients that
 * were replaced are disposed.
 */
export function clipByGlobalNorm(grads: Map<string, tf.Tensor>, maxNorm: number): { norm: number; grads: Map<string, tf.Tensor> } {
  const norm = globalNorm(grads.values());
  const coef = maxNorm / (norm + 1e-6);
  if (!(coef < 1)) return { norm, grads };
  const clipped = new Map<string, tf.Tensor>();
  for (const [name, g] of grads) {
    clipped.set(name, tf.mul(g, coef));
    g.dispose();
  }
  return { norm, grads: clipped };
}
