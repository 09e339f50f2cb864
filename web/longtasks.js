// Records the main thread's long tasks (over 50 ms, the browser's `longtask` entries) so that
// the page, its tests and the benchmark page can say how responsive the tab stayed.
// watchLongTasks() → {tasks: [{start, duration}], longest(sinceMs = 0), since(ms)}.
export function watchLongTasks() {
  const log = {
    supported: typeof PerformanceObserver === 'function' && (PerformanceObserver.supportedEntryTypes || []).includes('longtask'),
    tasks: [],
    /// The longest task that started at or after `sinceMs` (performance.now() time), in ms.
    longest(sinceMs = 0) {
      return log.tasks.filter((t) => t.start >= sinceMs).reduce((m, t) => Math.max(m, t.duration), 0);
    },
  };
  if (log.supported) {
    new PerformanceObserver((list) => {
      for (const e of list.getEntries()) log.tasks.push({ start: e.startTime, duration: e.duration });
    }).observe({ type: 'longtask', buffered: true });
  }
  return log;
}
