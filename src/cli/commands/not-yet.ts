import { LlmctlError } from "../../errors.js";

/** For commands whose issue has not landed: say so plainly, exit 1, print nothing else. */
export function notYet(command: string, issue: number): never {
  throw new LlmctlError(`'llmctl ${command}' is not implemented yet (tracked in issue ${issue})`);
}
