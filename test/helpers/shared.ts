/**
 * The one way tests reach ../shared (datasets, fixtures). Root: $LLMCTL_SHARED, default ../shared next to
 * the repository. Fails loudly when it is absent: those tests are the proof, they must not be skipped.
 */
import { existsSync } from "node:fs";
import { fileURLToPath } from "node:url";
import { resolve, join } from "node:path";

export const REPO_ROOT = resolve(fileURLToPath(new URL("../../..", import.meta.url)));

export const SHARED_ROOT = resolve(process.env.LLMCTL_SHARED ?? join(REPO_ROOT, "..", "shared"));

export function sharedPath(...parts: string[]): string {
  const p = join(SHARED_ROOT, ...parts);
  if (!existsSync(p)) {
    throw new Error(`shared test data not found: ${p} (set LLMCTL_SHARED to the shared/ directory)`);
  }
  return p;
}
