"""Adapter experiments at a scale the CPU cannot reach: the soft-embedding adapter (a d x d map on
the word embeddings, before positions) and the keyed CaR head trained end to end for thousands of
steps, in PyTorch on a GPU, on the CLI's own corpus and pseudo-queries. Both dev sets and the
held-out pseudo-queries (pq_top1) are scored at every checkpoint.

Inputs (one folder, DIR): model/ (config.json, model.safetensors, tokenizer.json), pairs-1k.jsonl.gz
(`fedsearch eval --pairs-out`: kinds train, heldout, question), corpus-1k.jsonl.gz,
desc-1k.jsonl.gz (Wikidata descriptions), fanout.jsonl (the question set), fanout-train.jsonl /
fanout-test.jsonl (`fedsearch data split`), and the same -10k files where present.
Usage: python adapter_gpu.py DIR OUT_DIR [DEADLINE_SECONDS [first|seeds|federated]]
The model here mirrors crates/core (BERT, mean pooling, L2 normalisation; logits = 20 q.(K + W) + b,
pull lambda/2 (|W|^2 + |b|^2); keys = normalise(doc + 0.5 mean(pq) + 1.0 mean(questions)))."""
import gzip, json, math, os, sys, time
import numpy as np
import torch
import torch.nn.functional as F
from safetensors.numpy import load_file
from tokenizers import Tokenizer

DIR, OUT = sys.argv[1], sys.argv[2]
DEADLINE = time.time() + (float(sys.argv[3]) if len(sys.argv) > 3 else 420)
dev = "cuda" if torch.cuda.is_available() else "cpu"
torch.backends.cuda.matmul.allow_tf32 = False
torch.backends.cudnn.allow_tf32 = False
T0 = time.time()
results = open(os.path.join(OUT, "results.jsonl"), "a")


def log(*a):
    print(f"[{time.time() - T0:6.1f}s]", *a, flush=True)


def jl(name):
    p = os.path.join(DIR, name)
    if not os.path.exists(p):
        return None
    op = gzip.open if p.endswith(".gz") else open
    with op(p, "rt") as f:
        return [json.loads(l) for l in f if l.strip()]


W = {k: torch.tensor(v.astype(np.float32), device=dev) for k, v in load_file(f"{DIR}/model/model.safetensors").items()
     if v.dtype != np.int64}
tok = Tokenizer.from_file(f"{DIR}/model/tokenizer.json")
tok.no_padding()
tok.enable_truncation(256)
D = 384
H = 12


def tokenize(texts):
    return [e.ids for e in tok.encode_batch(texts)]


def encode_ids(ids, mask, A=None):
    """Pooled, normalised embeddings [B, D] of padded ids [B, L] (mask 1 for tokens)."""
    B, L = ids.shape
    x = F.embedding(ids, W["embeddings.word_embeddings.weight"])
    if A is not None:
        x = x @ A[0] + A[1]
    x = x + W["embeddings.position_embeddings.weight"][:L] + W["embeddings.token_type_embeddings.weight"][0]
    x = F.layer_norm(x, (D,), W["embeddings.LayerNorm.weight"], W["embeddings.LayerNorm.bias"], 1e-12)
    bias = ((1.0 - mask) * -1e9)[:, None, None, :]
    for i in range(6):
        p = f"encoder.layer.{i}."
        lin = lambda t, n: F.linear(t, W[p + n + ".weight"], W[p + n + ".bias"])
        q, k, v = (lin(x, f"attention.self.{n}").view(B, L, H, D // H).transpose(1, 2) for n in ("query", "key", "value"))
        a = F.scaled_dot_product_attention(q, k, v, attn_mask=bias).transpose(1, 2).reshape(B, L, D)
        x = F.layer_norm(x + lin(a, "attention.output.dense"), (D,), W[p + "attention.output.LayerNorm.weight"],
                         W[p + "attention.output.LayerNorm.bias"], 1e-12)
        h = F.gelu(lin(x, "intermediate.dense"))
        x = F.layer_norm(x + lin(h, "output.dense"), (D,), W[p + "output.LayerNorm.weight"],
                         W[p + "output.LayerNorm.bias"], 1e-12)
    m = mask[..., None]
    pooled = (x * m).sum(1) / m.sum(1).clamp(min=1e-9)
    return F.normalize(pooled, dim=-1)


def pad(seqs):
    L = max(len(s) for s in seqs)
    ids = torch.zeros(len(seqs), L, dtype=torch.long)
    mask = torch.zeros(len(seqs), L)
    for i, s in enumerate(seqs):
        ids[i, :len(s)] = torch.tensor(s)
        mask[i, :len(s)] = 1
    return ids.to(dev), mask.to(dev)


@torch.no_grad()
def embed(tokens, A=None, batch=512):
    order = sorted(range(len(tokens)), key=lambda i: len(tokens[i]))
    out = torch.zeros(len(tokens), D, device=dev)
    for s in range(0, len(order), batch):
        idx = order[s:s + batch]
        ids, mask = pad([tokens[i] for i in idx])
        out[idx] = encode_ids(ids, mask, A)
    return out


def metrics(scores, gold):
    """top-1, MRR@10, top-10 of score rows [Q, N] against gold index lists."""
    top = scores.topk(10, dim=1).indices.cpu().numpy()
    t1 = mrr = t10 = 0.0
    for row, g in zip(top, gold):
        gs = set(g)
        ranks = [r for r, d in enumerate(row) if d in gs]
        if ranks:
            t1 += ranks[0] == 0
            mrr += 1.0 / (ranks[0] + 1)
            t10 += 1
    n = len(gold)
    return round(t1 / n, 3), round(mrr / n, 3), round(t10 / n, 3)


class Setup:
    def __init__(self, tag):
        corpus = jl(f"corpus-{tag}.jsonl.gz")
        self.tag = tag
        self.ids = [d["id"] for d in corpus]
        pos = {d: i for i, d in enumerate(self.ids)}
        self.n = len(corpus)
        texts = [f"{d['title']}. {d['text']}" if d.get("title", "").strip() else d["text"] for d in corpus]
        self.doc_tok = tokenize(texts)
        pairs = jl(f"pairs-{tag}.jsonl.gz")
        by = {"train": [], "heldout": [], "question": []}
        for p in pairs:
            by[p["kind"]].append((p["query"], pos[p["doc_id"]]))
        self.train = by["train"]
        self.sets = {}

        def qset(name, rows):
            qs, gs = [], []
            for r in rows:
                g = [pos[x] for x in (r.get("doc_ids") or [r["doc_id"]]) if x in pos]
                if g:
                    qs.append(r["query"]); gs.append(g)
            self.sets[name] = (tokenize(qs), gs)

        qset("questions", jl("fanout.jsonl"))
        qset("descriptions", jl(f"desc-{tag}.jsonl.gz"))
        self.sets["pq"] = (tokenize([q for q, _ in by["heldout"]]), [[d] for _, d in by["heldout"]])
        if jl("fanout-test.jsonl") is not None:
            qset("click-test", jl("fanout-test.jsonl"))
            self.clicks = [(r["query"], pos[d]) for r in jl("fanout-train.jsonl") for d in r["doc_ids"] if d in pos]
        self.train_tok = tokenize([q for q, _ in self.train])
        self.train_y = torch.tensor([d for _, d in self.train], device=dev)
        self.docs = embed(self.doc_tok)
        self.train_emb = embed(self.train_tok)
        q_tok, q_y = tokenize([q for q, _ in by["question"]]), [d for _, d in by["question"]]
        q_emb = embed(q_tok)
        keys = self.docs.clone()
        for emb, y, mix in ((self.train_emb, self.train_y, 0.5), (q_emb, torch.tensor(q_y, device=dev), 1.0)):
            s = torch.zeros_like(keys).index_add_(0, y, emb)
            c = torch.zeros(self.n, device=dev).index_add_(0, y, torch.ones(len(y), device=dev))
            keys += mix * s / c.clamp(min=1)[:, None] * (c > 0)[:, None]
        self.keys = F.normalize(keys, dim=-1)
        self.frozen = {k: embed(v[0]) for k, v in self.sets.items()}
        log(f"{tag}: {self.n} docs, {len(self.train)} train pairs, sets",
            {k: len(v[1]) for k, v in self.sets.items()})

    def report(self, name, score_fn, extra=None):
        row = {"corpus": self.tag, "name": name}
        for k, (_, gold) in self.sets.items():
            row[k] = metrics(score_fn(k), gold)
        row.update(extra or {})
        log(json.dumps(row))
        results.write(json.dumps(row) + "\n")
        results.flush()
        return row


def train(st, name, steps, batch, head_lr, adapter_lr, pull=1.0, adapter_pull=0.0, clicks=None, scale=20.0,
          checkpoints=(), seed=1, symmetric=False, save=None):
    """Adam on CE(scale q.(K + W) + b) + pull; adapter_lr 0 trains the head alone on cached
    embeddings. Reports every checkpoint (steps) on every set."""
    g = torch.Generator(device="cpu").manual_seed(seed)
    toks, ys = list(st.train_tok), st.train_y
    emb = st.train_emb
    if clicks:
        ctok = tokenize([q for q, _ in clicks]) * 3
        toks = toks + ctok
        ys = torch.cat([ys, torch.tensor([d for _, d in clicks] * 3, device=dev)])
        if adapter_lr == 0:
            emb = torch.cat([emb, embed(ctok)])
    Wr = torch.zeros(st.n, D, device=dev, requires_grad=True)
    b = torch.zeros(st.n, device=dev, requires_grad=True)
    params = [{"params": [Wr, b], "lr": head_lr}]
    A = None
    if adapter_lr > 0:
        A = [torch.eye(D, device=dev).requires_grad_(), torch.zeros(D, device=dev).requires_grad_()]
        params.append({"params": A, "lr": adapter_lr})
    opt = torch.optim.Adam(params)
    t = time.time()
    for step in range(1, steps + 1):
        idx = torch.randint(0, len(toks), (batch,), generator=g).tolist()
        y = ys[idx]
        if A is None:
            q = emb[idx]
        else:
            q = encode_ids(*pad([toks[i] for i in idx]), A)
        if symmetric:
            # both sides through the adapter, in-batch documents as the negatives
            dtok = [st.doc_tok[i] for i in y.tolist()]
            dvec = encode_ids(*pad([s[:128] for s in dtok]), A)
            same = (y[:, None] == y[None, :]).float()
            logits = scale * q @ dvec.T - 1e4 * (same - torch.eye(batch, device=dev))
            loss = F.cross_entropy(logits, torch.arange(batch, device=dev))
        else:
            logits = scale * q @ (st.keys + Wr).T + b
            loss = F.cross_entropy(logits, y)
            loss = loss + pull / 2 * ((Wr * Wr).sum() + (b * b).sum())
        if A is not None and adapter_pull > 0:
            loss = loss + adapter_pull / 2 * ((A[0] - torch.eye(D, device=dev)).pow(2).sum() + A[1].pow(2).sum())
        opt.zero_grad()
        loss.backward()
        opt.step()
        if step in checkpoints or step == steps:
            with torch.no_grad():
                if symmetric:
                    dk = embed([s for s in st.doc_tok], A)
                    sc = {k: embed(v[0], A) @ dk.T for k, v in st.sets.items()}
                else:
                    qe = {k: (embed(v[0], A) if A is not None else st.frozen[k]) for k, v in st.sets.items()}
                    sc = {k: scale * qe[k] @ (st.keys + Wr).T + b for k in qe}
            st.report(f"{name} @ {step}", lambda k: sc[k],
                      {"loss": round(loss.item(), 4), "seconds": round(time.time() - t, 1)})
            if save and step == steps:
                np.savez_compressed(os.path.join(OUT, save), **{k: v.half().cpu().numpy() for k, v in sc.items()})
        if time.time() > DEADLINE:
            log("deadline: stopping", name, "at step", step)
            break


def federated(st, name, rounds, clients, local_steps, batch, head_lr, adapter_lr, clicks=None, pull=1.0, seed=1,
              every=5):
    """FedAvg of adapter + head over clients that each hold a seeded tenth of the documents (non-IID),
    their pseudo-queries and the clicks on them (x3); a fresh Adam on every client every round."""
    rng = np.random.default_rng(seed)
    owner = np.empty(st.n, dtype=np.int64)
    owner[rng.permutation(st.n)] = np.arange(st.n) % clients
    toks, ys = list(st.train_tok), st.train_y.tolist()
    if clicks:
        toks += tokenize([q for q, _ in clicks]) * 3
        ys += [d for _, d in clicks] * 3
    mine = [[i for i, y in enumerate(ys) if owner[y] == c] for c in range(clients)]
    g = torch.Generator(device="cpu").manual_seed(seed)
    glob = [torch.eye(D, device=dev), torch.zeros(D, device=dev), torch.zeros(st.n, D, device=dev),
            torch.zeros(st.n, device=dev)]
    t = time.time()
    for r in range(1, rounds + 1):
        sums = [torch.zeros_like(x) for x in glob]
        for c in range(clients):
            A0, A1, Wr, b = (x.clone().requires_grad_() for x in glob)
            opt = torch.optim.Adam([{"params": [Wr, b], "lr": head_lr}, {"params": [A0, A1], "lr": adapter_lr}])
            for _ in range(local_steps):
                idx = [mine[c][j] for j in torch.randint(0, len(mine[c]), (batch,), generator=g).tolist()]
                q = encode_ids(*pad([toks[i] for i in idx]), (A0, A1))
                y = torch.tensor([ys[i] for i in idx], device=dev)
                loss = F.cross_entropy(20.0 * q @ (st.keys + Wr).T + b, y) + pull / 2 * ((Wr * Wr).sum() + (b * b).sum())
                opt.zero_grad()
                loss.backward()
                opt.step()
            for acc, x in zip(sums, (A0, A1, Wr, b)):
                acc += x.detach()
        glob = [x / clients for x in sums]
        if r % every == 0 or r == rounds:
            with torch.no_grad():
                sc = {k: 20.0 * embed(v[0], glob[:2]) @ (st.keys + glob[2]).T + glob[3] for k, v in st.sets.items()}
            st.report(f"{name} @ round {r}", lambda k: sc[k], {"seconds": round(time.time() - t, 1)})
        if time.time() > DEADLINE:
            log("deadline: stopping", name, "at round", r)
            break


def run(tag, plan):
    """Sets one corpus up, reports the untrained baselines, then runs each experiment of the plan
    (`fn`: train by default; `clicks=True`: the corpus' click pairs); a failure or the deadline
    skips only that experiment."""
    st = Setup(tag)
    st.report("MIPS", lambda k: st.frozen[k] @ st.docs.T)
    st.report("keys only (the recipe's start)", lambda k: 20 * st.frozen[k] @ st.keys.T)
    for name, kw in plan:
        if time.time() > DEADLINE:
            log("deadline: skipping", name)
            continue
        kw = dict(kw)
        fn = kw.pop("fn", train)
        if kw.get("clicks"):
            kw["clicks"] = st.clicks
        try:
            fn(st, name, **kw)
        except Exception as e:  # keep the other experiments' results
            log("FAILED", name, repr(e))


log("device", dev, torch.cuda.get_device_name() if dev == "cuda" else "")
PLAN = sys.argv[4] if len(sys.argv) > 4 else "first"
ck = (100, 300, 1000, 2000, 3000)
recipe = dict(steps=3000, batch=32, head_lr=1e-3, adapter_lr=1e-4, checkpoints=(1000, 2000))
if PLAN == "first":
    plan_1k = [
        ("head only, Adam 1e-2, batch 256", dict(steps=1000, batch=256, head_lr=1e-2, adapter_lr=0, checkpoints=(100, 300))),
        ("adapter 1e-4 + head 1e-3, batch 32 (the recipe)", dict(steps=3000, batch=32, head_lr=1e-3, adapter_lr=1e-4, checkpoints=ck)),
        ("adapter 1e-3 + head 1e-3, batch 32", dict(steps=3000, batch=32, head_lr=1e-3, adapter_lr=1e-3, checkpoints=ck)),
        ("adapter 1e-4 + head 1e-3, batch 256", dict(steps=2000, batch=256, head_lr=1e-3, adapter_lr=1e-4, checkpoints=(300, 1000))),
        ("adapter 1e-3 + head 1e-2, pull 0.1, batch 256", dict(steps=2000, batch=256, head_lr=1e-2, adapter_lr=1e-3, pull=0.1, checkpoints=(300, 1000))),
        ("adapter 1e-4 alone (head lr 0), batch 256", dict(steps=2000, batch=256, head_lr=0.0, adapter_lr=1e-4, checkpoints=(300, 1000))),
        ("head only + clicks x3", dict(steps=1000, batch=256, head_lr=1e-2, adapter_lr=0, clicks=True, checkpoints=(300,))),
        ("adapter 1e-4 + head 1e-3 + clicks x3, batch 256", dict(steps=2000, batch=256, head_lr=1e-3, adapter_lr=1e-4, clicks=True, checkpoints=(300, 1000))),
        ("symmetric adapter 1e-4, in-batch negatives, batch 64", dict(steps=1000, batch=64, head_lr=0.0, adapter_lr=1e-4, symmetric=True, checkpoints=(300,))),
    ]
    plan_10k = [
        ("head only, Adam 1e-2, batch 256", dict(steps=1500, batch=256, head_lr=1e-2, adapter_lr=0, checkpoints=(300,))),
        ("adapter 1e-4 + head 1e-3, batch 256", dict(steps=2000, batch=256, head_lr=1e-3, adapter_lr=1e-4, checkpoints=(300, 1000))),
    ]
elif PLAN == "federated":
    fed_kw = dict(fn=federated, rounds=15, clients=10, local_steps=20, batch=32, head_lr=1e-3, adapter_lr=1e-4)
    plan_1k = [("federated adapter + head, clicks x3", dict(fed_kw, clicks=True)),
               ("federated adapter + head, no clicks", fed_kw)]
    plan_10k = []
elif PLAN == "tenk":  # stop 20: longer and larger-batch adapter training at 10k, and clicks there
    plan_1k = []
    plan_10k = [
        ("adapter 1e-4 + head 1e-3, batch 256", dict(steps=3000, batch=256, head_lr=1e-3, adapter_lr=1e-4, checkpoints=(300, 1000, 2000))),
        ("the recipe + clicks x3, 3000 steps", dict(recipe, clicks=True)),
        ("adapter 3e-4 + head 1e-3, batch 256", dict(steps=2000, batch=256, head_lr=1e-3, adapter_lr=3e-4, checkpoints=(300, 1000))),
        ("the recipe, 10000 steps", dict(recipe, steps=10000, checkpoints=(3000, 6000))),
    ]
else:  # "seeds": the recipe's spread over seeds, with clicks, and at 10k; logits saved for fusion
    plan_1k = [(f"the recipe, 3000 steps, seed {s}", dict(recipe, seed=s, save=f"logits-1k-seed{s}.npz")) for s in (1, 2, 3)]
    plan_1k.append(("the recipe + clicks x3, 3000 steps", dict(recipe, clicks=True, save="logits-1k-clicks.npz")))
    plan_10k = [("the recipe, 3000 steps, seed 1", dict(recipe))]
try:
    if plan_1k:
        run("1k", plan_1k)
except Exception as e:
    log("FAILED 1k setup", repr(e))
if plan_10k and time.time() < DEADLINE - 60 and jl("corpus-10k.jsonl.gz") is not None:
    run("10k", plan_10k)
log("done")
