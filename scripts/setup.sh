#!/usr/bin/env bash
# Installs what building and testing need, skipping what is already there.
#   scripts/setup.sh          everything below
#   scripts/setup.sh system   Debian's chromium, chromium-driver and mesa-vulkan-drivers (headless
#                             browser tests; lavapipe for native wgpu), rustfmt, clippy and the wasm32
#                             Rust target
#   scripts/setup.sh bindgen  wasm-bindgen-cli 0.2.130 (the version crates/client pins), compiled
#                             from crates.io only when missing; the slow part (minutes), so
#                             scripts/test.sh runs it beside the native build
set -euo pipefail
what="${1:-all}"
if [ "$what" = all ] || [ "$what" = system ]; then
  packages=()
  command -v chromium >/dev/null 2>&1 || packages+=(chromium)
  command -v chromedriver >/dev/null 2>&1 || packages+=(chromium-driver)
  dpkg -s mesa-vulkan-drivers >/dev/null 2>&1 || packages+=(mesa-vulkan-drivers)
  command -v curl >/dev/null 2>&1 || packages+=(curl)
  if ((${#packages[@]})); then
    echo "== apt-get install ${packages[*]}"
    sudo=""
    [ "$(id -u)" -eq 0 ] || sudo="sudo"
    $sudo apt-get update -qq
    DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq --no-install-recommends "${packages[@]}" >/dev/null
  fi
  if ! cargo fmt --version >/dev/null 2>&1; then
    echo "== rustup component add rustfmt"
    rustup component add rustfmt
  fi
  if ! cargo clippy --version >/dev/null 2>&1; then
    echo "== rustup component add clippy"
    rustup component add clippy
  fi
  if ! rustup target list --installed | grep -qx wasm32-unknown-unknown; then
    echo "== rustup target add wasm32-unknown-unknown"
    rustup target add wasm32-unknown-unknown
  fi
fi
if [ "$what" = all ] || [ "$what" = bindgen ]; then
  if ! wasm-bindgen --version 2>/dev/null | grep -q ' 0\.2\.130'; then
    echo "== cargo install wasm-bindgen-cli 0.2.130"
    # Without --locked: with it the install fails (see DEVELOPERS.md). Its own target dir, so
    # that it never waits on (or invalidates) the project's build.
    CARGO_TARGET_DIR="${TMPDIR:-/tmp}/fedsearch-wasm-bindgen-build" cargo install -q wasm-bindgen-cli --version 0.2.130
  fi
fi
