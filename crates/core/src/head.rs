//! The classifier-as-retriever (CaR) head: a linear layer from the pooled, L2-normalised query
//! embedding to one logit per document. Retrieval is "which document is this query about",
//! trained with cross-entropy on (query, document) pairs.

use burn::module::Param;
use burn::prelude::*;
use burn::tensor::activation::log_softmax;

/// `logits = scale · (q · W) + b`, `W` `[d, n_docs]`, `b` `[n_docs]`. The fixed `scale` (a
/// temperature) lets a unit-norm query reach confident logits with small weights.
#[derive(Module, Debug)]
pub struct CarHead {
    pub weight: Param<Tensor<2>>,
    pub bias: Param<Tensor<1>>,
    pub scale: f32,
}

/// Default temperature of the head's logits.
pub const DEFAULT_HEAD_SCALE: f32 = 20.0;

impl CarHead {
    /// A head whose columns are the given document embeddings (row-major `[n_docs, d]`, each
    /// unit norm), so that before training it ranks exactly like inner-product search.
    pub fn from_document_embeddings(doc_emb: &[f32], n_docs: usize, d: usize, device: &Device) -> Self {
        let w = Tensor::<2>::from_data(TensorData::new(doc_emb.to_vec(), [n_docs, d]), device)
            .transpose();
        Self {
            weight: Param::from_tensor(w),
            bias: Param::from_tensor(Tensor::zeros([n_docs], device)),
            scale: DEFAULT_HEAD_SCALE,
        }
    }

    /// A head whose column `i` is `normalise(doc_i + mix · mean of the query embeddings labelled
    /// i)`: inner-product search against each document moved towards its own pseudo-queries
    /// (a document without queries keeps its embedding). Rows of `doc_emb` and `query_emb` are
    /// `d` wide; `targets[j]` is the document of query row `j`.
    pub fn from_query_centroids(
        doc_emb: &[f32],
        query_emb: &[f32],
        targets: &[usize],
        d: usize,
        mix: f32,
        device: &Device,
    ) -> Self {
        let n_docs = doc_emb.len() / d.max(1);
        let mut sums = vec![0f32; n_docs * d];
        let mut counts = vec![0usize; n_docs];
        for (row, &t) in query_emb.chunks_exact(d).zip(targets) {
            counts[t] += 1;
            for (s, v) in sums[t * d..(t + 1) * d].iter_mut().zip(row) {
                *s += v;
            }
        }
        let mut rows = doc_emb.to_vec();
        for (i, row) in rows.chunks_exact_mut(d).enumerate() {
            if counts[i] > 0 {
                let k = mix / counts[i] as f32;
                for (r, s) in row.iter_mut().zip(&sums[i * d..(i + 1) * d]) {
                    *r += k * s;
                }
            }
            let norm = row.iter().map(|v| v * v).sum::<f32>().sqrt().max(1e-12);
            row.iter_mut().for_each(|v| *v /= norm);
        }
        Self::from_document_embeddings(&rows, n_docs, d, device)
    }

    /// A head of zeros: every document equally likely before training.
    pub fn zeros(d: usize, n_docs: usize, device: &Device) -> Self {
        Self {
            weight: Param::from_tensor(Tensor::zeros([d, n_docs], device)),
            bias: Param::from_tensor(Tensor::zeros([n_docs], device)),
            scale: DEFAULT_HEAD_SCALE,
        }
    }

    /// A head from explicit values (`weight` row-major `[d, n_docs]`).
    pub fn from_values(weight: Vec<f32>, bias: Vec<f32>, d: usize, device: &Device) -> Self {
        let n = bias.len();
        Self {
            weight: Param::from_tensor(Tensor::from_data(TensorData::new(weight, [d, n]), device)),
            bias: Param::from_tensor(Tensor::from_data(TensorData::new(bias, [n]), device)),
            scale: DEFAULT_HEAD_SCALE,
        }
    }

    /// Number of documents.
    pub fn num_docs(&self) -> usize {
        self.bias.dims()[0]
    }

    /// Logits `[batch, n_docs]` for pooled queries `[batch, d]`.
    pub fn forward(&self, pooled: Tensor<2>) -> Tensor<2> {
        let n = self.num_docs();
        pooled.matmul(self.weight.val()).mul_scalar(self.scale) + self.bias.val().reshape([1, n])
    }
}

/// Mean cross-entropy of `logits` `[batch, n]` against target indices.
pub fn cross_entropy(logits: Tensor<2>, targets: Tensor<1, Int>) -> Tensor<1> {
    let [b, _] = logits.dims();
    let logp = log_softmax(logits, 1);
    let picked = logp.gather(1, targets.reshape([b, 1]));
    picked.mean().neg()
}
