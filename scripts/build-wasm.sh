#!/usr/bin/env bash
# Builds the browser client (crates/client) for wasm32 and runs wasm-bindgen into pkg/ — what
# `wasm-pack build --target web --dev --no-opt` does, without wasm-pack's downloads. The dev
# profile optimises dependencies (Burn, tokenizers) at opt-level 2, and shares its build with
# the browser tests (scripts/test.sh).
set -euo pipefail
cd "$(dirname "$0")/.."
target_dir="${CARGO_TARGET_DIR:-$PWD/target}"
cargo build --target wasm32-unknown-unknown -p fedsearch-client
wasm-bindgen --target web --out-dir pkg "$target_dir/wasm32-unknown-unknown/debug/fedsearch_client.wasm"
echo "built pkg/ ($(du -sh pkg/fedsearch_client_bg.wasm | cut -f1) wasm)"
