/** The four GPT-2 models OpenAI released, apart from the code that converts them (the CLI lists them at once). */
export type Gpt2Size = "124M" | "355M" | "774M" | "1558M";
export const GPT2_SIZES: readonly Gpt2Size[] = ["124M", "355M", "774M", "1558M"];

/** The four released models (OpenAI's hparams.json). */
export const GPT2_HPARAMS: Readonly<
  Record<Gpt2Size, { n_vocab: number; n_ctx: number; n_embd: number; n_head: number; n_layer: number }>
> = {
  "124M": { n_vocab: 50257, n_ctx: 1024, n_embd: 768, n_head: 12, n_layer: 12 },
  "355M": { n_vocab: 50257, n_ctx: 1024, n_embd: 1024, n_head: 16, n_layer: 24 },
  "774M": { n_vocab: 50257, n_ctx: 1024, n_embd: 1280, n_head: 20, n_layer: 36 },
  "1558M": { n_vocab: 50257, n_ctx: 1024, n_embd: 1600, n_head: 25, n_layer: 48 },
};

/** Hugging Face repositories of the same models. */
export const GPT2_HF_REPOS: Readonly<Record<Gpt2Size, string>> = {
  "124M": "openai-community/gpt2",
  "355M": "openai-community/gpt2-medium",
  "774M": "openai-community/gpt2-large",
  "1558M": "openai-community/gpt2-xl",
};
