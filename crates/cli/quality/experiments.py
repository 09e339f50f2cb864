"""Every head-only / fusion experiment of QUALITY.md on both dev sets.
Usage: SUMMARIES=summaries_en-us.json python experiments.py [N_DOCS=1000]
(venv: numpy onnx onnxruntime tokenizers safetensors)."""
from exp import *
from bm25 import BM25

N = int(sys.argv[1]) if len(sys.argv) > 1 else 1000
st = Setup(N); n = len(st.titles)
report = reporter(st, N, 44)
MI = {k: st.sets[k][0] @ st.D.T for k in st.sets}
bm = BM25([data.full_text(t) for t in st.titles])
B = {k: np.stack([bm.scores(q) for q in st.sets[k][2]]) for k in st.sets}
report("MIPS", lambda k: MI[k]); report("BM25", lambda k: B[k])
for w in (0.25, 0.5, 1.0): report(f"z(MIPS) + {w} z(BM25)", lambda k: z(MI[k]) + w * z(B[k]))
pq = pq_naive(st.titles); Qp = emb.embed([q for q, _ in pq]); yp = np.array([i for _, i in pq])
cnt = np.bincount(yp, minlength=n)[:, None]
M = np.zeros_like(st.D); np.add.at(M, yp, Qp); M /= np.maximum(cnt, 1)
def centroid(a): W = st.D + a * M; return (W / np.linalg.norm(W, axis=1, keepdims=True))
for a in (0.25, 0.5, 1.0):
    W = centroid(a); report(f"centroid a={a} (no training)", lambda k: st.sets[k][0] @ W.T)
def maxsim(Q):
    out = Q @ st.D.T; np.maximum.at(out.T, yp, (Q @ Qp.T).T); return out
report("max-sim over document + its pseudo-queries", lambda k: maxsim(st.sets[k][0]))
runs = [("CaR zeros (naive)", dict()), ("CaR zeros, no bias", dict(bias=False))]
runs += [(f"CaR docs-init, pull {l}", dict(D=st.D, init="docs", lam=l)) for l in (0.0, 0.01, 0.1, 0.3, 1.0)]
runs += [(f"CaR docs-init, no bias, pull {l}", dict(D=st.D, init="docs", lam=l, bias=False)) for l in (0.1, 0.3)]
runs += [(f"CaR centroid-init, no bias, pull {l}", dict(W0=centroid(0.5).T.copy(), lam=l, bias=False)) for l in (0.3, 1.0)]
runs += [(f"CaR zeros, scale {s}, pq + documents", dict(scale=s)) for s in (5.0, 10.0, 40.0)]
for name, kw in runs:
    Qt, yt = (np.concatenate([Qp, st.D]), np.concatenate([yp, np.arange(n)])) if "documents" in name else (Qp, yp)
    h = train_head(Qt, yt, n, **kw)
    C = {k: car_scores(st.sets[k][0], h) for k in st.sets}
    report(name, lambda k: C[k])
    if name.startswith("CaR docs-init, pull 0.1") or name.startswith("CaR zeros (naive)"):
        report(name + " + z(MIPS) + .5 z(BM25)", lambda k: z(C[k]) + z(MI[k]) + .5 * z(B[k]))
