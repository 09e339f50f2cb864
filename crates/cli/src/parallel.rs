//! The CLI's use of the machine's cores (native only): how many OS threads to run side by side,
//! and running work on scoped threads with results in order — encoders in `embed`, simulated
//! clients in `simulate`. Burn's CPU backend splits only large ops (matrix products, long
//! elementwise maps) over rayon's threads, so independent work side by side is what uses the
//! other cores; each side-by-side item gets its own share of them (crates/core/PERFORMANCE.md,
//! "One rayon pool per encoder").

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
/// (a panicking item is an error, not a crash). Each item runs inside its own rayon pool with an
/// equal share of the global pool's threads (one each when there are as many items as cores), so
/// Burn's parallel ops within an item run on that item's threads: items side by side no longer
/// queue their ops on one shared pool and wait for its threads to wake.
pub fn on_threads<I: Send, R: Send>(
    items: &mut [I],
    work: impl Fn(&mut I) -> CliResult<R> + Sync,
) -> Vec<CliResult<R>> {
    let threads_per_item = (rayon::current_num_threads() / items.len().max(1)).max(1);
    std::thread::scope(|scope| {
        let work = &work;
        let handles: Vec<_> = items
            .iter_mut()
            .map(|item| {
                scope.spawn(move || {
                    let pool = rayon::ThreadPoolBuilder::new()
                        .num_threads(threads_per_item)
                        .build()
                        .map_err(|e| CliError::Tool(format!("cannot start a thread pool: {e}")))?;
                    pool.install(|| work(item))
                })
            })
            .collect();
        handles
            .into_iter()
            .map(|h| h.join().unwrap_or_else(|_| Err(CliError::Tool("a worker thread panicked".into()))))
            .collect()
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_item_runs_on_its_own_share_of_the_pool_in_item_order() {
        let global = rayon::current_num_threads();
        for items in [1, 2, 3, global, global + 1] {
            let mut ids: Vec<usize> = (0..items).collect();
            let seen = on_threads(&mut ids, |&mut i| {
                // Inside an item, rayon's parallel ops see the item's own pool.
                let worker = rayon::current_thread_index();
                Ok((i, rayon::current_num_threads(), worker.is_some()))
            });
            for (k, result) in seen.into_iter().enumerate() {
                let (i, pool_threads, on_worker) = result.unwrap();
                assert_eq!(i, k, "results come back in item order");
                assert_eq!(pool_threads, (global / items).max(1), "{items} items on {global} threads");
                assert!(on_worker, "the work runs on a thread of its own pool");
            }
        }
    }

    #[test]
    fn a_panicking_item_is_an_error_and_the_others_finish() {
        let mut ids = [0usize, 1, 2];
        let results = on_threads(&mut ids, |&mut i| if i == 1 { panic!("item 1 fails") } else { Ok(i) });
        assert_eq!(results[0].as_ref().ok(), Some(&0));
        assert!(matches!(results[1], Err(CliError::Tool(_))));
        assert_eq!(results[2].as_ref().ok(), Some(&2));
    }
}
