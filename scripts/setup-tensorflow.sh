#!/usr/bin/env bash
# Builds the optional TensorFlow backend (@tensorflow/tfjs-node) without the
# download host its install script normally fetches libtensorflow from.
#
# The libtensorflow C API ships inside TensorFlow's own PyPI wheel:
# tensorflow/libtensorflow_cc.so.2 exports every TF_* / TFE_* symbol the addon
# calls, and tensorflow/include/ has the C headers. So we take the wheel from
# PyPI, lay it out the way tfjs-node's binding.gyp expects (deps/include,
# deps/lib with libtensorflow.so), compile the addon with node-gyp against the
# local Node headers, and check it with a matmul. The addon gets
# RUNPATH=$ORIGIN/../../deps/lib from binding.gyp, so no LD_LIBRARY_PATH is
# needed at run time. Details and measurements: docs/tensorflow-backend.md.
#
# It is run by `llmctl setup tensorflow` (and `npm run setup:tensorflow`), which passes the node_modules folder
# that holds llmctl's @tensorflow/tfjs: tfjs-node must sit beside it to share it. The addon is built in the
# cache, never in node_modules; it is copied in only once built, and taken out again unless it then computes
# right (a matmul and a gradient equal to the cpu backend's), so a failure leaves nothing half-installed. The
# built copy stays in the cache: after `npm ci` or `npm install`, which remove it from node_modules, running
# setup again restores it in seconds.
#
# Usage: scripts/setup-tensorflow.sh --node-modules DIR [--gpu] [--tf-version X.Y.Z] [--force]
set -euo pipefail

readonly TFJS_VERSION=4.22.0
TF_VERSION="${LLMCTL_TF_VERSION:-2.20.0}"
CACHE_ROOT="${LLMCTL_TF_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/llmctl/tensorflow}"
GPU=0
FORCE=0
NODE_MODULES=

die() { echo "setup-tensorflow: error: $*" >&2; exit 1; }
log() { echo "setup-tensorflow: $*"; }

usage() {
  cat <<EOF
Usage: llmctl setup tensorflow [--gpu] [--tf-version X.Y.Z] [--force]

Builds @tensorflow/tfjs-node@${TFJS_VERSION} against the libtensorflow inside
TensorFlow's PyPI wheel, installs it beside llmctl's @tensorflow/tfjs and checks
that it computes. Idempotent; re-run it after any 'npm install'/'npm ci', which
remove the tfjs-node package (the build is cached: that takes seconds).

  --node-modules D  the node_modules folder that holds llmctl's @tensorflow/tfjs
                    (llmctl passes it; default: this checkout's node_modules)
  --gpu             build @tensorflow/tfjs-node-gpu against 'tensorflow[and-cuda]'
                    (CUDA 12 wheels from PyPI, installed into a venv in the cache;
                    needs an NVIDIA driver at run time)
  --tf-version V    TensorFlow wheel version (default ${TF_VERSION}; env LLMCTL_TF_VERSION)
  --force           rebuild the addon even if it is already built
Cache: ${CACHE_ROOT} (env LLMCTL_TF_CACHE)
EOF
}

while [ $# -gt 0 ]; do
  case "$1" in
    --gpu) GPU=1 ;;
    --tf-version) [ $# -ge 2 ] || die "--tf-version needs a value"; TF_VERSION="$2"; shift ;;
    --tf-version=*) TF_VERSION="${1#*=}" ;;
    --force) FORCE=1 ;;
    --node-modules) [ $# -ge 2 ] || die "--node-modules needs a value"; NODE_MODULES="$2"; shift ;;
    -h|--help) usage; exit 0 ;;
    *) die "unknown argument '$1' (see --help)" ;;
  esac
  shift
done

START=$SECONDS
PROJECT_ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$PROJECT_ROOT"

if [ "$GPU" = 1 ]; then
  NPM_PKG=@tensorflow/tfjs-node-gpu
  FLAVOR=gpu
else
  NPM_PKG=@tensorflow/tfjs-node
  FLAVOR=cpu
fi
NODE_MODULES="$(cd "${NODE_MODULES:-$PROJECT_ROOT/node_modules}" 2>/dev/null && pwd)" \
  || die "node_modules folder '${NODE_MODULES:-$PROJECT_ROOT/node_modules}' not found (run npm ci first)"
[ -f "$NODE_MODULES/@tensorflow/tfjs/package.json" ] \
  || die "$NODE_MODULES has no @tensorflow/tfjs: tfjs-node must be installed beside llmctl's (run npm ci first)"
TARGET="$NODE_MODULES/$NPM_PKG"
TF_HOME="$CACHE_ROOT/$FLAVOR-$TF_VERSION"
# tfjs-node and its own dependencies, built here, then copied to $TARGET
STAGE="$TF_HOME/npm-$TFJS_VERSION"
PKG_DIR="$STAGE/node_modules/$NPM_PKG"

# --- prerequisites -----------------------------------------------------------
[ "$(uname -s)" = Linux ] || die "only Linux is supported (found $(uname -s))"
[ "$(uname -m)" = x86_64 ] || die "only x86_64 is supported: tensorflow-cpu wheels exist for x86_64 only (found $(uname -m))"
for tool in node npm python3 c++ make nm; do
  command -v "$tool" >/dev/null 2>&1 || die "'$tool' not found on PATH (Debian: apt-get install build-essential python3 python3-venv)"
done
python3 -m pip --version >/dev/null 2>&1 || die "pip for python3 not found (Debian: apt-get install python3-pip)"

# node-gyp needs Node's headers; the download host for them is not reachable,
# so use the ones installed alongside node.
find_nodedir() {
  local d
  for d in "${npm_config_nodedir:-}" "$(npm config get nodedir 2>/dev/null || true)" \
           "$(dirname "$(dirname "$(readlink -f "$(command -v node)")")")" /usr/local /usr; do
    [ -n "$d" ] && [ -f "$d/include/node/node_api.h" ] && [ -f "$d/include/node/common.gypi" ] \
      && { echo "$d"; return 0; }
  done
  return 1
}
NODEDIR="$(find_nodedir)" || die "Node headers not found (looked for include/node/node_api.h next to node, in /usr/local and /usr); install the nodejs dev headers or set npm_config_nodedir"

find_node_gyp() {
  local npm_cli
  npm_cli="$(readlink -f "$(command -v npm)")"
  for f in "$(dirname "$npm_cli")/../node_modules/node-gyp/bin/node-gyp.js" \
           "$(npm root -g 2>/dev/null)/npm/node_modules/node-gyp/bin/node-gyp.js" \
           "$(npm root -g 2>/dev/null)/node-gyp/bin/node-gyp.js"; do
    [ -f "$f" ] && { readlink -f "$f"; return 0; }
  done
  return 1
}
NODE_GYP="$(find_node_gyp)" || die "node-gyp not found (it ships with npm; or: npm install -g node-gyp)"

# --- 1. libtensorflow from the PyPI wheel --------------------------------------
# TF_DIR is the wheel's tensorflow/ folder: libtensorflow_cc.so.2,
# libtensorflow_framework.so.2 and include/.
fetch_cpu_wheel() {
  local tmp wheel
  tmp="$TF_HOME/download"
  rm -rf "$tmp" "$TF_HOME/tensorflow"
  mkdir -p "$tmp"
  log "downloading tensorflow-cpu==$TF_VERSION wheel from PyPI (~250 MB)"
  # The wheel is only unpacked, never imported, so the local Python version
  # does not matter: ask for the cp311 build explicitly. Newer wheels are
  # manylinux_2_27, so accept every manylinux tag this machine's glibc can run.
  local glibc_minor platforms=() m
  glibc_minor="$(getconf GNU_LIBC_VERSION | sed -E 's/.*2\.([0-9]+).*/\1/')"
  for ((m = 17; m <= glibc_minor; m++)); do platforms+=(--platform "manylinux_2_${m}_x86_64"); done
  python3 -m pip download --no-deps --no-cache-dir --only-binary=:all: \
      "${platforms[@]}" --python-version 3.11 --implementation cp \
      -d "$tmp" "tensorflow-cpu==$TF_VERSION" >"$TF_HOME/pip.log" 2>&1 \
    || die "pip download tensorflow-cpu==$TF_VERSION failed (see $TF_HOME/pip.log)"
  wheel="$(find "$tmp" -maxdepth 1 -name 'tensorflow_cpu-*.whl' | head -n1)"
  [ -n "$wheel" ] || die "pip did not produce a tensorflow_cpu wheel in $tmp"
  log "unpacking libtensorflow and C headers from $(basename "$wheel")"
  python3 - "$wheel" "$TF_HOME" <<'PY' || die "could not unpack $wheel"
import sys, zipfile
wheel, dest = sys.argv[1], sys.argv[2]
keep = ("tensorflow/libtensorflow_cc.so.2", "tensorflow/libtensorflow_framework.so.2")
# what the wheel was built for (CUDA/cuDNN versions, none in tensorflow-cpu), which `llmctl doctor` reports
build_info = "tensorflow/python/platform/build_info.py"
# The C headers include the tstring and status headers of TSL, which moved
# between releases: tensorflow/tsl (2.12, 2.13), tsl (2.14+), xla/tsl (2.18+).
header_dirs = tuple("tensorflow/include/" + d for d in (
    "tensorflow/c/", "tensorflow/core/platform/", "tensorflow/tsl/", "tsl/", "xla/tsl/"))
with zipfile.ZipFile(wheel) as z:
    names = [n for n in z.namelist() if n in keep or n == build_info or n.startswith(header_dirs)]
    missing = [k for k in keep if k not in names]
    if missing:
        sys.exit("wheel lacks " + ", ".join(missing))
    z.extractall(dest, names)
PY
  rm -rf "$tmp"
}

fetch_gpu_wheel() {
  local venv="$TF_HOME/venv" purelib
  rm -rf "$venv"
  python3 -m venv "$venv" || die "python3 -m venv failed (Debian: apt-get install python3-venv)"
  log "installing tensorflow[and-cuda]==$TF_VERSION into $venv (TensorFlow + NVIDIA CUDA 12 wheels, several GB)"
  "$venv/bin/python" -m pip install --no-cache-dir "tensorflow[and-cuda]==$TF_VERSION" >"$TF_HOME/pip.log" 2>&1 \
    || die "pip install tensorflow[and-cuda]==$TF_VERSION failed (see $TF_HOME/pip.log)"
  purelib="$("$venv/bin/python" -c 'import sysconfig; print(sysconfig.get_paths()["purelib"])')"
  # The wheel's RUNPATH finds the CUDA libraries at $ORIGIN/../nvidia/*/lib,
  # so the libraries must stay inside site-packages: point at them there.
  ln -sfn "$purelib/tensorflow" "$TF_HOME/tensorflow"
}

mkdir -p "$TF_HOME"
if [ ! -f "$TF_HOME/.complete" ]; then
  if [ "$GPU" = 1 ]; then fetch_gpu_wheel; else fetch_cpu_wheel; fi
  touch "$TF_HOME/.complete"
else
  log "using cached TensorFlow $TF_VERSION ($FLAVOR) in $TF_HOME"
fi
TF_DIR="$TF_HOME/tensorflow"
[ -f "$TF_DIR/libtensorflow_cc.so.2" ] && [ -f "$TF_DIR/include/tensorflow/c/eager/c_api.h" ] \
  || die "cache $TF_HOME is incomplete; delete it and re-run"

# binding.gyp links with -ltensorflow -ltensorflow_framework. The C API lives in
# libtensorflow_cc.so.2, so libtensorflow.so points there; the addon then
# records libtensorflow_cc.so.2 (its SONAME) as what it needs at run time.
ln -sfn libtensorflow_cc.so.2 "$TF_DIR/libtensorflow.so"
ln -sfn libtensorflow_framework.so.2 "$TF_DIR/libtensorflow_framework.so"

# --- 2. tfjs-node, without running its install script, in the cache -----------------
# Its dependencies go inside its folder, all but @tensorflow/* (tfjs itself), so the folder can be copied
# beside llmctl's @tensorflow/tfjs as one piece and uses that one (a second TF.js would register every
# kernel twice).
installed_version() {
  node -p "require('$1/package.json').version" 2>/dev/null || true
}
if [ "$(installed_version "$PKG_DIR")" != "$TFJS_VERSION" ] || [ ! -f "$STAGE/.complete" ]; then
  rm -rf "$STAGE"
  mkdir -p "$STAGE"
  echo '{ "private": true }' >"$STAGE/package.json"
  log "npm install --ignore-scripts $NPM_PKG@$TFJS_VERSION (into the cache)"
  npm install --prefix "$STAGE" --ignore-scripts --no-audit --no-fund --no-package-lock "$NPM_PKG@$TFJS_VERSION" \
      >"$TF_HOME/npm.log" 2>&1 || die "npm install $NPM_PKG@$TFJS_VERSION failed (see $TF_HOME/npm.log)"
  [ "$(installed_version "$PKG_DIR")" = "$TFJS_VERSION" ] || die "$NPM_PKG@$TFJS_VERSION is missing after npm install"
  mkdir -p "$PKG_DIR/node_modules"
  for dep in "$STAGE"/node_modules/* "$STAGE"/node_modules/.[!.]*; do
    case "$(basename "$dep")" in @tensorflow|.bin|.package-lock.json|'.[!.]*') continue ;; esac
    mv "$dep" "$PKG_DIR/node_modules/"
  done
  touch "$STAGE/.complete"
fi

# Every TF_*/TFE_* function the addon calls must be exported by the wheel's libs.
needed="$(grep -ohE '\bTFE?_[A-Za-z0-9_]+\(' "$PKG_DIR"/binding/*.cc "$PKG_DIR"/binding/*.h | tr -d '(' \
          | grep -vE '^(TFE_AutoOp|TF_AutoStatus|TF_AutoTensor|TF_TString_.*)$' | sort -u)"
exported="$(nm -D --defined-only "$TF_DIR/libtensorflow_cc.so.2" "$TF_DIR/libtensorflow_framework.so.2" \
            | awk '{print $3}' | sed 's/@.*//' | grep -E '^TFE?_' | sort -u)"
missing="$(comm -23 <(echo "$needed") <(echo "$exported") | tr '\n' ' ')"
[ -z "$missing" ] || die "TensorFlow $TF_VERSION does not export: $missing"

# --- 3. build the addon ------------------------------------------------------
# node-pre-gyp decides where index.js looks for the addon (lib/napi-vN); ask it.
BINDING="$(cd "$PKG_DIR" && node -p "require('@mapbox/node-pre-gyp').find(require('path').resolve('package.json'))")" \
  || die "could not resolve the addon path with @mapbox/node-pre-gyp"
NAPI_VERSION="$(basename "$(dirname "$BINDING")")"; NAPI_VERSION="${NAPI_VERSION#napi-v}"
STAMP="$PKG_DIR/deps/.llmctl-build"
# N-API is stable across Node releases: one build serves Node 20 to 26
WANT_STAMP="$TF_DIR $TF_VERSION napi-$NAPI_VERSION"

if [ "$FORCE" = 1 ] || [ ! -f "$BINDING" ] || [ "$(cat "$STAMP" 2>/dev/null)" != "$WANT_STAMP" ]; then
  rm -rf "$PKG_DIR/deps" "$PKG_DIR/build" "$(dirname "$BINDING")"
  mkdir -p "$PKG_DIR/deps"
  ln -s "$TF_DIR/include" "$PKG_DIR/deps/include"
  # The addon's RUNPATH is $ORIGIN/../../deps/lib: a link to the whole folder
  # keeps the wheel's own $ORIGIN-relative RUNPATHs (CUDA libs) working too.
  ln -s "$TF_DIR" "$PKG_DIR/deps/lib"
  log "building $NPM_PKG addon (node-gyp, N-API v$NAPI_VERSION, headers from $NODEDIR)"
  ( cd "$PKG_DIR" && node "$NODE_GYP" rebuild --nodedir="$NODEDIR" -j "$(nproc)" \
      --module_name=tfjs_binding --module_path="$(dirname "$BINDING")" \
      --napi_build_version="$NAPI_VERSION" ) >"$TF_HOME/build.log" 2>&1 \
    || { tail -n 20 "$TF_HOME/build.log" >&2; die "node-gyp build failed (full log: $TF_HOME/build.log)"; }
  [ -f "$BINDING" ] || die "node-gyp finished but $BINDING is missing (see $TF_HOME/build.log)"
  rm -rf "$PKG_DIR/build" # object files; the addon is in lib/
  echo "$WANT_STAMP" >"$STAMP"
else
  log "addon already built against TensorFlow $TF_VERSION ($BINDING)"
fi

# --- 4. install it beside llmctl's TF.js, and keep it only if it computes ----------
STAMP_WANT="$(cat "$STAMP")"
if [ "$FORCE" = 0 ] && [ "$(cat "$TARGET/deps/.llmctl-build" 2>/dev/null)" = "$STAMP_WANT" ]; then
  log "$NPM_PKG is installed in $NODE_MODULES already"
  ROLLBACK=""
else
  log "installing $NPM_PKG into $NODE_MODULES"
  mkdir -p "$(dirname "$TARGET")"
  NEW="$(dirname "$TARGET")/.$(basename "$TARGET").llmctl-new"
  OLD="$(dirname "$TARGET")/.$(basename "$TARGET").llmctl-old"
  rm -rf "$NEW" "$OLD"
  cp -a "$PKG_DIR" "$NEW"
  [ -e "$TARGET" ] && mv "$TARGET" "$OLD"
  mv "$NEW" "$TARGET"
  ROLLBACK=1
fi
rollback() {
  [ -n "$ROLLBACK" ] || return 0
  rm -rf "$TARGET"
  [ -e "$OLD" ] && mv "$OLD" "$TARGET"
  return 0
}
log "checking: a matmul and a gradient on the tensorflow backend, against the cpu backend"
CHECK="$(TF_CPP_MIN_LOG_LEVEL="${TF_CPP_MIN_LOG_LEVEL:-2}" node "$PROJECT_ROOT/dist/src/backend/check-child.js" tensorflow 2>"$TF_HOME/check.log" | grep '^{' || true)"
if ! echo "$CHECK" | grep -q '"ok":true'; then
  rollback
  reason="$(echo "$CHECK" | sed -nE 's/.*"reason":"([^"]*)".*/\1/p')"
  die "the built addon does not compute right: ${reason:-no verdict (see $TF_HOME/check.log)}; nothing was installed"
fi
[ -n "$ROLLBACK" ] && rm -rf "$OLD"
log "ok: $NPM_PKG $TFJS_VERSION with libtensorflow $TF_VERSION, in $NODE_MODULES"
if [ "$GPU" = 1 ]; then
  log "GPU build done; whether a GPU is used depends on the NVIDIA driver (\`llmctl doctor\` says)"
fi
log "done in $((SECONDS - START)) s"
