/**
 * A backward pass that frees as it goes.
 *
 * tfjs' engine keeps the gradient of every intermediate tensor, and every tensor an op saved for its
 * gradient, until the whole backward pass has finished. For a transformer that means the activations and all
 * their gradients are alive together at the end of the pass: on GPT-2 124M at batch 2 × 256 tokens, over a
 * gigabyte more than needed, enough to run the 4 GB wasm heap out once AdamW's moments sit beside it.
 *
 * The walk below is the same reverse-mode walk over the same tape (same gradient functions, same order, same
 * accumulation), with two differences: once a node's gradient has been taken, the gradients of its outputs
 * (complete by then: every consumer of an output comes later on the tape, so earlier in the walk) and the
 * tensors it saved are disposed. Nested gradients (a tf.grads inside another) keep tfjs' own walk.
 */
import * as tf from "@tensorflow/tfjs";

interface TapeNode {
  id: number;
  kernelName: string;
  inputs: Record<string, tf.Tensor>;
  outputs: tf.Tensor[];
  gradient: (dys: (tf.Tensor | null)[]) => Record<string, () => tf.Tensor>;
  saved?: tf.Tensor[];
}

interface EngineInternals {
  state: { activeTape: TapeNode[] | null; gradientDepth: number };
  scopedRun<T>(start: () => void, end: () => void, f: () => T): T;
  startTape(): void;
  endTape(): void;
  tidy<T extends tf.TensorContainer>(name: string, f: () => T): T;
  gradients<T extends tf.Tensor>(
    f: () => T,
    xs: tf.Tensor[],
    dy?: T,
    allowNoGradients?: boolean,
  ): { value: T; grads: tf.Tensor[] };
}

/** The nodes on a path from some x to y, each with only the inputs that depend on an x. */
function nodesFromXToY(tape: TapeNode[], xs: tf.Tensor[], y: tf.Tensor): TapeNode[] {
  const fromX = new Set(xs.map((x) => x.id));
  const nodeFromX = new Set<number>();
  for (const node of tape) {
    if (Object.values(node.inputs).some((t) => fromX.has(t.id))) {
      nodeFromX.add(node.id);
      for (const o of node.outputs) fromX.add(o.id);
    }
  }
  const toY = new Set([y.id]);
  const nodeToY = new Set<number>();
  for (let i = tape.length - 1; i >= 0; i--) {
    const node = tape[i];
    if (node.outputs.some((o) => toY.has(o.id))) {
      nodeToY.add(node.id);
      for (const t of Object.values(node.inputs)) toY.add(t.id);
    }
  }
  const out: TapeNode[] = [];
  for (const node of tape) {
    if (!nodeFromX.has(node.id) || !nodeToY.has(node.id)) continue;
    const inputs: Record<string, tf.Tensor> = {};
    for (const [name, t] of Object.entries(node.inputs)) if (fromX.has(t.id)) inputs[name] = t;
    out.push({ ...node, inputs });
  }
  return out;
}

let installed = false;

/** Replace the engine's gradients() (used by tf.grads, tf.variableGrads, optimizers) with the freeing walk. */
export function installFreeingBackprop(): void {
  if (installed) return;
  installed = true;
  const engine = tf.engine() as unknown as EngineInternals;
  const tfjsGradients = engine.gradients.bind(engine);
  engine.gradients = function <T extends tf.Tensor>(f: () => T, xs: tf.Tensor[], dy?: T, allowNoGradients = false) {
    if (engine.state.gradientDepth > 0) return tfjsGradients(f, xs, dy, allowNoGradients);
    if (xs.length === 0) throw new Error("gradients() received an empty list of xs.");
    if (dy != null && dy.dtype !== "float32") throw new Error(`dy must have 'float32' dtype, but has '${dy.dtype}'`);
    const y = engine.scopedRun(
      () => engine.startTape(),
      () => engine.endTape(),
      () => engine.tidy("forward", f),
    );
    if (!(y instanceof tf.Tensor)) throw new Error("The result y returned by f() must be a tensor.");
    const tape = engine.state.activeTape ?? [];
    const filtered = nodesFromXToY(tape, xs, y);
    if (!allowNoGradients && filtered.length === 0) {
      throw new Error(
        "Cannot compute gradient of y=f(x) with respect to x. Make sure that the f you passed encloses all operations that lead from x to y.",
      );
    }
    const keepIds = new Set(xs.map((x) => x.id));
    return engine.tidy("backward", () => {
      const grads = new Map<number, tf.Tensor>(); // tensor id → its gradient so far
      const holders = new Map<tf.Tensor, number>(); // a gradient tensor may be held under several ids
      const hold = (id: number, g: tf.Tensor) => {
        grads.set(id, g);
        holders.set(g, (holders.get(g) ?? 0) + 1);
      };
      const release = (g: tf.Tensor) => {
        const n = (holders.get(g) ?? 1) - 1;
        if (n > 0) holders.set(g, n);
        else {
          holders.delete(g);
          g.dispose();
        }
      };
      hold(y.id, dy ?? tf.ones(y.shape));
      for (let i = filtered.length - 1; i >= 0; i--) {
        const node = filtered[i];
        const dys = node.outputs.map((o) => grads.get(o.id) ?? null);
        const inputGrads = node.gradient(dys);
        for (const [name, x] of Object.entries(node.inputs)) {
          if (!(name in inputGrads))
            throw new Error(
              `Cannot backprop through input ${name}. Available gradients found: ${Object.keys(inputGrads)}.`,
            );
          const dx = engine.tidy(name, () => inputGrads[name]());
          if (dx.dtype !== "float32")
            throw new Error(
              `Error in gradient for op ${node.kernelName}. The gradient of input ${name} must have 'float32' dtype, but has '${dx.dtype}'`,
            );
          if (!tf.util.arraysEqual(dx.shape, x.shape)) {
            throw new Error(
              `Error in gradient for op ${node.kernelName}. The gradient of input '${name}' has shape '${dx.shape}', which does not match the shape of the input '${x.shape}'`,
            );
          }
          const current = grads.get(x.id);
          if (current === undefined) {
            hold(x.id, dx);
          } else {
            grads.delete(x.id);
            hold(x.id, tf.add(current, dx));
            release(current);
            if (!holders.has(dx)) dx.dispose();
          }
        }
        // this node's outputs have no further use for their gradients, nor the node for what it saved
        for (const o of node.outputs) {
          const g = grads.get(o.id);
          if (g === undefined || keepIds.has(o.id)) continue;
          grads.delete(o.id);
          release(g);
        }
        if (node.saved) for (const t of node.saved) t.dispose(); // the same array as the tape node's
      }
      const result = xs.map((x) => grads.get(x.id)) as tf.Tensor[];
      for (const node of tape) if (node.saved) for (const t of node.saved) t.dispose();
      engine.state.activeTape = null;
      return { value: y, grads: result };
    });
  };
}
