/**
 * TensorFlow kernels that TF.js has no op for, run by name through tfjs-node's binding (the tensorflow backend
 * only): resource variables and the fused Adam update that works on them; a one-kernel LayerNorm normalisation.
 *
 * Why: TF.js expresses AdamW as a dozen elementwise ops, each a full pass over every parameter (GPT-2 124M:
 * 650 MB a pass), which took 44% of a ch05 training step. TensorFlow's ResourceApplyAdam updates a variable
 * and its two moments in place in one multi-threaded pass, as PyTorch's fused AdamW does.
 */
import * as tf from "@tensorflow/tfjs";

interface OpAttr {
  name: string;
  type: number;
  value: unknown;
}

/** The parts of tfjs-node's NodeJSKernelBackend used here (it executes TensorFlow eager ops by name). */
interface NodeBackend {
  binding: {
    TF_FLOAT: number;
    TF_ATTR_STRING: number;
    TF_ATTR_BOOL: number;
    TF_ATTR_TYPE: number;
    TF_ATTR_SHAPE: number;
    TF_ATTR_FLOAT: number;
    executeOp(name: string, attrs: OpAttr[], inputIds: number[], numOutputs: number): unknown[];
  };
  getInputTensorIds(tensors: tf.Tensor[]): number[];
  executeSingleOutput(name: string, attrs: OpAttr[], inputs: tf.Tensor[]): tf.Tensor;
  executeMultipleOutputs(name: string, attrs: OpAttr[], inputs: tf.Tensor[], numOutputs: number): tf.Tensor[];
}

function nodeBackend(): NodeBackend {
  if (tf.getBackend() !== "tensorflow") throw new Error("TensorFlow kernels need the tensorflow backend");
  return tf.backend() as unknown as NodeBackend;
}

/** Run an op that has no outputs (it updates a resource in place). */
function executeInPlace(be: NodeBackend, name: string, attrs: OpAttr[], inputs: tf.Tensor[]): void {
  be.binding.executeOp(name, attrs, be.getInputTensorIds(inputs), 0);
}

/**
 * ResourceHandle::ANONYMOUS_NAME: a variable under this shared name belongs to its handle alone and is freed
 * with it, as TF2's eager variables are; any other name would keep it in the resource manager for good.
 */
const ANONYMOUS = "cd2c89b7-88b7-44c8-ad83-06c2a9158347";

/** A float32 TensorFlow resource variable: storage that kernels can update in place. */
export class ResourceVariable {
  private readonly be = nodeBackend();
  /** the resource handle (TF.js shows it as a string tensor) */
  private readonly handle: tf.Tensor;

  constructor(readonly shape: number[]) {
    const { binding: b } = this.be;
    this.handle = tf.keep(
      this.be.executeSingleOutput(
        "VarHandleOp",
        [
          { name: "container", type: b.TF_ATTR_STRING, value: "" },
          { name: "shared_name", type: b.TF_ATTR_STRING, value: ANONYMOUS },
          { name: "dtype", type: b.TF_ATTR_TYPE, value: b.TF_FLOAT },
          { name: "shape", type: b.TF_ATTR_SHAPE, value: shape },
        ],
        [],
      ),
    );
  }

  /** Make `value` the variable's content (TensorFlow adopts its buffer when nothing else holds it). */
  assign(value: tf.Tensor): void {
    const { binding: b } = this.be;
    executeInPlace(
      this.be,
      "AssignVariableOp",
      [{ name: "dtype", type: b.TF_ATTR_TYPE, value: b.TF_FLOAT }],
      [this.handle, value],
    );
  }

  /** The current content as a tensor. It shares the variable's buffer: an update after it copies first. */
  read(): tf.Tensor {
    const { binding: b } = this.be;
    return this.be.executeSingleOutput(
      "ReadVariableOp",
      [{ name: "dtype", type: b.TF_ATTR_TYPE, value: b.TF_FLOAT }],
      [this.handle],
    );
  }

  /** For the kernels in this file. */
  get resource(): tf.Tensor {
    return this.handle;
  }

  dispose(): void {
    this.handle.dispose();
  }
}

/**
 * TensorFlow's Adam update of `variable` and its moments, in place: m ← m + (1−β1)(g − m),
 * v ← v + (1−β2)(g² − v), p ← p − α·m/(√v + ε̂). With the bias corrections left to the caller (β-powers 0),
 * α and ε̂ are what the caller passes.
 */
export function resourceApplyAdam(
  variable: ResourceVariable,
  m: ResourceVariable,
  v: ResourceVariable,
  k: { alpha: number; beta1: number; beta2: number; epsilon: number },
  grad: tf.Tensor,
): void {
  const be = nodeBackend();
  const { binding: b } = be;
  tf.tidy(() => {
    const s = (x: number) => tf.scalar(x, "float32");
    executeInPlace(
      be,
      "ResourceApplyAdam",
      [
        { name: "T", type: b.TF_ATTR_TYPE, value: b.TF_FLOAT },
        { name: "use_locking", type: b.TF_ATTR_BOOL, value: false },
        { name: "use_nesterov", type: b.TF_ATTR_BOOL, value: false },
      ],
      [variable.resource, m.resource, v.resource, s(0), s(0), s(k.alpha), s(k.beta1), s(k.beta2), s(k.epsilon), grad],
    );
  });
}

/**
 * (x − mean)/√(var + ε) over the last axis (biased variance, LayerNorm's x̂) in one TensorFlow kernel:
 * FusedBatchNormV3 in training mode normalises each channel over the other axes, so x seen as NCHW
 * [1, rows, 1, D] (a channel per row) gets each row's statistics. In KV-cached generation this replaces seven
 * TF.js kernels per LayerNorm (25 of them per GPT-2 124M token), each a fixed ~0.05–0.1 ms on a one-row tensor.
 * No gradient: for inference.
 */
export function normalizeLastAxis<T extends tf.Tensor>(x: T, epsilon: number): T {
  const be = nodeBackend();
  const { binding: b } = be;
  return tf.tidy(() => {
    const D = x.shape[x.rank - 1];
    const empty = tf.zeros([0]);
    const [y] = be.executeMultipleOutputs(
      "FusedBatchNormV3",
      [
        { name: "T", type: b.TF_ATTR_TYPE, value: b.TF_FLOAT },
        { name: "U", type: b.TF_ATTR_TYPE, value: b.TF_FLOAT },
        { name: "epsilon", type: b.TF_ATTR_FLOAT, value: epsilon },
        { name: "data_format", type: b.TF_ATTR_STRING, value: "NCHW" },
        { name: "is_training", type: b.TF_ATTR_BOOL, value: true },
      ],
      // scale 1 and offset 0 per channel; no running statistics in training mode
      [tf.reshape(x, [1, x.size / D, 1, D]), tf.ones([x.size / D]), tf.zeros([x.size / D]), empty, empty],
      6,
    );
    return tf.reshape(y, x.shape) as T;
  });
}
