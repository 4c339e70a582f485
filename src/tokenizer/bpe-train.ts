/**
 * Training a byte-level BPE (the book's chapter 2 bonus, "BPE from scratch"), with GPT-2's pre-tokenizer:
 *
 * 1. the special tokens are cut out of the text (they are never merged into), and each remaining part is split
 *    by GPT-2's regex into pieces (" word", " 42", "!!", "\n\n"); pieces are counted, so a corpus becomes a
 *    few ten thousand distinct pieces with their frequencies;
 * 2. every piece starts as its UTF-8 bytes, token id = byte value (ids 0..255);
 * 3. the most frequent adjacent pair over all pieces (weighted by frequency) merges into a new token, and again,
 *    until the vocabulary (bytes + merged tokens + specials) has the size asked for or no pair is left.
 *
 * Ties between pairs of equal count go to the smaller pair (left id, then right id): deterministic, and
 * independent of the order the pieces were seen in.
 *
 * Each merge touches only the pieces that hold its pair (an index pair → pieces), and the pair counts are
 * updated incrementally; the most frequent pair comes from a max-heap with lazy updates. This works because
 * a merge only lowers the counts of the pairs without its merged token (a popped entry whose count fell is pushed
 * back with its count); the pairs with the merged token are pushed with their counts after each merge.
 */
import gpt2 from "js-tiktoken/ranks/gpt2";
import { FileFormatError, UsageError } from "../errors.js";

/** Ids must fit 21 bits so a pair (left, right) is one safe-integer key. */
const ID_BITS = 2 ** 21;
export const MAX_VOCAB_SIZE = ID_BITS;

export interface BpeTrainOptions {
  /** the vocabulary size wanted: 256 bytes + merges + specials */
  vocabSize: number;
  /** special tokens, ids after the merges, in this order; the first is the end-of-text token */
  specials: string[];
  /** called after every 100 merges (and at the end) with (merges done, merges wanted) */
  onProgress?: (done: number, wanted: number) => void;
}

export interface BpeModel {
  /** every token's bytes by id (0..255 are the bytes themselves), specials excluded */
  tokens: Uint8Array[];
  /** the merges in order, as (left id, right id, merged id) */
  merges: [left: number, right: number, merged: number][];
  /** special token texts; their ids follow the tokens */
  specials: string[];
}

export interface BpeTrainStats {
  /** distinct pieces and their total count after pre-tokenization */
  distinctPieces: number;
  pieces: number;
}

/** A piece of text as token ids, with how often it occurs. */
interface Word {
  ids: number[];
  count: number;
}

const pairKey = (a: number, b: number) => a * ID_BITS + b;

/** Max-heap of (count, pair key): higher count first, then the smaller key (smaller left id, then right id). */
class PairHeap {
  private counts: number[] = [];
  private keys: number[] = [];
  get size(): number {
    return this.keys.length;
  }
  private above(i: number, j: number): boolean {
    const c = this.counts[i] - this.counts[j];
    return c > 0 || (c === 0 && this.keys[i] < this.keys[j]);
  }
  private swap(i: number, j: number): void {
    [this.counts[i], this.counts[j]] = [this.counts[j], this.counts[i]];
    [this.keys[i], this.keys[j]] = [this.keys[j], this.keys[i]];
  }
  push(count: number, key: number): void {
    this.counts.push(count);
    this.keys.push(key);
    for (let i = this.keys.length - 1; i > 0;) {
      const parent = (i - 1) >> 1;
      if (!this.above(i, parent)) break;
      this.swap(i, parent);
      i = parent;
    }
  }
  /** the top (count, key), removed */
  pop(): [number, number] {
    const top: [number, number] = [this.counts[0], this.keys[0]];
    const lastCount = this.counts.pop()!;
    const lastKey = this.keys.pop()!;
    if (this.keys.length > 0) {
      this.counts[0] = lastCount;
      this.keys[0] = lastKey;
      for (let i = 0; ;) {
        const l = 2 * i + 1;
        const r = l + 1;
        let best = i;
        if (l < this.keys.length && this.above(l, best)) best = l;
        if (r < this.keys.length && this.above(r, best)) best = r;
        if (best === i) break;
        this.swap(i, best);
        i = best;
      }
    }
    return top;
  }
}

/** GPT-2's pre-tokenizer regex, the one src/tokenizer/index.ts and Hugging Face's ByteLevel use. */
export function preTokenizer(): RegExp {
  return new RegExp(gpt2.pat_str, "gu");
}

/** Split `text` at every occurrence of a special token: the ordinary text between them, and the specials found. */
export function splitSpecials(text: string, specials: readonly string[]): { parts: string[]; found: string[] } {
  if (specials.length === 0) return { parts: [text], found: [] };
  // longest first, so a special that is a prefix of another does not win
  const escaped = [...specials]
    .sort((a, b) => b.length - a.length)
    .map((s) => s.replace(/[.*+?^${}()|[\]\\]/g, "\\$&"));
  const parts = text.split(new RegExp(`(${escaped.join("|")})`, "u"));
  return { parts: parts.filter((_, i) => i % 2 === 0), found: parts.filter((_, i) => i % 2 === 1) };
}

/** Check the options before reading anything: one-line errors for what cannot work. */
export function checkBpeTrainOptions(vocabSize: number, specials: readonly string[]): void {
  if (!Number.isInteger(vocabSize) || vocabSize < 256 + specials.length || vocabSize > MAX_VOCAB_SIZE) {
    throw new UsageError(
      `--vocab-size ${vocabSize} is out of range: a byte-level BPE needs 256 byte tokens + ${specials.length} special token(s)`,
      `give an integer from ${256 + specials.length} to ${MAX_VOCAB_SIZE}`,
    );
  }
  const seen = new Set<string>();
  for (const s of specials) {
    // a special with whitespace could be cut in two where tokenizeFile cuts a streamed file
    if (s.length === 0 || /\s/u.test(s))
      throw new UsageError(
        `--special ${JSON.stringify(s)}: a special token must be non-empty and have no whitespace`,
        'e.g. --special "<|endoftext|>"',
      );
    if (seen.has(s)) throw new UsageError(`--special ${JSON.stringify(s)} is given twice`, "give each special once");
    seen.add(s);
  }
}

/** Count the pre-tokenized pieces of `text` (specials cut out), as byte-id words. */
function countPieces(text: string, specials: readonly string[]): Word[] {
  const counts = new Map<string, number>();
  const pieces = preTokenizer();
  for (const part of splitSpecials(text, specials).parts) {
    for (const [piece] of part.matchAll(pieces)) counts.set(piece, (counts.get(piece) ?? 0) + 1);
  }
  return Array.from(counts, ([piece, count]) => ({ ids: Array.from(Buffer.from(piece, "utf8")), count }));
}

/**
 * Train a byte-level BPE on `text`. Stops early (a smaller vocabulary than asked) when every piece is one
 * token. Throws a FileFormatError when the text has nothing to train on.
 */
export function trainBpe(text: string, opts: BpeTrainOptions): { model: BpeModel; stats: BpeTrainStats } {
  checkBpeTrainOptions(opts.vocabSize, opts.specials);
  const words = countPieces(text, opts.specials);
  if (words.length === 0)
    throw new FileFormatError("the corpus is empty (no text besides special tokens)", "give a file with some text");
  const tokens: Uint8Array[] = Array.from({ length: 256 }, (_, b) => Uint8Array.of(b));
  /** token bytes (latin1, one char per byte) → id: two merges can make the same token, which keeps one id */
  const idOf = new Map<string, number>(tokens.map((t, id) => [Buffer.from(t).toString("latin1"), id]));
  const merges: BpeModel["merges"] = [];
  const wanted = opts.vocabSize - opts.specials.length - 256;

  // pair key → its count over all words, and → the words that hold it (or once held it: checked when used)
  const pairCount = new Map<number, number>();
  const pairWords = new Map<number, number[]>();
  const addPairs = (w: number, sign: 1 | -1, created?: Set<number>) => {
    const { ids, count } = words[w];
    for (let i = 0; i + 1 < ids.length; i++) {
      const key = pairKey(ids[i], ids[i + 1]);
      pairCount.set(key, (pairCount.get(key) ?? 0) + sign * count);
      if (sign > 0) {
        let list = pairWords.get(key);
        if (list === undefined) pairWords.set(key, (list = []));
        if (list[list.length - 1] !== w) list.push(w);
        created?.add(key);
      }
    }
  };
  words.forEach((_, w) => addPairs(w, 1));
  const heap = new PairHeap();
  for (const [key, count] of pairCount) heap.push(count, key);

  while (merges.length < wanted && tokens.length + opts.specials.length < opts.vocabSize && heap.size > 0) {
    const [stored, key] = heap.pop();
    const count = pairCount.get(key) ?? 0;
    if (count <= 0) continue;
    if (count < stored) {
      heap.push(count, key); // stale: counts of old pairs only fall
      continue;
    }
    const left = Math.floor(key / ID_BITS);
    const right = key % ID_BITS;
    const bytes = Buffer.concat([tokens[left], tokens[right]]);
    const spelled = bytes.toString("latin1");
    let merged = idOf.get(spelled);
    if (merged === undefined) {
      merged = tokens.length;
      tokens.push(new Uint8Array(bytes));
      idOf.set(spelled, merged);
    }
    merges.push([left, right, merged]);
    const created = new Set<number>();
    for (const w of pairWords.get(key) ?? []) {
      const ids = words[w].ids;
      let holds = false;
      for (let i = 0; i + 1 < ids.length && !holds; i++) holds = ids[i] === left && ids[i + 1] === right;
      if (!holds) continue;
      addPairs(w, -1);
      const next: number[] = [];
      for (let i = 0; i < ids.length; i++) {
        if (i + 1 < ids.length && ids[i] === left && ids[i + 1] === right) {
          next.push(merged);
          i++;
        } else next.push(ids[i]);
      }
      words[w].ids = next;
      addPairs(w, 1, created);
    }
    pairWords.delete(key);
    pairCount.delete(key);
    // only pairs with the merged token gained counts (new pairs, or more of them when two merges made the same
    // token); any other pair in `created` was taken out and put back, its count unchanged
    for (const k of created) {
      const a = Math.floor(k / ID_BITS);
      const b = k % ID_BITS;
      if (a === merged || b === merged) heap.push(pairCount.get(k) ?? 0, k);
    }
    if (merges.length % 100 === 0) opts.onProgress?.(merges.length, wanted);
  }
  opts.onProgress?.(merges.length, wanted);
  let pieces = 0;
  for (const w of words) pieces += w.count;
  return { model: { tokens, merges, specials: [...opts.specials] }, stats: { distinctPieces: words.length, pieces } };
}
