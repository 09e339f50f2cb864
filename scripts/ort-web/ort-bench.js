// The onnxruntime-web peer of web/bench.html's encoder figure (scripts/bench-vs-ort-web.sh):
// all-MiniLM-L6-v2 as ONNX (scripts/ort_web_prep.py), the benchmark's sentences one at a time
// in batches of ?batch= (default 16, the benchmark page's encoder batch; sorted by length and
// padded to the longest, as fedsearch_core does), wasm backend with SIMD, ?threads= threads
// (default 1). Result in window.ortResult: sentences/s per round after a warm-up, and the
// largest difference of its embeddings to Python ONNX Runtime's (each sentence alone).
import * as ort from './ort.wasm.min.mjs';

const p = new URLSearchParams(location.search);
const rounds = Number(p.get('rounds') || 3);
const batch = Math.max(1, Number(p.get('batch') || 16));
ort.env.wasm.numThreads = Number(p.get('threads') || 1);
ort.env.wasm.simd = true;
ort.env.wasm.wasmPaths = './';

async function main() {
  const inputs = await (await fetch('inputs.json')).json();
  const session = await ort.InferenceSession.create('model.onnx', { executionProviders: ['wasm'] });
  // One padded batch: ids [b, longest], mask 1 on real tokens.
  const run = async (rows) => {
    const len = Math.max(...rows.map((r) => r.length));
    const ids = new BigInt64Array(rows.length * len);
    const mask = new BigInt64Array(rows.length * len);
    rows.forEach((r, i) => r.forEach((id, j) => { ids[i * len + j] = BigInt(id); mask[i * len + j] = 1n; }));
    const t = [rows.length, len];
    return (await session.run({ input_ids: new ort.Tensor('int64', ids, t), attention_mask: new ort.Tensor('int64', mask, t) })).embedding.data;
  };
  let maxDiff = 0;
  for (let i = 0; i < inputs.ids.length; i++) {
    const e = await run([inputs.ids[i]]);
    for (let j = 0; j < e.length; j++) maxDiff = Math.max(maxDiff, Math.abs(e[j] - inputs.embeddings[i][j]));
  }
  const sorted = [...inputs.ids].sort((a, b) => a.length - b.length);
  const batches = [];
  for (let i = 0; i < sorted.length; i += batch) batches.push(sorted.slice(i, i + batch));
  const rates = [];
  for (let r = 0; r < rounds; r++) {
    const t0 = performance.now();
    for (const b of batches) await run(b);
    rates.push(inputs.ids.length / ((performance.now() - t0) / 1000));
  }
  window.ortResult = { engine: 'onnxruntime-web', threads: ort.env.wasm.numThreads, batch, sentences: inputs.ids.length, sentencesPerS: rates, maxDiffToNative: maxDiff };
  document.getElementById('status').textContent = JSON.stringify(window.ortResult);
  document.body.dataset.state = 'done';
}

main().catch((e) => {
  window.ortResult = { error: String((e && e.stack) || e) };
  document.getElementById('status').textContent = window.ortResult.error;
  document.body.dataset.state = 'done';
});
