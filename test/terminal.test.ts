// test: first backend pass only (terminal behaviour (tmux))
/**
 * `llmctl chat`, and Ctrl-C typed at pretrain, finetune and serve, in a real terminal: tmux gives it a pty, the test types with send-keys (Ctrl-C and Ctrl-D as
 * keys, not signals) and reads the screen with capture-pane. CI installs tmux (.ci/run); where it is absent,
 * these tests skip and say so (and fail under CI=true).
 */
import { test, before, after } from "node:test";
import assert from "node:assert/strict";
import { execFileSync, spawnSync } from "node:child_process";
import { existsSync } from "node:fs";
import { mkdtemp, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { useBackend } from "../src/backend/index.js";
import { loadModelDir } from "../src/model/model-dir.js";
import { chatPrompt, type ChatMessage } from "../src/generate/chat-template.js";
import { generateText } from "../src/generate/generate-text.js";
import { getTokenizer } from "../src/tokenizer/index.js";
import { cliEnv } from "./helpers/backend.js";
import { runCli, tinyPretrainArgs } from "./helpers/cli.js";
import { REPO_ROOT } from "./helpers/shared.js";
import { readTrainerState } from "../src/train/run-dir.js";
import { saveWordModel } from "./helpers/word-model.js";

const missing =
  spawnSync("tmux", ["-V"]).status === 0
    ? false
    : "tmux is not installed (apt-get install -y tmux); the chat tests need a real terminal";
if (missing && process.env.CI) throw new Error(`${missing} — CI must run them (.ci/run installs it)`);

const SOCKET = `llmctl-test-${process.pid}`;
const tmux = (...args: string[]) => execFileSync("tmux", ["-L", SOCKET, ...args], { encoding: "utf8" });
const quote = (s: string) => `'${s.replace(/'/g, `'\\''`)}'`;

const EXITED = /\[llmctl exited with (\d+)\]/;

/**
 * A terminal session running `llmctl ARGS`. The shell around it writes the exit status on the screen (tmux's own
 * pane_dead_status can lag behind the pane's end), and the pane stays after it exits so that can be read.
 */
function startInTerminal(name: string, args: string[]) {
  const llmctl = [process.execPath, join(REPO_ROOT, "bin", "llmctl"), ...args].map(quote).join(" ");
  const env = Object.entries(cliEnv()).flatMap(([k, v]) => ["-e", `${k}=${v}`]);
  // a person's terminal: without CI in the environment (as CI runs have), which turns ora's spinner off
  const command = `env -u CI ${llmctl}; echo "[llmctl exited with $?]"`;
  tmux(
    "new-session",
    "-d",
    "-s",
    name,
    "-x",
    "160",
    "-y",
    "60",
    ...env,
    command,
    ";",
    "set-option",
    "-t",
    name,
    "remain-on-exit",
    "on",
  );
  const screen = () => tmux("capture-pane", "-p", "-J", "-t", name, "-S", "-500");
  /** wait until the screen matches; returns the match */
  const waitFor = async (re: RegExp, ms = 120_000): Promise<RegExpMatchArray> => {
    const until = Date.now() + ms;
    for (;;) {
      const m = screen().match(re);
      if (m) return m;
      if (Date.now() > until) throw new Error(`the terminal never showed ${re}; it shows:\n${screen()}`);
      await new Promise((r) => setTimeout(r, 100));
    }
  };
  return {
    screen,
    waitFor,
    type: (text: string) => tmux("send-keys", "-t", name, "-l", text),
    key: (key: string) => tmux("send-keys", "-t", name, key),
    /** null while running, else the exit status */
    exitStatus: (): number | null => {
      const m = screen().match(EXITED);
      return m ? Number(m[1]) : null;
    },
    waitForExit: async (ms = 30_000): Promise<number> => Number((await waitFor(EXITED, ms))[1]),
  };
}

let root: string;
let instructDir: string;
let baseDir: string;

before(async () => {
  if (missing) return;
  await useBackend("cpu");
  root = await mkdtemp(join(tmpdir(), "llmctl-chat-"));
  instructDir = join(root, "sft");
  baseDir = join(root, "base");
  await saveWordModel(instructDir, { contextLength: 256, promptStyle: "alpaca" });
  await saveWordModel(baseDir, { contextLength: 256 });
  await useBackend(cliEnv().LLMCTL_BACKEND as "wasm" | "tensorflow" | "cpu");
});

after(async () => {
  if (missing) return;
  spawnSync("tmux", ["-L", SOCKET, "kill-server"]);
  await rm(root, { recursive: true, force: true });
});

/** what the model answers to a conversation, greedily: the reference for the screen */
async function expectedAnswer(dir: string, messages: ChatMessage[], maxNewTokens: number): Promise<string> {
  const { gpt, meta } = await loadModelDir(dir);
  try {
    const tok = getTokenizer();
    const p = chatPrompt(tok, messages, meta.prompt_style);
    return (await generateText(gpt, tok, p.ids, { maxNewTokens, temperature: 0, stop: p.stop, trimStart: true })).text;
  } finally {
    gpt.dispose();
  }
}

test(
  "chat with an instruction model: streamed answers in its prompt style, the conversation kept, /reset, /exit",
  { skip: missing },
  async () => {
    const first = await runCli(["instruct", "-m", instructDir, "Name a color.", "-n", "12", "--json"], {
      env: cliEnv(),
    });
    assert.equal(first.code, 0, first.stderr);
    const answer1 = JSON.parse(first.stdout).response as string;

    const chat = startInTerminal("sft", ["chat", "--model", instructDir, "-n", "12"]);
    await chat.waitFor(/chatting with .* \(prompt style alpaca\); \/reset starts over.*\n> $/m);
    chat.type("Name a color.");
    chat.key("Enter");
    await chat.waitFor(/\(stopped at 12 tokens\)\n> $/m);
    assert.match(chat.screen(), new RegExp(`> Name a color\\.\\n${answer1}\\n\\(stopped at 12 tokens\\)\\n> $`, "m"));

    // the second answer follows the whole conversation
    const answer2 = await expectedAnswer(
      instructDir,
      [
        { role: "user", content: "Name a color." },
        { role: "assistant", content: answer1 },
        { role: "user", content: "Another one." },
      ],
      12,
    );
    assert.notEqual(answer2, answer1);
    chat.type("Another one.");
    chat.key("Enter");
    await chat.waitFor(new RegExp(`> Another one\\.\\n${answer2}\\n\\(stopped at 12 tokens\\)\\n> $`, "m"));

    // /reset forgets it: the first question gets the first answer again
    chat.type("/reset");
    chat.key("Enter");
    await chat.waitFor(/\(new conversation\)\n> $/m);
    chat.type("Name a color.");
    chat.key("Enter");
    await chat.waitFor(
      new RegExp(`\\(new conversation\\)\\n> Name a color\\.\\n${answer1}\\n\\(stopped at 12 tokens\\)\\n> $`, "m"),
    );

    chat.type("/exit");
    chat.key("Enter");
    await chat.waitFor(/> \/exit\n/);
    assert.equal(await chat.waitForExit(), 0);
  },
);

test(
  "chat with a base model: the plain template; Ctrl-C stops an answer, not the session; Ctrl-D leaves",
  { skip: missing },
  async () => {
    const chat = startInTerminal("base", ["chat", "--model", baseDir, "-n", "100000"]);
    await chat.waitFor(/base model: plain chat template.*\n> $/m);
    chat.type("Tell me a story.");
    chat.key("Enter");
    // the answer streams: words appear while it is still going
    await chat.waitFor(/> Tell me a story\.\n(\w+ ){5,}/);
    chat.key("C-c");
    const [, shown] = await chat.waitFor(/> Tell me a story\.\n(.*)\n\(stopped\)\n> $/m, 30_000);
    const expected = await expectedAnswer(baseDir, [{ role: "user", content: "Tell me a story." }], 400);
    assert.ok(shown.length > 0 && expected.startsWith(shown), `the shown answer begins the greedy one: ${shown}`);

    // the session goes on: a second answer, stopped the same way
    chat.type("And then?");
    chat.key("Enter");
    await chat.waitFor(/> And then\?\n(\w+ ){3,}/);
    chat.key("C-c");
    await chat.waitFor(/> And then\?\n.*\n\(stopped\)\n> $/m, 30_000);

    // Ctrl-C at the prompt clears what was typed; Ctrl-D on an empty line leaves
    chat.type("half a thought");
    chat.key("C-c");
    await chat.waitFor(/\^C\n\(\/reset starts over.*\)\n> $/m);
    assert.equal(chat.exitStatus(), null, "Ctrl-C did not end the session");
    chat.key("C-d");
    assert.equal(await chat.waitForExit(), 0);
  },
);

test("chat with piped stdin: one answer per line, the conversation kept, until the input ends", async () => {
  const dir = await mkdtemp(join(tmpdir(), "llmctl-chat-pipe-"));
  try {
    await useBackend("cpu");
    await saveWordModel(join(dir, "sft"), { contextLength: 256, promptStyle: "phi3" });
    const r = await runCli(["chat", "-m", join(dir, "sft"), "-n", "6"], {
      env: cliEnv(),
      input: "Name a color.\nAnother one.\n/reset\nName a color.\n",
    });
    assert.equal(r.code, 0, r.stderr);
    const [a1, a2, a3, rest] = r.stdout.split("\n");
    assert.equal(rest, "");
    await useBackend(cliEnv().LLMCTL_BACKEND as "wasm" | "tensorflow" | "cpu");
    assert.equal(a1, await expectedAnswer(join(dir, "sft"), [{ role: "user", content: "Name a color." }], 6));
    assert.equal(
      a2,
      await expectedAnswer(
        join(dir, "sft"),
        [
          { role: "user", content: "Name a color." },
          { role: "assistant", content: a1 },
          { role: "user", content: "Another one." },
        ],
        6,
      ),
    );
    assert.equal(a3, a1, "after /reset");
    assert.match(r.stderr, /\(new conversation\)/);
  } finally {
    await rm(dir, { recursive: true, force: true });
  }
});

test("serve in a terminal: a typed Ctrl-C shuts it down cleanly", { skip: missing }, async () => {
  const serve = startInTerminal("serve", ["serve", "--model", baseDir, "--port", "0"]);
  const [url] = await serve.waitFor(/http:\/\/127\.0\.0\.1:\d+\//);
  assert.equal((await fetch(`${url}v1/models`)).status, 200);
  serve.key("C-c");
  await serve.waitFor(/shutting down/, 30_000);
  assert.equal(await serve.waitForExit(), 0);
});

test(
  "pretrain in a terminal: a typed Ctrl-C saves at the end of the update, exits 130, and the run resumes",
  { skip: missing },
  async () => {
    const out = join(root, "pretrain-run");
    const run = startInTerminal("pretrain", tinyPretrainArgs(root, out, 32));
    // the spinner shows each update; the updates between evaluations run without awaiting anything else
    await run.waitFor(/step \d+\/72/);
    run.key("C-c");
    const [, step] = await run.waitFor(/training interrupted at step (\d+) of 72; checkpoint saved/);
    assert.equal(await run.waitForExit(), 130);
    assert.match(run.screen(), /interrupted: saving a checkpoint at the end of this step/);
    const state = await readTrainerState(out);
    assert.equal(state.step, Number(step));
    assert.ok(!state.finished && state.step < 72, `stopped at step ${state.step}`);

    const resumed = await runCli(["pretrain", "--resume", out, "--json"], { env: cliEnv() });
    assert.equal(resumed.code, 0, resumed.stderr);
    assert.equal(JSON.parse(resumed.stdout).steps, 72);
  },
);

test(
  "pretrain in a terminal: a second Ctrl-C while the checkpoint is written quits at once, exit 130",
  { skip: missing },
  async () => {
    const out = join(root, "pretrain-quit");
    // a wide model: its checkpoint (~160 MB with the optimizer's moments) takes long enough to interrupt
    const run = startInTerminal("pretrain-quit", [...tinyPretrainArgs(root, out, 256), "--checkpoint-every", "0"]);
    await run.waitFor(/step \d+\/72/);
    run.key("C-c");
    await run.waitFor(/interrupted: saving a checkpoint/);
    run.key("C-c");
    assert.equal(await run.waitForExit(), 130);
    assert.doesNotMatch(run.screen(), /checkpoint saved/);
    assert.ok(!existsSync(join(out, "trainer-state.json")), "no checkpoint was committed");
  },
);
