#!/usr/bin/env bash
# The webgpu backend on a real GPU, for a lent device machine that reaches no registry and takes 64 MiB of files
# per call (docs/webgpu.md). Two halves:
#
#   scripts/gpu-check.sh pack [DIR]   here: packs into DIR (default .gpu-check, git-ignored) a compressed node
#                                     binary, llmctl built with its production node_modules (Dawn's linux-x64
#                                     .node only), the gpt2-tiny fixture, torch_ref.py and the Vulkan loader .deb;
#                                     prints each part's size and fails above 64 MiB
#   scripts/gpu-check.sh run [DIR]    there (x86-64 Linux, NVIDIA driver, PyTorch with CUDA): unpacks, then runs
#                                     doctor, the fixture on webgpu, bench of the 124M ch05 step and KV-cached
#                                     generation on webgpu, and PyTorch CUDA fp32 on the same shapes; results go to
#                                     $OUT (or DIR/out)
#
# Device call: carry [".gpu-check"], command "bash scripts/gpu-check.sh run", timeout_s ≤ 600.
set -euo pipefail
cd "$(dirname "$0")/.."

LIMIT=$((64 * 1024 * 1024))
die() { echo "gpu-check: error: $*" >&2; exit 1; }
log() { echo "gpu-check: $*"; }
size() { stat -c %s "$1"; }
mib() { awk -v b="$1" 'BEGIN { printf "%.1f MiB", b / 1048576 }'; }

pack() {
  local dir="$1" stage shared
  command -v xz >/dev/null || die "xz not found (apt-get install xz-utils)"
  [ -f dist/src/cli/main.js ] && [ -f dist/test/model-fixture.test.js ] || die "build first: npm run build"
  [ -f node_modules/webgpu/dist/linux-x64/dawn.node ] || die "node_modules/webgpu is missing (npm ci)"
  shared="${LLMCTL_SHARED:-$(cd .. && pwd)/shared}"
  [ -f "$shared/fixtures/gpt2-tiny/expected.json" ] || die "no gpt2-tiny fixture under $shared (set LLMCTL_SHARED)"
  # node.xz is kept while it is of the same node (xz -9e of a 94 MiB binary takes minutes)
  [ "$(cat "$dir/node.version" 2>/dev/null)" = "$(node --version)" ] || rm -f "$dir/node.xz"
  rm -rf "$dir/llmctl.tar.xz" "$dir/shared" "$dir/debs" "$dir/out"
  mkdir -p "$dir/shared/fixtures" "$dir/shared/bench" "$dir/debs"
  # the device copies the working tree besides what `carry` names: DIR must be git-ignored (.gitignore has the default)
  git check-ignore -q "$dir" || die "$dir is not git-ignored: it would travel twice"

  if [ ! -f "$dir/node.xz" ]; then
    log "node $(node --version): xz -9e"
    xz -9e -T0 -c "$(command -v node)" >"$dir/node.xz"
    node --version >"$dir/node.version"
  fi

  stage="$(mktemp -d)"
  trap 'rm -rf "$stage"' RETURN
  mkdir -p "$stage/llmctl"
  cp -a bin dist package.json package-lock.json configs "$stage/llmctl/"
  [ -d assets ] && cp -a assets "$stage/llmctl/"
  cp -a node_modules "$stage/llmctl/"
  # production dependencies only (tfjs-node, built here against a 600 MB libtensorflow, is not one)
  (cd "$stage/llmctl" && npm prune --omit=dev --offline --no-audit --no-fund >/dev/null 2>&1) || die "npm prune failed"
  rm -rf "$stage/llmctl/node_modules/@tensorflow/tfjs-node" "$stage/llmctl/node_modules/@tensorflow/tfjs-node-gpu"
  find "$stage/llmctl/node_modules/webgpu/dist" -mindepth 1 -maxdepth 1 ! -name linux-x64 -exec rm -rf {} +
  # Node loads each TF.js package through its "main", the CommonJS bundle dist/*.node.js (and wasm's .wasm
  # files): the ESM tree, browser bundles and typings beside them are 87 of 99 MiB. Of js-tiktoken's ranks
  # llmctl reads GPT-2's; core-js polyfills browsers.
  for p in "$stage/llmctl/node_modules/@tensorflow/"*/; do
    find "$p/dist" -mindepth 1 -maxdepth 1 -type d -exec rm -rf {} +
    find "$p/dist" -maxdepth 1 -type f ! -name '*.node.js' ! -name '*.wasm' -delete
  done
  find "$stage/llmctl/node_modules/js-tiktoken/dist/ranks" -type f ! -name 'gpt2.*' -delete
  rm -rf "$stage/llmctl/node_modules/core-js" "$stage/llmctl/node_modules/@types"
  find "$stage/llmctl" -name '*.map' -delete
  # what is left must still run: doctor and the tokenizer from the staged copy
  (cd "$stage/llmctl" && node bin/llmctl doctor --json --no-speed >/dev/null 2>&1 && node bin/llmctl tokenize hi >/dev/null) \
    || die "the pruned copy of llmctl does not run"
  log "llmctl + production node_modules: tar.xz"
  tar -C "$stage" -cf - llmctl | xz -6 -T0 >"$dir/llmctl.tar.xz"

  cp -a "$shared/fixtures/gpt2-tiny" "$dir/shared/fixtures/"
  rm -rf "$dir/shared/fixtures/gpt2-tiny/tf" # the TF checkpoint: not read by the webgpu tests
  cp "$shared/bench/torch_ref.py" "$dir/shared/bench/"
  # the Vulkan loader, in case the image has none (the NVIDIA driver brings the ICD)
  (cd "$dir/debs" && apt-get download libvulkan1 >/dev/null 2>&1) || log "apt-get download libvulkan1 failed; the run relies on the image's loader"

  local total=0 f s
  for f in "$dir/node.xz" "$dir/llmctl.tar.xz" "$dir/shared" "$dir/debs"; do
    s="$(du -sb "$f" | cut -f1)"
    total=$((total + s))
    log "  $(mib "$s")  $f"
  done
  # the device call also copies the repository's own files (tracked and untracked-not-ignored)
  s="$(git ls-files -z --cached --others --exclude-standard | xargs -0 stat -c %s 2>/dev/null | awk '{ n += $1 } END { print n + 0 }')"
  total=$((total + s))
  log "  $(mib "$s")  the working tree itself"
  log "  $(mib "$total")  in all (limit $(mib "$LIMIT")); unpacked: node $(mib "$(size "$(command -v node)")"), llmctl $(mib "$(du -sb "$stage/llmctl" | cut -f1)")"
  [ "$total" -le "$LIMIT" ] || die "the pack is over 64 MiB"
}

run() {
  local dir="$1" out work=/tmp/llmctl-gpu-check
  mkdir -p "${OUT:-$dir/out}" "$work"
  out="$(cd "${OUT:-$dir/out}" && pwd)"
  if ! ldconfig -p | grep -q libvulkan.so.1; then
    for f in "$dir"/debs/*.deb; do dpkg -x "$f" /; done
    ldconfig
  fi
  local icd=/usr/local/nvidia/share/vulkan/icd.d/nvidia_icd.json
  [ -f "$icd" ] && [ ! -f /usr/share/vulkan/icd.d/nvidia_icd.json ] && export VK_DRIVER_FILES="$icd"
  xz -dc "$dir/node.xz" >"$work/node" && chmod +x "$work/node"
  xz -dc "$dir/llmctl.tar.xz" | tar -C "$work" -xf -
  export PATH="$work:$PATH" LLMCTL_SHARED="$(cd "$dir/shared" && pwd)" LLMCTL_TORCH_REF="$(cd "$dir/shared/bench" && pwd)/torch_ref.py"
  cd "$work/llmctl"
  nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv >"$out/nvidia-smi.csv" 2>&1 || true

  log "doctor"
  node bin/llmctl doctor --backend webgpu 2>&1 | tee "$out/doctor.txt"
  log "gpt2-tiny fixture on webgpu"
  LLMCTL_TEST_BACKEND=webgpu node --test --test-concurrency=1 --test-name-pattern=webgpu \
    dist/test/model-fixture.test.js dist/test/backend-paths.test.js >"$out/fixture.tap" 2>&1 || true
  grep -E '^# (pass|fail)|^not ok|diff' "$out/fixture.tap" || true
  log "bench: 124M ch05 step and KV-cached generation on webgpu"
  node bin/llmctl bench --backend webgpu --config gpt2-124m-ch05 --steps 5 --no-torch --no-llama-cpp --json \
    >"$out/bench-webgpu.json" 2>"$out/bench-webgpu.err" || tail -n 5 "$out/bench-webgpu.err"
  cat "$out/bench-webgpu.json"
  log "PyTorch CUDA fp32, same shapes"
  python3 - "$LLMCTL_TORCH_REF" >"$out/torch-cuda.json" <<'PY' || true
# torch_ref.py's model and recipe (batch 2, context 256, AdamW, 32 greedy tokens with a KV cache) on the GPU,
# timed with synchronize: CUDA launches return before the work is done
import json, sys, time, importlib.util
spec = importlib.util.spec_from_file_location("torch_ref", sys.argv[1]); ref = importlib.util.module_from_spec(spec)
spec.loader.exec_module(ref)
import torch, torch.nn.functional as F
torch.backends.cuda.matmul.allow_tf32 = False; torch.backends.cudnn.allow_tf32 = False  # fp32, as llmctl
torch.set_default_device("cuda"); torch.manual_seed(0)
B, T, V = 2, 256, 50257
m = ref.GPT(V, T, tied=False, sdpa=ref.SDPA, **ref.SIZES["gpt2-124m"])
opt = torch.optim.AdamW(m.parameters(), lr=4e-4, weight_decay=0.1, fused=True)
x, y = torch.randint(0, V, (B, T)), torch.randint(0, V, (B, T))
times = []
for step in range(6):
    torch.cuda.synchronize(); t0 = time.perf_counter()
    loss = F.cross_entropy(m(x).flatten(0, 1), y.flatten()); opt.zero_grad(set_to_none=True); loss.backward(); opt.step()
    torch.cuda.synchronize()
    if step: times.append(time.perf_counter() - t0)
step_s = sorted(times)[len(times) // 2]
m.eval()
with torch.no_grad():
    prompt = torch.randint(0, V, (1, 8)); caches = [dict() for _ in m.blocks]
    torch.cuda.synchronize(); t0 = time.perf_counter()
    logits = m(prompt, caches, 0); pos = 8
    for _ in range(32):
        nxt = logits[:, -1].argmax(-1, keepdim=True); nxt.item(); logits = m(nxt, caches, pos); pos += 1
    torch.cuda.synchronize(); kv = 32 / (time.perf_counter() - t0)
print(json.dumps({"engine": f"pytorch-{torch.__version__}-cuda-fp32", "gpu": torch.cuda.get_device_name(),
                  "train_step_s": round(step_s, 4), "train_tok_s": round(B * T / step_s, 1), "gen_kv_cache_tok_s": round(kv, 2)}))
PY
  cat "$out/torch-cuda.json"
}

cmd="${1:-}"
dir="${2:-.gpu-check}"
case "$cmd" in
  pack) pack "$dir" ;;
  run) run "$dir" ;;
  *) die "usage: scripts/gpu-check.sh pack|run [DIR]" ;;
esac
