"""Where the hybrid's points are, and whether another normalisation finds more (issue 11, stop 26):
reads the same `fedsearch eval --scores-out` files as fusion_settings.py and
1. compares score normalisations before the weighted sum, each with its own best weighting on the
   twelve fitting halves (bounded as fusion_settings.py: no fitting half more than a point below
   the default (1, 0.25, 0.25) on z-scores): z over every document (`fedsearch_core::search::fuse`),
   z over each method's top k, (s - mean) / (max - mean), and (s - s_k) / (s_1 - s_k);
2. adds the head alone's scores to the adapter's CaR (both CaRs in one fusion);
3. splits the questions by whether they name one of their gold articles' titles, and reports the
   default hybrid and MIPS on each part, with top-5.
Usage: python fusion_norms.py NAME=SCORES.jsonl[@CORPUS.jsonl] ...   (as fusion_settings.py)"""
import json, re, sys
import numpy as np
from fusion_fit import load, z
from fusion_settings import HALVES, halves, kind

DEFAULT = (1.0, 0.25, 0.25)
CARS = ("car_adapter", "car")
METHODS = ("car_adapter", "car", "mips", "bm25")


def read(arg, train_q, questions):
    """One setting: raw scores [rows, documents] per method, gold positions, row indices per half,
    and the document titles."""
    name, rest = arg.split("=", 1)
    path, _, corpus = rest.partition("@")
    ids = [r["id"] for r in load(corpus or "data/wiki-1k/corpus.jsonl")]
    pos = {d: i for i, d in enumerate(ids)}
    raw, gold, kinds, query = {m: [] for m in METHODS}, [], [], []
    for line in open(path):  # one row at a time: a 10k file is over a gigabyte
        r = json.loads(line)
        for m in METHODS:
            raw[m].append(np.asarray(r[m], np.float32))
        gold.append({pos[g] for g in r["gold"]})
        query.append(r["query"])
        kinds.append(kind(r, questions))
    by_half = {h: np.asarray(v) for h, v in halves(kinds, query, train_q).items()}
    print(name, {h: len(v) for h, v in by_half.items()}, flush=True)
    return name, ({m: np.stack(v) for m, v in raw.items()}, gold, by_half, query, ids)


def z_top(k):
    def f(S):
        T = -np.sort(-S, axis=1)[:, :k]
        return (S - T.mean(1, keepdims=True)) / np.maximum(T.std(1, keepdims=True), 1e-6)
    return f


def max_mean(S):
    m = S.mean(1, keepdims=True)
    return (S - m) / np.maximum(S.max(1, keepdims=True) - m, 1e-6)


def gap(k):
    def f(S):
        T = -np.sort(-S, axis=1)
        return (S - T[:, k - 1:k]) / np.maximum(T[:, :1] - T[:, k - 1:k], 1e-6)
    return f


NORMS = {"z (the default)": z, "z over top 10": z_top(10), "z over top 30": z_top(30), "z over top 100": z_top(100),
         "(s-mean)/(max-mean)": max_mean, "(s-s10)/(s1-s10)": gap(10), "(s-s100)/(s1-s100)": gap(100)}


def top1(S, gold, idx):
    return float(np.mean([t in gold[i] for t, i in zip(S.argmax(1), idx)])) if len(idx) else 0.0


def rank_of_gold(S, gold, idx):
    return np.array([int(np.sum(row > max(row[g] for g in gold[i]))) for row, i in zip(S, idx)])


def main():
    train_q = {r["query"] for r in load("data/fanout-split/train.jsonl")}
    questions = {r["query"] for r in load("../shared/data/fanoutqa_test_questions.jsonl")}
    S = dict(read(a, train_q, questions) for a in sys.argv[1:])
    grid = [(1.0, float(m), float(b)) for m in np.arange(0, 1.01, 0.125) for b in np.arange(0.0, 1.01, 0.125)]
    keys = [(n, c, h) for n in S for c in CARS for h in HALVES]
    fit = [k for k in keys if k[2].endswith("fit")]
    shown = [k for k in keys if not k[2].endswith("fit")]
    res = {}
    for norm, f in NORMS.items():
        for n, (raw, gold, by_half, _, _) in S.items():
            N = {m: f(v) for m, v in raw.items()}
            for c in CARS:
                for h, idx in by_half.items():
                    for w in grid:
                        res[(norm, w, n, c, h)] = top1(w[0] * N[c][idx] + w[1] * N["mips"][idx] + w[2] * N["bm25"][idx], gold, idx)
    base = {k: res[("z (the default)", DEFAULT) + k] for k in keys}
    print("1. normalisations: best weighting on the fitting halves (sum), worst fitting half against the default, then the other halves")
    print("   columns: " + "; ".join(f"{n} {'adapter' if c == 'car_adapter' else 'head'} {h}" for n, c, h in shown))
    print(f"{'default z ' + str(DEFAULT[1:]):<44}{sum(base[k] for k in fit):7.3f}{0:+7.3f} |" + "".join(f"{base[k]:7.3f}" for k in shown))
    for norm in NORMS:
        total = {w: sum(res[(norm, w) + k] for k in fit) for w in grid}
        worst = {w: min(res[(norm, w) + k] - base[k] for k in fit) for w in grid}
        for label, cand in (("bounded", [w for w in grid if worst[w] >= -0.01 - 1e-9]), ("unbounded", grid)):
            if not cand:
                print(f"{norm + ' ' + label:<44}  no weighting within a point on every fitting half")
                continue
            w = max(cand, key=lambda w: total[w])
            print(f"{norm + ' ' + label + ' ' + str(w[1:]):<44}{total[w]:7.3f}{worst[w]:+7.3f} |" + "".join(f"{res[(norm, w) + k]:7.3f}" for k in shown))
    Z = {n: {m: z(v) for m, v in raw.items()} for n, (raw, _, _, _, _) in S.items()}  # the default's z-scores
    print("2. both CaRs: adapter + x * head + 0.25 * (1 + x) * (MIPS + BM25), z-scores; halves as in 1")
    for n, (_, gold, by_half, _, _) in S.items():
        N = Z[n]
        for x in (0.0, 0.25, 0.5, 1.0):
            figures = [top1(N["car_adapter"][i] + x * N["car"][i] + 0.25 * (1 + x) * (N["mips"][i] + N["bm25"][i]), gold, i) for i in by_half.values()]
            print(f"   {n} x={x}: " + " ".join(f"{h} {v:.3f}" for h, v in zip(HALVES, figures)))
    print("3. questions that name a gold article's title (parenthesis dropped) and those that do not")
    for n, (_, gold, by_half, query, ids) in S.items():
        N = Z[n]
        idx = np.sort(np.concatenate([by_half["questions fit"], by_half["questions other"]]))
        title = lambda d: re.sub(r" \(.*\)$", "", ids[d]).lower()
        named = np.array([any(title(g) in query[i].lower() for g in gold[i]) for i in idx])
        for c in CARS:
            hyb = rank_of_gold(N[c][idx] + 0.25 * (N["mips"][idx] + N["bm25"][idx]), gold, idx)
            mips = rank_of_gold(N["mips"][idx], gold, idx)
            for label, m in (("named", named), ("not named", ~named)):
                print(f"   {n} {'adapter' if c == 'car_adapter' else 'head'} {label} ({m.sum()}): hybrid top-1 {np.mean(hyb[m] == 0):.3f} top-5 {np.mean(hyb[m] < 5):.3f}; MIPS top-1 {np.mean(mips[m] == 0):.3f} top-5 {np.mean(mips[m] < 5):.3f}")


if __name__ == "__main__":
    main()
