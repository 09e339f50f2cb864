//! The CLI's use of the machine's cores (native only): how many OS threads to run side by side,
//! and running work on scoped threads with results in order — encoders in `embed`, simulated
//! clients in `simulate`. Burn's CPU backend runs elementwise ops on one thread and only matrix
//! products on several, so independent work side by side is what uses the other cores.

use crate::error::{CliError, CliResult};

/// How many OS threads the CLI runs side by side: the machine's cores (at most 8), or
/// `FEDSEARCH_THREADS`.
pub fn threads() -> usize {
    std::env::var("FEDSEARCH_THREADS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or_else(|| std::thread::available_parallelism().map_or(1, |n| n.get()).min(8))
        .max(1)
}

/// Runs `work` on each item on its own scoped OS thread and returns the results in item order
/// (a panicking item is an error, not a crash).
pub fn on_threads<I: Send, R: Send>(
    items: &mut [I],
    work: impl Fn(&mut I) -> CliResult<R> + Sync,
) -> Vec<CliResult<R>> {
    std::thread::scope(|scope| {
        let work = &work;
        let handles: Vec<_> = items.iter_mut().map(|item| scope.spawn(move || work(item))).collect();
        handles
            .into_iter()
            .map(|h| h.join().unwrap_or_else(|_| Err(CliError::Tool("a worker thread panicked".into()))))
            .collect()
    })
}
