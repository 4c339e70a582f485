import type { BackendStatus } from "../backend/index.js";
import { note, verbose, type GlobalOptions } from "./output.js";

/**
 * The backend the global options ask for (--backend, --bf16); --verbose says which one runs. TF.js loads here,
 * in the commands that compute, not when the CLI starts.
 */
export async function selectBackend(opts: GlobalOptions): Promise<BackendStatus> {
  const { useBackend } = await import("../backend/index.js");
  const s = await useBackend(opts.backend, {
    bf16: opts.bf16,
    onSkip: (skipped, fix) => note(`llmctl: backend ${skipped.name} not used: ${skipped.reason} (${fix})`),
  });
  const details = [
    `${s.package} ${s.version ?? ""}`.trim(),
    s.library_version && `libtensorflow ${s.library_version}`,
    s.bf16 && "bf16 matmuls",
  ];
  verbose(opts, `backend: ${s.name} (${details.filter(Boolean).join(", ")})`);
  return s;
}
