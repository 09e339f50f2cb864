"""Quality experiments (QUALITY.md): embeddings of all-MiniLM-L6-v2 through ONNX Runtime, with
the graph of ../shared/tools/ort_peer.py (agrees with the Rust encoder to 1e-7), cached by text.
embed(texts) -> [n, 384] float32. Paths: FEDSEARCH_MODEL_DIR, QUALITY_CACHE, ORT_PEER."""
import json, math, os, hashlib, sys, time
import numpy as np

ROOT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..", "..")
MD = os.environ.get("FEDSEARCH_MODEL_DIR", os.path.join(ROOT, "models/all-MiniLM-L6-v2")) + "/"
CACHE = os.environ.get("QUALITY_CACHE", "/tmp/fedsearch-quality-cache")
os.makedirs(CACHE, exist_ok=True)
_sess = None
def _build():
    global _sess, _tok
    src = open(os.environ.get("ORT_PEER", os.path.join(ROOT, "../shared/tools/ort_peer.py"))).read()
    src = src.split("a, b, cc = enc(")[0]
    g = {"__name__": "peer"}
    saved = sys.argv; sys.argv = ["x", MD]
    exec(compile(src, "ort_peer", "exec"), g)
    _sess = g["enc"]; sys.argv = saved
def _key(t): return hashlib.sha1(t.encode()).hexdigest()
_mem = {}
def _load_store():
    p = CACHE + "/store.npz"
    if os.path.exists(p):
        z = np.load(p, allow_pickle=True)
        for k, v in zip(z["keys"], z["vals"]): _mem[k] = v
def _save_store():
    keys = np.array(list(_mem.keys())); vals = np.stack([_mem[k] for k in keys]) if len(keys) else np.zeros((0,384),np.float32)
    np.savez(CACHE + "/store.tmp.npz", keys=keys, vals=vals); os.replace(CACHE + "/store.tmp.npz", CACHE + "/store.npz")
_load_store()
def embed(texts, bs=32, label=""):
    todo = sorted({t for t in texts if _key(t) not in _mem}, key=len)
    if todo:
        if _sess is None: _build()
        t0 = time.time()
        for i in range(0, len(todo), bs):
            chunk = todo[i:i+bs]
            e = _sess(chunk)
            for t, v in zip(chunk, e): _mem[_key(t)] = v.astype(np.float32)
            if (i // bs) % 50 == 0: print(f"  embed {label} {i}/{len(todo)} {time.time()-t0:.0f}s", file=sys.stderr, flush=True)
        _save_store()
    return np.stack([_mem[_key(t)] for t in texts])
