#!/usr/bin/env bash
# Starts the demo on this machine: fetches the default model (all-MiniLM-L6-v2) if missing,
# builds the release binaries, starts the aggregation worker (SQLite) on loopback and prints
# its URL. The browser page is not part of main yet (see README "What works today").
set -euo pipefail
cd "$(dirname "$0")/.."
WORKER_ADDR="${WORKER_ADDR:-127.0.0.1:8787}"
DB="${DB:-data/worker.db}"

cargo build --release -p fedsearch-cli -p fedsearch-worker
target/release/fedsearch fetch-model --dir models/all-MiniLM-L6-v2
mkdir -p "$(dirname "$DB")"
target/release/fedsearch-worker --listen "$WORKER_ADDR" --db "$DB" &
worker=$!
trap 'kill $worker 2>/dev/null' EXIT INT TERM
for _ in $(seq 1 50); do
  curl -fsS "http://$WORKER_ADDR/v1/health" >/dev/null 2>&1 && break
  sleep 0.2
done
echo
echo "fedsearch worker is running: http://$WORKER_ADDR/v1/federations/demo"
echo "  enrol a client:  target/release/fedsearch-worker token create --db $DB --federation demo"
echo "  evaluate:        target/release/fedsearch eval --corpus data/wiki-1000/corpus.jsonl --queries data/wiki-1000/queries.jsonl"
echo "press Ctrl-C to stop"
wait $worker
