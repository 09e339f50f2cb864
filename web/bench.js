// Benchmark page: runs the shared throughput workload (fedsearch_core::bench, through
// FedsearchClient.benchmark) on each requested backend and shows it next to the native figure
// written by `fedsearch bench throughput --json <model folder>/native-bench.json`. Like the main
// page, each client runs in its own worker (remote-client.js); the page's longest main-thread
// task during each run is shown beside its figures.
import { RemoteClient } from './remote-client.js';
import { loadConfig } from './config.js';
import { watchLongTasks } from './longtasks.js';

const $ = (id) => document.getElementById(id);
const rows = [];
window.fedsearchBench = rows; // for tests
const longTasks = watchLongTasks();

function fmt(v, ref) {
  if (v == null) return '–';
  const s = v >= 100 ? v.toFixed(0) : v.toFixed(1);
  if (!ref) return s;
  const r = v / ref;
  return `${s} (${r >= 0.1 ? r.toFixed(2) : r.toPrecision(2)}×)`;
}

function render() {
  const native = rows.find((r) => r.backend === 'native');
  const tbody = $('bench-table').querySelector('tbody');
  tbody.replaceChildren(...rows.map((r) => {
    const tr = document.createElement('tr');
    tr.dataset.backend = r.backend;
    const th = document.createElement('th');
    th.scope = 'row';
    th.textContent = r.label;
    tr.append(th);
    if (r.error) {
      const td = document.createElement('td');
      td.colSpan = 4;
      td.textContent = r.error;
      tr.append(td);
      return tr;
    }
    const ref = native && r !== native ? native : null;
    for (const k of ['encodeSentencesPerS', 'headExamplesPerS', 'adapterExamplesPerS']) {
      const td = document.createElement('td');
      td.textContent = r[k] == null ? r.stage || '…' : fmt(r[k], ref && ref[k]);
      tr.append(td);
    }
    const td = document.createElement('td');
    td.textContent = r.backend === 'native' ? 'n/a' : r.longestTaskMs === undefined ? '…'
      : r.longestTaskMs === null ? 'not reported by this browser' : r.longestTaskMs === 0 ? 'none over 50 ms' : `${r.longestTaskMs.toFixed(0)} ms`;
    tr.append(td);
    return tr;
  }));
}

// A row for one backend of this browser, and a client for it that is freed after `fn`.
const browserRow = (backend) => ({ backend, label: backend === 'webgpu' ? 'this browser, WebGPU' : 'this browser, CPU (wasm)', stage: 'loading the model' });
async function withClient(cfg, backend, fn) {
  const client = await RemoteClient.create({ ...cfg, backend, dbName: 'fedsearch-bench', workerUrl: '' });
  try { return await fn(client); } finally { client.free(); }
}
const backendList = (p) => (p.get('backends') || 'webgpu,cpu').split(',').map((s) => s.trim()).filter(Boolean);

// ?check=1: the loss of a few adapter + head steps on each backend, WebGPU against the CPU.
const checkRows = [];
window.fedsearchCheck = checkRows; // for tests

function relativeDifference(a, b) {
  if (!a || !b || a.length !== b.length) return null;
  return Math.max(...a.map((x, i) => Math.abs(x - b[i]) / Math.max(1, Math.abs(b[i]))));
}

function renderCheck() {
  const cpu = checkRows.find((r) => r.backend === 'cpu' && r.losses);
  $('check-table').querySelector('tbody').replaceChildren(...checkRows.map((r) => {
    const tr = document.createElement('tr');
    tr.dataset.backend = r.backend;
    const th = document.createElement('th');
    th.scope = 'row';
    th.textContent = r.label;
    const losses = document.createElement('td');
    losses.textContent = r.error || (r.losses ? r.losses.map((l) => l.toFixed(5)).join(', ') : r.stage || '…');
    const diff = document.createElement('td');
    r.maxRelativeDifference = r.losses && cpu && r !== cpu ? relativeDifference(r.losses, cpu.losses) : null;
    diff.textContent = r.maxRelativeDifference == null ? (r === cpu ? 'reference' : '–') : r.maxRelativeDifference.toExponential(1);
    tr.append(th, losses, diff);
    return tr;
  }));
}

async function runCheck(cfg, p, backends) {
  $('check-card').hidden = false;
  const opts = {};
  for (const k of ['sentences', 'steps']) if (p.has(k)) opts[k] = Number(p.get(k));
  $('check-workload').textContent = `${opts.sentences || 4} sentences, ${opts.steps || 3} steps`;
  // The CPU first: it is the reference the other rows are compared with.
  const order = [...backends].sort((a, b) => (a === 'cpu' ? -1 : 0) - (b === 'cpu' ? -1 : 0));
  for (const backend of order) {
    const row = browserRow(backend);
    checkRows.push(row);
    renderCheck();
    try {
      $('status').textContent = `Training check on ${backend}…`;
      await withClient(cfg, backend, async (client) => {
        row.stage = 'training';
        renderCheck();
        Object.assign(row, await client.trainingLosses(opts));
      });
    } catch (e) {
      row.error = `${e && e.code ? `${e.code}: ` : ''}${e && e.message ? e.message : e}`;
    }
    renderCheck();
  }
}

// ?secagg=DIM,K: one client's part of a secure round (keys, shares, masked update, unmasking)
// in this browser, as `fedsearch bench secagg --dim DIM --neighbours K` measures it natively.
// It runs on this page's thread: a benchmark, not the page people use.
async function runSecagg(spec) {
  const [dim, k] = spec.split(',').map(Number);
  $('bench-table').closest('section').hidden = true;
  $('status').textContent = `Secure-aggregation cost: ${dim} values, ${k} neighbours…`;
  const wasm = await import('./pkg/fedsearch_client.js');
  await wasm.default();
  const r = wasm.secaggClientCost(dim, k);
  window.fedsearchSecagg = r;
  $('status').textContent = `Secure aggregation, ${dim} values, ${k} neighbours: ${r.totalMs.toFixed(0)} ms (keys ${r.keysMs.toFixed(0)}, shares ${r.sharesMs.toFixed(0)}, masked update ${r.maskMs.toFixed(0)}, unmasking ${r.unmaskMs.toFixed(0)}); traffic ${r.trafficRatio.toFixed(2)}× a plain update.`;
}

async function main() {
  const cfg = await loadConfig();
  const p = new URLSearchParams(location.search);
  if (p.has('secagg')) {
    await runSecagg(p.get('secagg'));
    document.body.dataset.state = 'done';
    return;
  }
  if (p.get('check') === '1') {
    $('bench-table').closest('section').hidden = true;
    await runCheck(cfg, p, backendList(p));
    $('status').textContent = 'Done.';
    document.body.dataset.state = 'done';
    return;
  }
  const opts = {};
  for (const k of ['sentences', 'headSteps', 'adapterSteps', 'encodeBatch', 'trainBatch']) if (p.has(k)) opts[k] = Number(p.get(k));
  const backends = backendList(p);

  try {
    const r = await fetch(`${cfg.modelBaseUrl.replace(/\/$/, '')}/native-bench.json`, { cache: 'no-cache' });
    if (!r.ok) throw new Error(`HTTP ${r.status}`);
    rows.push({ ...(await r.json()), backend: 'native', label: 'native CPU (server machine)' });
    $('native-hint').textContent = 'Native: written by fedsearch bench throughput on the machine serving this page.';
  } catch (_) {
    $('native-hint').textContent = `No native figure: run \`fedsearch bench throughput --model <folder> --json <folder>/native-bench.json\` for ${cfg.modelBaseUrl}.`;
  }
  render();

  for (const backend of backends) {
    const row = browserRow(backend);
    rows.push(row);
    render();
    const started = performance.now();
    try {
      $('status').textContent = `Loading the model for ${backend}…`;
      await withClient(cfg, backend, async (client) => {
        const r = await client.benchmark(opts, (stage) => { row.stage = stage; $('status').textContent = `${row.label}: ${stage}…`; render(); });
        Object.assign(row, r);
        $('workload').textContent = `${r.sentences} sentences, max ${r.maxLen} tokens, width ${r.dim}`;
      });
      row.longestTaskMs = longTasks.supported ? longTasks.longest(started) : null;
    } catch (e) {
      row.error = `unavailable: ${e && e.message ? e.message : e}`;
    }
    render();
  }
  $('status').textContent = 'Done.';
  document.body.dataset.state = 'done';
}

main().catch((e) => { $('error').textContent = e && e.message ? e.message : String(e); $('error').hidden = false; document.body.dataset.state = 'error'; });
