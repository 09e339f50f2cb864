// fedsearch page: wires the client to the UI. The client (wasm, model, IndexedDB, training)
// runs in a dedicated worker (client-worker.js through remote-client.js): the main thread only
// draws, so the page repaints and takes input while the model embeds and trains.
// Configuration: config.json next to this page, overridden by URL parameters
// (?federation=&model=&worker=&token=&backend=).
import { RemoteClient } from './remote-client.js';
import { loadConfig } from './config.js';
import { watchLongTasks } from './longtasks.js';

const $ = (id) => document.getElementById(id);
const state = { client: null, busy: false, losses: [], lastQuery: '', info: null };
window.fedsearch = state; // for tests and the curious
// Main-thread tasks over 50 ms (the browser's long tasks), for the tests and the benchmark page.
state.longTasks = watchLongTasks();

function setState(s) { document.body.dataset.state = s; }
function status(msg) { $('status').textContent = msg; }
function showError(e) {
  const msg = e && e.message ? e.message : String(e);
  $('error').textContent = msg;
  $('error').hidden = false;
  state.lastError = msg;
  console.warn('fedsearch:', msg);
}
function clearError() { $('error').hidden = true; $('error').textContent = ''; }
const num = (x) => Number(Number(x).toPrecision(3)); // 0.0010000000474974513 → 0.001
const fmtEps = (e) => e >= 1000 ? e.toExponential(2) : e.toFixed(3);
const plural = (n, one, many = one + 's') => `${n} ${n === 1 ? one : many}`;
const fmtBytes = (n) => n < 1024 ? `${n} B` : n < 1 << 20 ? `${(n / 1024).toFixed(1)} KiB` : `${(n / (1 << 20)).toFixed(1)} MiB`;

function setBusy(busy) {
  state.busy = busy;
  const ready = !!state.client;
  for (const id of ['add-demo', 'train-btn', 'sync-btn', 'delete-all', 'search-btn', 'search-input', 'search-method']) {
    $(id).disabled = !ready || (busy && id !== 'search-input' && id !== 'search-method');
  }
  $('contribute-btn').disabled = !ready || busy || !$('consent').checked;
  $('cancel-btn').disabled = !busy || !state.training;
}

// Actions run one at a time, in the order asked: one that arrives while another runs (files
// dropped during training, say) waits for it instead of being dropped.
let actions = Promise.resolve();
function run(label, fn) {
  const next = actions.then(async () => {
    clearError();
    setBusy(true);
    try { return await fn(); } catch (e) { showError(e); } finally { setBusy(false); await refreshPrivacy(); }
  });
  actions = next.catch(() => undefined);
  return next;
}

// ---------- start-up ----------
async function main() {
  window.addEventListener('online', updateOnline);
  window.addEventListener('offline', updateOnline);
  updateOnline();
  if ('serviceWorker' in navigator) {
    navigator.serviceWorker.register('sw.js').catch((e) => console.info('fedsearch: no service worker:', e.message));
  }
  // The explanation is open on the first visit, folded afterwards.
  try {
    $('intro').open = !localStorage.getItem('fedsearch-seen');
    localStorage.setItem('fedsearch-seen', '1');
  } catch (_) { $('intro').open = true; }
  const cfg = await loadConfig();
  state.cfg = cfg;
  status('Loading the model…');
  const files = {};
  state.downloads = files; // per file: bytes loaded, total, the total the first report gave (for tests)
  state.progressLog = []; // per report: whether some size was unknown, and what the bar showed (for tests)
  const client = await RemoteClient.create(cfg, (file, loaded, total, cached) => {
    files[file] = { loaded, total, firstTotal: files[file] ? files[file].firstTotal : total, cached };
    const all = Object.values(files);
    if (all.some((f) => !f.total)) {
      $('model-progress').removeAttribute('value'); // size unknown: an indeterminate bar, not a full one
    } else {
      const sum = all.reduce((a, f) => [a[0] + f.loaded, a[1] + f.total], [0, 0]);
      $('model-progress').value = sum[0] / sum[1];
    }
    const bar = $('model-progress');
    state.progressLog.push({ sizeUnknown: all.some((f) => !f.total), value: bar.hasAttribute('value') ? bar.value : null });
    status(cached ? `Model: ${file} from this device's cache` : `Downloading ${file}: ${fmtBytes(loaded)}${total ? ' of ' + fmtBytes(total) : ' (size unknown)'}`);
  });
  state.client = client;
  $('model-progress').value = 1;
  $('backend').textContent = client.backend() === 'webgpu' ? 'WebGPU' : 'CPU';
  $('footer-backend').textContent = client.backend() === 'webgpu' ? ' + WebGPU' : ', CPU';
  showConsent();
  setBusy(false);
  await refreshPrivacy();
  // After a reload the trained model is in use: say so instead of a blank Train card.
  try {
    const steps = (await client.privacyReport()).trainedSteps;
    if (steps > 0) $('train-stats').textContent = `The model on this device has trained ${plural(steps, 'step')} so far and is in use; train again to take in new documents and clicks.`;
  } catch (_) { /* busy: the card stays as it is */ }
  loadFederation();
  // The page says it is ready (and with what) in the same task that marks it ready.
  await refreshDocs();
  status(readyStatus(await client.documentCount()));
  setState('ready');
}

function updateOnline() {
  const on = navigator.onLine;
  $('online').textContent = on ? 'online' : 'offline';
  $('online').classList.toggle('offline', !on);
}

async function loadFederation() {
  if (!state.client) return;
  try {
    const info = await state.client.federationInfo();
    state.info = info;
    await refreshPrivacy();
    $('fed-status').textContent = info.secure
      ? `Federation “${info.id}” (${info.mode}): version ${info.current_version}, round ${info.current_round}; secure aggregation: each update is clipped to C = ${num(info.dp.clip)}, rounded, given its share of the noise and masked, so the worker can decode only the sum of at least ${info.secure.params.min_clients} visitors' updates, never yours alone${info.secure.epsilon != null ? `; the whole run spends at most ε = ${fmtEps(info.secure.epsilon)}` : ''}.`
      : `Federation “${info.id}” (${info.mode}): version ${info.current_version}, round ${info.current_round}; each update is clipped to C = ${num(info.dp.clip)} and noised with σ = ${num(info.dp.noise_multiplier)}; the worker sees each noised update.`;
    document.body.dataset.secure = info.secure ? 'yes' : 'no';
    // A device that never synced starts from the current global model.
    const p = await state.client.privacyReport();
    if (p.globalVersion == null && info.current_version > 0) {
      await run('sync', async () => { await state.client.syncGlobal(); });
    }
  } catch (e) {
    $('fed-status').textContent = `The federation is not reachable (${e.message}). Search and training still work on this device.`;
  }
}

// ---------- documents ----------
async function refreshDocs() {
  let n = 0, docs = [];
  try {
    if (state.client) [n, docs] = await Promise.all([state.client.documentCount(), state.client.documents()]);
  } catch (_) { return; } // busy: keep what is shown
  // The count and the list change together (one task), never one without the other.
  $('doc-count').textContent = n;
  renderDocList(docs);
  if (state.client && document.body.dataset.state === 'ready' && !state.busy) status(readyStatus(n));
}
const readyStatus = (n) => `Ready — model width ${state.client.dim()}, ${plural(n, 'document')} on this device.`;

// The list of one's documents, each with its size, the day it was added and a button that removes it (its passages,
// embedding, trained head column and clicks) from this device.
function renderDocList(docs) {
  // Refreshes come from several places at once; redrawing an unchanged list would take focus
  // and the element under the pointer away.
  const key = JSON.stringify(docs);
  if (key === state.docListKey) return;
  state.docListKey = key;
  const items = docs.map((d) => {
    const li = document.createElement('li');
    const name = document.createElement('span');
    name.textContent = d.title || d.id;
    const size = document.createElement('span');
    size.className = 'muted';
    const added = d.addedMs ? `, added ${new Date(d.addedMs).toLocaleDateString(undefined, { year: 'numeric', month: 'short', day: 'numeric' })}` : '';
    size.textContent = `${plural(d.words, 'word')}${d.passages > 1 ? `, ${plural(d.passages, 'passage')}` : ''}${added}`;
    const del = document.createElement('button');
    del.type = 'button';
    del.textContent = 'Remove';
    del.dataset.id = d.id;
    del.setAttribute('aria-label', `Remove ${d.title || d.id}`);
    del.addEventListener('click', () => run('remove', async () => {
      const r = await state.client.removeDocument(d.id);
      $('docs-status').textContent = `Removed “${d.title || d.id}” (${plural(r.removed, 'passage')}); ${plural(r.total, 'passage')} on this device.`;
      await refreshDocs();
    }));
    li.append(name, ' ', size, ' ', del);
    return li;
  });
  $('doc-list').replaceChildren(...items);
}

async function addDocs(docs, kind) {
  await run('add', async () => {
    $('index-progress').hidden = false;
    $('index-progress').value = 0;
    // Every status this action shows, with the bar's value (for tests).
    state.indexLog = [];
    const say = (text, value) => {
      $('docs-status').textContent = text;
      state.indexLog.push({ text, value });
    };
    const what = `Embedding ${plural(docs.length, 'document')}`;
    say(`${what}…`, 0);
    try {
      const r = await state.client.addDocuments(docs, kind, (done, total) => {
        const value = total ? done / total : 1;
        $('index-progress').value = value;
        // The texts are the passages and their category questions, embedded in one pass.
        say(`${what}: ${done} of ${plural(total, 'text')} (passages and their category questions)…`, value);
      });
      // Long documents are cut into passages of at most 150 words; each passage is searched on its own.
      let note = '';
      try {
        if (r.added > 0 && (await state.client.privacyReport()).trainedSteps > 0) note = ' Train again to fit the trained model to them (until then CaR ranks them untrained).';
      } catch (_) { /* busy */ }
      say(`Added ${plural(r.added, 'passage')}; ${plural(r.total, 'passage')} on this device.${note}`, 1);
    } catch (e) {
      say('Nothing was added.', null);
      throw e;
    } finally {
      $('index-progress').hidden = true;
      await refreshDocs();
    }
  });
}

async function addFiles(files) {
  const groups = { text: [], markdown: [], html: [] };
  for (const f of files) {
    const text = await f.text();
    const name = f.name.toLowerCase();
    if (name.endsWith('.json') || name.endsWith('.jsonl')) {
      try {
        const items = name.endsWith('.jsonl') ? text.split('\n').filter((l) => l.trim()).map((l) => JSON.parse(l)) : JSON.parse(text);
        groups.text.push(...(Array.isArray(items) ? items : [items]));
      } catch (e) { showError(new Error(`${f.name} is not valid JSON: ${e.message}`)); return; }
      continue;
    }
    const kind = /\.(md|markdown)$/.test(name) ? 'markdown' : /\.html?$/.test(name) ? 'html' : 'text';
    groups[kind].push({ title: f.name.replace(/\.[^.]+$/, ''), text });
  }
  for (const [kind, docs] of Object.entries(groups)) if (docs.length) await addDocs(docs, kind);
}

state.addFiles = addFiles; // what the file picker and drop zone call (tests drive it directly)
$('file-input').addEventListener('change', (e) => addFiles([...e.target.files]));
const dz = $('drop-zone');
dz.addEventListener('dragover', (e) => { e.preventDefault(); dz.classList.add('over'); });
dz.addEventListener('dragleave', () => dz.classList.remove('over'));
dz.addEventListener('drop', (e) => { e.preventDefault(); dz.classList.remove('over'); addFiles([...e.dataTransfer.files]); });
dz.addEventListener('keydown', (e) => { if (e.target === dz && (e.key === 'Enter' || e.key === ' ')) { e.preventDefault(); $('file-input').click(); } });
$('add-demo').addEventListener('click', async () => {
  const r = await fetch('demo-corpus.json');
  await addDocs(await r.json(), 'text');
});

// ---------- training ----------
function drawLoss() {
  const c = $('loss-chart');
  const ctx = c.getContext('2d');
  const w = c.width, h = c.height, pad = 24;
  ctx.clearRect(0, 0, w, h);
  const ls = state.losses;
  ctx.fillStyle = '#5b6470';
  ctx.font = '12px system-ui';
  if (!ls.length) { ctx.fillText('loss per step appears here', pad, h / 2); return; }
  const max = Math.max(...ls), min = Math.min(...ls, 0);
  ctx.fillText(max.toFixed(2), 2, 12);
  ctx.fillText(min.toFixed(2), 2, h - 4);
  ctx.strokeStyle = '#2457c5';
  ctx.lineWidth = 2;
  ctx.beginPath();
  ls.forEach((l, i) => {
    const x = pad + (i / Math.max(1, ls.length - 1)) * (w - 2 * pad);
    const y = h - pad / 2 - ((l - min) / (max - min || 1)) * (h - pad);
    i ? ctx.lineTo(x, y) : ctx.moveTo(x, y);
  });
  ctx.stroke();
}

$('train-btn').addEventListener('click', () => run('train', async () => {
  state.losses = [];
  state.training = true;
  $('cancel-btn').disabled = false;
  $('train-progress').value = 0;
  const opts = { mode: $('train-mode').value, epochs: Number($('epochs').value) || undefined }; // the rest: core's recipe
  $('train-stats').textContent = 'Preparing pseudo-queries…';
  let lastDraw = 0;
  try {
    const r = await state.client.train(opts, (step, total, loss, eps, epoch, val) => {
      $('train-progress').max = total;
      $('train-progress').value = step;
      if (val === null || val === undefined) state.losses.push(loss);
      $('train-stats').textContent = `step ${step}/${total} · epoch ${epoch + 1} · loss ${loss.toFixed(3)} · ${eps.toFixed(0)} examples/s${val != null ? ` · held-out top-1 ${(val * 100).toFixed(0)} %` : ''}`;
      const now = performance.now();
      if (now - lastDraw > 100) { drawLoss(); lastDraw = now; }
    });
    drawLoss();
    $('train-progress').value = $('train-progress').max; // early stopping ends before the planned steps
    const early = r.epochs < opts.epochs ? ` (stopped early: held-out top-1 stopped improving; ${plural(opts.epochs, 'epoch')} planned)` : '';
    // Early stopping also weighs the model the run started from: say which one was kept.
    const pct = (v) => `${(v * 100).toFixed(0)} %`;
    const kept = r.start_val_top1 == null ? ''
      : r.best_epoch === 0 ? ` No epoch beat the model it started from on the held-out pairs (top-1 ${pct(r.start_val_top1)}), so that model is kept unchanged.`
      : ` Kept epoch ${r.best_epoch}: held-out top-1 ${pct(r.start_val_top1)} → ${pct(r.best_val_top1)}.`;
    $('train-stats').textContent = `Done: ${plural(r.steps, 'step')}, ${plural(r.epochs, 'epoch')}${early}, final loss ${r.final_loss.toFixed(3)}, ${r.examples_per_s.toFixed(0)} examples/s.${kept}`;
    document.body.dataset.trained = 'yes';
  } catch (e) {
    if (e.code === 'cancelled') { $('train-stats').textContent = 'Training cancelled; the previous model is kept.'; drawLoss(); }
    else throw e;
  } finally { state.training = false; }
}));
$('cancel-btn').addEventListener('click', () => state.client && state.client.cancel().catch(showError));

// ---------- federation ----------
// Consent is remembered per federation with its date, and shown as such after a reload.
const consentKey = () => `fedsearch-consent-${(state.cfg && state.cfg.federation) || 'default'}`;
function showConsent() {
  const given = localStorage.getItem(consentKey());
  $('consent').checked = !!given;
  $('consent-date').textContent = given ? `(given ${new Date(given).toLocaleString()}; turn off to withdraw)` : '';
}
$('consent').addEventListener('change', () => {
  if ($('consent').checked) localStorage.setItem(consentKey(), new Date().toISOString());
  else localStorage.removeItem(consentKey());
  showConsent();
  setBusy(state.busy);
});
$('sync-btn').addEventListener('click', () => run('sync', async () => {
  const r = await state.client.syncGlobal();
  $('fed-status').textContent = `Global model version ${r.version} (${r.mode}) applied, ${fmtBytes(r.bytes)}.`;
  loadFederation();
}));
$('contribute-btn').addEventListener('click', () => run('contribute', async () => {
  if (!$('consent').checked) throw new Error('Turn on the consent switch first.');
  const secure = Boolean(state.info && state.info.secure);
  $('contribute-result').textContent = secure
    ? 'Joining the secure round: it goes on when enough visitors have joined…'
    : 'Clipping, noising and sending…';
  const r = await state.client.contribute();
  $('contribute-result').textContent = secure
    ? `Masked update of ${fmtBytes(r.bytes)} counted in round ${r.round}; the worker decoded only the sum. ε ${fmtEps(r.epsilonBefore)} → ${fmtEps(r.epsilon)} at δ = ${r.delta}. Norm ${r.normBeforeClip.toFixed(3)} clipped to ${r.normAfterClip.toFixed(3)}, this device's share of the noise σ = ${num(r.noiseStd)}.`
    : `Sent ${fmtBytes(r.bytes)} to round ${r.round} (${r.status}). ε ${fmtEps(r.epsilonBefore)} → ${fmtEps(r.epsilon)} at δ = ${r.delta}. Norm ${r.normBeforeClip.toFixed(3)} clipped to ${r.normAfterClip.toFixed(3)}, noise σC = ${num(r.noiseStd)}.`;
  $('p-epsilon').textContent = fmtEps(r.epsilon); // the panel's full refresh follows
  document.body.dataset.contributed = String(r.round);
  loadFederation();
}));

// ---------- search ----------
$('search-form').addEventListener('submit', async (e) => {
  e.preventDefault();
  const q = $('search-input').value.trim();
  if (!q || !state.client) return;
  clearError();
  // A search can take seconds (WebGPU on a slow device): say so while it runs.
  const started = performance.now();
  $('search-status').textContent = 'Searching…';
  $('results').setAttribute('aria-busy', 'true');
  try {
    const method = $('search-method').value;
    const hits = await state.client.search(q, 10, method);
    state.lastQuery = q;
    renderResults(hits, method, hits.length ? null : await state.client.documentCount());
    $('search-status').textContent = `${plural(hits.length, 'result')} in ${((performance.now() - started) / 1000).toFixed(1)} s (${method}).`;
  } catch (err) {
    $('search-status').textContent = '';
    showError(err);
  } finally { $('results').removeAttribute('aria-busy'); }
});

function renderResults(hits, method, docCount) {
  const ol = $('results');
  ol.replaceChildren();
  if (!hits.length) {
    const li = document.createElement('li');
    li.textContent = docCount === 0
      ? 'No results: add documents first.'
      : method === 'bm25' ? 'No match: no document shares a word with this query (BM25). Try hybrid or MIPS, which match meaning.' : 'No match.';
    ol.append(li);
  }
  for (const h of hits) {
    const li = document.createElement('li');
    li.dataset.id = h.id;
    const a = document.createElement('a');
    a.href = '#';
    a.textContent = h.title || h.id;
    a.addEventListener('click', async (e) => {
      e.preventDefault();
      try {
        await state.client.recordClick(state.lastQuery, h.id);
        a.setAttribute('aria-describedby', 'clicked-' + h.id);
        li.querySelector('.snippet').textContent = h.snippet + ' ✓ remembered for training';
        await refreshPrivacy();
      } catch (err) { showError(err); }
    });
    const score = document.createElement('span');
    score.className = 'score';
    score.textContent = h.score.toFixed(2);
    const sn = document.createElement('span');
    sn.className = 'snippet';
    sn.textContent = h.snippet;
    li.append(a, score, sn);
    ol.append(li);
  }
  document.body.dataset.results = String(hits.length);
}

// ---------- privacy ----------
async function refreshPrivacy() {
  if (!state.client || state.busy) return;
  // Everything is asked first, then the panel changes in one task (never half old, half new).
  let p;
  try { p = await state.client.privacyReport(); } catch (_) { return; }
  // Before the first contribution the federation's C, σ and δ are what the next one will use.
  const dp = state.info && state.info.dp;
  let after = null;
  if (dp) {
    try {
      after = state.info.secure
        ? await state.client.epsilonAfterSecure(state.info)
        : await state.client.epsilonAfter(dp.noise_multiplier, dp.delta);
    } catch (_) { /* busy: keep the last preview */ }
  }
  $('p-epsilon').textContent = fmtEps(p.epsilon);
  $('p-delta').textContent = p.delta ?? (dp ? dp.delta : '–');
  if (after !== null) {
    $('eps-preview').textContent = state.info.secure
      ? `Contributing once more spends privacy: ε ${fmtEps(p.epsilon)} → ${fmtEps(after)} (δ = ${dp.delta}; C = ${num(dp.clip)}; distributed noise: the sum of at least ${state.info.secure.params.min_clients} visitors carries it).`
      : `Contributing once more spends privacy: ε ${fmtEps(p.epsilon)} → ${fmtEps(after)} (δ = ${dp.delta}; C = ${num(dp.clip)}, σ = ${num(dp.noise_multiplier)}).`;
    $('eps-preview').dataset.after = fmtEps(after);
  }
  $('p-rounds').textContent = p.rounds.length ? `${p.contributions} (${p.rounds.join(', ')})` : '0';
  $('p-bytes').textContent = fmtBytes(p.bytesSent);
  $('p-dp').textContent = state.info && state.info.secure
    ? `${num(state.info.dp.clip)} / distributed (secure aggregation)`
    : p.clip != null ? `${num(p.clip)} / ${num(p.noiseMultiplier)}` : dp ? `${num(dp.clip)} / ${num(dp.noise_multiplier)}` : '–';
  $('p-version').textContent = p.globalVersion ?? '–';
  $('p-clicks').textContent = p.clicks;
  $('eps-budget').value = Math.min(p.epsilon, 10);
  const ul = $('leaves');
  ul.replaceChildren(...p.leavesDevice.map((t) => { const li = document.createElement('li'); li.textContent = t; return li; }));
  await refreshDocs();
}

$('delete-all').addEventListener('click', () => run('delete', async () => {
  if (!confirm('Delete all documents, clicks, the trained model, enrolment and privacy records from this device?')) return;
  await state.client.clearLocalData(true);
  localStorage.removeItem(consentKey());
  showConsent();
  $('results').replaceChildren();
  state.losses = []; drawLoss();
  $('docs-status').textContent = 'All local data deleted.';
}));

drawLoss();
main().catch((e) => { showError(e); status('Could not start.'); setState('error'); });
