/**
 * A Hugging Face model's chat template, rendered as transformers' `apply_chat_template(messages, tokenize=False,
 * add_generation_prompt=…)` renders it: the Jinja source from the model directory (chat_template.jinja, else
 * tokenizer_config.json's "chat_template": one template, or a list of named ones whose "default" is used), run by
 * @huggingface/jinja (trim_blocks and lstrip_blocks on, as transformers sets them) with the variables transformers
 * passes: `messages`, `add_generation_prompt`, `tools` and `documents` (None unless given), and the tokenizer's
 * special tokens from tokenizer_config.json (`bos_token`, `eos_token`, … and `additional_special_tokens`, each
 * only when set), plus any the caller adds (Qwen3's `enable_thinking`).
 *
 * One difference of @huggingface/jinja 0.5 from Python is mended: its `strip`, `lstrip`, `rstrip` and `trim`
 * ignore the characters given (Qwen3's `content.lstrip('\n')` would strip spaces too) and strip JS's white space,
 * not Python's; those calls are rewritten in the parsed template to `pythonStrip` below.
 */
import { existsSync } from "node:fs";
import { join } from "node:path";
import { Template } from "@huggingface/jinja";
import { FileFormatError, LlmctlError, UsageError } from "../errors.js";
import { readTextFile } from "../formats/file.js";

export const CHAT_TEMPLATE_FILE = "chat_template.jinja";
export const TOKENIZER_CONFIG_FILE = "tokenizer_config.json";

/** transformers' SPECIAL_TOKENS_ATTRIBUTES: the special tokens a template sees by name */
const SPECIAL_TOKEN_NAMES = [
  "bos_token",
  "eos_token",
  "unk_token",
  "sep_token",
  "pad_token",
  "cls_token",
  "mask_token",
  "additional_special_tokens",
] as const;

/** A message as templates read it: a role and its text, and whatever else a template looks at (tool_calls, …). */
export interface HfChatMessage {
  role: string;
  content: string;
  [field: string]: unknown;
}

export interface HfChatRenderOptions {
  /** end with the header of the assistant's reply (transformers' add_generation_prompt; default true) */
  addGenerationPrompt?: boolean;
  /** JSON schemas of the tools the model may call (default None) */
  tools?: Record<string, unknown>[];
  /** more template variables, e.g. `{ enable_thinking: false }` for Qwen3; they override the special tokens */
  variables?: Record<string, unknown>;
}

export class HfChatTemplate {
  private readonly template: Template;

  /**
   * `source`: the Jinja text; `specialTokens`: what transformers' special_tokens_map holds; `name`: where the
   * template was read (for messages).
   */
  constructor(
    readonly source: string,
    readonly specialTokens: Readonly<Record<string, string | string[]>>,
    readonly name: string,
  ) {
    try {
      this.template = new Template(source);
      mendStrips(this.template.parsed);
    } catch (err) {
      throw new FileFormatError(
        `${name}: the chat template does not parse (${oneLine(err)})`,
        "fix the template's Jinja, or use the model's own",
      );
    }
  }

  /** The conversation as the model reads it, text with its special tokens written out. */
  render(messages: readonly HfChatMessage[], opts: HfChatRenderOptions = {}): string {
    if (messages.length === 0) throw new UsageError("the conversation has no messages", "give at least one message");
    try {
      return this.template.render({
        ...this.specialTokens,
        ...opts.variables,
        [STRIP_GLOBAL]: (side: "strip" | "lstrip" | "rstrip", text: unknown, chars?: string | null) => {
          if (typeof text !== "string") throw new Error(`${side}() of a ${typeof text}, not a string`);
          return pythonStrip(side, text, chars);
        },
        messages: messages.map((m) => ({ ...m })),
        add_generation_prompt: opts.addGenerationPrompt ?? true,
        tools: opts.tools ?? null,
        documents: null,
      });
    } catch (err) {
      // a template's raise_exception (e.g. "Conversation roles must alternate user/assistant/…"), or a failure
      throw new UsageError(`${this.name}: the chat template refused the conversation: ${oneLine(err)}`);
    }
  }
}

/** Python's str.isspace() characters: what str.strip() strips when no characters are given. */
const PY_SPACE = new Set(
  "\t\n\v\f\r\x1c\x1d\x1e\x1f \x85\xa0\u1680\u2000\u2001\u2002\u2003\u2004\u2005\u2006\u2007\u2008\u2009\u200a\u2028\u2029\u202f\u205f\u3000",
);

/** Python's `text.strip(chars)`, `lstrip` or `rstrip` (chars null or undefined: white space). */
export function pythonStrip(side: "strip" | "lstrip" | "rstrip", text: string, chars?: string | null): string {
  const strip = chars === undefined || chars === null ? PY_SPACE : new Set(chars);
  let start = 0;
  let end = text.length;
  if (side !== "rstrip") while (start < end && strip.has(text[start])) start++;
  if (side !== "lstrip") while (end > start && strip.has(text[end - 1])) end--;
  return text.slice(start, end);
}

/** The template global that strips as Python does (a name no template uses). */
const STRIP_GLOBAL = "__llmctl_python_strip";

interface Node {
  type: string;
  [field: string]: unknown;
}

const isNode = (x: unknown): x is Node => typeof x === "object" && x !== null && typeof (x as Node).type === "string";

/**
 * Rewrite, in place, `s.strip(…)`, `s.lstrip(…)`, `s.rstrip(…)` and `s | trim(…)` to a call of STRIP_GLOBAL: the
 * interpreter dispatches on each node's `type`, so plain objects serve as nodes.
 */
function mendStrips(node: unknown): void {
  if (Array.isArray(node)) return node.forEach(mendStrips);
  if (!isNode(node)) return;
  for (const value of Object.values(node)) if (typeof value === "object") mendStrips(value);
  const call = (side: string, operand: unknown, args: unknown[]) => {
    for (const key of Object.keys(node)) delete node[key];
    Object.assign(node, {
      type: "CallExpression",
      callee: { type: "Identifier", value: STRIP_GLOBAL },
      args: [{ type: "StringLiteral", value: side }, operand, ...args],
    });
  };
  const callee = node.callee as Node | undefined;
  const property = callee?.property as Node | undefined;
  if (
    node.type === "CallExpression" &&
    callee?.type === "MemberExpression" &&
    !callee.computed &&
    property?.type === "Identifier" &&
    ["strip", "lstrip", "rstrip"].includes(property.value as string) &&
    (node.args as unknown[]).length <= 1
  )
    return call(property.value as string, callee.object, node.args as unknown[]);
  const filter = node.filter as Node | undefined;
  if (node.type === "FilterExpression" && filter?.type === "Identifier" && filter.value === "trim")
    return call("strip", node.operand, []);
  const filterCallee = filter?.callee as Node | undefined;
  if (
    node.type === "FilterExpression" &&
    filter?.type === "CallExpression" &&
    filterCallee?.type === "Identifier" &&
    filterCallee.value === "trim" &&
    (filter.args as unknown[]).length <= 1
  )
    return call("strip", node.operand, filter.args as unknown[]);
}

function oneLine(err: unknown): string {
  return String((err as Error)?.message ?? err).split("\n")[0];
}

/** A special token as tokenizer_config.json writes it: its text, or an AddedToken object with `content`. */
function tokenText(value: unknown): string | undefined {
  if (typeof value === "string") return value;
  if (typeof value === "object" && value !== null && typeof (value as { content?: unknown }).content === "string")
    return (value as { content: string }).content;
  return undefined;
}

/** transformers' special_tokens_map from a parsed tokenizer_config.json: the set ones, by name. */
export function specialTokensMap(config: Record<string, unknown>): Record<string, string | string[]> {
  const map: Record<string, string | string[]> = {};
  for (const name of SPECIAL_TOKEN_NAMES) {
    const value = config[name];
    if (name === "additional_special_tokens") {
      const list = Array.isArray(value) ? value.map(tokenText).filter((t): t is string => !!t) : [];
      if (list.length > 0) map[name] = list;
    } else {
      const text = tokenText(value);
      if (text) map[name] = text;
    }
  }
  return map;
}

/** The chat template of a model directory (chat_template.jinja, else tokenizer_config.json's), ready to render. */
export async function loadHfChatTemplate(dir: string): Promise<HfChatTemplate> {
  const configPath = join(dir, TOKENIZER_CONFIG_FILE);
  const jinjaPath = join(dir, CHAT_TEMPLATE_FILE);
  let config: Record<string, unknown> = {};
  if (existsSync(configPath)) {
    try {
      config = JSON.parse(await readTextFile(configPath)) as Record<string, unknown>;
    } catch (err) {
      if (err instanceof LlmctlError) throw err;
      throw new FileFormatError(`${configPath}: not valid JSON (${oneLine(err)})`, "re-create it");
    }
    if (typeof config !== "object" || config === null || Array.isArray(config))
      throw new FileFormatError(`${configPath}: not a JSON object`, "re-create it");
  }
  if (existsSync(jinjaPath))
    return new HfChatTemplate(await readTextFile(jinjaPath), specialTokensMap(config), jinjaPath);
  const source = chosenTemplate(config.chat_template, configPath);
  if (source === undefined)
    throw new FileFormatError(
      `${dir} has no chat template (no ${CHAT_TEMPLATE_FILE}, and no chat_template in ${TOKENIZER_CONFIG_FILE})`,
      "give the directory of an instruction-tuned model",
    );
  return new HfChatTemplate(source, specialTokensMap(config), configPath);
}

/** tokenizer_config.json's chat_template: a string, or a list of { name, template } of which "default" is used. */
function chosenTemplate(value: unknown, where: string): string | undefined {
  if (value === undefined || value === null) return undefined;
  if (typeof value === "string") return value;
  if (Array.isArray(value)) {
    const named = value.find((t) => (t as { name?: unknown })?.name === "default") as
      { template?: unknown } | undefined;
    if (typeof named?.template === "string") return named.template;
    throw new FileFormatError(`${where}: chat_template lists no "default" template`, "name one of them default");
  }
  throw new FileFormatError(`${where}: chat_template is neither a string nor a list`, "re-create the file");
}
