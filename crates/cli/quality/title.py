"""Title fields (QUALITY.md, stop 14): BM25 over titles, a verbatim title match, title embeddings,
fused with MIPS or the keys, on both dev sets. Usage: python title.py [N_DOCS=1000]."""
from exp import *
from bm25 import BM25, terms
import re
N = int(sys.argv[1]) if len(sys.argv) > 1 else 1000; st = Setup(N); n = len(st.titles)
report = reporter(st, N, 48)
MI = {k: st.sets[k][0] @ st.D.T for k in st.sets}
report("MIPS", lambda k: MI[k])
bm = BM25([data.full_text(t) for t in st.titles])
B = {k: np.stack([bm.scores(q) for q in st.sets[k][2]]) for k in st.sets}
report("BM25", lambda k: B[k])
# title field: titles without the parenthesised disambiguation
clean = [re.sub(r"\s*\(.*\)$", "", t) for t in st.titles]
bt = BM25(clean)
BT = {k: np.stack([bt.scores(q) for q in st.sets[k][2]]) for k in st.sets}
report("BM25 titles", lambda k: BT[k])
# phrase match: every title term appears in the query, as a phrase
def phrase(q):
    ql = " " + " ".join(re.findall(r"\w+", q.lower())) + " "
    s = np.zeros(n, np.float32)
    for i, t in enumerate(clean):
        tt = " ".join(re.findall(r"\w+", t.lower()))
        if tt and (" " + tt + " ") in ql: s[i] = 1.0 + 0.1 * len(tt.split())
    return s
PH = {k: np.stack([phrase(q) for q in st.sets[k][2]]) for k in st.sets}
print("queries with a phrase hit", {k: float((PH[k].max(1) > 0).mean()) for k in PH})
TE = emb.embed(clean)
TM = {k: st.sets[k][0] @ TE.T for k in st.sets}
report("MIPS vs title embeddings", lambda k: TM[k])
pq = pq_naive(st.titles); Qp = emb.embed([q for q, _ in pq]); yp = np.array([i for _, i in pq])
cnt = np.bincount(yp, minlength=n)[:, None]
Mn = np.zeros_like(st.D); np.add.at(Mn, yp, Qp); Mn /= np.maximum(cnt, 1)
K = st.D + 0.5 * Mn; K /= np.linalg.norm(K, axis=1, keepdims=True)
KE = {k: st.sets[k][0] @ K.T for k in st.sets}
report("keys .5 pq", lambda k: KE[k])
for base_name, base in (("MIPS", MI), ("keys", KE)):
    for w in (0.25, 0.5, 1.0):
        report(f"z({base_name})+{w}z(BM25 titles)", lambda k: z(base[k]) + w * z(BT[k]))
    for w in (0.1, 0.2, 0.4):
        report(f"{base_name}+{w}*phrase", lambda k: base[k] + w * PH[k])
    for w in (0.25, 0.5):
        report(f"z({base_name})+{w}z(title emb)", lambda k: z(base[k]) + w * z(TM[k]))
    report(f"z({base_name})+.5z(BM25)+.5z(BM25 titles)", lambda k: z(base[k]) + .5*z(B[k]) + .5 * z(BT[k]))
    report(f"z({base_name})+.25z(BM25)+.1phrase", lambda k: z(base[k]) + .25*z(B[k]) + 1.0 * PH[k])
