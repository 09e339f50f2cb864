"""Confidence-adaptive BM25 weight in the fusion (stop 21 experiment): does weighting BM25 by how
far its top document stands out lift in-distribution (held-out pseudo-queries) without costing the
human questions? MIPS + BM25 only (the CaR needs the Rust model); ORT embeddings (emb.py).
Usage (repository root): python crates/cli/quality/adaptive_fusion.py PAIRS.jsonl.gz, PAIRS from
`fedsearch eval --corpus data/wiki-1k/corpus.jsonl ... --pairs-out` (its "heldout" rows), gzipped."""
import os, sys, json, gzip, numpy as np
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import emb
from bm25 import BM25
corpus = [json.loads(l) for l in open("data/wiki-1k/corpus.jsonl")]
ids = [c["id"] for c in corpus]; pos = {t: i for i, t in enumerate(ids)}
texts = [f"{c['title']}. {c['text']}" for c in corpus]
fq = [json.loads(l) for l in open("../shared/data/fanoutqa_test_questions.jsonl")]
sets = {}
sets["fanout"] = [(q["query"], {pos[t] for t in q["doc_ids"] if t in pos}) for q in fq]
sets["desc"] = [(j["query"], {pos[j["doc_id"]]}) for j in map(json.loads, open("data/wiki-1k/queries.jsonl"))]
pairs = [json.loads(l) for l in gzip.open(sys.argv[1], "rt")]
sets["pq"] = [(p["query"], {pos[p["doc_id"]]}) for p in pairs if p["kind"] == "heldout"]
D = emb.embed(texts, label="docs")
bm = BM25(texts)
def z(S): return (S - S.mean(1, keepdims=True)) / (S.std(1, keepdims=True) + 1e-9)
MI, B = {}, {}
for k, qs in sets.items():
    qs = [(q, g) for q, g in qs if g]; sets[k] = qs
    Q = emb.embed([q for q, _ in qs], label=k); MI[k] = z(Q @ D.T)
    B[k] = z(np.stack([bm.scores(q) for q, _ in qs]))
def top1(S, golds): return float(np.mean([int(np.argmax(S[i]) in g) for i, g in enumerate(golds)]))
def run(name, f):
    r = {k: top1(f(k), [g for _, g in sets[k]]) for k in sets}
    print(f"{name:<52} fanout {r['fanout']:.3f}  desc {r['desc']:.3f}  pq {r['pq']:.3f}", flush=True)
run("MIPS", lambda k: MI[k]); run("BM25", lambda k: B[k])
for w in (0.25, 0.5, 1.0): run(f"z(MIPS) + {w} z(BM25)", lambda k: MI[k] + w * B[k])
# BM25's confidence: the gap between its top two z-scores, per query.
def gap(S): s = np.sort(S, 1); return (s[:, -1] - s[:, -2])[:, None]
for k in sets: print(k, "BM25 top-gap percentiles 25/50/75/90:", np.percentile(gap(B[k]), [25, 50, 75, 90]).round(2))
for base in (0.25, 0.5):
    for tau in (1.0, 2.0, 3.0, 4.0):
        run(f"z(MIPS) + {base} z(BM25), x4 when gap > {tau}", lambda k: MI[k] + np.where(gap(B[k]) > tau, 4 * base, base) * B[k])
    for a in (0.5, 1.0):
        run(f"z(MIPS) + ({base} + {a}*gap) z(BM25)", lambda k: MI[k] + (base + a * gap(B[k])) * B[k])
