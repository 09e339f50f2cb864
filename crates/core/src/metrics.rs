//! Retrieval metrics: top-k accuracy and MRR@10 from each query's ranking and gold document.

use serde::Serialize;

/// Aggregate metrics over a query set.
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize)]
pub struct Metrics {
    pub top1: f64,
    pub top5: f64,
    pub top10: f64,
    pub mrr10: f64,
    pub queries: usize,
}

/// Accumulates ranks of the gold document (1-based; `None` = not in the ranking).
#[derive(Debug, Default)]
pub struct MetricsBuilder {
    ranks: Vec<Option<usize>>,
}

impl MetricsBuilder {
    /// Records one query's ranking.
    pub fn add(&mut self, ranking: &[usize], gold: usize) {
        self.ranks.push(ranking.iter().position(|&d| d == gold).map(|p| p + 1));
    }

    /// The metrics so far.
    pub fn finish(&self) -> Metrics {
        let n = self.ranks.len().max(1) as f64;
        let within = |k: usize| self.ranks.iter().filter(|r| r.is_some_and(|r| r <= k)).count() as f64 / n;
        let mrr = self
            .ranks
            .iter()
            .map(|r| match r {
                Some(r) if *r <= 10 => 1.0 / *r as f64,
                _ => 0.0,
            })
            .sum::<f64>()
            / n;
        Metrics { top1: within(1), top5: within(5), top10: within(10), mrr10: mrr, queries: self.ranks.len() }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn metrics_from_known_ranks() {
        let mut m = MetricsBuilder::default();
        m.add(&[3, 1, 2], 3); // rank 1
        m.add(&[0, 1, 2, 3, 4, 5], 5); // rank 6
        m.add(&[0, 1], 9); // missing
        let r = m.finish();
        assert!((r.top1 - 1.0 / 3.0).abs() < 1e-12);
        assert!((r.top5 - 1.0 / 3.0).abs() < 1e-12);
        assert!((r.top10 - 2.0 / 3.0).abs() < 1e-12);
        assert!((r.mrr10 - (1.0 + 1.0 / 6.0) / 3.0).abs() < 1e-12);
    }
}
