/**
 * GPT-2's vocabulary as other tools spell it: every token as a printable string (OpenAI's bytes_to_unicode form)
 * and the ranked merges, rebuilt from js-tiktoken's ranks. Hugging Face's vocab.json + merges.txt and GGUF's
 * tokenizer.ggml.* keys are both written from these.
 */
import gpt2Ranks from "js-tiktoken/ranks/gpt2";
import { END_OF_TEXT, END_OF_TEXT_ID } from "./index.js";

/**
 * GPT-2's byte ↔ printable-character table (bytes_to_unicode in OpenAI's encoder.py): printable Latin-1
 * bytes map to themselves, the other 68 bytes to U+0100 onwards, so every token is a visible string.
 */
export function byteToUnicode(): string[] {
  const direct: number[] = [];
  for (let b = 0x21; b <= 0x7e; b++) direct.push(b);
  for (let b = 0xa1; b <= 0xac; b++) direct.push(b);
  for (let b = 0xae; b <= 0xff; b++) direct.push(b);
  const table = new Array<string>(256);
  const isDirect = new Set(direct);
  let n = 0;
  for (let b = 0; b < 256; b++) table[b] = String.fromCodePoint(isDirect.has(b) ? b : 256 + n++);
  return table;
}

/** Every GPT-2 token's bytes, indexed by id (0..50255), decoded from js-tiktoken's rank file. */
export function gpt2TokenBytes(): Uint8Array[] {
  const ranks = gpt2Ranks as { bpe_ranks: string };
  const out: Uint8Array[] = [];
  for (const line of ranks.bpe_ranks.split("\n")) {
    if (!line) continue;
    // "<marker> <first rank> <base64 token> <base64 token> …": consecutive ranks from the first.
    const [, first, ...tokens] = line.split(" ");
    tokens.forEach((t, i) => (out[Number(first) + i] = Buffer.from(t, "base64")));
  }
  return out;
}

/**
 * vocab.json and merges.txt. A merge is recovered for each multi-byte token by running BPE on its bytes with
 * only the merges ranked before it: what is left is the one pair that merges into it.
 */
export function gpt2TokenizerFiles(): { vocab: Record<string, number>; merges: string[] } {
  const tokens = gpt2TokenBytes();
  const b2u = byteToUnicode();
  const text = (bytes: Uint8Array) => Array.from(bytes, (b) => b2u[b]).join("");
  const rankOf = new Map<string, number>();
  tokens.forEach((t, i) => rankOf.set(Buffer.from(t).toString("latin1"), i));
  const vocab: Record<string, number> = {};
  tokens.forEach((t, i) => (vocab[text(t)] = i));
  vocab[END_OF_TEXT] = END_OF_TEXT_ID;
  const merges: string[] = [];
  for (let rank = 0; rank < tokens.length; rank++) {
    const t = tokens[rank]!;
    if (t.length < 2) continue;
    let parts = Array.from(t, (b) => String.fromCharCode(b)); // latin1 strings: one char per byte
    for (;;) {
      let best = -1;
      let bestRank = rank;
      for (let i = 0; i + 1 < parts.length; i++) {
        const r = rankOf.get(parts[i]! + parts[i + 1]!);
        if (r !== undefined && r < bestRank) {
          bestRank = r;
          best = i;
        }
      }
      if (best < 0) break;
      parts = [...parts.slice(0, best), parts[best]! + parts[best + 1]!, ...parts.slice(best + 2)];
    }
    if (parts.length !== 2) throw new Error(`token ${rank} does not split into one merge (${parts.length} parts)`);
    merges.push(parts.map((p) => text(Buffer.from(p, "latin1"))).join(" "));
  }
  return { vocab, merges };
}
