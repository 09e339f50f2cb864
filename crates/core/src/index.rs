//! A searchable corpus: frozen-encoder document embeddings for MIPS, a BM25 index, and the
//! scoring of every method (MIPS, BM25, CaR logits, and their hybrid) that the CLI evaluates
//! and the browser uses to answer searches offline.

use crate::bm25::Bm25;
use crate::data::Corpus;
use crate::error::Result;
use crate::model::{SentenceEncoder, read_f32};
use crate::search::{fuse, inner_products};
use crate::train::Retriever;
use burn::prelude::*;

/// BM25 parameters used everywhere (Anserini's defaults).
pub const BM25_K1: f32 = 0.9;
/// See [`BM25_K1`].
pub const BM25_B: f32 = 0.4;

/// Weights of the hybrid method's standardised scores.
#[derive(Debug, Clone, Copy, serde::Serialize)]
pub struct HybridWeights {
    pub car: f32,
    pub mips: f32,
    pub bm25: f32,
}

impl Default for HybridWeights {
    /// One weighting for the head alone and the trained adapter, with and without clicks, at
    /// 1,000 and 10,033 documents: fitted on half of each dev set in all six of those settings
    /// (the best sum of the fitting halves among the weightings that lose no fitting half more
    /// than a point against the previous (1, 1, 0.5); crates/cli/QUALITY.md, "One hybrid
    /// weighting for every setting", stop 25). The CaR's keys already hold the document
    /// embeddings (moved towards their pseudo-queries and questions), so MIPS adds little beside
    /// them; BM25 adds the words.
    fn default() -> Self {
        Self { car: 1.0, mips: 0.25, bm25: 0.25 }
    }
}

/// Document embeddings and a BM25 index over one corpus.
pub struct SearchIndex {
    pub doc_ids: Vec<String>,
    /// Row-major `[n_docs, d]`, unit-norm rows from the frozen encoder.
    pub doc_emb: Vec<f32>,
    pub dim: usize,
    pub bm25: Bm25,
}

impl SearchIndex {
    /// Embeds every document's full text and indexes it for BM25.
    pub async fn build(
        encoder: &SentenceEncoder,
        corpus: &Corpus,
        batch_size: usize,
        progress: &mut dyn FnMut(usize, usize),
    ) -> Result<Self> {
        let texts = corpus.full_texts();
        let refs: Vec<&str> = texts.iter().map(String::as_str).collect();
        let doc_emb = encoder.embed(&refs, None, batch_size, progress).await?;
        Ok(Self::from_parts(corpus.ids(), doc_emb, encoder.dim(), &texts))
    }

    /// An index from embeddings computed elsewhere (e.g. restored from storage).
    pub fn from_parts(doc_ids: Vec<String>, doc_emb: Vec<f32>, dim: usize, texts: &[String]) -> Self {
        Self { doc_ids, doc_emb, dim, bm25: Bm25::new(texts, BM25_K1, BM25_B) }
    }

    /// Number of documents.
    pub fn len(&self) -> usize {
        self.doc_ids.len()
    }

    /// True when there are no documents.
    pub fn is_empty(&self) -> bool {
        self.doc_ids.is_empty()
    }

    /// Cosine of a unit-norm query embedding with every document.
    pub fn mips_scores(&self, query_emb: &[f32]) -> Vec<f32> {
        inner_products(query_emb, &self.doc_emb)
    }

    /// BM25 score of every document.
    pub fn bm25_scores(&self, query: &str) -> Vec<f32> {
        self.bm25.scores(query)
    }

    /// The hybrid of CaR logits, MIPS and BM25 (each standardised, then weighted).
    pub fn hybrid_scores(&self, car_logits: &[f32], query_emb: &[f32], query: &str, w: HybridWeights) -> Vec<f32> {
        let mips = self.mips_scores(query_emb);
        let bm25 = self.bm25_scores(query);
        fuse(&[(car_logits, w.car), (&mips, w.mips), (&bm25, w.bm25)])
    }
}

/// CaR logits, row-major `[n_queries, n_docs]`, for pooled query features `[n_queries, d]`.
pub async fn car_logits(model: &Retriever, features: &[f32], dim: usize, device: &Device) -> Result<Vec<f32>> {
    let n = features.len() / dim.max(1);
    let model = model.valid();
    let mut out = Vec::with_capacity(n * model.head.num_docs());
    for start in (0..n).step_by(512) {
        let end = (start + 512).min(n);
        let x = Tensor::<2>::from_data(
            TensorData::new(features[start * dim..end * dim].to_vec(), [end - start, dim]),
            device,
        );
        out.extend(read_f32(model.head.forward(x)).await?);
    }
    Ok(out)
}
