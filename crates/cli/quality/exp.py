"""Quality experiments: metrics with several gold documents, the naive pseudo-queries, a numpy CaR
head (Adam, cross-entropy, optional L2 pull to its start), score standardisation and fusion."""
import re, sys, numpy as np, data, emb

def metrics(S, golds):
    top = np.argsort(-S, axis=1)[:, :10]
    t1 = t5 = mrr = 0.0
    for i, g in enumerate(golds):
        r = [k for k, d in enumerate(top[i]) if d in g]
        if r:
            t1 += r[0] == 0; t5 += r[0] < 5; mrr += 1 / (r[0] + 1)
    n = len(golds); return dict(top1=round(t1/n, 3), top5=round(t5/n, 3), mrr10=round(mrr/n, 3))

class Setup:
    def __init__(self, n):
        self.titles = data.corpus(n); self.pos = {t: i for i, t in enumerate(self.titles)}
        self.D = emb.embed([data.full_text(t) for t in self.titles])
        self.sets = {}
        for name, qs in (("fanout", data.fq_queries(self.titles)), ("desc", data.desc_queries(self.titles))):
            qs = [(q, g) for q, g in qs if g]
            self.sets[name] = (emb.embed([q for q, _ in qs]), [set(self.pos[t] for t in g) for _, g in qs], [q for q, _ in qs])

def pq_naive(titles, min_words=4, max_words=32, max_sent=99, title=True):
    out = []
    for i, t in enumerate(titles):
        if title: out.append((t, i))
        for s in data.sentences(data.S[t]["extract"])[:max_sent]:
            w = s.split()
            if len(w) >= min_words: out.append((" ".join(w[:max_words]), i))
    return out

def train_head(Q, y, n, D=None, init="zeros", lam=0.0, lr=1e-2, epochs=30, bs=256, scale=20.0, seed=0, neg_temp=None, bias=True, W0=None):
    d = Q.shape[1]; rng = np.random.default_rng(seed)
    if W0 is None: W0 = D.T.copy() if init == "docs" else np.zeros((d, n), np.float32)
    W = W0.copy(); b = np.zeros(n, np.float32)
    mW = np.zeros_like(W); vW = np.zeros_like(W); mb = np.zeros_like(b); vb = np.zeros_like(b); t = 0
    for ep in range(epochs):
        order = rng.permutation(len(y))
        for s in range(0, len(y), bs):
            idx = order[s:s+bs]; q = Q[idx]; yy = y[idx]
            z = scale * q @ W + b; z -= z.max(1, keepdims=True); p = np.exp(z); p /= p.sum(1, keepdims=True)
            p[np.arange(len(idx)), yy] -= 1; p /= len(idx)
            gW = scale * q.T @ p + lam * (W - W0); gb = p.sum(0) if bias else 0 * b
            t += 1
            for P, G, m, v in ((W, gW, mW, vW), (b, gb, mb, vb)):
                m *= 0.9; m += 0.1 * G; v *= 0.999; v += 0.001 * G * G
                P -= lr * (m / (1 - 0.9**t)) / (np.sqrt(v / (1 - 0.999**t)) + 1e-8)
    return W, b, scale

def car_scores(Q, head):
    W, b, s = head; return s * Q @ W + b

def reporter(st, N, width=48):
    """report(name, fn): prints top-1/top-5/MRR@10 on both dev sets for scores fn(set name)."""
    def report(name, fn):
        r = {k: metrics(fn(k), st.sets[k][1]) for k in ("fanout", "desc")}
        print(f"{N} {name:<{width}} fanout {r['fanout']}  desc {r['desc']}", flush=True)
        return r
    return report

def z(S): return (S - S.mean(1, keepdims=True)) / (S.std(1, keepdims=True) + 1e-9)
def lsm(S): S = S - S.max(1, keepdims=True); return S - np.log(np.exp(S).sum(1, keepdims=True))

COPULA = re.compile(r"^(.{1,120}?)\s+(?:is|was|are|were)\s+(?:a|an|the|one of the)\s+(.+?)[.;]?$")
def category_questions(titles):
    """(question, doc) pairs: "Which <category>?" from the first sentence's predicate, cut at
    the first relative clause, and "Which <category> <rest of the sentence>?" for the whole of it."""
    out = []
    for i, t in enumerate(titles):
        sents = data.sentences(data.S[t]["extract"])
        if not sents: continue
        m = COPULA.match(sents[0])
        if not m: continue
        pred = m.group(2)
        short = re.split(r",| that | which | who | where | in which | located | known ", pred)[0].strip()
        words = short.split()
        if 1 <= len(words) <= 12: out.append((f"Which {' '.join(words)}?", i))
        full = pred.split()
        if len(full) > len(words) and len(full) <= 32: out.append((f"Which {' '.join(full)}?", i))
    return out

