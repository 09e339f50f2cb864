//! Process-wide counters exported at `GET /metrics` in Prometheus text format.

use std::collections::BTreeMap;
use std::fmt::Write;
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};

#[derive(Default)]
pub struct Metrics {
    pub rounds_published: AtomicU64,
    pub updates_accepted: AtomicU64,
    pub updates_duplicate: AtomicU64,
    pub bytes_received: AtomicU64,
    pub enrolments: AtomicU64,
    /// Aggregation (finish + optimizer + persist) time, microseconds.
    pub aggregation_micros: AtomicU64,
    pub aggregations: AtomicU64,
    /// Secure rounds started again after a phase ended with too few clients.
    pub secure_restarts: AtomicU64,
    rejected: Mutex<BTreeMap<&'static str, u64>>,
}

impl Metrics {
    pub fn reject(&self, reason: &'static str) {
        if let Ok(mut m) = self.rejected.lock() {
            *m.entry(reason).or_insert(0) += 1;
        }
    }

    pub fn render(&self) -> String {
        let g = |a: &AtomicU64| a.load(Ordering::Relaxed);
        let mut s = String::new();
        let mut counter = |name: &str, help: &str, v: u64| {
            let _ = writeln!(s, "# HELP {name} {help}\n# TYPE {name} counter\n{name} {v}");
        };
        counter("fedsearch_rounds_published_total", "Rounds aggregated and published.", g(&self.rounds_published));
        counter(
            "fedsearch_updates_accepted_total",
            "Updates accepted into a round aggregate.",
            g(&self.updates_accepted),
        );
        counter(
            "fedsearch_updates_duplicate_total",
            "Re-sent (client, round) updates answered idempotently.",
            g(&self.updates_duplicate),
        );
        counter("fedsearch_bytes_received_total", "Update body bytes received.", g(&self.bytes_received));
        counter("fedsearch_enrolments_total", "Clients enrolled.", g(&self.enrolments));
        counter(
            "fedsearch_secure_restarts_total",
            "Secure rounds started again after a phase ended with too few clients.",
            g(&self.secure_restarts),
        );
        let _ = writeln!(
            s,
            "# HELP fedsearch_aggregation_seconds Time spent closing rounds (average, optimizer step, persist).\n\
             # TYPE fedsearch_aggregation_seconds summary\n\
             fedsearch_aggregation_seconds_sum {:.6}\nfedsearch_aggregation_seconds_count {}",
            g(&self.aggregation_micros) as f64 / 1e6,
            g(&self.aggregations)
        );
        let _ = writeln!(
            s,
            "# HELP fedsearch_updates_rejected_total Updates rejected, by reason.\n# TYPE fedsearch_updates_rejected_total counter"
        );
        if let Ok(m) = self.rejected.lock() {
            for (reason, n) in m.iter() {
                let _ = writeln!(s, "fedsearch_updates_rejected_total{{reason=\"{reason}\"}} {n}");
            }
        }
        s
    }
}
