#!/usr/bin/env bash
# The encoder's speed beside its peer (issue 12), in one run on one machine: builds the release
# CLI, alternates `fedsearch bench encode` (batch sizes 1, 8, 32) and scripts/ort_peer.py (ONNX
# Runtime, CPU, fp32, 2 threads, the same all-MiniLM-L6-v2 and the same documents) ROUNDS times,
# and prints each engine's median sentences/s per batch size, its best batch size, and the ratio.
#   scripts/bench-vs-ort.sh [CORPUS] [N]    defaults: data/wiki-1k/corpus.jsonl, 64 documents
# Environment: MODEL (models/all-MiniLM-L6-v2), ROUNDS (3), ORT_PYTHON (a Python that has numpy,
# onnx, onnxruntime, tokenizers and safetensors; by default a venv made in target/ort-venv).
# Both engines get 2 threads (RAYON_NUM_THREADS=2 for Burn's CPU backend).
set -euo pipefail
cd "$(dirname "$0")/.."
corpus="${1:-data/wiki-1k/corpus.jsonl}"
n="${2:-64}"
model="${MODEL:-models/all-MiniLM-L6-v2}"
rounds="${ROUNDS:-3}"
if [ ! -f "$corpus" ]; then
  echo "no corpus at $corpus: make one with 'fedsearch data wiki' (README, Measurements)" >&2
  exit 2
fi
if [ ! -f "$model/model.safetensors" ]; then
  echo "no model at $model: fetch it with 'fedsearch fetch-model' (README)" >&2
  exit 2
fi
source scripts/ort-python.sh
echo "== cargo build --release --bin fedsearch"
cargo build --release --bin fedsearch
lines="$(mktemp)"
trap 'rm -f "$lines"' EXIT
for round in $(seq "$rounds"); do
  echo "== round $round of $rounds"
  RAYON_NUM_THREADS=2 target/release/fedsearch bench encode --model "$model" --corpus "$corpus" \
    --n "$n" --batches 1,8,32 | grep '^{' | tee -a "$lines"
  "$py" scripts/ort_peer.py "$model" "$corpus" "$n" | grep '"peer"' | tee -a "$lines"
done
"$py" - "$lines" <<'PY'
import json, statistics, sys
rates = {}
for line in open(sys.argv[1]):
    r = json.loads(line)
    engine = "fedsearch" if r.get("engine") == "fedsearch" else "onnxruntime"
    rates.setdefault(engine, {}).setdefault(r["batch"], []).append(r["sentences_per_s"])
med = {e: {b: statistics.median(v) for b, v in sorted(bs.items())} for e, bs in rates.items()}
print("\nmedian sentences/s per batch size:")
for e, bs in med.items():
    print(f"  {e:12s} " + "  ".join(f"batch {b}: {v:.1f}" for b, v in bs.items()))
best = {e: max(bs.items(), key=lambda kv: kv[1]) for e, bs in med.items()}
for e, (b, v) in best.items():
    print(f"  {e:12s} best: batch {b}, {v:.1f} sentences/s")
if len(best) == 2:
    f, o = best["fedsearch"][1], best["onnxruntime"][1]
    print(f"ratio fedsearch / ONNX Runtime, each at its best batch size: {f / o:.2f}x")
    for b in sorted(set(med["fedsearch"]) & set(med["onnxruntime"])):
        print(f"ratio at batch {b}: {med['fedsearch'][b] / med['onnxruntime'][b]:.2f}x")
PY
