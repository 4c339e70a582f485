/**
 * A Llama / Qwen3 forward pass in float64 plain loops, written from transformers' modeling_llama.py and
 * modeling_qwen3.py (no tfjs, nothing of src/ but the config's field names): the independent reference the
 * family tests compare llmctl with where transformers cannot run (Qwen3 needs transformers ≥ 4.51, which needs
 * torch ≥ 2). Weights are read in the checkpoint's own names and layout: `model.` prefixes, Linear [out, in].
 */

export interface HFTextConfig {
  vocab_size: number;
  hidden_size: number;
  intermediate_size: number;
  num_hidden_layers: number;
  num_attention_heads: number;
  num_key_value_heads: number;
  head_dim?: number;
  rms_norm_eps: number;
  rope_theta: number;
  rope_scaling?: {
    rope_type: "llama3";
    factor: number;
    low_freq_factor: number;
    high_freq_factor: number;
    original_max_position_embeddings: number;
  } | null;
  tie_word_embeddings: boolean;
  model_type: "llama" | "qwen3";
  /** config.json's, for load (the reference has no position limit) */
  max_position_embeddings: number;
  use_sliding_window?: boolean;
}

type Weights = Map<string, Float32Array>;

/** x [rows, in] · Wᵀ for W [out, in] (PyTorch's Linear) */
function linear(x: Float64Array[], w: Float32Array, out: number): Float64Array[] {
  const inDim = x[0].length;
  return x.map((row) => {
    const y = new Float64Array(out);
    for (let o = 0; o < out; o++) {
      let s = 0;
      for (let i = 0; i < inDim; i++) s += row[i] * w[o * inDim + i];
      y[o] = s;
    }
    return y;
  });
}

function rmsNorm(v: Float64Array, w: Float32Array, eps: number): Float64Array {
  let ms = 0;
  for (const a of v) ms += a * a;
  const r = 1 / Math.sqrt(ms / v.length + eps);
  return v.map((a, i) => a * r * w[i]);
}

/** transformers' inverse frequencies: θ^(−2i/hd), then Llama 3's rescaling */
function inverseFrequencies(cfg: HFTextConfig, hd: number): number[] {
  const inv = Array.from({ length: hd / 2 }, (_, i) => 1 / cfg.rope_theta ** ((2 * i) / hd));
  const s = cfg.rope_scaling;
  if (!s) return inv;
  const lowWavelen = s.original_max_position_embeddings / s.low_freq_factor;
  const highWavelen = s.original_max_position_embeddings / s.high_freq_factor;
  return inv.map((f) => {
    const wavelen = (2 * Math.PI) / f;
    if (wavelen < highWavelen) return f;
    if (wavelen > lowWavelen) return f / s.factor;
    const smooth =
      (s.original_max_position_embeddings / wavelen - s.low_freq_factor) / (s.high_freq_factor - s.low_freq_factor);
    return (1 - smooth) * (f / s.factor) + smooth * f;
  });
}

/** apply_rotary_pos_emb: x·cos + rotate_half(x)·sin at position p */
function rotate(x: Float64Array, p: number, inv: number[]): Float64Array {
  const half = x.length / 2;
  const out = new Float64Array(x.length);
  for (let i = 0; i < half; i++) {
    const [c, s] = [Math.cos(p * inv[i]), Math.sin(p * inv[i])];
    out[i] = x[i] * c - x[i + half] * s;
    out[i + half] = x[i + half] * c + x[i] * s;
  }
  return out;
}

/** logits [T, V] of ids */
export function referenceLogits(cfg: HFTextConfig, w: Weights, ids: number[]): Float64Array[] {
  const D = cfg.hidden_size;
  const H = cfg.num_attention_heads;
  const KV = cfg.num_key_value_heads;
  const hd = cfg.head_dim ?? D / H;
  const F = cfg.intermediate_size;
  const T = ids.length;
  const get = (name: string) => {
    const t = w.get(name);
    if (!t) throw new Error(`reference: no tensor ${name}`);
    return t;
  };
  const emb = get("model.embed_tokens.weight");
  let x = ids.map((id) => Float64Array.from(emb.subarray(id * D, (id + 1) * D)));
  const inv = inverseFrequencies(cfg, hd);
  for (let l = 0; l < cfg.num_hidden_layers; l++) {
    const p = `model.layers.${l}`;
    const h = x.map((r) => rmsNorm(r, get(`${p}.input_layernorm.weight`), cfg.rms_norm_eps));
    const q = linear(h, get(`${p}.self_attn.q_proj.weight`), H * hd);
    const k = linear(h, get(`${p}.self_attn.k_proj.weight`), KV * hd);
    const v = linear(h, get(`${p}.self_attn.v_proj.weight`), KV * hd);
    const head = (rows: Float64Array[], n: number, t: number) => rows[t].slice(n * hd, (n + 1) * hd);
    const qNorm = cfg.model_type === "qwen3" ? get(`${p}.self_attn.q_norm.weight`) : null;
    const kNorm = cfg.model_type === "qwen3" ? get(`${p}.self_attn.k_norm.weight`) : null;
    // per head: q/k norm (Qwen3), then RoPE
    const prep = (rows: Float64Array[], n: number, t: number, norm: Float32Array | null) => {
      const a = head(rows, n, t);
      return rotate(norm ? rmsNorm(a, norm, cfg.rms_norm_eps) : a, t, inv);
    };
    const attn = Array.from({ length: T }, () => new Float64Array(H * hd));
    for (let n = 0; n < H; n++) {
      const g = Math.floor(n / (H / KV)); // repeat_kv: query head n reads key/value head n / (H/KV)
      const keys = Array.from({ length: T }, (_, t) => prep(k, g, t, kNorm));
      for (let t = 0; t < T; t++) {
        const qv = prep(q, n, t, qNorm);
        const scores = keys.slice(0, t + 1).map((kv) => kv.reduce((s, a, i) => s + a * qv[i], 0) / Math.sqrt(hd));
        const m = Math.max(...scores);
        const e = scores.map((s) => Math.exp(s - m));
        const z = e.reduce((a, b) => a + b, 0);
        for (let j = 0; j <= t; j++) {
          const vj = head(v, g, j);
          for (let i = 0; i < hd; i++) attn[t][n * hd + i] += (e[j] / z) * vj[i];
        }
      }
    }
    const o = linear(attn, get(`${p}.self_attn.o_proj.weight`), D);
    x = x.map((r, t) => r.map((a, i) => a + o[t][i]));
    const h2 = x.map((r) => rmsNorm(r, get(`${p}.post_attention_layernorm.weight`), cfg.rms_norm_eps));
    const gate = linear(h2, get(`${p}.mlp.gate_proj.weight`), F);
    const up = linear(h2, get(`${p}.mlp.up_proj.weight`), F);
    const act = gate.map((r, t) => r.map((a, i) => (a / (1 + Math.exp(-a))) * up[t][i]));
    const down = linear(act, get(`${p}.mlp.down_proj.weight`), D);
    x = x.map((r, t) => r.map((a, i) => a + down[t][i]));
  }
  const hf = x.map((r) => rmsNorm(r, get("model.norm.weight"), cfg.rms_norm_eps));
  return linear(hf, cfg.tie_word_embeddings ? emb : get("lm_head.weight"), cfg.vocab_size);
}

/** greedy continuation by full recomputation (no cache) */
export function referenceGreedy(cfg: HFTextConfig, w: Weights, ids: number[], n: number): number[] {
  const seq = [...ids];
  for (let i = 0; i < n; i++) {
    const last = referenceLogits(cfg, w, seq).at(-1)!;
    let best = 0;
    for (let j = 1; j < last.length; j++) if (last[j] > last[best]) best = j;
    seq.push(best);
  }
  return seq.slice(ids.length);
}
