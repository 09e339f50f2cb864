"""Query expansion (QUALITY.md, stop 14): q' = q + beta * (weighted) mean of the query's top-k
documents or keys, on both dev sets. Usage: python prf.py [N_DOCS=1000]."""
from exp import *
N = int(sys.argv[1]) if len(sys.argv) > 1 else 1000; st = Setup(N); n = len(st.titles)
report = reporter(st, N, 48)
def cmean(pairs):
    Q = emb.embed([q for q, _ in pairs]); y = np.array([i for _, i in pairs])
    cnt = np.bincount(y, minlength=n)[:, None]
    M = np.zeros_like(st.D); np.add.at(M, y, Q); return M / np.maximum(cnt, 1)
Mn, Mq = cmean(pq_naive(st.titles)), cmean(category_questions(st.titles))
K = st.D + 0.5 * Mn + 1.0 * Mq; K /= np.linalg.norm(K, axis=1, keepdims=True)
MI = {k: st.sets[k][0] @ st.D.T for k in st.sets}
KE = {k: st.sets[k][0] @ K.T for k in st.sets}
report("MIPS", lambda k: MI[k]); report("keys (default)", lambda k: KE[k])
def prf(Q, S, Kd, k, beta, temp=None):
    top = np.argsort(-S, axis=1)[:, :k]
    F = Kd[top]  # [q, k, d]
    if temp:
        w = np.take_along_axis(S, top, 1) / temp; w = np.exp(w - w.max(1, keepdims=True)); w /= w.sum(1, keepdims=True)
        m = (F * w[:, :, None]).sum(1)
    else: m = F.mean(1)
    q2 = Q + beta * m; q2 /= np.linalg.norm(q2, axis=1, keepdims=True)
    return q2 @ Kd.T
for base, Kd, S in (("MIPS", st.D, MI), ("keys", K, KE)):
    for k in (3, 5, 10):
        for beta in (0.3, 0.6, 1.0):
            R = {s: prf(st.sets[s][0], S[s], Kd, k, beta) for s in st.sets}
            report(f"{base} PRF k={k} beta={beta}", lambda s: R[s])
    for k, beta, temp in ((10, 0.6, 0.05), (10, 1.0, 0.05), (20, 1.0, 0.05)):
        R = {s: prf(st.sets[s][0], S[s], Kd, k, beta, temp) for s in st.sets}
        report(f"{base} PRF k={k} beta={beta} soft {temp}", lambda s: R[s])
