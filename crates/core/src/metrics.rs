//! Retrieval metrics: top-k accuracy and MRR@10 from each query's ranking and its gold documents
//! (one or several: a hit at k is any gold document in the top k; MRR counts the first gold one).

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

/// Accumulates the rank of each query's first gold document (1-based; `None` = none in the ranking).
#[derive(Debug, Default)]
pub struct MetricsBuilder {
    ranks: Vec<Option<usize>>,
}

impl MetricsBuilder {
    /// Records one query's ranking against its gold documents.
    pub fn add(&mut self, ranking: &[usize], gold: &[usize]) {
        self.ranks.push(ranking.iter().position(|d| gold.contains(d)).map(|p| p + 1));
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
        m.add(&[3, 1, 2], &[3]); // rank 1
        m.add(&[0, 1, 2, 3, 4, 5], &[5]); // rank 6
        m.add(&[0, 1], &[9]); // missing
        let r = m.finish();
        assert!((r.top1 - 1.0 / 3.0).abs() < 1e-12);
        assert!((r.top5 - 1.0 / 3.0).abs() < 1e-12);
        assert!((r.top10 - 2.0 / 3.0).abs() < 1e-12);
        assert!((r.mrr10 - (1.0 + 1.0 / 6.0) / 3.0).abs() < 1e-12);
    }

    #[test]
    fn several_gold_documents_count_the_first_one_ranked() {
        let mut m = MetricsBuilder::default();
        // Gold 7 and 2: 2 stands at rank 3, 7 at rank 5 -> rank 3.
        m.add(&[0, 1, 2, 3, 7, 5], &[7, 2]);
        // Gold 4 and 9: 4 at rank 1 (9 is not ranked) -> rank 1.
        m.add(&[4, 0, 1], &[9, 4]);
        // Gold 8 and 6: neither ranked.
        m.add(&[0, 1, 2], &[8, 6]);
        // Gold 11 at rank 11 (outside MRR@10 and top-10).
        m.add(&[0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 11], &[11, 12]);
        let r = m.finish();
        assert_eq!(r.queries, 4);
        assert!((r.top1 - 0.25).abs() < 1e-12, "{r:?}");
        assert!((r.top5 - 0.5).abs() < 1e-12, "{r:?}");
        assert!((r.top10 - 0.5).abs() < 1e-12, "{r:?}");
        assert!((r.mrr10 - (1.0 / 3.0 + 1.0) / 4.0).abs() < 1e-12, "{r:?}");
    }
}
