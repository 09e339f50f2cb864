//! Builds a [`BertEncoder`] from Hugging Face `model.safetensors` bytes: maps HF tensor names
//! (with or without the `bert.` prefix) onto modules, converts f16/bf16 to f32, transposes linear
//! weights to Burn's `[in, out]`, and checks every shape against `config.json`.

use crate::config::BertConfig;
use crate::encoder::{BertAttention, BertEmbeddings, BertEncoder, BertLayer};
use crate::error::{CoreError, Result};
use burn::module::Param;
use burn::nn::{Embedding, LayerNorm, LayerNormConfig, Linear};
use burn::prelude::*;
use safetensors::{Dtype, SafeTensors};

struct Weights<'a> {
    st: SafeTensors<'a>,
    prefix: &'static str,
    device: Device,
}

impl Weights<'_> {
    fn get(&self, name: &str, shape: &[usize]) -> Result<Vec<f32>> {
        let full = format!("{}{name}", self.prefix);
        let view = self.st.tensor(&full).map_err(|_| {
            CoreError::Weights(format!(
                "tensor {full:?} is missing: this is not a BERT-style model.safetensors, or it \
                 does not match config.json"
            ))
        })?;
        if view.shape() != shape {
            return Err(CoreError::Weights(format!(
                "tensor {full:?} has shape {:?}, config.json implies {shape:?}",
                view.shape()
            )));
        }
        let bytes = view.data();
        let values: Vec<f32> = match view.dtype() {
            Dtype::F32 => bytes.chunks_exact(4).map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]])).collect(),
            Dtype::F16 => bytes.chunks_exact(2).map(|c| half::f16::from_le_bytes([c[0], c[1]]).to_f32()).collect(),
            Dtype::BF16 => bytes.chunks_exact(2).map(|c| half::bf16::from_le_bytes([c[0], c[1]]).to_f32()).collect(),
            other => {
                return Err(CoreError::Weights(format!(
                    "tensor {full:?} has dtype {other:?}; only F32, F16 and BF16 are supported"
                )));
            }
        };
        if let Some(bad) = values.iter().position(|v| !v.is_finite()) {
            return Err(CoreError::Weights(format!(
                "tensor {full:?} holds a non-finite value at index {bad}: the file is corrupt"
            )));
        }
        Ok(values)
    }

    fn tensor1(&self, name: &str, n: usize) -> Result<Tensor<1>> {
        Ok(Tensor::from_data(TensorData::new(self.get(name, &[n])?, [n]), &self.device))
    }

    fn tensor2(&self, name: &str, rows: usize, cols: usize) -> Result<Tensor<2>> {
        let v = self.get(name, &[rows, cols])?;
        Ok(Tensor::from_data(TensorData::new(v, [rows, cols]), &self.device))
    }

    /// HF `Linear(in → out)` stores weight `[out, in]`; Burn wants `[in, out]`. The transpose
    /// is done here, once, on the host: a transposed tensor view would be copied into a
    /// contiguous matrix by every forward pass (it was 7 % of the encoder's time).
    fn linear(&self, name: &str, d_in: usize, d_out: usize) -> Result<Linear> {
        let out_in = self.get(&format!("{name}.weight"), &[d_out, d_in])?;
        let in_out = crate::search::transpose(&out_in, d_out, d_in);
        let w = Tensor::<2>::from_data(TensorData::new(in_out, [d_in, d_out]), &self.device);
        let b = self.tensor1(&format!("{name}.bias"), d_out)?;
        Ok(Linear { weight: Param::from_tensor(w), bias: Some(Param::from_tensor(b)) })
    }

    fn layer_norm(&self, name: &str, d: usize, eps: f64) -> Result<LayerNorm> {
        let mut ln = LayerNormConfig::new(d).with_epsilon(eps).init(&self.device);
        ln.gamma = Param::from_tensor(self.tensor1(&format!("{name}.weight"), d)?);
        ln.beta = Some(Param::from_tensor(self.tensor1(&format!("{name}.bias"), d)?));
        Ok(ln)
    }

    fn embedding(&self, name: &str, n: usize, d: usize) -> Result<Embedding> {
        Ok(Embedding { weight: Param::from_tensor(self.tensor2(&format!("{name}.weight"), n, d)?) })
    }
}

/// Loads the frozen encoder from safetensors bytes. The weights are placed on `device` without
/// autodiff whatever `device` is, so they never receive gradients.
pub fn load_encoder(weights: &[u8], cfg: &BertConfig, device: &Device) -> Result<BertEncoder> {
    let st = SafeTensors::deserialize(weights)
        .map_err(|e| CoreError::Weights(format!("model.safetensors is not a valid safetensors file: {e}")))?;
    let prefix = if st.names().iter().any(|n| n.starts_with("bert.embeddings.")) { "bert." } else { "" };
    let w = Weights { st, prefix, device: device.clone().without_autodiff() };
    let d = cfg.hidden_size;
    let eps = cfg.layer_norm_eps;
    let embeddings = BertEmbeddings {
        word: w.embedding("embeddings.word_embeddings", cfg.vocab_size, d)?,
        position: w.embedding("embeddings.position_embeddings", cfg.max_position_embeddings, d)?,
        token_type: w.embedding("embeddings.token_type_embeddings", cfg.type_vocab_size, d)?,
        layer_norm: w.layer_norm("embeddings.LayerNorm", d, eps)?,
    };
    let mut layers = Vec::with_capacity(cfg.num_hidden_layers);
    for i in 0..cfg.num_hidden_layers {
        let p = format!("encoder.layer.{i}");
        layers.push(BertLayer {
            attention: BertAttention {
                query: w.linear(&format!("{p}.attention.self.query"), d, d)?,
                key: w.linear(&format!("{p}.attention.self.key"), d, d)?,
                value: w.linear(&format!("{p}.attention.self.value"), d, d)?,
                output: w.linear(&format!("{p}.attention.output.dense"), d, d)?,
                layer_norm: w.layer_norm(&format!("{p}.attention.output.LayerNorm"), d, eps)?,
            },
            intermediate: w.linear(&format!("{p}.intermediate.dense"), d, cfg.intermediate_size)?,
            output: w.linear(&format!("{p}.output.dense"), cfg.intermediate_size, d)?,
            layer_norm: w.layer_norm(&format!("{p}.output.LayerNorm"), d, eps)?,
        });
    }
    Ok(BertEncoder { embeddings, layers, num_heads: cfg.num_attention_heads })
}

/// The same `model.safetensors` with every F32 tensor stored as F16 (names, shapes and other
/// dtypes unchanged): half the download for the browser, which converts back to f32 on load.
/// Fails if a value does not fit f16 (|x| > 65504), rather than writing an infinity.
pub fn to_f16_safetensors(bytes: &[u8]) -> Result<Vec<u8>> {
    let st = SafeTensors::deserialize(bytes).map_err(|e| CoreError::Weights(format!("not a safetensors file: {e}")))?;
    let mut names: Vec<String> = st.names().into_iter().map(String::from).collect();
    names.sort();
    let mut converted: Vec<(String, Dtype, Vec<usize>, Vec<u8>)> = Vec::with_capacity(names.len());
    for name in names {
        let view = st.tensor(&name).map_err(|e| CoreError::Weights(format!("{name}: {e}")))?;
        let (dtype, data) = match view.dtype() {
            Dtype::F32 => {
                let mut out = Vec::with_capacity(view.data().len() / 2);
                for (i, c) in view.data().chunks_exact(4).enumerate() {
                    let v = f32::from_le_bytes([c[0], c[1], c[2], c[3]]);
                    let h = half::f16::from_f32(v);
                    if v.is_finite() && !h.is_finite() {
                        return Err(CoreError::Weights(format!(
                            "tensor {name:?} value {v} at index {i} does not fit f16"
                        )));
                    }
                    out.extend_from_slice(&h.to_le_bytes());
                }
                (Dtype::F16, out)
            }
            other => (other, view.data().to_vec()),
        };
        converted.push((name, dtype, view.shape().to_vec(), data));
    }
    let views = converted
        .iter()
        .map(|(name, dtype, shape, data)| {
            safetensors::tensor::TensorView::new(*dtype, shape.clone(), data)
                .map(|v| (name.clone(), v))
                .map_err(|e| CoreError::Weights(format!("{name}: {e}")))
        })
        .collect::<Result<Vec<_>>>()?;
    safetensors::serialize(views, None).map_err(|e| CoreError::Weights(format!("cannot write safetensors: {e}")))
}
