//! The classifier-as-retriever (CaR) head: a linear layer from the pooled, L2-normalised query
//! embedding to one logit per document. Retrieval is "which document is this query about",
//! trained with cross-entropy on (query, document) pairs.
//!
//! The head is **keys + residual**: fixed per-document keys (the frozen document embeddings, or
//! those moved towards the document's pseudo-queries), computed where the documents are and
//! never trained, plus a trained residual `weight` that starts at zero. Only the residual and the
//! bias are trained, federated and privatised, so every model — a fresh tab, version 0 of a
//! federation, a simulated client — starts by ranking like inner-product search against its
//! keys, and training moves it away only where the pairs pay for it (with the L2 pull of
//! [`crate::train::TrainConfig::pull_to_keys`] on the residual).

use burn::module::Param;
use burn::prelude::*;
use burn::tensor::activation::log_softmax;

/// `logits = scale · (q · (K + W)) + b`: keys `K` `[d, n_docs]` (fixed, optional: absent means
/// zero), trained residual `W` `[d, n_docs]`, bias `b` `[n_docs]`. The fixed `scale` (a
/// temperature) lets a unit-norm query reach confident logits with small weights.
#[derive(Module, Debug)]
pub struct CarHead {
    pub weight: Param<Tensor<2>>,
    pub bias: Param<Tensor<1>>,
    /// Fixed per-document keys `[d, n_docs]`: not a parameter (no gradient, not federated).
    pub keys: Option<Tensor<2>>,
    pub scale: f32,
}

/// Default temperature of the head's logits.
pub const DEFAULT_HEAD_SCALE: f32 = 20.0;

/// How far [`centroid_keys`] moves a document's key towards its pseudo-queries (the measured
/// default: crates/cli/QUALITY.md).
pub const CENTROID_MIX: f32 = 0.5;

/// Per-document keys, row-major `[n_docs, d]`: row `i` is `normalise(doc_i + mix · mean of the
/// query embeddings labelled i)` — each document embedding moved towards its own pseudo-queries
/// (a document without queries keeps its embedding). Rows of `doc_emb` and `query_emb` are `d`
/// wide; `targets[j]` is the document of query row `j` (targets outside the documents are
/// ignored).
pub fn centroid_keys(doc_emb: &[f32], query_emb: &[f32], targets: &[usize], d: usize, mix: f32) -> Vec<f32> {
    keys_towards(doc_emb, &[QuerySet { emb: query_emb, targets, mix }], d)
}

/// How far [`keys_towards`] moves a key towards its document's category questions
/// (`pseudo::category_questions`; the measured default: crates/cli/QUALITY.md).
pub const QUESTION_MIX: f32 = 1.0;

/// Query embeddings (row-major, `d` wide) labelled with their documents, and how far a key
/// moves towards their mean.
#[derive(Debug, Clone, Copy)]
pub struct QuerySet<'a> {
    pub emb: &'a [f32],
    pub targets: &'a [usize],
    pub mix: f32,
}

/// Per-document keys, row-major `[n_docs, d]`: row `i` is `normalise(doc_i + Σ_sets mix · mean
/// of the set's query embeddings labelled i)`; a set without queries for `i` adds nothing.
pub fn keys_towards(doc_emb: &[f32], sets: &[QuerySet<'_>], d: usize) -> Vec<f32> {
    let n_docs = doc_emb.len() / d.max(1);
    let mut rows = doc_emb.to_vec();
    for set in sets {
        let mut sums = vec![0f32; n_docs * d];
        let mut counts = vec![0usize; n_docs];
        for (row, &t) in set.emb.chunks_exact(d.max(1)).zip(set.targets) {
            if t >= n_docs {
                continue;
            }
            counts[t] += 1;
            for (s, v) in sums[t * d..(t + 1) * d].iter_mut().zip(row) {
                *s += v;
            }
        }
        for (i, row) in rows.chunks_exact_mut(d.max(1)).enumerate() {
            if counts[i] > 0 {
                let k = set.mix / counts[i] as f32;
                for (r, s) in row.iter_mut().zip(&sums[i * d..(i + 1) * d]) {
                    *r += k * s;
                }
            }
        }
    }
    for row in rows.chunks_exact_mut(d.max(1)) {
        let norm = row.iter().map(|v| v * v).sum::<f32>().sqrt().max(1e-12);
        row.iter_mut().for_each(|v| *v /= norm);
    }
    rows
}

impl CarHead {
    /// A head whose keys are the given rows (row-major `[n_docs, d]`, e.g. unit-norm document
    /// embeddings) and whose residual and bias are zero: before training it ranks exactly like
    /// inner-product search against the keys.
    pub fn from_keys(keys: &[f32], n_docs: usize, d: usize, device: &Device) -> Self {
        Self::zeros(d, n_docs, device).with_keys(keys, device)
    }

    /// This head with its keys replaced by `keys` (row-major `[n_docs, d]`).
    pub fn with_keys(mut self, keys: &[f32], device: &Device) -> Self {
        let [d, n] = self.weight.dims();
        assert_eq!(keys.len(), n * d, "keys must be [n_docs = {n}, d = {d}]");
        // Transposed on the host, so that the `[d, n]` keys are one contiguous matrix (a
        // transposed view would be walked with strides at every training step).
        let d_by_n = crate::search::transpose(keys, n, d);
        self.keys = Some(Tensor::<2>::from_data(TensorData::new(d_by_n, [d, n]), device));
        self
    }

    /// A head of zeros without keys: every document equally likely before training.
    pub fn zeros(d: usize, n_docs: usize, device: &Device) -> Self {
        Self {
            weight: Param::from_tensor(Tensor::zeros([d, n_docs], device)),
            bias: Param::from_tensor(Tensor::zeros([n_docs], device)),
            keys: None,
            scale: DEFAULT_HEAD_SCALE,
        }
    }

    /// A head from explicit values (residual `weight` row-major `[d, n_docs]`), without keys.
    pub fn from_values(weight: Vec<f32>, bias: Vec<f32>, d: usize, device: &Device) -> Self {
        let n = bias.len();
        Self {
            weight: Param::from_tensor(Tensor::from_data(TensorData::new(weight, [d, n]), device)),
            bias: Param::from_tensor(Tensor::from_data(TensorData::new(bias, [n]), device)),
            keys: None,
            scale: DEFAULT_HEAD_SCALE,
        }
    }

    /// Number of documents.
    pub fn num_docs(&self) -> usize {
        self.bias.dims()[0]
    }

    /// The weight the logits use, `K + W` `[d, n_docs]`.
    pub fn effective_weight(&self) -> Tensor<2> {
        match &self.keys {
            Some(k) => k.clone() + self.weight.val(),
            None => self.weight.val(),
        }
    }

    /// Logits `[batch, n_docs]` for pooled queries `[batch, d]`.
    pub fn forward(&self, pooled: Tensor<2>) -> Tensor<2> {
        let n = self.num_docs();
        pooled.matmul(self.effective_weight()).mul_scalar(self.scale) + self.bias.val().reshape([1, n])
    }
}

/// Mean cross-entropy of `logits` `[batch, n]` against target indices.
pub fn cross_entropy(logits: Tensor<2>, targets: Tensor<1, Int>) -> Tensor<1> {
    let [b, _] = logits.dims();
    let logp = log_softmax(logits, 1);
    let picked = logp.gather(1, targets.reshape([b, 1]));
    picked.mean().neg()
}
