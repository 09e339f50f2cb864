//! The frozen BERT encoder (post-norm, as in the original BERT and all-MiniLM-L6-v2) with an
//! optional soft-embedding adapter between the word-embedding lookup and the rest of the model,
//! and mean pooling. Weights are created by [`crate::loader`]; this file only computes.

use crate::adapter::SoftEmbeddingAdapter;
use burn::nn::{Embedding, LayerNorm, Linear};
use burn::prelude::*;
use burn::tensor::activation::gelu;
use burn::tensor::module::attention;
use burn::tensor::ops::AttentionModuleOptions;

/// Token, position and token-type embeddings followed by LayerNorm.
#[derive(Module, Debug)]
pub struct BertEmbeddings {
    pub word: Embedding,
    pub position: Embedding,
    pub token_type: Embedding,
    pub layer_norm: LayerNorm,
}

/// Multi-head self-attention with its output projection and residual LayerNorm.
#[derive(Module, Debug)]
pub struct BertAttention {
    pub query: Linear,
    pub key: Linear,
    pub value: Linear,
    pub output: Linear,
    pub layer_norm: LayerNorm,
}

/// One transformer block: attention, then the feed-forward network, each post-norm.
#[derive(Module, Debug)]
pub struct BertLayer {
    pub attention: BertAttention,
    pub intermediate: Linear,
    pub output: Linear,
    pub layer_norm: LayerNorm,
}

/// The whole encoder. Its weights are frozen: they are created on a device without autodiff,
/// so no gradient is ever kept for them, even when the adapter in front of them trains.
#[derive(Module, Debug)]
pub struct BertEncoder {
    pub embeddings: BertEmbeddings,
    pub layers: Vec<BertLayer>,
    pub num_heads: usize,
}

// Inside the blocks the hidden states are kept as one `[batch · seq, hidden]` matrix, so that
// every linear layer is a single matrix product over all tokens of the batch. Given `[batch,
// seq, hidden]`, Burn may instead run one small product per sequence (its policy keeps the batch
// when `seq` is a multiple of 32), which on the CPU re-packs the weight for every sequence.

impl BertAttention {
    /// `x` is `[batch · seq, hidden]`; `mask_bias` is `[batch, 1, seq, seq]`: 0 where a key is a
    /// real token, -10000 at padding.
    fn forward(&self, x: Tensor<2>, mask_bias: Tensor<4>, num_heads: usize) -> Tensor<2> {
        let [b, _, l, _] = mask_bias.dims();
        let d = x.dims()[1];
        let dh = d / num_heads;
        let split = |t: Tensor<2>| t.reshape([b, l, num_heads, dh]).swap_dims(1, 2);
        let q = split(self.query.forward(x.clone()));
        let k = split(self.key.forward(x.clone()));
        let v = split(self.value.forward(x.clone()));
        // softmax(q·kᵀ/√dh + mask_bias)·v in one backend op: the CPU backend runs it fused (no
        // `[batch, heads, seq, seq]` tensors between steps); with autodiff, and on WebGPU when a
        // bias is given, Burn computes the same composition op by op.
        let ctx = attention(q, k, v, None, Some(mask_bias), AttentionModuleOptions::default());
        let ctx = ctx.swap_dims(1, 2).reshape([b * l, d]);
        self.layer_norm.forward(self.output.forward(ctx) + x)
    }
}

impl BertLayer {
    /// `x` is `[batch · seq, hidden]`.
    fn forward(&self, x: Tensor<2>, mask_bias: Tensor<4>, num_heads: usize) -> Tensor<2> {
        let a = self.attention.forward(x, mask_bias, num_heads);
        let h = gelu_exact(self.intermediate.forward(a.clone()));
        self.layer_norm.forward(self.output.forward(h) + a)
    }
}

/// GELU as the model was trained with it, `x·Φ(x) = ½·x·(1 + erf(x/√2))`.
///
/// Without gradients this is Burn's one `gelu` op. Where gradients flow (the adapter's training
/// backpropagates through every block) it is composed from `erf`, so that autodiff differentiates
/// the exact function: Burn's GPU backends differentiate `gelu` through its tanh approximation,
/// `tanh(0.797·x + 0.0357·x³)`, whose argument passes 88 for pre-activations above ~13, where
/// WGSL's `tanh` may overflow to NaN (the spec inherits its accuracy from `sinh/cosh`, i.e. from
/// `exp`: gpuweb/gpuweb#4458; Chromium does so on SwiftShader, and cubecl clamps `tanh` only
/// when built for macOS). That NaN was adapter training's NaN on WebGPU with the real model
/// (`crates/client/tests/web.rs`, `gelu_gradient_is_exact_and_finite_*`). The composition's
/// gradient, `Φ(x) + x·φ(x)`, is what Burn's CPU backend computes for `gelu`.
pub fn gelu_exact<const D: usize>(x: Tensor<D>) -> Tensor<D> {
    if !x.is_tracked() {
        return gelu(x);
    }
    let cdf = x.clone().div_scalar(std::f32::consts::SQRT_2).erf().add_scalar(1.0).mul_scalar(0.5);
    x * cdf
}

impl BertEncoder {
    /// Hidden states `[batch, seq, hidden]` for token ids `[batch, seq]` and a 0/1 mask.
    /// With an adapter, the word embeddings pass through it before positions are added.
    pub fn forward(&self, ids: Tensor<2, Int>, mask: Tensor<2>, adapter: Option<&SoftEmbeddingAdapter>) -> Tensor<3> {
        let [b, l] = ids.dims();
        let device = ids.device();
        let mut words = self.embeddings.word.forward(ids);
        if let Some(adapter) = adapter {
            words = adapter.forward(words);
        }
        let positions = Tensor::<1, Int>::arange(0..l as i64, &device).reshape([1, l]).expand([b, l]);
        let types = Tensor::<2, Int>::zeros([b, l], &device);
        let x = words + self.embeddings.position.forward(positions) + self.embeddings.token_type.forward(types);
        let d = self.hidden_size();
        let mut x = self.embeddings.layer_norm.forward(x).reshape([b * l, d]);
        // 0 for real tokens, -10000 for padding (the original BERT's additive mask), one row per
        // query position so that the attention op never has to broadcast it.
        let mask_bias = (mask.clone() - 1.0).mul_scalar(10000.0).reshape([b, 1, 1, l]).repeat_dim(2, l);
        for layer in &self.layers {
            x = layer.forward(x, mask_bias.clone(), self.num_heads);
        }
        x.reshape([b, l, d])
    }

    /// Hidden width.
    pub fn hidden_size(&self) -> usize {
        self.embeddings.word.weight.dims()[1]
    }
}

/// Mean of the hidden states over real tokens, L2-normalised: `[batch, hidden]`.
pub fn mean_pool(hidden: Tensor<3>, mask: Tensor<2>) -> Tensor<2> {
    let [b, l, _] = hidden.dims();
    let m = mask.reshape([b, l, 1]);
    let summed = (hidden * m.clone()).sum_dim(1).squeeze_dim::<2>(1);
    let count = m.sum_dim(1).squeeze_dim::<2>(1).clamp_min(1e-9);
    l2_normalize(summed / count)
}

/// Rows scaled to unit L2 norm (rows of zeros stay zero).
pub fn l2_normalize(x: Tensor<2>) -> Tensor<2> {
    let norm = x.clone().square().sum_dim(1).sqrt().clamp_min(1e-12);
    x / norm
}
