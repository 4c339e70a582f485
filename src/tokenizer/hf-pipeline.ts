/**
 * The parts of a Hugging Face tokenizer.json around its BPE model, as `tokenizers` runs them: the normalizer
 * (Unicode normal forms), the pre-tokenizer (GPT-2's ByteLevel regex, or a `Split` on the family's own regex
 * followed by a ByteLevel that only maps bytes: Llama 3, Qwen2/3) and the post-processor's template (Llama 3's
 * <|begin_of_text|> before the text). What else a tokenizer.json can say is refused in one line.
 *
 * The Split regexes are Oniguruma's (the `onig` crate); `hfRegExp` translates one into a JS RegExp that matches
 * the same: `(?i:…)` (which Node 20's RegExp lacks) becomes character classes, and `\s` becomes Oniguruma's set
 * of white space, which has U+0085 and lacks U+FEFF (JS's `\s` is the other way round).
 */
import { FileFormatError } from "../errors.js";
import { preTokenizer } from "./bpe-train.js";

/** Oniguruma's `\s` on Unicode text (its doc/RE): JS's `\s` less U+FEFF, plus U+0085 (NEL). */
const ONIG_SPACE = "\\t-\\r \\u0085\\u00a0\\u1680\\u2000-\\u200a\\u2028\\u2029\\u202f\\u205f\\u3000";

/**
 * Under Oniguruma's `(?i:…)` a letter matches every character that case-folds to the same: its other case and,
 * for two ASCII letters, a sign that folds to them (ſ U+017F → s, the Kelvin sign U+212A → k).
 */
function caseless(c: string): string {
  const all = new Set([c, c.toLowerCase(), c.toUpperCase()]);
  if (all.has("s")) all.add("\u017f");
  if (all.has("k")) all.add("\u212a");
  return all.size === 1 ? c : `[${[...all].join("")}]`;
}

/** Characters that keep a backslash in a JS `u` RegExp (any other escaped punctuation is the character itself). */
const SYNTAX = new Set("^$\\.*+?()[]{}|/");

/**
 * A JS RegExp (flags "gu") that matches what Oniguruma matches with `pattern` (Ruby syntax, as `tokenizers`
 * compiles a Split's Regex). Supported: groups `(…)`, `(?:…)`, `(?i:…)`, lookaround, classes, `\p{…}`, `\s`,
 * `\S`, `\d`, `\r`, `\n`, `\t`, `\f`, `\v`, `.`, quantifiers; anything else is a FileFormatError naming `where`.
 */
export function hfRegExp(pattern: string, where: string): RegExp {
  const bad = (what: string) =>
    new FileFormatError(
      `${where}: the regex ${JSON.stringify(pattern)} uses ${what}, which llmctl does not translate`,
      "use a tokenizer whose pre-tokenizer regex is GPT-2's, Llama 3's or Qwen's kind",
    );
  let out = "";
  /** for each open group: whether it is case-insensitive */
  const groups: boolean[] = [];
  let inClass = false;
  const ci = () => groups.length > 0 && groups[groups.length - 1];
  for (let i = 0; i < pattern.length; i++) {
    const c = pattern[i];
    if (c === "\\") {
      const e = pattern[++i];
      if (e === undefined) throw bad("a trailing backslash");
      if (e === "p" || e === "P") {
        const close = pattern.indexOf("}", i);
        if (pattern[i + 1] !== "{" || close < 0) throw bad(`\\${e} without {…}`);
        out += pattern.slice(i - 1, close + 1);
        i = close;
      } else if (e === "s") out += inClass ? ONIG_SPACE : `[${ONIG_SPACE}]`;
      else if (e === "S") {
        if (inClass) throw bad("\\S inside a character class");
        out += `[^${ONIG_SPACE}]`;
      } else if (e === "d")
        out += "\\p{Nd}"; // Oniguruma's \d on Unicode text is every decimal digit
      else if ("rntfv".includes(e)) out += `\\${e}`;
      else if (/[\p{L}\p{N}]/u.test(e)) throw bad(`the escape \\${e}`);
      else out += SYNTAX.has(e) || (inClass && e === "-") ? `\\${e}` : e; // `\-` is valid only in a class
      continue;
    }
    if (inClass) {
      if (c === "]") inClass = false;
      else if (c === "[") throw bad("a nested character class");
      else if (ci() && c.toLowerCase() !== c.toUpperCase()) throw bad("a letter in a class under (?i:…)");
      out += c;
      continue;
    }
    if (c === "[") {
      inClass = true;
      out += c;
      if (pattern[i + 1] === "^") out += pattern[++i];
      if (pattern[i + 1] === "]") out += `\\${pattern[++i]}`; // a leading ] is the character itself
      continue;
    }
    if (c === "(") {
      if (pattern[i + 1] !== "?") {
        groups.push(ci());
        out += c;
        continue;
      }
      const rest = pattern.slice(i + 2);
      const look = /^(?::|=|!|<=|<!)/.exec(rest);
      if (look) {
        groups.push(ci());
        out += `(?${look[0]}`;
        i += 1 + look[0].length;
      } else if (rest.startsWith("i:")) {
        groups.push(true);
        out += "(?:";
        i += 3;
      } else throw bad(`the group (?${rest.slice(0, 2)}`);
      continue;
    }
    if (c === ")") {
      if (groups.pop() === undefined) throw bad("an unbalanced )");
      out += c;
      continue;
    }
    if (c === ".")
      out += "[^\\n]"; // Oniguruma's dot stops only at \n
    else if (ci() && c.toLowerCase() !== c.toUpperCase()) out += caseless(c);
    else out += c;
  }
  if (inClass || groups.length > 0) throw bad("an unclosed class or group");
  try {
    return new RegExp(out, "gu");
  } catch (err) {
    throw bad(`a construct JS rejects (${(err as Error).message})`);
  }
}

/** A normalizer: a text → text function, or undefined for none. Unicode's four normal forms, or a Sequence of them. */
export function hfNormalizer(json: unknown, where: string): ((text: string) => string) | undefined {
  if (json === null || json === undefined) return undefined;
  const forms: string[] = [];
  const add = (n: Record<string, unknown>) => {
    if (n.type === "Sequence" && Array.isArray(n.normalizers)) {
      for (const m of n.normalizers) add(m as Record<string, unknown>);
    } else if (typeof n.type === "string" && ["NFC", "NFD", "NFKC", "NFKD"].includes(n.type)) forms.push(n.type);
    else
      throw new FileFormatError(
        `${where}: the normalizer ${JSON.stringify(n.type)} is not supported`,
        "llmctl reads no normalizer, or NFC, NFD, NFKC, NFKD",
      );
  };
  add(json as Record<string, unknown>);
  if (forms.length === 0) return undefined;
  return (text) => forms.reduce((t, f) => t.normalize(f), text);
}

/**
 * A pre-tokenizer: the regexes that split text into pieces, one after the other (each piece of one split by the
 * next), every match and every gap between matches a piece (Split's "Isolated" behaviour; ByteLevel's regex
 * matches everything). Byte-level: some ByteLevel must be among the steps.
 */
export function hfPreTokenizer(json: unknown, where: string): RegExp[] {
  const refuse = (what: string) =>
    new FileFormatError(
      `${where}: ${what} is not supported`,
      "llmctl reads byte-level BPE tokenizers: ByteLevel, or a Sequence of Split (Isolated) and ByteLevel",
    );
  const steps: RegExp[] = [];
  let byteLevel = false;
  const add = (p: Record<string, unknown> | null | undefined) => {
    if (p?.type === "Sequence" && Array.isArray(p.pretokenizers)) {
      for (const q of p.pretokenizers) add(q as Record<string, unknown>);
    } else if (p?.type === "ByteLevel") {
      if (p.add_prefix_space === true) throw refuse("a ByteLevel pre-tokenizer with add_prefix_space");
      byteLevel = true;
      if (p.use_regex !== false) steps.push(preTokenizer()); // GPT-2's regex (js-tiktoken's gpt2.pat_str)
    } else if (p?.type === "Split") {
      const pattern = p.pattern as Record<string, unknown> | undefined;
      if (p.behavior !== "Isolated" || p.invert === true)
        throw refuse(`a Split with behavior ${JSON.stringify(p.behavior)}${p.invert ? " inverted" : ""}`);
      if (typeof pattern?.Regex === "string") steps.push(hfRegExp(pattern.Regex, where));
      else if (typeof pattern?.String === "string" && pattern.String.length > 0)
        steps.push(new RegExp(pattern.String.replace(/[.*+?^${}()|[\]\\/]/g, "\\$&"), "gu"));
      else throw refuse("a Split without a Regex or String pattern");
    } else throw refuse(`the pre-tokenizer ${JSON.stringify(p?.type ?? null)}`);
  };
  add(json as Record<string, unknown> | null | undefined);
  if (!byteLevel) throw refuse("a pre-tokenizer without ByteLevel (not a byte-level BPE)");
  return steps;
}

/** What the post-processor adds around one text's ids when special tokens are asked for. */
export interface HfTemplate {
  before: number[];
  after: number[];
}

/** The post-processor: nothing (none, ByteLevel), or a TemplateProcessing's single-sequence template. */
export function hfPostProcessor(json: unknown, where: string): HfTemplate {
  const template: HfTemplate = { before: [], after: [] };
  const refuse = (what: string) =>
    new FileFormatError(`${where}: ${what} is not supported`, "llmctl reads ByteLevel and TemplateProcessing");
  const add = (p: Record<string, unknown> | null | undefined) => {
    if (p === null || p === undefined || p.type === "ByteLevel") return; // ByteLevel only trims offsets
    if (p.type === "Sequence" && Array.isArray(p.processors)) {
      for (const q of p.processors) add(q as Record<string, unknown>);
      return;
    }
    if (p.type !== "TemplateProcessing") throw refuse(`the post-processor ${JSON.stringify(p.type)}`);
    const specials = (p.special_tokens ?? {}) as Record<string, { ids?: unknown }>;
    let seen = false;
    for (const piece of (Array.isArray(p.single) ? p.single : []) as Record<string, { id?: string }>[]) {
      if (piece.Sequence) {
        if (piece.Sequence.id !== "A") throw refuse("a single template with sequence B");
        seen = true;
      } else if (piece.SpecialToken) {
        const ids = specials[piece.SpecialToken.id ?? ""]?.ids;
        if (!Array.isArray(ids) || !ids.every((id) => Number.isInteger(id)))
          throw refuse(`a template token ${JSON.stringify(piece.SpecialToken.id)} without ids`);
        (seen ? template.after : template.before).push(...(ids as number[]));
      } else throw refuse("a template piece other than Sequence and SpecialToken");
    }
    if (!seen) throw refuse("a single template without the sequence");
  };
  add(json as Record<string, unknown> | null | undefined);
  return template;
}
