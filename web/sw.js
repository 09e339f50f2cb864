// Service worker: the page, the wasm package and the model work offline.
// Model files are cached by the wasm client, not here. Same-origin GETs go to the network first (so new deployments are picked up) and fall back
// to the cache; the aggregation API (/v1/) is never cached.
const CACHE = 'fedsearch-shell-v3';
const SHELL = ['./', 'index.html', 'app.js', 'remote-client.js', 'client-worker.js', 'longtasks.js', 'config.js', 'style.css', 'config.json', 'demo-corpus.json', 'pkg/fedsearch_client.js', 'pkg/fedsearch_client_bg.wasm'];

self.addEventListener('install', (e) => {
  e.waitUntil(caches.open(CACHE).then((c) => c.addAll(SHELL)).catch(() => undefined).then(() => self.skipWaiting()));
});
self.addEventListener('activate', (e) => e.waitUntil(self.clients.claim()));

self.addEventListener('fetch', (e) => {
  const url = new URL(e.request.url);
  if (e.request.method !== 'GET' || url.origin !== location.origin || url.pathname.includes('/v1/')) return;
  // Model files are cached by the client itself (Cache Storage "fedsearch-models-v1").
  if (url.pathname.includes('/models/')) return;
  e.respondWith((async () => {
    const cache = await caches.open(CACHE);
    try {
      const resp = await fetch(e.request);
      if (resp.ok && resp.status === 200) cache.put(e.request, resp.clone()).catch(() => undefined);
      return resp;
    } catch (err) {
      const hit = await cache.match(e.request, { ignoreSearch: url.pathname.endsWith('/') || url.pathname.endsWith('.html') });
      if (hit) return hit;
      throw err;
    }
  })());
});
