"""The hybrid (z(CaR) + z(MIPS) + w z(BM25), as `fedsearch_core::search::fuse`) of CaR logits
trained elsewhere (adapter_gpu.py's logits-*.npz), with MIPS from ONNX Runtime (emb.py) and BM25
ported from crates/core (Lucene's stop words, Snowball English stems, k1 0.9, b 0.4).
Usage: python fusion.py GPU_DIR LOGITS.npz... (GPU_DIR as for adapter_gpu.py; venv: numpy onnx
onnxruntime tokenizers safetensors snowballstemmer)."""
import gzip, json, math, os, re, sys
import numpy as np
import snowballstemmer
import emb

STOP = set("a an and are as at be but by for if in into is it no not of on or such that the their then there these "
           "they this to was will with".split())
_stem = snowballstemmer.stemmer("english")


def terms(text):
    words = [w.lower() for w in re.split(r"[^\w]|_", text) if w]
    return _stem.stemWords([w for w in words if w not in STOP])


class Bm25:
    def __init__(self, docs, k1=0.9, b=0.4):
        self.post, self.len = {}, []
        for i, d in enumerate(docs):
            ts = terms(d)
            self.len.append(len(ts))
            tf = {}
            for t in ts:
                tf[t] = tf.get(t, 0) + 1
            for t, c in tf.items():
                self.post.setdefault(t, []).append((i, c))
        self.avg = max(sum(self.len) / max(len(self.len), 1), 1.0)
        self.k1, self.b = k1, b

    def scores(self, q):
        n = len(self.len)
        s = np.zeros(n, np.float32)
        for t in terms(q):  # repeated query terms count again, as in Rust
            lst = self.post.get(t)
            if not lst:
                continue
            idf = math.log(1 + (n - len(lst) + 0.5) / (len(lst) + 0.5))
            for i, tf in lst:
                s[i] += idf * tf * (self.k1 + 1) / (tf + self.k1 * (1 - self.b + self.b * self.len[i] / self.avg))
        return s


def z(m):
    m = m.astype(np.float64)
    return (m - m.mean(1, keepdims=True)) / np.maximum(m.std(1, keepdims=True), 1e-6)


def metrics(scores, gold):
    top = np.argsort(-scores, axis=1, kind="stable")[:, :10]
    t1 = mrr = 0.0
    for row, g in zip(top, gold):
        ranks = [r for r, d in enumerate(row) if d in g]
        if ranks:
            t1 += ranks[0] == 0
            mrr += 1 / (ranks[0] + 1)
    return f"{t1 / len(gold):.3f} / {mrr / len(gold):.3f}"


def jl(p):
    op = gzip.open if p.endswith(".gz") else open
    with op(p, "rt") as f:
        return [json.loads(l) for l in f if l.strip()]


DIR = sys.argv[1]
corpus = jl(f"{DIR}/corpus-1k.jsonl.gz")
pos = {d["id"]: i for i, d in enumerate(corpus)}
texts = [f"{d['title']}. {d['text']}" if d.get("title", "").strip() else d["text"] for d in corpus]
sets = {}
for name, rows in (("questions", jl(f"{DIR}/fanout.jsonl")), ("descriptions", jl(f"{DIR}/desc-1k.jsonl.gz")),
                   ("pq", [r for r in jl(f"{DIR}/pairs-1k.jsonl.gz") if r["kind"] == "heldout"]),
                   ("click-test", jl(f"{DIR}/fanout-test.jsonl"))):
    kept = [(r["query"], {pos[x] for x in (r.get("doc_ids") or [r["doc_id"]]) if x in pos}) for r in rows]
    sets[name] = [k for k in kept if k[1]]
bm = Bm25(texts)
D = emb.embed(texts)
base = {}
for name, qs in sets.items():
    Q = emb.embed([q for q, _ in qs])
    base[name] = (Q @ D.T, np.stack([bm.scores(q) for q, _ in qs]))
emb._save_store()  # the ONNX Runtime embeddings, cached for the next run
print("set: MIPS | BM25 (top-1 / MRR@10)")
for name, qs in sets.items():
    g = [x for _, x in qs]
    print(f"  {name}: {metrics(base[name][0], g)} | {metrics(base[name][1], g)}")
for path in sys.argv[2:]:
    lg = np.load(path)
    print(os.path.basename(path))
    for name, qs in sets.items():
        g = [x for _, x in qs]
        car = lg[name].astype(np.float32)
        mips, bm25 = base[name]
        cells = [f"CaR {metrics(car, g)}"]
        for w in (0.25, 0.5):
            cells.append(f"hybrid bm25 {w}: {metrics(z(car) + z(mips) + w * z(bm25), g)}")
        cells.append(f"CaR+MIPS: {metrics(z(car) + z(mips), g)}")
        print(f"  {name}: " + " | ".join(cells))
