/**
 * Chapter 2's input embeddings: token ids → rows of the token embedding `wte`, plus the position embedding
 * `wpe` of each position, summed into what the first block sees. Also the chapter's bonus point, computed: an
 * embedding lookup is a one-hot vector times the weight matrix.
 */
import * as tf from "@tensorflow/tfjs";
import type { GPTModel } from "../model/gpt.js";
import type { Tokenizer } from "../tokenizer/index.js";
import { UsageError } from "../errors.js";

export interface EmbeddingsView {
  tokens: string[];
  ids: number[];
  /** [T, D] each */
  token_embeddings: number[][];
  position_embeddings: number[][];
  input_embeddings: number[][];
  shapes: { ids: number[]; wte: number[]; wpe: number[]; token_embeddings: number[]; input_embeddings: number[] };
  /** onehot(ids) [T,V] · wte [V,D] against the lookup wte[ids] */
  one_hot: { shape: number[]; max_abs_difference: number };
}

export function embeddingsView(gpt: GPTModel, tokenizer: Tokenizer, ids: number[]): EmbeddingsView {
  const wpe = gpt.wpe;
  if (!wpe) throw new UsageError("this model has rotary positions (RoPE), no position embedding table to show");
  const T = ids.length;
  const { vocab_size: V, emb_dim: D, context_length: ctx } = gpt.config;
  const rows = (t: tf.Tensor) => t.arraySync() as number[][];
  const [tok, pos, sum, diff] = tf.tidy(() => {
    const idsT = tf.tensor1d(ids, "int32");
    const wte = gpt.wte.weight.read();
    const tok = tf.gather(wte, idsT); // [T,D]
    const pos = tf.slice(wpe.weight.read(), [0, 0], [T, D]); // [T,D]
    const oneHot = tf.oneHot(idsT, V, 1, 0, "float32"); // [T,V]
    const diff = tf.max(tf.abs(tf.sub(tf.matMul(oneHot, wte), tok)));
    return [tok, pos, tf.add(tok, pos), diff];
  });
  try {
    return {
      tokens: ids.map((id) => tokenizer.decode([id])),
      ids,
      token_embeddings: rows(tok),
      position_embeddings: rows(pos),
      input_embeddings: rows(sum),
      shapes: { ids: [T], wte: [V, D], wpe: [ctx, D], token_embeddings: [T, D], input_embeddings: [T, D] },
      one_hot: { shape: [T, V], max_abs_difference: diff.dataSync()[0] },
    };
  } finally {
    tf.dispose([tok, pos, sum, diff]);
  }
}
