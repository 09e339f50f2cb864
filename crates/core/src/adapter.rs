//! The soft-embedding adapter: a trainable `d×d` map plus bias applied to every word embedding
//! before the frozen encoder. It starts at the identity, so an untrained adapter leaves the
//! model's outputs exactly as they were.

use burn::module::Param;
use burn::prelude::*;

/// `x ↦ x·W + b`, with `W` `[d, d]` (rows are input features) and `b` `[d]`.
#[derive(Module, Debug)]
pub struct SoftEmbeddingAdapter {
    pub weight: Param<Tensor<2>>,
    pub bias: Param<Tensor<1>>,
}

impl SoftEmbeddingAdapter {
    /// The identity adapter of width `d`.
    pub fn identity(d: usize, device: &Device) -> Self {
        Self {
            weight: Param::from_tensor(Tensor::eye(d, device)),
            bias: Param::from_tensor(Tensor::zeros([d], device)),
        }
    }

    /// An adapter from explicit weights (row-major `[d, d]`) and bias.
    pub fn from_values(weight: Vec<f32>, bias: Vec<f32>, device: &Device) -> Self {
        let d = bias.len();
        Self {
            weight: Param::from_tensor(Tensor::from_data(TensorData::new(weight, [d, d]), device)),
            bias: Param::from_tensor(Tensor::from_data(TensorData::new(bias, [d]), device)),
        }
    }

    /// Width `d`.
    pub fn dim(&self) -> usize {
        self.bias.dims()[0]
    }

    /// Applies the map to `[batch, seq, d]` embeddings.
    pub fn forward(&self, x: Tensor<3>) -> Tensor<3> {
        let [b, l, d] = x.dims();
        let flat = x.reshape([b * l, d]);
        let y = flat.matmul(self.weight.val()) + self.bias.val().reshape([1, d]);
        y.reshape([b, l, d])
    }
}
