//! BM25 baseline (Lucene's formula: idf = ln(1 + (N − df + 0.5)/(df + 0.5)); default k1 0.9,
//! b 0.4 as in Anserini/Pyserini) over [`crate::text::terms`].

use crate::text::terms;
use std::collections::HashMap;

/// An inverted index with BM25 scoring.
#[derive(Debug, Clone)]
pub struct Bm25 {
    postings: HashMap<String, Vec<(u32, u32)>>,
    doc_len: Vec<f32>,
    avg_len: f32,
    pub k1: f32,
    pub b: f32,
}

impl Bm25 {
    /// Indexes documents (their full texts) with the given parameters.
    pub fn new(docs: &[String], k1: f32, b: f32) -> Self {
        let mut postings: HashMap<String, Vec<(u32, u32)>> = HashMap::new();
        let mut doc_len = Vec::with_capacity(docs.len());
        for (i, d) in docs.iter().enumerate() {
            let ts = terms(d);
            doc_len.push(ts.len() as f32);
            let mut tf: HashMap<String, u32> = HashMap::new();
            for t in ts {
                *tf.entry(t).or_default() += 1;
            }
            for (t, c) in tf {
                postings.entry(t).or_default().push((i as u32, c));
            }
        }
        let avg_len = (doc_len.iter().sum::<f32>() / doc_len.len().max(1) as f32).max(1.0);
        Self { postings, doc_len, avg_len, k1, b }
    }

    /// BM25 score of every document for `query`.
    pub fn scores(&self, query: &str) -> Vec<f32> {
        let n = self.doc_len.len() as f32;
        let mut scores = vec![0.0f32; self.doc_len.len()];
        for t in terms(query) {
            let Some(list) = self.postings.get(&t) else { continue };
            let df = list.len() as f32;
            let idf = (1.0 + (n - df + 0.5) / (df + 0.5)).ln();
            for &(doc, tf) in list {
                let tf = tf as f32;
                let norm = self.k1 * (1.0 - self.b + self.b * self.doc_len[doc as usize] / self.avg_len);
                scores[doc as usize] += idf * tf * (self.k1 + 1.0) / (tf + norm);
            }
        }
        scores
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn matches_hand_computed_score() {
        let docs = vec!["cat sat".to_string(), "dog dog ran far away".to_string()];
        let bm = Bm25::new(&docs, 0.9, 0.4);
        // "dog": df 1 of N 2 → idf ln(1 + 1.5/1.5) = ln 2; doc 1: tf 2, len 5, avg 3.5.
        let norm = 0.9 * (1.0 - 0.4 + 0.4 * 5.0 / 3.5);
        let expected = 2f32.ln() * 2.0 * 1.9 / (2.0 + norm);
        let s = bm.scores("dogs");
        assert_eq!(s[0], 0.0);
        assert!((s[1] - expected).abs() < 1e-6, "{} vs {expected}", s[1]);
    }
}
