import { spawnSync } from "node:child_process";
import { createRequire } from "node:module";
import { dirname, join } from "node:path";
import { fileURLToPath } from "node:url";
import type { CommandModule } from "yargs";
import { cacheRoot } from "../../data/download.js";
import { BackendError } from "../../errors.js";
import { printJson, printLine, type GlobalOptions } from "../output.js";

interface SetupArgs extends GlobalOptions {
  what: string;
  gpu: boolean;
  "tf-version"?: string;
  force: boolean;
}

/**
 * The node_modules folder that holds the @tensorflow/tfjs llmctl runs on: tfjs-node must be installed beside it to
 * share it. That is the checkout's node_modules in a git clone, the project's in a project that depends on llmctl,
 * and llmctl's own in a global install.
 */
export function tfjsNodeModules(): string {
  const require = createRequire(import.meta.url);
  return dirname(dirname(dirname(require.resolve("@tensorflow/tfjs/package.json"))));
}

export const setupCommand: CommandModule<GlobalOptions, SetupArgs> = {
  command: "setup <what>",
  describe: "install an optional backend: the native TensorFlow one (CPU, or CUDA with --gpu)",
  builder: (y) =>
    y
      .positional("what", { choices: ["tensorflow"], describe: "what to install", demandOption: true })
      .option("gpu", { type: "boolean", default: false, describe: "the CUDA build (@tensorflow/tfjs-node-gpu)" })
      .option("tf-version", { type: "string", describe: "TensorFlow wheel version (default 2.20.0)" })
      .option("force", { type: "boolean", default: false, describe: "rebuild and reinstall even if it is there" })
      .example("$0 setup tensorflow", "build tfjs-node against TensorFlow's PyPI wheel and install it (~1 minute)")
      .example("$0 setup tensorflow --gpu", "the CUDA 12 build (several GB of NVIDIA wheels; needs a driver)")
      .epilog(
        "The build is cached in ~/.cache/llmctl/tensorflow ($LLMCTL_TF_CACHE): after `npm ci` or `npm install`, " +
          "which remove it, running setup again restores it in seconds. See docs/tensorflow-backend.md.",
      ),
  handler: async (args) => {
    const script = fileURLToPath(new URL("../../../../scripts/setup-tensorflow.sh", import.meta.url));
    const nodeModules = tfjsNodeModules();
    const flags = ["--node-modules", nodeModules];
    if (args.gpu) flags.push("--gpu");
    if (args.force) flags.push("--force");
    if (args["tf-version"]) flags.push("--tf-version", args["tf-version"]);
    const start = performance.now();
    // its progress lines go to stderr, so that stdout holds only the result
    const run = spawnSync("bash", [script, ...flags], {
      stdio: ["ignore", 2, 2],
      env: {
        ...process.env,
        // the same Node that runs llmctl builds and checks the addon
        PATH: `${dirname(process.execPath)}:${process.env.PATH ?? ""}`,
        LLMCTL_TF_CACHE: process.env.LLMCTL_TF_CACHE ?? join(cacheRoot(), "tensorflow"),
      },
    });
    if (run.error)
      throw new BackendError(`setup tensorflow could not start bash: ${run.error.message}`, "install bash");
    if (run.status !== 0) {
      throw new BackendError(
        "setup tensorflow failed; nothing was installed (its last line above says why)",
        "fix what it names and run it again",
      );
    }
    const { useBackend } = await import("../../backend/index.js");
    const status = await useBackend("tensorflow");
    const seconds = Number(((performance.now() - start) / 1000).toFixed(1));
    if (args.json) {
      printJson({
        backend: "tensorflow",
        package: status.package,
        version: status.version,
        library_version: status.library_version,
        node_modules: nodeModules,
        seconds,
      });
      return;
    }
    printLine(`tensorflow backend ready: ${status.package} ${status.version}, libtensorflow ${status.library_version}`);
  },
};
