// Dedicated module worker that owns one FedsearchClient (model, IndexedDB, WebGPU or CPU,
// training, search, contribute) off the page's main thread. The page talks to it through
// remote-client.js; the message protocol is described there.
import init, { FedsearchClient } from './pkg/fedsearch_client.js';

let client = null;
let cancelFlag = null; // Int32Array over a SharedArrayBuffer shared with the page, or null

// Panics (console_error_panic_hook) and other errors inside the worker reach the page's console.
const consoleError = console.error.bind(console);
console.error = (...args) => {
  consoleError(...args);
  self.postMessage({ log: 'error', text: args.map((a) => (a && a.stack) || String(a)).join(' ') });
};
self.addEventListener('unhandledrejection', (e) => console.error('unhandled rejection:', e.reason));

const ALLOWED = new Set([
  'documentCount', 'documents', 'removeDocument', 'addDocuments', 'train', 'benchmark', 'trainingLosses', 'cancel',
  'enroll', 'federationInfo', 'syncGlobal', 'contribute', 'search', 'recordClick', 'epsilonAfter', 'epsilonAfterSecure',
  'privacyReport', 'clearLocalData',
]);

function errorMessage(e) {
  const error = { message: e && e.message ? e.message : String(e) };
  if (e && typeof e.code === 'string') error.code = e.code;
  return error;
}

// A training step runs to its end without yielding, so a cancel message would wait for the
// whole run: the page's flag is read at every progress call instead.
function checkCancel() {
  if (cancelFlag && client && Atomics.exchange(cancelFlag, 0, 0) === 1) client.cancel();
}

async function handle(m) {
  const callbackFor = (a) => (a && a.$callback ? (...progress) => {
    self.postMessage({ id: m.id, progress });
    checkCancel();
  } : a);
  const args = (m.args || []).map(callbackFor);
  if (m.method === 'create') {
    if (client) throw new Error('this worker already has a client');
    cancelFlag = m.cancelFlag || null;
    await init();
    client = await FedsearchClient.create(args[0], args[1]);
    return { backend: client.backend(), dim: client.dim() };
  }
  if (!client) throw new Error('the client is not created yet');
  if (!ALLOWED.has(m.method)) throw new Error(`unknown client method ${m.method}`);
  if (m.method === 'train' && cancelFlag) Atomics.store(cancelFlag, 0, 0);
  return await client[m.method](...args);
}

self.addEventListener('message', async (e) => {
  const m = e.data;
  try {
    const result = await handle(m);
    self.postMessage({ id: m.id, result });
  } catch (err) {
    self.postMessage({ id: m.id, error: errorMessage(err) });
  }
});
