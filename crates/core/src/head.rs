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
