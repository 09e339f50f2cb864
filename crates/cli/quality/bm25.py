"""Quality experiments: a plain BM25 (k1 0.9, b 0.4, stop words, no stemming) for fusion tests."""
import numpy as np, re, math
STOP = set("a an and are as at be but by for if in into is it no not of on or such that the their then there these they this to was will with what which who whom when where why how do does did of from were has have had its".split())
def terms(t): return [w for w in re.findall(r"\w+", t.lower()) if w not in STOP]
class BM25:
    def __init__(self, docs, k1=0.9, b=0.4):
        self.tf = []; df = {}; self.len = []
        for d in docs:
            ts = terms(d); c = {}
            for w in ts: c[w] = c.get(w, 0) + 1
            self.tf.append(c); self.len.append(len(ts))
            for w in c: df[w] = df.get(w, 0) + 1
        N = len(docs); self.avg = np.mean(self.len); self.k1, self.b = k1, b
        self.idf = {w: math.log(1 + (N - n + 0.5) / (n + 0.5)) for w, n in df.items()}
        self.post = {}
        for i, c in enumerate(self.tf):
            for w, f in c.items(): self.post.setdefault(w, []).append((i, f))
    def scores(self, q):
        s = np.zeros(len(self.tf), np.float32)
        for w in set(terms(q)):
            for i, f in self.post.get(w, []):
                s[i] += self.idf[w] * f * (self.k1 + 1) / (f + self.k1 * (1 - self.b + self.b * self.len[i] / self.avg))
        return s
