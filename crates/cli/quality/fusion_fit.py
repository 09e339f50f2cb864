"""Hybrid weights chosen on half of the dev sets, measured on the other half (issue 11): reads
`fedsearch eval --scores-out` files (every method's scores per test and held-out query), fuses
them exactly as `fedsearch_core::search::fuse` (z-scores, population standard deviation), picks
weights on the fitting halves and reports them on the held-out halves, the whole sets and the
held-out pseudo-queries. The question set's halves are data/fanout-split's; the descriptions are
split by position (even lines fit, odd lines measure).
Usage: [FUSION_CAR=car] [FUSION_CORPUS=data/wiki-10k/corpus.jsonl] python fusion_fit.py SCORES.jsonl [CLICK_SCORES.jsonl] [--weights=1,1,0.5;2,0,0.25]
  CLICK_SCORES: a run trained with the training half's questions as clicks, whose test set is the
  other half (plus the descriptions): how much of what the CaR learned from clicks each fusion keeps."""
import itertools, json, os, sys
import numpy as np

CAR = os.environ.get("FUSION_CAR", "car_adapter")  # which CaR: car_adapter or car (head only)


def load(path):
    rows = [json.loads(l) for l in open(path)]
    return rows


def z(S):
    S = np.asarray(S, np.float32)
    return (S - S.mean(-1, keepdims=True)) / np.maximum(S.std(-1, keepdims=True), 1e-6)


def rrf(S, k=60.0):
    """Reciprocal rank: 1 / (k + rank), rank 1 for the best score."""
    ranks = np.empty(len(S), np.float32)
    ranks[np.argsort(-np.asarray(S, np.float32), kind="stable")] = np.arange(1, len(S) + 1)
    return 1.0 / (k + ranks)


def prepare(rows, ids, norm=z):
    """Per row: (car, mips, bm25) normalised (z-scores, or reciprocal ranks) as one [3, n]
    array, and the gold positions."""
    pos = {d: i for i, d in enumerate(ids)}
    return [(np.stack([norm(r[CAR]), norm(r["mips"]), norm(r["bm25"])]), {pos[g] for g in r["gold"]}) for r in rows]


def top1(prepped, w):
    w = np.asarray(w, np.float32)
    hits = sum(int(np.argmax(w @ Z) in g) for Z, g in prepped)
    return hits / max(len(prepped), 1)


def main():
    args = [a for a in sys.argv[1:] if not a.startswith("--")]
    rows = load(args[0])
    ids = [json.loads(l)["id"] for l in open(os.environ.get("FUSION_CORPUS", "data/wiki-1k/corpus.jsonl"))]
    train_q = {json.loads(l)["query"] for l in open("data/fanout-split/train.jsonl")}
    test_q = {json.loads(l)["query"] for l in open("data/fanout-split/test.jsonl")}
    questions = {json.loads(l)["query"] for l in open("../shared/data/fanoutqa_test_questions.jsonl")}
    test = [r for r in rows if r["set"] == "test"]
    held = [r for r in rows if r["set"] == "heldout"]
    qrows = [r for r in test if r["query"] in questions]
    drows = [r for r in test if r["query"] not in questions]
    sets = {
        "questions, fit half (train)": [r for r in qrows if r["query"] in train_q],
        "questions, other half (test)": [r for r in qrows if r["query"] in test_q],
        "questions (404)": qrows,
        "descriptions, fit half (even)": drows[0::2],
        "descriptions, other half (odd)": drows[1::2],
        "descriptions": drows,
        "held-out pseudo-queries": held,
    }
    P = {k: prepare(v, ids) for k, v in sets.items()}
    print({k: len(v) for k, v in sets.items()})
    grid = [w for w in itertools.product((0.5, 1.0, 1.5, 2.0, 3.0), (0.0, 0.5, 1.0), (0.0, 0.25, 0.5, 0.75, 1.0))]
    default = (1.0, 0.25, 0.25)  # HybridWeights::default() since stop 25 (fusion_settings.py)
    grid += [default]
    res = {w: {k: top1(P[k], w) for k in ("questions, fit half (train)", "descriptions, fit half (even)")} for w in grid}
    d0 = res[default]
    print("default", default, d0)
    # Fit: the best sum of the two fitting halves' top-1, and the best questions-half top-1 that
    # keeps the descriptions' fitting half at the default's figure or above.
    by_sum = max(grid, key=lambda w: (sum(res[w].values()), w == default))
    keep_desc = [w for w in grid if res[w]["descriptions, fit half (even)"] >= d0["descriptions, fit half (even)"]]
    by_q = max(keep_desc, key=lambda w: (res[w]["questions, fit half (train)"], w == default))
    print("columns: " + " | ".join(sets))
    print(f"{'weights (CaR, MIPS, BM25)':<52}" + "".join(f"{k[:9]:>10}" for k in sets))
    extra = [tuple(float(x) for x in w.split(",")) for a in sys.argv if a.startswith("--weights=") for w in a[10:].split(";")]
    shown = [("default", default), ("before stop 24", (1.0, 1.0, 0.5)), ("fit: both halves' sum", by_sum), ("fit: questions, descriptions kept", by_q),
             ("CaR alone", (1.0, 0.0, 0.0)), ("MIPS alone", (0.0, 1.0, 0.0))] + [("asked", w) for w in extra]
    for name, w in shown:
        print(f"{name + ' ' + str(w):<52}" + "".join(f"{top1(P[k], w):>10.3f}" for k in sets), flush=True)
    R = {k: prepare(v, ids, rrf) for k, v in sets.items()}
    for w in (default, (1.0, 1.0, 0.5), (1.0, 1.0, 1.0), by_sum, by_q):
        print(f"{'reciprocal ranks (k 60) ' + str(w):<52}" + "".join(f"{top1(R[k], w):>10.3f}" for k in sets), flush=True)
    if len(args) > 1:
        crows = load(args[1])
        ctest = [r for r in crows if r["set"] == "test" and r["query"] in test_q]
        cdesc = [r for r in crows if r["set"] == "test" and r["query"] not in questions]
        C = {"held-out half, clicks from the other": prepare(ctest, ids), "descriptions": prepare(cdesc, ids)}
        print({k: len(v) for k, v in C.items()})
        for name, w in shown:
            print(f"clicks: {name + ' ' + str(w):<52}" + "".join(f"{top1(C[k], w):>10.3f}" for k in C), flush=True)


if __name__ == "__main__":
    main()
