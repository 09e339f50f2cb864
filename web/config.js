// Page configuration shared by the main page and the benchmark page: config.json next to the
// page, overridden by URL parameters (?federation=&model=&worker=&token=&backend=&db=).
export async function loadConfig() {
  let cfg = { workerUrl: '', federation: 'demo', modelBaseUrl: 'models/all-MiniLM-L6-v2-f16', backend: 'auto', enrollToken: '' };
  try {
    const r = await fetch('config.json', { cache: 'no-cache' });
    if (r.ok) cfg = { ...cfg, ...(await r.json()) };
  } catch (_) { /* offline or absent: defaults */ }
  const p = new URLSearchParams(location.search);
  const map = { federation: 'federation', model: 'modelBaseUrl', worker: 'workerUrl', token: 'enrollToken', backend: 'backend', db: 'dbName' };
  for (const [k, v] of Object.entries(map)) if (p.has(k)) cfg[v] = p.get(k);
  return cfg;
}
