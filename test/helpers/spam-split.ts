import { join } from "node:path";
import { makeSpamSplit, readSmsSpamCollection, writeSplitCsvs } from "../../src/finetune/spam-data.js";
import { sharedPath } from "./shared.js";

/**
 * A split directory `dir/name` holding the first `sizes` messages of each part of the book's split (seed 123) of
 * the SMS Spam Collection: real messages, few enough for a short run.
 */
export async function writeSmallSplit(
  dir: string,
  sizes: { train: number; validation: number; test: number },
  name = "split",
): Promise<string> {
  const full = makeSpamSplit(await readSmsSpamCollection(sharedPath("datasets", "SMSSpamCollection")), 123);
  const out = join(dir, name);
  await writeSplitCsvs(out, {
    train: full.train.slice(0, sizes.train),
    validation: full.validation.slice(0, sizes.validation),
    test: full.test.slice(0, sizes.test),
  });
  return out;
}
