#!/usr/bin/env bash
# Builds the browser client (crates/client) for wasm32 and runs wasm-bindgen into pkg/ — what
# `wasm-pack build --target web --dev --no-opt` does, without wasm-pack's downloads.
#   scripts/build-wasm.sh           both steps (dev profile: what the tests use)
#   scripts/build-wasm.sh compile   cargo build for wasm32 only
#   scripts/build-wasm.sh bindgen   wasm-bindgen into pkg/ only (after compile)
#   scripts/build-wasm.sh release   both steps with the wasm-release profile (opt-level 3, thin
#                                   LTO: what the page ships, scripts/demo.sh), into pkg/
# The wasm32 build has a target dir of its own ($CARGO_TARGET_DIR/wasm, default target/wasm), so
# it can run at the same time as the native build (cargo locks a target dir per build), and the
# browser tests (scripts/test.sh) reuse it. Profiles: see Cargo.toml ([profile.dev.package.*]).
set -euo pipefail
cd "$(dirname "$0")/.."
wasm_target_dir="${CARGO_TARGET_DIR:-$PWD/target}/wasm"
what="${1:-all}"
profile=dev
profile_dir=debug
bindgen_flags=()
if [ "$what" = release ]; then
  profile=wasm-release
  profile_dir=wasm-release
  # Function names only serve stack traces: 6.7 of the release wasm's 36 MB.
  bindgen_flags=(--remove-name-section)
fi
out="${WASM_OUT_DIR:-pkg}"
if [ "$what" = all ] || [ "$what" = compile ] || [ "$what" = release ]; then
  CARGO_TARGET_DIR="$wasm_target_dir" cargo build --profile "$profile" --target wasm32-unknown-unknown -p fedsearch-client
fi
if [ "$what" = all ] || [ "$what" = bindgen ] || [ "$what" = release ]; then
  wasm-bindgen --target web "${bindgen_flags[@]}" --out-dir "$out" "$wasm_target_dir/wasm32-unknown-unknown/$profile_dir/fedsearch_client.wasm"
  echo "built $out/ ($profile profile, $(du -sh "$out/fedsearch_client_bg.wasm" | cut -f1) wasm)"
fi
