#!/usr/bin/env bash
# The README's test command: fetches the real model if missing, then runs every test suite.
# FEDSEARCH_REQUIRE_MODEL=1 turns a missing real model into a failure instead of a loud skip.
set -euo pipefail
cd "$(dirname "$0")/.."
export FEDSEARCH_REQUIRE_MODEL="${FEDSEARCH_REQUIRE_MODEL:-1}"
export FEDSEARCH_MODEL_DIR="${FEDSEARCH_MODEL_DIR:-$PWD/models/all-MiniLM-L6-v2}"

echo "== fetching the default model (all-MiniLM-L6-v2) if missing"
cargo run -q -p fedsearch-cli -- fetch-model --dir "$FEDSEARCH_MODEL_DIR"

echo "== native tests (cargo test --workspace)"
cargo test --workspace
