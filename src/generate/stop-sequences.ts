/**
 * Stop strings (OpenAI's `stop`) on streamed text. A stop string can arrive split over several tokens, so text
 * that might be the start of one is held back until the next piece shows whether it is; at a stop string, the
 * text before it is released and the rest (the stop string included) is dropped.
 */
export class StopSequences {
  private held = "";
  /** a stop string was found; every later push returns "" */
  stopped = false;

  constructor(private readonly stops: readonly string[]) {}

  /** Add a piece of text; returns the text that is now known to come before any stop string (possibly ""). */
  push(text: string): string {
    if (this.stopped) return "";
    this.held += text;
    let at = -1;
    for (const stop of this.stops) {
      const i = this.held.indexOf(stop);
      if (i >= 0 && (at < 0 || i < at)) at = i;
    }
    if (at >= 0) {
      const out = this.held.slice(0, at);
      this.held = "";
      this.stopped = true;
      return out;
    }
    const keep = this.longestStopPrefixAtEnd();
    const out = this.held.slice(0, this.held.length - keep);
    this.held = this.held.slice(this.held.length - keep);
    return out;
  }

  /** At the end of generation: what was held back was not a stop string after all. */
  flush(): string {
    const out = this.stopped ? "" : this.held;
    this.held = "";
    return out;
  }

  /** the length of the longest end of `held` that begins some stop string */
  private longestStopPrefixAtEnd(): number {
    let best = 0;
    for (const stop of this.stops) {
      for (let n = Math.min(stop.length - 1, this.held.length); n > best; n--) {
        if (this.held.endsWith(stop.slice(0, n))) {
          best = n;
          break;
        }
      }
    }
    return best;
  }
}
