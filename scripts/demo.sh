#!/usr/bin/env bash
# Starts the demo on this machine: fetches the default model (all-MiniLM-L6-v2) if missing,
# with the f16 copy the page downloads, builds the binaries and the wasm client (the
# wasm-release profile: what the page ships; the tests use the dev build), starts the aggregation worker (SQLite, federation
# "demo" from scripts/demo-worker.toml) and the www server (page + pkg/ + models, /v1 proxied
# to the worker), creates an enrolment token and prints the page's URL.
# Installs what is missing first (scripts/setup.sh: chromium is not needed for the demo itself,
# but the one setup keeps the demo and the tests on the same tools).
set -euo pipefail
cd "$(dirname "$0")/.."
WWW_ADDR="${WWW_ADDR:-127.0.0.1:8080}"
WORKER_ADDR="${WORKER_ADDR:-127.0.0.1:8787}"
DB="${DB:-data/demo-worker.db}"
bin="${CARGO_TARGET_DIR:-$PWD/target}/debug"

echo "== tools"
bash scripts/setup.sh
echo "== building the native binaries"
# The same cargo invocation as scripts/test.sh, so the demo reuses the tests' build instead of
# resolving other features and rebuilding Burn (scripts/CI.md).
cargo test --workspace --no-run
echo "== the default model"
# The page downloads the f16 copy (45 MB instead of 91 MB; converted back to f32 on load).
"$bin/fedsearch" fetch-model --dir models/all-MiniLM-L6-v2 --f16 models/all-MiniLM-L6-v2-f16
echo "== building the wasm client into pkg/ (release: opt-level 3, thin LTO; cold ~19 min on 2 cores)"
bash scripts/build-wasm.sh release

mkdir -p "$(dirname "$DB")"
"$bin/fedsearch-worker" --config scripts/demo-worker.toml --listen "$WORKER_ADDR" --db "$DB" &
worker=$!
"$bin/fedsearch-www" --listen "$WWW_ADDR" --web web --pkg pkg --models models --worker-url "http://$WORKER_ADDR" &
www=$!
trap 'kill $worker $www 2>/dev/null' EXIT INT TERM
for _ in $(seq 1 100); do
  curl -fsS "http://$WORKER_ADDR/v1/health" >/dev/null 2>&1 && curl -fsS "http://$WWW_ADDR/" >/dev/null 2>&1 && break
  sleep 0.2
done
token=$("$bin/fedsearch-worker" token create --db "$DB" --federation demo --uses 1000)
echo
echo "fedsearch is running. Open this in a browser (Chrome/Edge for WebGPU; others use the CPU):"
echo
echo "    http://$WWW_ADDR/?token=$token"
echo
echo "  benchmark page:  http://$WWW_ADDR/bench.html  (native figure: $bin/fedsearch bench throughput --json models/all-MiniLM-L6-v2-f16/native-bench.json)"
echo "  worker:          http://$WORKER_ADDR/v1/federations/demo   metrics: http://$WORKER_ADDR/metrics"
echo "press Ctrl-C to stop"
wait $worker $www
