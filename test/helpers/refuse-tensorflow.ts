/** Preloaded with `node --import`: installs refuse-tensorflow-hook for the whole process. */
import { register } from "node:module";

register("./refuse-tensorflow-hook.js", import.meta.url);
