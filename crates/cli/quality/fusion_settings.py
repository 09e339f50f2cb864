"""One hybrid weighting for every setting (issue 11, stop 25): reads several `fedsearch eval
--scores-out` files (settings such as 1,000 documents, 1,000 with clicks, 10,033), fuses each
for the CaR with the adapter and for the head alone, exactly as `fedsearch_core::search::fuse`
(fusion_fit.py's z-scores), and picks the weighting (CaR fixed at 1; MIPS and BM25 on a grid)
with the best sum of top-1 over every fitting half among those that lose no fitting half more
than a point against the previous weights (1, 1, 0.5). Then it reports the other halves.
Halves: questions split as data/fanout-split (a run trained with the training half as clicks
scores only the test half: that half is split by position), descriptions by position (even
lines fit, odd lines measure).
Usage: python fusion_settings.py NAME=SCORES.jsonl[@CORPUS.jsonl] ...   (CORPUS: data/wiki-1k/corpus.jsonl)
  e.g. 1k=A.scores.jsonl 1k+clicks=B.scores.jsonl 10k=T.scores.jsonl@data/wiki-10k/corpus.jsonl"""
import json, sys
import numpy as np
from fusion_fit import load, top1, z

PREVIOUS = (1.0, 1.0, 0.5)
CARS = ("car_adapter", "car")  # the CaR with the adapter, the head alone
HALVES = ("questions fit", "questions other", "descriptions fit", "descriptions other", "pq")


def halves(kinds, queries, train_q):
    """Row indices of each half, from each row's kind ("q" a question, "d" a description, "pq" a
    held-out pseudo-query) and query: questions split as data/fanout-split (a run trained with
    the training half as clicks scores only the test half: that half is split by position),
    descriptions by position (even lines fit, odd lines measure)."""
    q = [i for i, k in enumerate(kinds) if k == "q"]
    d = [i for i, k in enumerate(kinds) if k == "d"]
    if any(queries[i] in train_q for i in q):
        qf, qo = [i for i in q if queries[i] in train_q], [i for i in q if queries[i] not in train_q]
    else:  # only the test half scored: its training half were clicks
        qf, qo = q[0::2], q[1::2]
    return dict(zip(HALVES, (qf, qo, d[0::2], d[1::2], [i for i, k in enumerate(kinds) if k == "pq"])))


def kind(row, questions):
    return "pq" if row["set"] == "heldout" else "q" if row["query"] in questions else "d"


def settings(args):
    train_q = {r["query"] for r in load("data/fanout-split/train.jsonl")}
    questions = {r["query"] for r in load("../shared/data/fanoutqa_test_questions.jsonl")}
    out = {}
    for arg in args:
        name, rest = arg.split("=", 1)
        path, _, corpus = rest.partition("@")
        pos = {r["id"]: i for i, r in enumerate(load(corpus or "data/wiki-1k/corpus.jsonl"))}
        items, kinds, queries = {car: [] for car in CARS}, [], []
        for line in open(path):  # one row at a time: a 10k file is over a gigabyte
            r = json.loads(line)
            gold = {pos[g] for g in r["gold"]}
            for car in CARS:
                items[car].append((np.stack([z(r[car]), z(r["mips"]), z(r["bm25"])]), gold))
            kinds.append(kind(r, questions))
            queries.append(r["query"])
        idx = halves(kinds, queries, train_q)
        rows = {car: {h: [items[car][i] for i in idx[h]] for h in HALVES} for car in CARS}
        out[name] = rows
        print(name, {h: len(v) for h, v in rows["car"].items()}, flush=True)
    return out


def main():
    S = settings(sys.argv[1:])
    steps = [(1.0, float(m), float(b)) for m in np.arange(0, 1.01, 0.125) for b in np.arange(0.125, 0.76, 0.125)]
    grid = list(dict.fromkeys(steps + [PREVIOUS]))
    res = {w: {(n, c, h): top1(S[n][c][h], w) for n in S for c in CARS for h in HALVES} for w in grid}
    fit = [k for k in res[PREVIOUS] if k[2].endswith("fit")]
    total = {w: sum(res[w][k] for k in fit) for w in grid}
    worst = {w: min(res[w][k] - res[PREVIOUS][k] for k in fit) for w in grid}
    allowed = [w for w in grid if worst[w] >= -0.01 - 1e-9]
    pick = max(allowed, key=lambda w: (total[w], w == PREVIOUS))
    best_any = max(grid, key=lambda w: total[w])
    print(f"previous {PREVIOUS}: fitting halves' sum {total[PREVIOUS]:.3f}")
    print(f"pick {pick}: sum {total[pick]:.3f}, worst fitting half {worst[pick]:+.3f}")
    print(f"best sum without the bound {best_any}: {total[best_any]:.3f}, worst fitting half {worst[best_any]:+.3f}")
    cols = [(n, c, h) for n in S for c in CARS for h in ("questions other", "descriptions other", "pq")]
    print("columns: " + "; ".join(f"{n} {'adapter' if c == 'car_adapter' else 'head'} {h}" for n, c, h in cols))
    for name, w in (("previous", PREVIOUS), ("pick", pick), ("best sum", best_any)):
        print(f"{name + ' ' + str(w):<28}" + "".join(f"{res[w][k]:>7.3f}" for k in cols))


if __name__ == "__main__":
    main()
