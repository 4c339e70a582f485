/**
 * Byte-level BPE in Hugging Face's tokenizer.json: the one `llmctl tokenizer train` writes (and
 * `tokenizers.Tokenizer.from_file` loads and encodes identically), and the tokenizer loaded from such a file,
 * ours or a published model's (GPT-2, Llama 3, Qwen2/3).
 *
 * The file: model "BPE" (vocab: token → id, merges "left right" in order, tokens spelled with GPT-2's
 * bytes_to_unicode), a pre_tokenizer with a ByteLevel in it, the added tokens. Encoding is Hugging Face's: the
 * added tokens are cut out first, the rest is normalized (./hf-pipeline.ts) and split into pieces by the
 * pre-tokenizer's regexes, and each piece's bytes merge pairwise by merge rank (the lowest ranked adjacent pair
 * first, leftmost among equals) until no adjacent pair has a merge; with ignore_merges a piece that is itself a
 * token is that token. */
import { existsSync, statSync } from "node:fs";
import { join, resolve } from "node:path";
import { FileFormatError, LlmctlError, UsageError } from "../errors.js";
import { makeDirectory, writeFileAtomic } from "../fs-atomic.js";
import { readTextFile } from "../formats/file.js";
import { MAX_VOCAB_SIZE, type BpeModel } from "./bpe-train.js";
import { hfNormalizer, hfPostProcessor, hfPreTokenizer, type HfTemplate } from "./hf-pipeline.js";
import { END_OF_TEXT, getTokenizer, type EncodeOptions, type Tokenizer } from "./index.js";
import { byteToUnicode, gpt2TokenizerFiles } from "./vocab.js";

export const TOKENIZER_FILE = "tokenizer.json";
/** What a model's config.json names (src/model/model-meta.ts TOKENIZERS): GPT-2's, or its own TOKENIZER_FILE. */
export type TokenizerName = "gpt2" | typeof TOKENIZER_FILE;

const PIECE_CACHE_SIZE = 200_000;

/** The Hugging Face files of a trained BPE: tokenizer.json, and GPT-2's older pair vocab.json + merges.txt. */
export function bpeFiles(model: BpeModel): { tokenizerJson: string; vocabJson: string; mergesTxt: string } {
  const b2u = byteToUnicode();
  const spell = (bytes: Uint8Array) => Array.from(bytes, (b) => b2u[b]).join("");
  const vocab: [string, number][] = model.tokens.map((t, id) => [spell(t), id]);
  const specials = model.specials.map((content, i) => ({ id: model.tokens.length + i, content }));
  const taken = new Set(vocab.map(([t]) => t));
  for (const s of specials) {
    // Hugging Face would give the special the learned token's id
    if (taken.has(s.content))
      throw new UsageError(
        `the special token ${JSON.stringify(s.content)} is also a learned token`,
        'use a special with punctuation in it, e.g. "<|endoftext|>"',
      );
    vocab.push([s.content, s.id]);
  }
  const merges = model.merges.map(([l, r]) => `${spell(model.tokens[l])} ${spell(model.tokens[r])}`);
  // written by hand so the vocabulary stays in id order (JSON.stringify puts keys like "0" first)
  const vocabBody = (indent: string) => vocab.map(([t, id]) => `${indent}${JSON.stringify(t)}: ${id}`).join(",\n");
  const byteLevel = { type: "ByteLevel", add_prefix_space: false, trim_offsets: true, use_regex: true };
  const head = {
    version: "1.0",
    truncation: null,
    padding: null,
    added_tokens: specials.map((s) => ({
      id: s.id,
      content: s.content,
      single_word: false,
      lstrip: false,
      rstrip: false,
      normalized: false,
      special: true,
    })),
    normalizer: null,
    pre_tokenizer: byteLevel,
    post_processor: null,
    decoder: byteLevel,
  };
  const modelHead = {
    type: "BPE",
    dropout: null,
    unk_token: null,
    continuing_subword_prefix: null,
    end_of_word_suffix: null,
    fuse_unk: false,
    byte_fallback: false,
  };
  const open = JSON.stringify(head, null, 2).slice(0, -2); // without the closing "\n}"
  const modelOpen = JSON.stringify(modelHead, null, 2).slice(0, -2).replace(/\n/g, "\n  ");
  const tokenizerJson =
    `${open},\n  "model": ${modelOpen},\n    "vocab": {\n${vocabBody("      ")}\n    },\n` +
    `    "merges": [\n${merges.map((m) => `      ${JSON.stringify(m)}`).join(",\n")}\n    ]\n  }\n}\n`;
  return {
    tokenizerJson,
    vocabJson: `{\n${vocabBody("  ")}\n}\n`,
    mergesTxt: `#version: 0.2\n${merges.join("\n")}\n`,
  };
}

/** Write DIR/tokenizer.json, vocab.json and merges.txt (DIR made if missing; a file there is refused). */
export async function writeBpeFiles(dir: string, model: BpeModel): Promise<string[]> {
  if (existsSync(dir) && !statSync(dir).isDirectory())
    throw new UsageError(`${dir} is a file, not a directory`, "give a directory for the tokenizer files");
  const files = bpeFiles(model);
  await makeDirectory(dir);
  const written = [
    [TOKENIZER_FILE, files.tokenizerJson],
    ["vocab.json", files.vocabJson],
    ["merges.txt", files.mergesTxt],
  ].map(([name, text]) => [join(dir, name), text]);
  for (const [path, text] of written) await writeFileAtomic(path, text);
  return written.map(([path]) => path);
}

/** An added token's fields that change matching; llmctl reads them all false. */
const ADDED_TOKEN_FLAGS = ["lstrip", "rstrip", "single_word"] as const;

/** The end-of-text token, by the names families give it (the first special otherwise). */
const END_OF_TEXT_NAMES = [END_OF_TEXT, "<|end_of_text|>", "</s>", "<eos>"];

/**
 * A byte-level BPE loaded from a Hugging Face tokenizer.json: one `llmctl tokenizer train` wrote, GPT-2's, or
 * today's small open models' (Llama 3, Qwen2/3; their normalizer, pre-tokenizer and post-processor are read by
 * ./hf-pipeline.ts).
 */
export class BpeTokenizer implements Tokenizer {
  readonly vocabSize: number;
  readonly endOfText: string;
  readonly endOfTextId: number;
  /** the special tokens (added_tokens with special: true) → id */
  readonly specials: ReadonlyMap<string, number>;
  /** every added token (special or not) → id: matched in the text before anything else */
  readonly addedTokens: ReadonlyMap<string, number>;
  /** the post-processor's template: ids before and after a text encoded with `addSpecialTokens` */
  readonly template: HfTemplate;
  /** byte value → its token id */
  private readonly byteIds: number[];
  /** pair key (left id × 2^21 + right id) → merge rank */
  private readonly ranks = new Map<number, number>();
  /** merge rank → the merged token's id */
  private readonly mergedIds: number[] = [];
  /** id → its bytes (undefined for ids that are no token) */
  private readonly bytesOf: (Uint8Array | undefined)[] = [];
  /** ignore_merges (Llama 3): a piece that is itself a token (bytes_to_unicode spelling → id) is taken whole */
  private readonly wholePieces?: Map<string, number>;
  private readonly normalize?: (text: string) => string;
  /** the pre-tokenizer's regexes, applied one after the other */
  private readonly splits: RegExp[];
  /** the added-token regexes, by the specials allowed (their names joined by NUL; "*": all) */
  private readonly addedSplits = new Map<string, RegExp | undefined>();
  private readonly cache = new Map<string, number[]>();
  private readonly utf8 = new TextDecoder("utf-8");
  private readonly b2u = byteToUnicode();

  /** `name`: where it was loaded from (for messages); `json`: the parsed tokenizer.json */
  constructor(
    readonly name: string,
    json: unknown,
  ) {
    const bad = (problem: string) =>
      new FileFormatError(
        `${name}: ${problem}`,
        "give a byte-level BPE tokenizer.json (`llmctl tokenizer train`, GPT-2's, Llama 3's, Qwen's)",
      );
    const o = (typeof json === "object" && json !== null ? json : {}) as Record<string, unknown>;
    const model = (o.model ?? {}) as Record<string, unknown>;
    if (model.type !== "BPE") throw bad(`model.type must be "BPE", got ${JSON.stringify(model.type)}`);
    this.normalize = hfNormalizer(o.normalizer, name);
    this.splits = hfPreTokenizer(o.pre_tokenizer, name);
    this.template = hfPostProcessor(o.post_processor, name);
    if (model.continuing_subword_prefix || model.end_of_word_suffix || model.dropout)
      throw bad("continuing_subword_prefix, end_of_word_suffix and dropout are not supported");
    const vocab = model.vocab as Record<string, unknown> | undefined;
    if (typeof vocab !== "object" || vocab === null || Array.isArray(vocab)) throw bad("model.vocab must be an object");
    const idOf = new Map<string, number>();
    let maxId = -1;
    const checkId = (id: unknown, what: string): number => {
      if (typeof id !== "number" || !Number.isInteger(id) || id < 0 || id >= MAX_VOCAB_SIZE)
        throw bad(`${what} has id ${JSON.stringify(id)}, not an integer from 0 to ${MAX_VOCAB_SIZE - 1}`);
      maxId = Math.max(maxId, id);
      return id;
    };
    const u2b = new Map(this.b2u.map((c, b) => [c, b]));
    for (const [token, id] of Object.entries(vocab)) {
      idOf.set(token, checkId(id, `token ${JSON.stringify(token)}`));
      const chars = Array.from(token);
      if (chars.every((c) => u2b.has(c))) this.bytesOf[id as number] = Uint8Array.from(chars, (c) => u2b.get(c)!);
    }
    if (model.ignore_merges === true) this.wholePieces = idOf;
    this.byteIds = this.b2u.map((c, b) => {
      const id = idOf.get(c);
      if (id === undefined) throw bad(`no token for byte ${b} (${JSON.stringify(c)}): not a byte-level BPE`);
      return id;
    });
    const merges = model.merges;
    if (!Array.isArray(merges)) throw bad("model.merges must be a list");
    merges.forEach((m: unknown, rank) => {
      const pair = typeof m === "string" ? m.split(" ") : m;
      if (!Array.isArray(pair) || pair.length !== 2 || !pair.every((p) => typeof p === "string"))
        throw bad(`merge ${rank} is not two tokens: ${JSON.stringify(m)}`);
      const [l, r, merged] = [idOf.get(pair[0]), idOf.get(pair[1]), idOf.get(pair[0] + pair[1])];
      if (l === undefined || r === undefined || merged === undefined)
        throw bad(`merge ${rank} (${JSON.stringify(m)}) names a token the vocabulary lacks`);
      const key = l * MAX_VOCAB_SIZE + r;
      if (!this.ranks.has(key)) this.ranks.set(key, rank);
      this.mergedIds[rank] = merged;
    });
    const specials = new Map<string, number>();
    const addedTokens = new Map<string, number>();
    const added = o.added_tokens ?? [];
    if (!Array.isArray(added)) throw bad("added_tokens must be a list");
    for (const t of added as Record<string, unknown>[]) {
      const content = t?.content;
      const what = `added token ${JSON.stringify(content)}`;
      // no whitespace: tokenizeFile cuts text at single spaces, which must not fall inside an added token
      if (typeof content !== "string" || content.length === 0 || /\s/u.test(content))
        throw bad(`${what} must be a non-empty string without whitespace`);
      const flag = ADDED_TOKEN_FLAGS.find((f) => t[f] === true);
      if (flag) throw bad(`${what} has ${flag}: true, which is not supported`);
      // tokenizers matches a normalized added token in the normalized text; llmctl matches all before normalizing
      if (t.normalized === true && this.normalize) throw bad(`${what} is normalized, under a normalizer`);
      const id = checkId(t.id, what);
      addedTokens.set(content, id);
      if (t.special !== false) specials.set(content, id); // llmctl's own files before `special` was read: all are
      this.bytesOf[id] = Buffer.from(content, "utf8");
    }
    const end = END_OF_TEXT_NAMES.find((n) => specials.has(n)) ?? [...specials.keys()][0];
    if (end === undefined)
      throw bad(`no special token to end a text (added_tokens is empty; ${END_OF_TEXT} is the usual one)`);
    this.specials = specials;
    this.addedTokens = addedTokens;
    this.endOfText = end;
    this.endOfTextId = specials.get(end)!;
    this.vocabSize = maxId + 1;
  }

  /** One pre-token's ids: the whole piece if it is a token and merges are ignored, else its bytes merged by rank. */
  private encodePiece(piece: string): number[] {
    const bytes = Buffer.from(piece, "utf8");
    if (this.wholePieces) {
      let spelled = "";
      for (const b of bytes) spelled += this.b2u[b];
      const id = this.wholePieces.get(spelled);
      if (id !== undefined) return [id];
    }
    const ids = Array.from(bytes, (b) => this.byteIds[b]);
    for (;;) {
      let best = -1;
      let bestRank = Infinity;
      for (let i = 0; i + 1 < ids.length; i++) {
        const r = this.ranks.get(ids[i] * MAX_VOCAB_SIZE + ids[i + 1]);
        if (r !== undefined && r < bestRank) [best, bestRank] = [i, r];
      }
      if (best < 0) return ids;
      ids.splice(best, 2, this.mergedIds[bestRank]);
    }
  }

  /** The regex that finds the added tokens to match: the non-special ones and the allowed specials. */
  private addedSplit(allowedSpecial: readonly string[] | undefined): RegExp | undefined {
    const key = allowedSpecial === undefined ? "*" : allowedSpecial.join("\0");
    if (!this.addedSplits.has(key)) {
      const names = [...this.addedTokens.keys()].filter(
        (t) => !this.specials.has(t) || allowedSpecial === undefined || allowedSpecial.includes(t),
      );
      // longest first: tokenizers matches the leftmost-longest added token
      const escaped = names.sort((a, b) => b.length - a.length).map((s) => s.replace(/[.*+?^${}()|[\]\\]/g, "\\$&"));
      this.addedSplits.set(key, names.length > 0 ? new RegExp(escaped.join("|"), "gu") : undefined);
    }
    return this.addedSplits.get(key);
  }

  /**
   * Hugging Face's encode: added tokens are cut out first (the non-special ones always, the specials that are
   * allowed: by default all; `allowedSpecial: []`: none), the rest normalized, split into pieces and
   * byte-pair-encoded. `addSpecialTokens`: the post-processor's template around it (Llama 3's <|begin_of_text|>).
   */
  encode(text: string, opts: EncodeOptions = {}): number[] {
    const out: number[] = [];
    if (opts.addSpecialTokens) out.push(...this.template.before);
    const split = this.addedSplit(opts.allowedSpecial);
    let last = 0;
    if (split) {
      split.lastIndex = 0;
      for (let m = split.exec(text); m !== null; m = split.exec(text)) {
        this.encodeText(text.slice(last, m.index), out);
        out.push(this.addedTokens.get(m[0])!);
        last = m.index + m[0].length;
      }
    }
    this.encodeText(last === 0 ? text : text.slice(last), out);
    if (opts.addSpecialTokens) out.push(...this.template.after);
    return out;
  }

  /** Text without added tokens: normalized, pre-tokenized, each piece's ids (cached) appended to `out`. */
  private encodeText(text: string, out: number[]): void {
    if (text.length === 0) return;
    if (this.normalize) text = this.normalize(text);
    const emit = (piece: string) => {
      let ids = this.cache.get(piece);
      if (ids === undefined) {
        ids = this.encodePiece(piece);
        if (this.cache.size >= PIECE_CACHE_SIZE) this.cache.clear();
        this.cache.set(piece, ids);
      }
      for (const id of ids) out.push(id);
    };
    this.split(text, 0, emit);
  }

  /** Split by regex `step` and those after it: every match and every gap between matches is a piece. */
  private split(text: string, step: number, emit: (piece: string) => void): void {
    if (step === this.splits.length) return emit(text);
    const re = this.splits[step];
    let last = 0;
    for (const m of text.matchAll(re)) {
      if (m[0].length === 0) continue;
      if (m.index > last) this.split(text.slice(last, m.index), step + 1, emit);
      this.split(m[0], step + 1, emit);
      last = m.index + m[0].length;
    }
    if (last < text.length) this.split(text.slice(last), step + 1, emit);
  }

  decode(ids: ArrayLike<number>): string {
    const parts: Uint8Array[] = [];
    for (const id of Array.from(ids)) {
      const bytes = Number.isInteger(id) ? this.bytesOf[id] : undefined;
      if (bytes === undefined)
        throw new UsageError(
          `token id ${id} is not in the vocabulary of ${this.name}`,
          `ids are 0..${this.vocabSize - 1}`,
        );
      parts.push(bytes);
    }
    return this.utf8.decode(Buffer.concat(parts));
  }
}

/** The tokenizer in DIR/tokenizer.json. */
export async function loadTokenizerDir(dir: string): Promise<BpeTokenizer> {
  if (!existsSync(dir)) throw new FileFormatError(`tokenizer directory not found: ${dir}`, "check the path");
  if (!statSync(dir).isDirectory())
    throw new FileFormatError(`${dir} is not a directory`, "give the directory `llmctl tokenizer train --out` wrote");
  return loadTokenizerFile(join(dir, TOKENIZER_FILE), `${dir} has no ${TOKENIZER_FILE}`);
}

async function loadTokenizerFile(path: string, missing: string): Promise<BpeTokenizer> {
  if (!existsSync(path))
    throw new FileFormatError(missing, "give a directory written by `llmctl tokenizer train --out DIR`");
  let json: unknown;
  try {
    json = JSON.parse(await readTextFile(path));
  } catch (err) {
    if (err instanceof LlmctlError) throw err;
    throw new FileFormatError(`${path}: not valid JSON (${(err as Error).message})`, "re-create it");
  }
  return new BpeTokenizer(resolve(path), json);
}

/** The tokenizer a model directory's config.json names: GPT-2's, or the directory's own tokenizer.json. */
export async function modelTokenizer(dir: string, name: TokenizerName): Promise<Tokenizer> {
  if (name === "gpt2") return getTokenizer();
  return loadTokenizerFile(join(dir, TOKENIZER_FILE), `model directory ${dir} has no ${TOKENIZER_FILE}`);
}

/**
 * A model's tokenizer as other tools spell one (GGUF's tokenizer.ggml.* keys): every token by its printable
 * bytes_to_unicode text and the specials by their content, the ranked merges "left right", and which ids are
 * special.
 */
export interface TokenizerVocabulary {
  vocab: Record<string, number>;
  merges: string[];
  specialIds: number[];
  endOfText: string;
  endOfTextId: number;
}

/** The vocabulary of the tokenizer a model directory's config.json names. */
export async function modelVocabulary(dir: string, name: TokenizerName): Promise<TokenizerVocabulary> {
  if (name === "gpt2") {
    const tok = getTokenizer();
    return {
      ...gpt2TokenizerFiles(),
      specialIds: [tok.endOfTextId],
      endOfText: tok.endOfText,
      endOfTextId: tok.endOfTextId,
    };
  }
  const path = join(dir, TOKENIZER_FILE);
  const tok = await loadTokenizerFile(path, `model directory ${dir} has no ${TOKENIZER_FILE}`); // checks the file
  const json = JSON.parse(await readTextFile(path)) as {
    model: { vocab: Record<string, number>; merges: (string | string[])[] };
  };
  const vocab = { ...json.model.vocab };
  for (const [content, id] of tok.addedTokens) vocab[content] = id;
  return {
    vocab,
    merges: json.model.merges.map((m) => (typeof m === "string" ? m : m.join(" "))),
    specialIds: [...tok.specials.values()],
    endOfText: tok.endOfText,
    endOfTextId: tok.endOfTextId,
  };
}
