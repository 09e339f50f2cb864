"""Question-shaped pseudo-queries (issue 11): do pseudo-queries that look like the questions
people ask move the head towards them? Rules over each summary's first sentence
("X is/was a/an/the Y ..." → "Which Y?" and "Which Y, …?"), compared with the naive pseudo-queries,
head-only CaR from the centroid start (the CLI's recipe) and from zeros, both dev sets.
Usage: SUMMARIES=summaries_en-us.json python questions.py [N_DOCS=1000] (20000: all 10,033)."""
from exp import *

N = int(sys.argv[1]) if len(sys.argv) > 1 else 1000
st = Setup(N); n = len(st.titles)
report = reporter(st, N, 52)

MI = {k: st.sets[k][0] @ st.D.T for k in st.sets}
report("MIPS", lambda k: MI[k])
pq = pq_naive(st.titles)
qs = category_questions(st.titles)
print(f"naive pseudo-queries {len(pq)}, question-shaped {len(qs)}; e.g. {qs[:3]}", flush=True)
def centroid_keys(pairs, a=0.5):
    Q = emb.embed([q for q, _ in pairs]); y = np.array([i for _, i in pairs])
    cnt = np.bincount(y, minlength=n)[:, None]
    M = np.zeros_like(st.D); np.add.at(M, y, Q); M /= np.maximum(cnt, 1)
    has = (cnt > 0).astype(np.float32)
    W = st.D + a * M * has + 0 * (1 - has)
    return Q, y, W / np.linalg.norm(W, axis=1, keepdims=True)
for name, pairs in (("naive", pq), ("questions", qs), ("naive + questions", pq + qs)):
    Q, y, K = centroid_keys(pairs)
    report(f"centroid a=0.5 ({name}), no training", lambda k: st.sets[k][0] @ K.T)
    h = train_head(Q, y, n, W0=K.T.copy(), lam=1.0, bias=False)
    C = {k: car_scores(st.sets[k][0], h) for k in st.sets}
    report(f"CaR centroid-init, pull 1 ({name})", lambda k: C[k])
    h = train_head(Q, y, n)
    C = {k: car_scores(st.sets[k][0], h) for k in st.sets}
    report(f"CaR zeros ({name})", lambda k: C[k])

# Keys only (no training): documents + a·mean(pseudo-queries) + b·mean(category questions),
# each set its own centroid (QUALITY.md, "Category questions").
def cmean(pairs):
    Q = emb.embed([q for q, _ in pairs]); y = np.array([i for _, i in pairs])
    cnt = np.bincount(y, minlength=n)[:, None]
    M = np.zeros_like(st.D); np.add.at(M, y, Q); return M / np.maximum(cnt, 1)
Mn, Mq = cmean(pq), cmean(qs)
for a, b in ((0.5, 0.0), (0.0, 0.5), (0.5, 0.5), (0.5, 0.25), (0.25, 0.5), (0.5, 1.0), (1.0, 1.0)):
    W = st.D + a * Mn + b * Mq; W /= np.linalg.norm(W, axis=1, keepdims=True)
    report(f"keys D + {a} pseudo-queries + {b} questions", lambda k: st.sets[k][0] @ W.T)
