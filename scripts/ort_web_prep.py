"""Prepares the onnxruntime-web peer page (scripts/bench-vs-ort-web.sh): the ONNX graph of
scripts/ort_peer.py saved as OUT/model.onnx, and OUT/inputs.json with the token ids of the
benchmark's sentences (fedsearch_core::bench::sample_sentences, read from crates/core/src/bench.rs
so that both engines see the same text) and Python ONNX Runtime's embedding of each, for a
correctness check in the browser.
Usage: python ort_web_prep.py MODEL_DIR OUT_DIR [N_SENTENCES=16]"""
import json, os, re, sys

here = os.path.dirname(os.path.abspath(__file__))
model_dir, out, n = sys.argv[1], sys.argv[2], int(sys.argv[3]) if len(sys.argv) > 3 else 16
# The graph, the session and the tokenizer of ort_peer.py (its code up to its golden check).
src = open(os.path.join(here, "ort_peer.py")).read().split("a, b, cc = enc(")[0]
g = {"__name__": "ort_peer"}
saved = sys.argv
sys.argv = ["ort_peer.py", model_dir]
exec(compile(src, "ort_peer.py", "exec"), g)
sys.argv = saved
os.makedirs(out, exist_ok=True)
# The graph uses opset 17 (IR 8 suffices); a newer onnx package stamps an IR version that
# onnxruntime-web 1.30 refuses.
g["model"].ir_version = 8
g["onnx"].save(g["model"], os.path.join(out, "model.onnx"))

bench_rs = open(os.path.join(here, "..", "crates", "core", "src", "bench.rs")).read()
block = re.search(r"pub const SAMPLE: &\[&str\] = &\[(.*?)\n\];", bench_rs, re.S).group(1)
sample = [json.loads(s) for s in re.findall(r'^\s*("(?:[^"\\]|\\.)*"),\s*$', block, re.M)]
sentences = [f"{sample[i % len(sample)]} ({i})" for i in range(n)]
tok = g["tok"]
ids = [tok.encode(s).ids for s in sentences]
embeddings = [g["enc"]([s])[0].tolist() for s in sentences]
json.dump({"sentences": sentences, "ids": ids, "embeddings": embeddings}, open(os.path.join(out, "inputs.json"), "w"))
print(f"wrote {out}/model.onnx and {out}/inputs.json ({n} sentences, {sum(map(len, ids))} tokens)")
