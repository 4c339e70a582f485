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
import { ResourceVariable, resourceApplyAdam } from "../backend/tensorflow-ops.js";

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
  /** Where the moments live (see MomentStorage). Default: what the backend does best for their size (momentStorage). */
  moments?: MomentStorage;
}

/**
 * "tensors": backend tensors, a dozen tensor ops per update; "arrays": JS memory, one fused loop;
 * "variables": TensorFlow resource variables that TensorFlow's fused Adam kernel updates in place, one pass
 * (tensorflow backend only; it forms 1 − β2 in float32, which moves an update by ~1e-5 of itself).
 */
export type MomentStorage = "tensors" | "arrays" | "variables";

/** The most moment memory (m and v) the wasm backend's 4 GB heap is given, beside a training step's own. */
const WASM_MOMENTS_BYTES = 512 * 2 ** 20;

/**
 * Where an optimizer's moments are best kept on the active backend, given their size (m and v together; see
 * MomentStorage). Measured, per update: on tensorflow, its own fused Adam kernel on resource variables
 * (GPT-2 124M: 0.9 CPU-seconds, against 2.3 for a dozen TF.js tensor ops and 3.5 for the JS loop); wasm runs
 * the tensor ops 2× faster than the loop (gpt2-tiny: 0.19 against 0.39 s), but its heap cannot also hold 124M's
 * 1.3 GB of moments; cpu's tensor ops are JS loops, 20× slower than the fused one.
 */
export function momentStorage(bytes: number): MomentStorage {
  const backend = tf.getBackend();
  if (backend === "tensorflow") return "variables";
  // webgpu: JS arrays would need a read-back per parameter, and there is no synchronous one
  if (backend === "webgpu") return "tensors";
  return backend === "wasm" && bytes <= WASM_MOMENTS_BYTES ? "tensors" : "arrays";
}

type Moments =
  | { m: tf.Tensor; v: tf.Tensor }
  | { m: Float32Array; v: Float32Array }
  | { m: ResourceVariable; v: ResourceVariable; p: ResourceVariable };

export class AdamW {
  readonly beta1: number;
  readonly beta2: number;
  readonly epsilon: number;
  readonly weightDecay: number;
  readonly moments: MomentStorage;
  /** number of updates applied so far (PyTorch's `state["step"]`), used for the bias correction */
  step = 0;
  private readonly state = new Map<string, Moments>();

  constructor(
    readonly params: NamedVariable[],
    opts: AdamWOptions = {},
  ) {
    this.beta1 = opts.beta1 ?? 0.9;
    this.beta2 = opts.beta2 ?? 0.999;
    this.epsilon = opts.epsilon ?? 1e-8;
    this.weightDecay = opts.weightDecay ?? 0.01;
    this.moments = opts.moments ?? momentStorage(8 * params.reduce((n, p) => n + p.variable.size, 0));
    for (const { name, variable } of params) {
      if (this.state.has(name)) throw new Error(`AdamW: parameter '${name}' given twice`);
      this.state.set(name, newMoments(this.moments, variable));
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
    const k = { b1, b2, eps, decay, stepSize, sqrtBc2, gradScale };
    for (const { name, variable } of this.params) {
      const g = grads.get(name);
      if (!g) continue;
      const st = this.state.get(name)!;
      if ("p" in st) variableStep(variable, g, st, k);
      else if (st.m instanceof tf.Tensor) tensorStep(variable, g, st as { m: tf.Tensor; v: tf.Tensor }, k);
      else arrayStep(variable, g, st as { m: Float32Array; v: Float32Array }, k);
    }
  }

  /** The moment estimates as `m.<name>` / `v.<name>` (for a safetensors checkpoint); read them, do not keep them. */
  async stateArrays(): Promise<Map<string, { shape: number[]; data: Float32Array }>> {
    const out = new Map<string, { shape: number[]; data: Float32Array }>();
    const data = async (x: Float32Array | tf.Tensor | ResourceVariable) => {
      if (x instanceof Float32Array) return x;
      if (x instanceof tf.Tensor) return (await x.data()) as Float32Array;
      const t = x.read();
      const values = (await t.data()) as Float32Array;
      t.dispose();
      return values;
    };
    for (const { name, variable } of this.params) {
      const { m, v } = this.state.get(name)!;
      out.set(`m.${name}`, { shape: variable.shape, data: await data(m) });
      out.set(`v.${name}`, { shape: variable.shape, data: await data(v) });
    }
    return out;
  }

  /** Restore what `stateArrays()` saved; every parameter's m and v must be present with the right size. */
  loadState(step: number, read: (key: string) => Float32Array | undefined): void {
    for (const { name, variable } of this.params) {
      const st = this.state.get(name)!;
      for (const which of ["m", "v"] as const) {
        const key = `${which}.${name}`;
        const data = read(key);
        if (!data)
          throw new FileFormatError(
            `optimizer state has no '${key}'`,
            "the checkpoint does not belong to this model; start without --resume",
          );
        if (data.length !== variable.size) {
          throw new FileFormatError(
            `optimizer state '${key}' has ${data.length} values, expected ${variable.size}`,
            "the checkpoint does not belong to this model",
          );
        }
        const target = st[which];
        if (target instanceof Float32Array) target.set(data);
        else if (target instanceof ResourceVariable) tf.tidy(() => target.assign(tf.tensor(data, variable.shape)));
        else {
          target.dispose();
          st[which] = tf.tensor(data, variable.shape, "float32");
        }
      }
    }
    this.step = step;
  }

  /** Release the moments. */
  dispose(): void {
    for (const st of this.state.values()) {
      if ("p" in st) [st.p, st.m, st.v].forEach((x) => x.dispose());
      else if (st.m instanceof tf.Tensor) tf.dispose([st.m, st.v as tf.Tensor]);
    }
    this.state.clear();
  }
}

function newMoments(storage: MomentStorage, variable: tf.Variable): Moments {
  if (storage === "arrays") return { m: new Float32Array(variable.size), v: new Float32Array(variable.size) };
  if (storage === "tensors") return { m: tf.zeros(variable.shape), v: tf.zeros(variable.shape) };
  const zeroed = () => {
    const x = new ResourceVariable(variable.shape);
    tf.tidy(() => x.assign(tf.zeros(variable.shape)));
    return x;
  };
  // p is the kernel's working copy of the parameter, loaded from the TF.js variable on every update
  return { m: zeroed(), v: zeroed(), p: new ResourceVariable(variable.shape) };
}

interface StepConstants {
  b1: number;
  b2: number;
  eps: number;
  /** 1 − lr·λ */
  decay: number;
  /** lr / (1 − β1^t) */
  stepSize: number;
  /** √(1 − β2^t) */
  sqrtBc2: number;
  gradScale: number;
}

// PyTorch: denom = sqrt(v)/sqrt(bc2) + eps; p ← p·(1 − lr·λ) − (lr/bc1)·m/denom

function arrayStep(
  variable: tf.Variable,
  grad: tf.Tensor,
  st: { m: Float32Array; v: Float32Array },
  k: StepConstants,
): void {
  const { b1, b2, eps, decay, stepSize, sqrtBc2, gradScale } = k;
  const { m, v } = st;
  const g = grad.dataSync() as Float32Array;
  // dataSync may return the backend's own buffer (cpu), so the new values go into a fresh array
  const p = variable.dataSync() as Float32Array;
  const out = new Float32Array(p.length);
  for (let i = 0; i < p.length; i++) {
    const gi = g[i] * gradScale;
    const mi = b1 * m[i] + (1 - b1) * gi;
    const vi = b2 * v[i] + (1 - b2) * gi * gi;
    m[i] = mi;
    v[i] = vi;
    out[i] = p[i] * decay - (stepSize * mi) / (Math.sqrt(vi) / sqrtBc2 + eps);
  }
  tf.tidy(() => variable.assign(tf.tensor(out, variable.shape, "float32")));
}

function tensorStep(
  variable: tf.Variable,
  grad: tf.Tensor,
  st: { m: tf.Tensor; v: tf.Tensor },
  k: StepConstants,
): void {
  const { b1, b2, eps, decay, stepSize, sqrtBc2, gradScale } = k;
  const [m, v] = tf.tidy(() => {
    // gradScale is folded into the constants: (1−β1)·s·g and (1−β2)·s²·g²
    const m = tf.add(tf.mul(st.m, b1), tf.mul(grad, (1 - b1) * gradScale));
    const v = tf.add(tf.mul(st.v, b2), tf.mul(tf.square(grad), (1 - b2) * gradScale * gradScale));
    const denom = tf.add(tf.mul(tf.sqrt(v), 1 / sqrtBc2), eps);
    variable.assign(tf.sub(tf.mul(variable, decay), tf.div(tf.mul(m, stepSize), denom)));
    return [m, v];
  });
  tf.dispose([st.m, st.v]);
  st.m = m;
  st.v = v;
}

/**
 * The same update in TensorFlow's ResourceApplyAdam, one pass over p, m, v and g. Its form is
 * p ← p − α·m/(√v + ε̂), so PyTorch's bias corrections go into α = (lr/bc1)·√bc2 and ε̂ = ε·√bc2. The weight
 * decay is one more pass, whose output buffer the kernel's variable adopts without a copy (without decay the
 * kernel copies p instead, as the TF.js variable still holds it: the same cost).
 */
function variableStep(
  variable: tf.Variable,
  grad: tf.Tensor,
  st: { m: ResourceVariable; v: ResourceVariable; p: ResourceVariable },
  k: StepConstants,
): void {
  const { b1, b2, eps, decay, stepSize, sqrtBc2, gradScale } = k;
  tf.tidy(() => {
    st.p.assign(decay === 1 ? variable : tf.mul(variable, decay));
    const g = gradScale === 1 ? grad : tf.mul(grad, gradScale);
    resourceApplyAdam(st.p, st.m, st.v, { alpha: stepSize * sqrtBc2, beta1: b1, beta2: b2, epsilon: eps * sqrtBc2 }, g);
  });
  tf.tidy(() => variable.assign(st.p.read()));
}

/**
 * The L2 norm over all gradients together, as one number: one full-size temporary at a time, and one read-back
 * (asynchronous: webgpu has no synchronous one) of the sum of squares.
 */
export async function globalNorm(grads: Iterable<tf.Tensor>): Promise<number> {
  let sumSq: tf.Scalar = tf.scalar(0);
  for (const g of grads) {
    const next = tf.tidy(() => tf.add(sumSq, tf.sum(tf.square(g))) as tf.Scalar);
    sumSq.dispose();
    sumSq = next;
  }
  const value = (await sumSq.data())[0];
  sumSq.dispose();
  return Math.sqrt(value);
}

/**
 * `torch.nn.utils.clip_grad_norm_`'s factor: maxNorm / (norm + 1e-6) when the norm exceeds maxNorm, else 1.
 * Pass it to AdamW.applyGradients as (part of) gradScale.
 */
export function clipCoefficient(norm: number, maxNorm: number): number {
  const coef = maxNorm / (norm + 1e-6);
  return coef < 1 ? coef : 1;
}

/** The model's trainable variables (LoRA adapters included) under their stable names. */
export function namedParameters(model: {
  namedWeights(): Map<string, { name: string; trainable: boolean }>;
  adapterWeights(): Map<string, { name: string; trainable: boolean }>;
  trainableVariables(): tf.Variable[];
}): NamedVariable[] {
  const byVarName = new Map(model.trainableVariables().map((v) => [v.name, v]));
  const out: NamedVariable[] = [];
  const seen = new Set<string>();
  for (const [name, lv] of [...model.namedWeights(), ...model.adapterWeights()]) {
    const variable = byVarName.get(lv.name);
    if (!variable || !lv.trainable || seen.has(variable.name)) continue;
    seen.add(variable.name);
    out.push({ name, variable });
  }
  return out;
}
