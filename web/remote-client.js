// The page's handle on a FedsearchClient that lives in a dedicated module worker
// (client-worker.js), so that embedding, training and search never run on the page's main thread.
// Every method returns a promise; progress callbacks are passed like the wasm client's.
//
// Message protocol (structured clone, one worker per client):
//   page → worker  {id, method, args}                 args: JSON-like values; a callback is
//                                                      replaced by {$callback: true}
//   worker → page  {id, progress: [...]}               a callback call of request id
//                  {id, result}                        the request resolved
//                  {id, error: {message, code}}        it rejected; `code` is the client's
//                                                      error code ("invalid", "diverged",
//                                                      "cancelled", "core"), absent otherwise
//                  {log: 'error', text}                console.error inside the worker
//   `create` is request 0: {id: 0, method: 'create', args: [options, {$callback}], cancelFlag}.
// Cancelling training: the worker runs a training step without returning to its event loop,
// so `cancel()` also sets a flag in a SharedArrayBuffer (when the page is cross-origin
// isolated) that the worker reads at each progress call; without one, the cancel message is
// delivered when the current step yields.

export class RemoteClient {
  constructor(worker) {
    this.worker = worker;
    this.nextId = 1;
    this.pending = new Map();
    this.cancelFlag = typeof SharedArrayBuffer === 'function' && self.crossOriginIsolated
      ? new Int32Array(new SharedArrayBuffer(4)) : null;
    worker.addEventListener('message', (e) => this.onMessage(e.data));
    worker.addEventListener('error', (e) => {
      // The worker script failed to load or threw outside a request: every request fails.
      e.preventDefault();
      this.failAll(new Error(`the client worker failed: ${e.message || 'could not load client-worker.js'}`));
    });
    worker.addEventListener('messageerror', () => this.failAll(new Error('the client worker sent an unreadable message')));
  }

  /// Starts a worker and creates the client in it: `options` and `onProgress(file, loaded,
  /// total, fromCache)` as FedsearchClient.create. Resolves once the model is loaded.
  static async create(options, onProgress) {
    const worker = new Worker(new URL('./client-worker.js', import.meta.url), { type: 'module', name: 'fedsearch-client' });
    const client = new RemoteClient(worker);
    try {
      const info = await client.request('create', [options, onProgress], { cancelFlag: client.cancelFlag });
      client.info = info;
      return client;
    } catch (e) {
      worker.terminate();
      throw e;
    }
  }

  request(method, args = [], extra = {}) {
    const id = method === 'create' ? 0 : this.nextId++;
    let callback = null;
    const wire = args.map((a) => {
      if (typeof a === 'function') { callback = a; return { $callback: true }; }
      return a;
    });
    return new Promise((resolve, reject) => {
      if (this.closed) { reject(new Error('the client was closed')); return; }
      this.pending.set(id, { resolve, reject, callback });
      this.worker.postMessage({ id, method, args: wire, ...extra });
    });
  }

  onMessage(m) {
    if (m && m.log === 'error') { console.error('fedsearch client worker:', m.text); return; }
    const p = this.pending.get(m.id);
    if (!p) return;
    if (m.progress) { if (p.callback) p.callback(...m.progress); return; }
    this.pending.delete(m.id);
    if (m.error) {
      const err = new Error(m.error.message);
      if (m.error.code) err.code = m.error.code;
      p.reject(err);
    } else p.resolve(m.result);
  }

  failAll(err) {
    for (const p of this.pending.values()) p.reject(err);
    this.pending.clear();
  }

  // The wasm client's API, asynchronous.
  backend() { return this.info.backend; }
  dim() { return this.info.dim; }
  documentCount() { return this.request('documentCount'); }
  documents() { return this.request('documents'); }
  removeDocument(id) { return this.request('removeDocument', [id]); }
  addDocuments(docs, kind, onProgress) { return this.request('addDocuments', [docs, kind, onProgress]); }
  train(options, onProgress) { return this.request('train', [options, onProgress]); }
  benchmark(options, onStage) { return this.request('benchmark', [options, onStage]); }
  trainingLosses(options) { return this.request('trainingLosses', [options]); }
  cancel() {
    if (this.cancelFlag) Atomics.store(this.cancelFlag, 0, 1);
    return this.request('cancel');
  }
  enroll(token) { return this.request('enroll', [token]); }
  federationInfo() { return this.request('federationInfo'); }
  syncGlobal() { return this.request('syncGlobal'); }
  contribute() { return this.request('contribute'); }
  search(query, k, method) { return this.request('search', [query, k, method]); }
  recordClick(query, docId) { return this.request('recordClick', [query, docId]); }
  epsilonAfter(noiseMultiplier, delta) { return this.request('epsilonAfter', [noiseMultiplier, delta]); }
  epsilonAfterSecure(info) { return this.request('epsilonAfterSecure', [info]); }
  privacyReport() { return this.request('privacyReport'); }
  clearLocalData(everything) { return this.request('clearLocalData', [everything]); }

  /// Stops the worker (and the client in it); pending requests reject.
  free() {
    this.closed = true;
    this.failAll(new Error('the client was closed'));
    this.worker.terminate();
  }
}
