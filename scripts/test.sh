#!/usr/bin/env bash
# The README's test command. Installs missing tools (scripts/setup.sh), fetches the real model if
# missing, checks formatting and lints (clippy, warnings are errors), builds the wasm client into
# pkg/, then runs every suite:
#   1. native: `cargo test --workspace` (core, privacy, protocol, cli, client, worker, www, and the
#      end-to-end test: real worker + www-server + two headless Chromium sessions);
#   2. vendor/burn-flex: the patched Burn CPU backend's own unit tests;
#   3. browser: crates/client's wasm tests in headless Chromium (WebGPU and CPU) — what
#      `wasm-pack test --headless --chrome crates/client` runs, with the runner called directly.
# FEDSEARCH_REQUIRE_MODEL=1 and FEDSEARCH_E2E_REQUIRED=1 turn a missing real model, browser or
# wasm package into a failure instead of a loud skip.
#
# Build time (scripts/CI.md): every native step uses ONE cargo invocation shape,
# `cargo test --workspace`, whose binaries (fedsearch, fedsearch-worker, fedsearch-www) the model
# fetch and the end-to-end test use — a `cargo build -p X` resolves other features and rebuilds
# Burn. The wasm32 build (own target dir) and the wasm-bindgen-cli install run beside the native
# build, so that one build's long single-crate stretches (burn-flex) overlap the other's.
set -euo pipefail
cd "$(dirname "$0")/.."
start=$(date +%s)
step() { echo "== [$(( $(date +%s) - start ))s] $*"; }
export FEDSEARCH_REQUIRE_MODEL="${FEDSEARCH_REQUIRE_MODEL:-1}"
export FEDSEARCH_E2E_REQUIRED="${FEDSEARCH_E2E_REQUIRED:-1}"
export FEDSEARCH_MODEL_DIR="${FEDSEARCH_MODEL_DIR:-$PWD/models/all-MiniLM-L6-v2}"
export XDG_RUNTIME_DIR="${XDG_RUNTIME_DIR:-/tmp/fedsearch-xdg-$(id -u)}"
mkdir -p "$XDG_RUNTIME_DIR" && chmod 700 "$XDG_RUNTIME_DIR"
target_dir="${CARGO_TARGET_DIR:-$PWD/target}"
logs="$(mktemp -d)"
jobs_started=()
trap 'for p in "${jobs_started[@]}"; do kill "$p" 2>/dev/null || true; done' EXIT
# Runs a step in the background, its output in $logs/NAME.log.
background() {
  local name=$1; shift
  ( "$@" ) >"$logs/$name.log" 2>&1 &
  jobs_started+=($!)
  eval "job_$name=$!"
}
# Waits for a background step; on failure prints its log and stops.
join() {
  local name=$1 pid
  eval "pid=\$job_$name"
  if ! wait "$pid"; then
    echo "!! $name failed:"; cat "$logs/$name.log"; exit 1
  fi
  step "$name done"
}

step "tools: system packages and the wasm32 target"
bash scripts/setup.sh system

step "formatting (cargo fmt --check, rustfmt.toml)"
cargo fmt --all --check

step "building: native (cargo test --workspace --no-run) | wasm32 client, then wasm-bindgen-cli, in the background"
background wasm_compile bash scripts/build-wasm.sh compile
background bindgen bash scripts/setup.sh bindgen
# Lints first (check builds, no code generation: ~2 min cold, seconds warm; the wasm32 build runs
# beside it), then the test build.
step "lints (cargo clippy --workspace --all-targets -- -D warnings)"
cargo clippy --workspace --all-targets -- -D warnings
cargo test --workspace --no-run
step "native build done"

step "the default model (all-MiniLM-L6-v2), fetched if missing"
"$target_dir/debug/fedsearch" fetch-model --dir "$FEDSEARCH_MODEL_DIR"

join bindgen
join wasm_compile
step "the wasm client (pkg/)"
bash scripts/build-wasm.sh bindgen

step "native tests (cargo test --workspace, end-to-end browser test included)"
cargo test --workspace

# The vendored Burn CPU backend (vendor/burn-flex, outside the workspace, its own lock file) with
# its own unit tests, our patch's included: ~2 min cold, seconds warm (scripts/CI.md).
step "the vendored CPU backend's unit tests (vendor/burn-flex, cargo test --lib)"
CARGO_TARGET_DIR="$target_dir/burn-flex" cargo test --manifest-path vendor/burn-flex/Cargo.toml --lib --locked

step "browser tests of crates/client (headless Chromium, WebGPU and CPU)"
(
  cd crates/client
  CARGO_TARGET_DIR="$target_dir/wasm" CHROMEDRIVER="$(command -v chromedriver)" WASM_BINDGEN_TEST_TIMEOUT=900 \
    CARGO_TARGET_WASM32_UNKNOWN_UNKNOWN_RUNNER=wasm-bindgen-test-runner \
    cargo test --target wasm32-unknown-unknown -p fedsearch-client --test web
)
step "all tests passed"
