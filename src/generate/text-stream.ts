/**
 * Streaming decode: a GPT-2 token is a run of bytes and may end in the middle of a UTF-8 character (an emoji is
 * often two or three tokens). Decoding token by token would print U+FFFD; instead, hold tokens back until the
 * bytes so far decode to whole characters.
 */
const REPLACEMENT = "\uFFFD";
/** a UTF-8 character has at most 4 bytes and every token at least 1 */
const MAX_HELD = 4;

export class TextStream {
  private held: number[] = [];

  constructor(private readonly decode: (ids: number[]) => string) {}

  /** Add a token; returns the text that is now complete (possibly ""). */
  push(id: number): string {
    this.held.push(id);
    const text = this.decode(this.held);
    // Held tokens that still end in U+FFFD after MAX_HELD tokens are genuinely invalid bytes: let them go.
    if (text.endsWith(REPLACEMENT) && this.held.length < MAX_HELD) return "";
    this.held = [];
    return text;
  }

  /** Whatever is still held (at the end of generation). */
  flush(): string {
    const text = this.held.length > 0 ? this.decode(this.held) : "";
    this.held = [];
    return text;
  }
}
