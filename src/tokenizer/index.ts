/**
 * GPT-2 byte-pair encoding over js-tiktoken's GPT-2 ranks (they ship inside the package, so this works
 * offline), plus the streaming tokenizer of a file that `tokenize --out` writes and `pretrain` reads.
 */
import { firstInvalidUtf8, notUtf8 } from "../formats/file.js";
import gpt2 from "js-tiktoken/ranks/gpt2";
import { createReadStream } from "node:fs";
import { UsageError } from "../errors.js";

export const END_OF_TEXT = "<|endoftext|>";
export const END_OF_TEXT_ID = 50256;
export const GPT2_VOCAB_SIZE = 50257;

export interface EncodeOptions {
  /**
   * Special tokens that encode to their ids. Default: `<|endoftext|>` (as the book does). With `[]`, special
   * tokens in the text are encoded as ordinary text.
   */
  allowedSpecial?: string[];
  /**
   * Add what the tokenizer's post-processor adds around a text (Hugging Face's `add_special_tokens`; Llama 3's
   * <|begin_of_text|> before it). Default false; GPT-2 adds nothing.
   */
  addSpecialTokens?: boolean;
}

/** Pieces remembered by the encoder; a megabyte of English has ~20k distinct ones. Cleared when full. */
const PIECE_CACHE_SIZE = 200_000;

/**
 * The book's byte-level BPE with GPT-2's ranks, as tiktoken merges: a piece's UTF-8 bytes start as single
 * bytes, and the adjacent pair whose joined bytes have the lowest rank merges first, until no pair is a token.
 * Tokens are looked up by their bytes in base64, the rank file's own spelling, so loading it is one split
 * and a map of its strings (~10× faster than js-tiktoken's decoding constructor: `tokenize` starts at once).
 */
class BytePairEncoder {
  /** base64 of a token's bytes → its rank (= id) */
  private readonly ranks = new Map<string, number>();
  /** rank → base64 of its bytes */
  private readonly tokens: string[] = [];
  private readonly utf8 = new TextDecoder("utf-8");

  constructor(bpeRanks: string) {
    for (const line of bpeRanks.split("\n")) {
      if (!line) continue;
      // "<marker> <first rank> <base64 token> <base64 token> …": consecutive ranks from the first
      const fields = line.split(" ");
      const first = Number(fields[1]);
      for (let i = 2; i < fields.length; i++) {
        this.ranks.set(fields[i], first + i - 2);
        this.tokens[first + i - 2] = fields[i];
      }
    }
  }

  encode(piece: string): number[] {
    const bytes = Buffer.from(piece, "utf8");
    const rank = (start: number, end: number) => this.ranks.get(bytes.toString("base64", start, end));
    const whole = rank(0, bytes.length);
    if (whole !== undefined) return [whole];
    // part i spans bytes[starts[i], starts[i + 1])
    const starts = Array.from({ length: bytes.length + 1 }, (_, i) => i);
    for (;;) {
      let best = -1;
      let bestRank = Infinity;
      for (let i = 0; i + 2 < starts.length; i++) {
        const r = rank(starts[i], starts[i + 2]);
        if (r !== undefined && r < bestRank) [best, bestRank] = [i, r];
      }
      if (best < 0) break;
      starts.splice(best + 1, 1);
    }
    const ids: number[] = [];
    for (let i = 0; i + 1 < starts.length; i++) ids.push(rank(starts[i], starts[i + 1])!);
    return ids;
  }

  decode(ids: number[]): string {
    const parts = ids.map((id) =>
      id === END_OF_TEXT_ID ? Buffer.from(END_OF_TEXT) : Buffer.from(this.tokens[id], "base64"),
    );
    return this.utf8.decode(Buffer.concat(parts));
  }
}

/**
 * What every tokenizer gives: GPT-2's (below) and a byte-level BPE loaded from a tokenizer.json (./bpe-file.ts,
 * `llmctl tokenizer train`).
 */
export interface Tokenizer {
  /** "gpt2", or where a tokenizer.json was loaded from */
  readonly name: string;
  readonly vocabSize: number;
  /** the special token that ends a text (joins files in pretrain, stops generation) */
  readonly endOfText: string;
  readonly endOfTextId: number;
  encode(text: string, opts?: EncodeOptions): number[];
  decode(ids: ArrayLike<number>): string;
}

export class Gpt2Tokenizer implements Tokenizer {
  readonly name = "gpt2";
  readonly vocabSize = GPT2_VOCAB_SIZE;
  readonly endOfText = END_OF_TEXT;
  readonly endOfTextId = END_OF_TEXT_ID;
  private readonly enc = new BytePairEncoder(gpt2.bpe_ranks);
  /** GPT-2's pre-tokenizer: BPE never merges across these pieces, so each can be encoded (and cached) alone */
  private readonly pieces = new RegExp(gpt2.pat_str, "gu");
  private readonly cache = new Map<string, number[]>();

  /**
   * The same ids as js-tiktoken's encode, with each distinct piece byte-pair-encoded once: text repeats its
   * words, and encoding a piece costs a string key per candidate merge.
   */
  encode(text: string, opts: EncodeOptions = {}): number[] {
    // <|endoftext|> is GPT-2's only special token; not allowed, it is ordinary text ("<|", "endoftext", "|>")
    const parts = (opts.allowedSpecial ?? [END_OF_TEXT]).includes(END_OF_TEXT) ? text.split(END_OF_TEXT) : [text];
    const out: number[] = [];
    parts.forEach((part, i) => {
      if (i > 0) out.push(END_OF_TEXT_ID);
      for (const [piece] of part.matchAll(this.pieces)) {
        let ids = this.cache.get(piece);
        if (ids === undefined) {
          ids = this.enc.encode(piece);
          if (this.cache.size >= PIECE_CACHE_SIZE) this.cache.clear();
          this.cache.set(piece, ids);
        }
        for (const id of ids) out.push(id);
      }
    });
    return out;
  }

  decode(ids: ArrayLike<number>): string {
    const list = Array.from(ids);
    for (const id of list) {
      if (!Number.isInteger(id) || id < 0 || id >= this.vocabSize) {
        throw new UsageError(`token id ${id} is outside the GPT-2 vocabulary (0..${this.vocabSize - 1})`);
      }
    }
    return this.enc.decode(list);
  }
}

let shared: Gpt2Tokenizer | undefined;

/**
 * The rank table and the piece cache pay off across calls, so share one tokenizer. A model directory's own
 * tokenizer (config.json `"tokenizer": "tokenizer.json"`) comes from `modelTokenizer` in ./bpe-file.ts.
 */
export function getTokenizer(name = "gpt2"): Gpt2Tokenizer {
  if (name !== "gpt2") throw new UsageError(`unknown tokenizer '${name}'`, "llmctl supports 'gpt2'");
  shared ??= new Gpt2Tokenizer();
  return shared;
}

/**
 * A place where cutting the text cannot change the BPE result: a single space between two non-space
 * characters always starts a new pre-token (" word", " 42", " !"), and no special token contains a space
 * (`llmctl tokenizer train` refuses specials with whitespace, and ./bpe-file.ts refuses to load them).
 */
function lastSafeCut(text: string): number {
  for (let i = text.length - 2; i > 0; i--) {
    if (text.charCodeAt(i) === 32 && !/\s/.test(text[i - 1]) && !/\s/.test(text[i + 1])) return i;
  }
  return -1;
}

/** A growable typed id array: no per-token JS objects, memory about 2x the final id array at most. */
export class IdBuffer {
  private data: Uint16Array | Uint32Array;
  length = 0;
  constructor(
    private readonly wide: boolean,
    capacity = 1 << 16,
  ) {
    this.data = wide ? new Uint32Array(capacity) : new Uint16Array(capacity);
  }
  push(ids: number[]): void {
    if (this.length + ids.length > this.data.length) {
      const bigger = this.wide
        ? new Uint32Array(Math.max(this.data.length * 2, this.length + ids.length))
        : new Uint16Array(Math.max(this.data.length * 2, this.length + ids.length));
      bigger.set(this.data.subarray(0, this.length));
      this.data = bigger;
    }
    this.data.set(ids, this.length);
    this.length += ids.length;
  }
  toArray(): Uint16Array | Uint32Array {
    return this.data.slice(0, this.length);
  }
}

/**
 * Tokenize a text file of any size by streaming it in ~1 MB pieces cut only at safe places.
 * Reports progress as (bytes read, total bytes).
 */
export async function tokenizeFile(
  path: string,
  opts: EncodeOptions & { onProgress?: (bytesRead: number) => void; tokenizer?: Tokenizer } = {},
): Promise<Uint16Array | Uint32Array> {
  const tok = opts.tokenizer ?? getTokenizer();
  const out = new IdBuffer(tok.vocabSize > 65536);
  let pending = "";
  // fatal: text in another encoding is refused (at its first bad byte), not turned into U+FFFD
  const decoder = new TextDecoder("utf-8", { fatal: true });
  let offset = 0;
  let last: Uint8Array = new Uint8Array(0);
  const stream = createReadStream(path, { highWaterMark: 1 << 20 });
  for await (const bytes of stream as AsyncIterable<Buffer>) {
    try {
      pending += decoder.decode(bytes, { stream: true });
    } catch {
      // the piece may start inside a character the last one began: scan from its first lead byte
      let start = 0;
      while (start < 3 && (bytes[start] & 0xc0) === 0x80) start++;
      const bad = Math.max(0, start + firstInvalidUtf8(bytes.subarray(start)));
      throw notUtf8(path, offset + bad, bytes[bad]);
    }
    offset += bytes.length;
    last = bytes;
    if (offset === bytes.length && pending.charCodeAt(0) === 0xfeff) pending = pending.slice(1);
    const cut = lastSafeCut(pending);
    if (cut > 0) {
      out.push(tok.encode(pending.slice(0, cut), opts));
      pending = pending.slice(cut);
    }
    opts.onProgress?.(stream.bytesRead);
  }
  try {
    pending += decoder.decode();
  } catch {
    // the file ends inside a character: its lead byte is among the last three
    let lead = last.length - 1;
    while (lead > 0 && lead > last.length - 3 && (last[lead] & 0xc0) === 0x80) lead--;
    throw notUtf8(path, offset - last.length + lead, last[lead]);
  }
  if (pending.length > 0) out.push(tok.encode(pending, opts));
  return out.toArray();
}
