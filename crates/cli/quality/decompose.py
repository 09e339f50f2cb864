"""Query decomposition (issue 11): a question that asks about several things ("the GDP of China,
USA, Canada and France", "who are the 5 richest people and when were they born?") is one
embedding in MIPS, a blend of all its parts. Rules cut it into sub-queries (its first clause, the
items of a list of names) and a document scores the best of the query's and its sub-queries'
scores. Label-free and query-side: it needs no training, and it applies to every method.
Rules were written looking only at the training half of data/fanout-split; the test half, the
whole question set and the description set measure them.
Usage (from the repository root, after `fedsearch data wiki` and `data split`, QUALITY.md):
  target/ort-venv/bin/python crates/cli/quality/decompose.py [data/wiki-1k]"""
import json, os, re, sys
import numpy as np
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import emb
from bm25 import BM25

WH = r"(?:what|when|where|who|whom|whose|which|how|in what|in which|are|is|was|were|did|do|does|list|name)"
# sentence ends (not "U.S."), and "(,) and what/who/…" joints
CLAUSE = re.compile(r"(?<=[?!;])\s+|(?<=[a-z0-9)]{2}\.)\s+|,?\s+(?:and|&)\s+(?=" + WH + r"\b)", re.I)
LEAD = re.compile(r"^(?:and|or|the|&)\s+", re.I)


def clauses(q):
    """The query cut at sentence ends and at "and what/who/…" joints."""
    return [c.strip(" ,?.") for c in CLAUSE.split(q) if c and c.strip(" ,?.")]


def list_items(clause):
    """Items of a list of ≥ 3 names ("A, B, C, and D"): short comma-separated segments holding a
    capital letter; the first is the capitalised run that ends the text before the first comma."""
    segs = [s.strip() for s in clause.split(",")]
    if len(segs) < 3:
        return []
    items = []
    head = re.findall(r"((?:[A-Z][\w.'&-]*\s+)*[A-Z][\w.'&-]*)\s*$", segs[0])
    if head:
        items.append(head[0])
    for s in segs[1:]:
        s = LEAD.sub("", s)
        # "D and E" at the end of the list: two items
        for part in re.split(r"\s+(?:and|or|&)\s+", s):
            part = LEAD.sub("", part).strip(" ?.")
            w = part.split()
            if 1 <= len(w) <= 4 and any(c.isupper() for c in part):
                # keep the leading capitalised run ("Bale have respectively" → "Bale")
                run = re.match(r"((?:[A-Z0-9][\w.'&-]*\s*)+)", part)
                if run:
                    items.append(run.group(1).strip())
    return items if len(items) >= 3 else []


def sub_queries(q, rules="both"):
    subs = []
    cl = clauses(q)
    if rules in ("both", "clauses") and len(cl) > 1 and len(cl[0].split()) >= 3:
        subs.append(cl[0])
    if rules in ("both", "lists"):
        for c in cl:
            subs += list_items(c)
    out, seen = [], {q}
    for s in subs:
        if s not in seen:
            seen.add(s)
            out.append(s)
    return out


def load(path):
    return [json.loads(l) for l in open(path)]


def metrics(S, golds):
    top = np.argsort(-S, axis=1)[:, :10]
    t1 = mrr = 0.0
    for i, g in enumerate(golds):
        r = [k for k, d in enumerate(top[i]) if d in g]
        if r:
            t1 += r[0] == 0
            mrr += 1 / (r[0] + 1)
    return f"{t1 / len(golds):.3f} / {mrr / len(golds):.3f}"


def z(S):
    return (S - S.mean(-1, keepdims=True)) / (S.std(-1, keepdims=True) + 1e-9)


def main():
    root = sys.argv[1] if len(sys.argv) > 1 else "data/wiki-1k"
    docs = load(f"{root}/corpus.jsonl")
    pos = {d["id"]: i for i, d in enumerate(docs)}
    texts = [f"{d['title']}. {d['text']}" if d["title"].strip() else d["text"] for d in docs]
    D = emb.embed(texts, label="documents")
    bm = BM25(texts)
    sets = {}
    for name, path in (("train half", "data/fanout-split/train.jsonl"), ("test half", "data/fanout-split/test.jsonl"),
                       ("questions", "../shared/data/fanoutqa_test_questions.jsonl"), ("descriptions", f"{root}/queries.jsonl")):
        rows = []
        for r in load(path):
            g = {pos[t] for t in (r.get("doc_ids") or [r.get("doc_id")]) if t in pos}
            if g:
                rows.append((r["query"], g))
        sets[name] = rows
    if "--show" in sys.argv:
        for q, _ in sets["train half"]:
            s = sub_queries(q)
            if s:
                print(q, "\n   ->", s)
        return
    rules = next((a.split("=")[1] for a in sys.argv if a.startswith("--rules=")), "both")
    for name, rows in sets.items():
        qs = [q for q, _ in rows]
        golds = [g for _, g in rows]
        subs = [sub_queries(q, rules) for q in qs]
        n_dec = sum(1 for s in subs if s)
        Q = emb.embed(qs, label=name)
        flat = [s for ss in subs for s in ss]
        E = emb.embed(flat, label=name + " subs") if flat else np.zeros((0, D.shape[1]), np.float32)
        M = Q @ D.T
        Bm = np.stack([bm.scores(q) for q in qs])
        res = {"MIPS": M, "z(MIPS) + 0.5 z(BM25)": z(M) + 0.5 * z(Bm)}
        raw = M.copy(); zmax = z(M); hyb = z(M) + 0.5 * z(Bm); hyb_sub = hyb.copy(); mean_q = M.copy()
        hyb_raw = hyb.copy()
        k = 0
        for i, ss in enumerate(subs):
            if not ss:
                continue
            S = E[k:k + len(ss)] @ D.T
            k += len(ss)
            raw[i] = np.maximum(M[i], S.max(0))
            zmax[i] = np.maximum(z(M[i]), z(S).max(0))
            hyb[i] = np.maximum(z(M[i]), z(S).max(0)) + 0.5 * z(Bm[i])
            Bs = np.stack([bm.scores(s) for s in ss])
            hyb_sub[i] = np.maximum(z(M[i]) + 0.5 * z(Bm[i]), (z(S) + 0.5 * z(Bs)).max(0))
            mean_q[i] = (M[i] + S.mean(0)) / 2
            hyb_raw[i] = z(raw[i]) + 0.5 * z(Bm[i])
        res["MIPS, max over sub-queries (cosine)"] = raw
        res["MIPS, max over sub-queries (z-scores)"] = zmax
        res["MIPS, mean of query and sub-queries"] = mean_q
        res["max z(MIPS) over sub-queries + 0.5 z(BM25)"] = hyb
        res["max over sub-queries of z(MIPS) + 0.5 z(BM25)"] = hyb_sub
        res["z(max cosine over sub-queries) + 0.5 z(BM25)"] = hyb_raw
        print(f"== rules {rules}, {name}: {len(rows)} queries, {n_dec} decomposed, {len(flat)} sub-queries")
        for m, S in res.items():
            print(f"  {m:<48} {metrics(S, golds)}", flush=True)


if __name__ == "__main__":
    main()
