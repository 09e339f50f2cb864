#!/usr/bin/env bash
# The README's test command. Installs missing tools (scripts/setup.sh), fetches the real model if
# missing, builds the wasm client into pkg/, then runs every suite:
#   1. native: `cargo test --workspace` (core, privacy, protocol, cli, client, worker, www, and the
#      end-to-end test: real worker + www-server + two headless Chromium sessions);
#   2. browser: crates/client's wasm tests in headless Chromium (WebGPU and CPU) — what
#      `wasm-pack test --headless --chrome crates/client` runs, with the runner called directly.
# FEDSEARCH_REQUIRE_MODEL=1 and FEDSEARCH_E2E_REQUIRED=1 turn a missing real model, browser or
# wasm package into a failure instead of a loud skip.
set -euo pipefail
cd "$(dirname "$0")/.."
start=$(date +%s)
step() { echo "== [$(( $(date +%s) - start ))s] $*"; }
export FEDSEARCH_REQUIRE_MODEL="${FEDSEARCH_REQUIRE_MODEL:-1}"
export FEDSEARCH_E2E_REQUIRED="${FEDSEARCH_E2E_REQUIRED:-1}"
export FEDSEARCH_MODEL_DIR="${FEDSEARCH_MODEL_DIR:-$PWD/models/all-MiniLM-L6-v2}"
export XDG_RUNTIME_DIR="${XDG_RUNTIME_DIR:-/tmp/fedsearch-xdg-$(id -u)}"
mkdir -p "$XDG_RUNTIME_DIR" && chmod 700 "$XDG_RUNTIME_DIR"

step "tools"
bash scripts/setup.sh

step "the default model (all-MiniLM-L6-v2), fetched if missing"
cargo run -q -p fedsearch-cli -- fetch-model --dir "$FEDSEARCH_MODEL_DIR"

step "the wasm client (pkg/)"
bash scripts/build-wasm.sh

step "native tests (cargo test --workspace, end-to-end browser test included)"
# The end-to-end test starts these binaries from the same target dir.
cargo build -p fedsearch-worker -p fedsearch-www
cargo test --workspace

step "browser tests of crates/client (headless Chromium, WebGPU and CPU)"
(
  cd crates/client
  CHROMEDRIVER="$(command -v chromedriver)" WASM_BINDGEN_TEST_TIMEOUT=300 \
    CARGO_TARGET_WASM32_UNKNOWN_UNKNOWN_RUNNER=wasm-bindgen-test-runner \
    cargo test --target wasm32-unknown-unknown -p fedsearch-client --test web
)
step "all tests passed"
