//! Saving and loading the trained parts (adapter and head) as safetensors, with the head's
//! document ids in the metadata. The tensor names are the federation's wire names:
//! `adapter.weight` `[d, d]`, `adapter.bias` `[d]`, `head.weight` `[d, n_docs]` (the head's
//! residual), `head.bias`; a checkpoint also carries the head's fixed keys (`head.keys`,
//! `[n_docs, d]`) when it has them, which a federated update never does.

use crate::adapter::SoftEmbeddingAdapter;
use crate::error::{CoreError, Result};
use crate::head::CarHead;
use crate::host::{ADAPTER_BIAS, ADAPTER_WEIGHT, HEAD_BIAS, HEAD_WEIGHT};
use crate::model::read_f32;
use crate::train::Retriever;
use burn::prelude::*;
use safetensors::{Dtype, SafeTensors, tensor::TensorView};
use std::collections::HashMap;

/// A named f32 tensor on the host.
#[derive(Debug, Clone, PartialEq)]
pub struct HostTensor {
    pub name: String,
    pub shape: Vec<usize>,
    pub data: Vec<f32>,
}

/// Serialises host tensors (and string metadata) as safetensors bytes.
pub fn write_safetensors(tensors: &[HostTensor], metadata: HashMap<String, String>) -> Result<Vec<u8>> {
    let bytes: Vec<Vec<u8>> = tensors.iter().map(|t| t.data.iter().flat_map(|v| v.to_le_bytes()).collect()).collect();
    let mut views = Vec::with_capacity(tensors.len());
    for (t, b) in tensors.iter().zip(&bytes) {
        let view = TensorView::new(Dtype::F32, t.shape.clone(), b)
            .map_err(|e| CoreError::Checkpoint(format!("tensor {}: {e}", t.name)))?;
        views.push((t.name.clone(), view));
    }
    let meta = if metadata.is_empty() { None } else { Some(metadata) };
    safetensors::serialize(views, meta).map_err(|e| CoreError::Checkpoint(e.to_string()))
}

/// The trained tensors of a retriever, read back asynchronously.
pub async fn retriever_tensors(model: &Retriever) -> Result<Vec<HostTensor>> {
    let d = model.adapter.dim();
    let n = model.head.num_docs();
    let mut out = vec![
        HostTensor {
            name: ADAPTER_WEIGHT.into(),
            shape: vec![d, d],
            data: read_f32(model.adapter.weight.val()).await?,
        },
        HostTensor { name: ADAPTER_BIAS.into(), shape: vec![d], data: read_f32(model.adapter.bias.val()).await? },
        HostTensor { name: HEAD_WEIGHT.into(), shape: vec![d, n], data: read_f32(model.head.weight.val()).await? },
        HostTensor { name: HEAD_BIAS.into(), shape: vec![n], data: read_f32(model.head.bias.val()).await? },
    ];
    if let Some(keys) = &model.head.keys {
        // Stored row-major `[n, d]`, one key per document, as `CarHead::with_keys` takes them.
        out.push(HostTensor {
            name: HEAD_KEYS.into(),
            shape: vec![n, d],
            data: read_f32(keys.clone().transpose()).await?,
        });
    }
    Ok(out)
}

/// Name of the head's fixed keys in a checkpoint (`[n_docs, d]`; absent: no keys). They are
/// never part of a federated update.
pub const HEAD_KEYS: &str = "head.keys";

/// Rebuilds a retriever from host tensors (as produced by [`retriever_tensors`]).
pub fn retriever_from_tensors(tensors: &[HostTensor], scale: f32, device: &Device) -> Result<Retriever> {
    let get = |name: &str| {
        tensors
            .iter()
            .find(|t| t.name == name)
            .ok_or_else(|| CoreError::Checkpoint(format!("tensor {name:?} is missing")))
    };
    let (aw, ab, hw, hb) = (get(ADAPTER_WEIGHT)?, get(ADAPTER_BIAS)?, get(HEAD_WEIGHT)?, get(HEAD_BIAS)?);
    let d = ab.data.len();
    let n = hb.data.len();
    let expect = |t: &HostTensor, shape: &[usize]| {
        if t.shape != shape || t.data.len() != shape.iter().product::<usize>() {
            Err(CoreError::Checkpoint(format!("tensor {} has shape {:?}, expected {shape:?}", t.name, t.shape)))
        } else {
            Ok(())
        }
    };
    expect(aw, &[d, d])?;
    expect(ab, &[d])?;
    expect(hw, &[d, n])?;
    expect(hb, &[n])?;
    let mut head = CarHead::from_values(hw.data.clone(), hb.data.clone(), d, device);
    if let Some(keys) = tensors.iter().find(|t| t.name == HEAD_KEYS) {
        expect(keys, &[n, d])?;
        head = head.with_keys(&keys.data, device);
    }
    head.scale = scale;
    Ok(Retriever { adapter: SoftEmbeddingAdapter::from_values(aw.data.clone(), ab.data.clone(), device), head })
}

/// Saves adapter + head + document ids as safetensors bytes.
pub async fn save_retriever(model: &Retriever, doc_ids: &[String]) -> Result<Vec<u8>> {
    let tensors = retriever_tensors(model).await?;
    let mut meta = HashMap::new();
    meta.insert("doc_ids".into(), serde_json::to_string(doc_ids).expect("strings serialise"));
    meta.insert("head_scale".into(), model.head.scale.to_string());
    write_safetensors(&tensors, meta)
}

/// Loads what [`save_retriever`] wrote; checks the width against the encoder's `d`.
pub fn load_retriever(bytes: &[u8], d: usize, device: &Device) -> Result<(Retriever, Vec<String>)> {
    let (_, meta) = SafeTensors::read_metadata(bytes)
        .map_err(|e| CoreError::Checkpoint(format!("not a safetensors checkpoint: {e}")))?;
    let st = SafeTensors::deserialize(bytes)
        .map_err(|e| CoreError::Checkpoint(format!("not a safetensors checkpoint: {e}")))?;
    let meta = meta.metadata().clone().unwrap_or_default();
    let doc_ids: Vec<String> = match meta.get("doc_ids") {
        Some(s) => serde_json::from_str(s).map_err(|e| CoreError::Checkpoint(format!("doc_ids: {e}")))?,
        None => Vec::new(),
    };
    let scale: f32 = meta.get("head_scale").and_then(|s| s.parse().ok()).unwrap_or(crate::head::DEFAULT_HEAD_SCALE);
    let mut tensors = Vec::new();
    for (name, view) in st.tensors() {
        if view.dtype() != Dtype::F32 {
            return Err(CoreError::Checkpoint(format!("tensor {name} is not f32")));
        }
        let data = view.data().chunks_exact(4).map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]])).collect();
        tensors.push(HostTensor { name, shape: view.shape().to_vec(), data });
    }
    let model = retriever_from_tensors(&tensors, scale, device)?;
    if model.adapter.dim() != d {
        return Err(CoreError::Checkpoint(format!(
            "the checkpoint's width is {} but the model's is {d}: it was trained on another model",
            model.adapter.dim()
        )));
    }
    if !doc_ids.is_empty() && doc_ids.len() != model.head.num_docs() {
        return Err(CoreError::Checkpoint("doc_ids and head size disagree".into()));
    }
    Ok((model, doc_ids))
}
