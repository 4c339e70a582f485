/** A module resolve hook that fails any import of TF.js, so a test can prove a command never loads it. */
export async function resolve(
  specifier: string,
  context: unknown,
  next: (specifier: string, context: unknown) => Promise<{ url: string }>,
): Promise<{ url: string }> {
  if (specifier.startsWith("@tensorflow/")) throw new Error(`imported ${specifier}`);
  return next(specifier, context);
}
