"""Peer baseline: all-MiniLM-L6-v2 as an ONNX graph built from the HF safetensors, run by
ONNX Runtime on CPU (the engine transformers.js and fastembed use). Prints golden checks and
sentences/s for batch 1 and batch 32 on a corpus file.
Usage: python ort_peer.py MODEL_DIR CORPUS.jsonl [N_DOCS]
Copied unchanged (but for this line) from the team's ../shared/tools/ort_peer.py so that
scripts/bench-vs-ort.sh runs from a fresh clone."""
import json, math, sys, time
import numpy as np, onnx, onnxruntime as ort
from onnx import helper as h, TensorProto as TP, numpy_helper as nh
from safetensors.numpy import load_file
from tokenizers import Tokenizer

md = sys.argv[1].rstrip("/") + "/"
W = load_file(md + "model.safetensors"); cfg = json.load(open(md + "config.json"))
H, NH, L, EPS = cfg["hidden_size"], cfg["num_attention_heads"], cfg["num_hidden_layers"], cfg["layer_norm_eps"]
dh = H // NH
inits, nodes = [], []
def c(name, arr): inits.append(nh.from_array(np.asarray(arr), name)); return name
def n(op, ins, out, **kw): nodes.append(h.make_node(op, ins, [out], **kw)); return out
def lin(x, p, out):
    wt = c(p + ".wT", W[p + ".weight"].T.copy()); b = c(p + ".b", W[p + ".bias"])
    return n("Add", [n("MatMul", [x, wt], out + "_mm"), b], out)
def ln(x, p, out):
    return n("LayerNormalization", [x, c(p + ".g", W[p + ".weight"]), c(p + ".bb", W[p + ".bias"])], out, axis=-1, epsilon=EPS)
c("wemb", W["embeddings.word_embeddings.weight"]); c("pemb", W["embeddings.position_embeddings.weight"])
c("temb0", W["embeddings.token_type_embeddings.weight"][0])
c("zero1", np.array([0], np.int64)); c("one1", np.array([1], np.int64)); c("ax1", np.array([1], np.int64))
T = n("Gather", [n("Shape", ["input_ids"], "shp"), "one1"], "T")
pos = n("Slice", ["pemb", "zero1", "T", "zero1"], "pos")
x = n("Add", [n("Add", [n("Gather", ["wemb", "input_ids"], "we"), pos], "wp"), "temb0"], "emb")
x = ln(x, "embeddings.LayerNorm", "x0")
maskf = n("Cast", ["attention_mask"], "maskf", to=TP.FLOAT)
c("negbig", np.array(-1e9, np.float32)); c("onef", np.array(1.0, np.float32))
bias = n("Mul", [n("Sub", ["onef", maskf], "inv"), "negbig"], "bias0")
bias = n("Unsqueeze", [bias, c("ax12", np.array([1, 2], np.int64))], "bias")
c("shp4", np.array([0, 0, NH, dh], np.int64)); c("shp3", np.array([0, 0, H], np.int64)); c("scale", np.array(1 / math.sqrt(dh), np.float32))
c("sqrt2", np.array(math.sqrt(2), np.float32)); c("half", np.array(0.5, np.float32))
for l in range(L):
    p = f"encoder.layer.{l}."
    q, k, v = (n("Transpose", [n("Reshape", [lin(x, p + "attention.self." + t, f"{t}{l}"), "shp4"], f"{t}r{l}")], f"{t}t{l}", perm=[0, 2, 1, 3]) for t in ("query", "key", "value"))
    kt = n("Transpose", [k], f"kT{l}", perm=[0, 1, 3, 2])
    a = n("Add", [n("Mul", [n("MatMul", [q, kt], f"qk{l}"), "scale"], f"qks{l}"), "bias"], f"att{l}")
    a = n("Softmax", [a], f"sm{l}", axis=-1)
    ctx = n("Reshape", [n("Transpose", [n("MatMul", [a, v], f"av{l}")], f"avt{l}", perm=[0, 2, 1, 3]), "shp3"], f"ctx{l}")
    x = ln(n("Add", [lin(ctx, p + "attention.output.dense", f"ao{l}"), x], f"r1{l}"), p + "attention.output.LayerNorm", f"x1{l}")
    hh = lin(x, p + "intermediate.dense", f"i{l}")
    g = n("Mul", [n("Mul", [hh, "half"], f"gh{l}"), n("Add", [n("Erf", [n("Div", [hh, "sqrt2"], f"gd{l}")], f"ge{l}"), "onef"], f"ga{l}")], f"gelu{l}")
    x = ln(n("Add", [lin(g, p + "output.dense", f"o{l}"), x], f"r2{l}"), p + "output.LayerNorm", f"x2{l}")
m3 = n("Unsqueeze", [maskf, c("axm1", np.array([-1], np.int64))], "m3")
s = n("ReduceSum", [n("Mul", [x, m3], "xm"), "ax1"], "sum", keepdims=0)
cnt = n("ReduceSum", [m3, "ax1"], "cnt", keepdims=0)
e = n("Div", [s, cnt], "mean")
nrm = n("Sqrt", [n("ReduceSum", [n("Mul", [e, e], "sq"), c("axl", np.array([-1], np.int64))], "ss", keepdims=1)], "nrm")
n("Div", [e, nrm], "embedding")
g = h.make_graph(nodes, "minilm", [h.make_tensor_value_info("input_ids", TP.INT64, ["B", "T"]), h.make_tensor_value_info("attention_mask", TP.INT64, ["B", "T"])],
                 [h.make_tensor_value_info("embedding", TP.FLOAT, ["B", H])], inits)
model = h.make_model(g, opset_imports=[h.make_opsetid("", 17)])
so = ort.SessionOptions(); so.intra_op_num_threads = 2
sess = ort.InferenceSession(model.SerializeToString(), so, providers=["CPUExecutionProvider"])
tok = Tokenizer.from_file(md + "tokenizer.json"); tok.no_padding(); tok.enable_truncation(256)
def enc(texts):
    es = tok.encode_batch(texts); T = max(len(x.ids) for x in es)
    ids = np.zeros((len(es), T), np.int64); m = np.zeros((len(es), T), np.int64)
    for i, x in enumerate(es): ids[i, :len(x.ids)] = x.ids; m[i, :len(x.ids)] = 1
    return sess.run(None, {"input_ids": ids, "attention_mask": m})[0]
a, b, cc = enc(["A man is eating food.", "A man is eating a piece of bread.", "The girl is carrying a baby."])
print(json.dumps({"golden": {"emb8": [round(float(v), 5) for v in a[:8]], "cos_bread": round(float(a @ b), 4), "cos_baby": round(float(a @ cc), 4)}}))
docs = [json.loads(l) for l in open(sys.argv[2])][: int(sys.argv[3]) if len(sys.argv) > 3 else 512]
texts = [d["title"] + ". " + d["text"] for d in docs]
for bs in (32, 1):
    order = sorted(range(len(texts)), key=lambda i: len(texts[i]))
    n_ = len(texts) if bs > 1 else min(len(texts), 128)
    t0 = time.perf_counter()
    for s_ in range(0, n_, bs): enc([texts[i] for i in order[s_:s_ + bs]][: n_ - s_])
    dt = time.perf_counter() - t0
    print(json.dumps({"peer": "onnxruntime " + ort.__version__ + " CPU fp32, 2 threads", "batch": bs, "sentences": n_, "seconds": round(dt, 2), "sentences_per_s": round(n_ / dt, 1)}))
