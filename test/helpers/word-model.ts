/**
 * A model directory whose answers are plain English words, for tests that read answers where they are shown (a
 * terminal, a browser) rather than as ids. Its blocks are random (seeded), so what it says depends on the
 * context; its final LayerNorm and untied head are set so that a few word tokens get logits near +20 and every
 * other token near -20 whatever the context: the output is always some of WORDS, never <|endoftext|>.
 */
import { buildGPT } from "../../src/model/gpt.js";
import { saveModelDir } from "../../src/model/model-dir.js";
import { type PromptStyle } from "../../src/model/model-meta.js";
import { getTokenizer } from "../../src/tokenizer/index.js";
import { Rng } from "../../src/data/rng.js";

export const WORDS = [
  " red",
  " blue",
  " green",
  " cat",
  " sat",
  " on",
  " mat",
  " dog",
  " ran",
  " far",
  " sun",
  " warm",
];

const EMB = 16;

export async function saveWordModel(
  dir: string,
  opts: { contextLength: number; promptStyle?: PromptStyle; seed?: number },
): Promise<void> {
  const tok = getTokenizer();
  const wordIds = WORDS.map((w) => {
    const ids = tok.encode(w);
    if (ids.length !== 1) throw new Error(`'${w}' is ${ids.length} tokens; the word model needs one-token words`);
    return ids[0];
  });
  const gpt = buildGPT(
    {
      vocab_size: tok.vocabSize,
      context_length: opts.contextLength,
      emb_dim: EMB,
      n_heads: 2,
      n_layers: 2,
      drop_rate: 0,
      qkv_bias: true,
      tied_head: false,
    },
    { seed: opts.seed ?? 7 },
  );
  try {
    const weights = new Map<string, Float32Array>();
    for (const [name, v] of gpt.namedWeights()) weights.set(name, v.read().dataSync() as Float32Array);
    // h = 0.3·normalized(x) + (3, 0, …, 0): the first coordinate is ≈ 3 for every context, the rest vary with it
    weights.set("ln_f.weight", new Float32Array(EMB).fill(0.3));
    weights.set(
      "ln_f.bias",
      Float32Array.from({ length: EMB }, (_, i) => (i === 0 ? 3 : 0)),
    );
    const head = new Float32Array(tok.vocabSize * EMB);
    for (let id = 0; id < tok.vocabSize; id++) head[id * EMB] = -20 / 3;
    const rng = new Rng(opts.seed ?? 7);
    for (const id of wordIds) {
      head[id * EMB] = 20 / 3;
      for (let j = 1; j < EMB; j++) head[id * EMB + j] = 2 * rng.random() - 1;
    }
    weights.set("lm_head.weight", head);
    gpt.setWeights(weights);
    await saveModelDir(dir, gpt, { prompt_style: opts.promptStyle, source: "test word model" });
  } finally {
    gpt.dispose();
  }
}
