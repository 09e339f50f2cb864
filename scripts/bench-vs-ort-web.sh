#!/usr/bin/env bash
# The tab's CPU encoder beside onnxruntime-web (issue 13), in one headless Chromium: installs
# onnxruntime-web from npm into target/ort-web, saves the ONNX graph of scripts/ort_peer.py and
# the benchmark sentences' token ids (scripts/ort_web_prep.py), then runs bench-browser with
# FEDSEARCH_ORT_WEB_DIR: onnxruntime-web (wasm, 1 thread, batches of 1 and of 16), the benchmark
# page (CPU backend), onnxruntime-web again; prints both and the ratio.
#   scripts/bench-vs-ort-web.sh [PKG_DIR]   default pkg/ (scripts/build-wasm.sh release)
# Environment: MODEL (models/all-MiniLM-L6-v2: f32 weights, which the ONNX graph needs; the tab
# computes in f32 from either copy), ORT_PYTHON (as scripts/bench-vs-ort.sh),
# ORT_WEB_VERSION (1.30), SENTENCES (16: the benchmark's sentences, encoded by both in batches
# of 16; onnxruntime-web also at batch 1, and the ratio is against its better batch size).
set -euo pipefail
cd "$(dirname "$0")/.."
pkg="${1:-pkg}"
model="${MODEL:-models/all-MiniLM-L6-v2}"
out=target/ort-web
if [ ! -f "$model/model.safetensors" ]; then
  echo "no model at $model: fedsearch fetch-model (README)" >&2
  exit 2
fi
source scripts/ort-python.sh
mkdir -p "$out"
if [ ! -f "$out/node_modules/onnxruntime-web/dist/ort.wasm.min.mjs" ]; then
  echo "== npm install onnxruntime-web@${ORT_WEB_VERSION:-1.30}"
  npm install --prefix "$out" --no-audit --no-fund "onnxruntime-web@${ORT_WEB_VERSION:-1.30}" >/dev/null
fi
page="$out/page"
mkdir -p "$page"
cp scripts/ort-web/index.html scripts/ort-web/ort-bench.js "$page/"
dist="$out/node_modules/onnxruntime-web/dist"
cp "$dist/ort.wasm.min.mjs" "$dist/ort-wasm-simd-threaded.mjs" "$dist/ort-wasm-simd-threaded.wasm" "$page/"
sentences="${SENTENCES:-16}"
"$py" scripts/ort_web_prep.py "$model" "$page" "$sentences"
echo "== cargo test --workspace --no-run (bench-browser, fedsearch-www)"
cargo test --workspace --no-run -q
FEDSEARCH_PKG_DIR="$pkg" FEDSEARCH_ORT_WEB_DIR="$page" target/debug/bench-browser "$model" "$sentences" 5 2 cpu
