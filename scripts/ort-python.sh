# Sourced by scripts/bench-vs-ort.sh and scripts/bench-vs-ort-web.sh: sets `py` to a Python that
# has numpy, onnx, onnxruntime, tokenizers and safetensors — $ORT_PYTHON, or a venv made once in
# target/ort-venv.
py="${ORT_PYTHON:-}"
if [ -z "$py" ]; then
  py=target/ort-venv/bin/python
  if ! "$py" -c "import numpy, onnx, onnxruntime, tokenizers, safetensors" 2>/dev/null; then
    echo "== making target/ort-venv (numpy onnx onnxruntime tokenizers safetensors)"
    python3 -m venv target/ort-venv
    "$py" -m pip install -q numpy onnx onnxruntime tokenizers safetensors
  fi
fi
