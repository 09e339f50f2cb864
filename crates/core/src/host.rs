//! The trained parts (adapter and head residual) on the host, in plain vectors, as the tab keeps
//! them and the simulator trades them: converted to and from Burn modules and named tensors (the
//! federation's wire names live here), CaR logits computed on the host with the head's formula,
//! and deltas against the model a client started from.

use crate::adapter::SoftEmbeddingAdapter;
use crate::checkpoint::{HostTensor, retriever_tensors};
use crate::error::{CoreError, Result};
use crate::head::{CarHead, DEFAULT_HEAD_SCALE};
use crate::search::inner_products;
use crate::train::Retriever;
use std::collections::HashMap;

/// Adapter weight `[d, d]`, row-major, applied as `x·W + b` (identity at start). The four names
/// are the federation's wire names (`fedsearch_protocol` repeats them for the worker, which has
/// no model; a client test checks that they agree).
pub const ADAPTER_WEIGHT: &str = "adapter.weight";
/// Adapter bias `[d]`.
pub const ADAPTER_BIAS: &str = "adapter.bias";
/// Head residual weight `[d, n_docs]`, row-major.
pub const HEAD_WEIGHT: &str = "head.weight";
/// Head bias `[n_docs]`.
pub const HEAD_BIAS: &str = "head.bias";

/// Adapter + head on the host, the head's columns in document order. The head is the trained
/// residual on top of fixed keys ([`crate::head`]; the tab's keys are the documents' frozen
/// embeddings moved towards their category questions, the simulator's the centroid keys), so a
/// fresh model ranks like inner-product search against them and only the residual is trained,
/// persisted and federated.
#[derive(Debug, Clone, PartialEq)]
pub struct HostModel {
    pub dim: usize,
    /// `[d, d]` row-major.
    pub adapter_w: Vec<f32>,
    pub adapter_b: Vec<f32>,
    /// `[d, n]` row-major.
    pub head_w: Vec<f32>,
    pub head_b: Vec<f32>,
}

impl HostModel {
    /// Identity adapter, zero head of `n` columns.
    pub fn initial(dim: usize, n: usize) -> Self {
        let mut adapter_w = vec![0.0; dim * dim];
        for i in 0..dim {
            adapter_w[i * dim + i] = 1.0;
        }
        Self { dim, adapter_w, adapter_b: vec![0.0; dim], head_w: vec![0.0; dim * n], head_b: vec![0.0; n] }
    }

    /// Number of head columns.
    pub fn n_docs(&self) -> usize {
        self.head_b.len()
    }

    /// Column `j` of the head weight.
    pub fn column(&self, j: usize) -> Vec<f32> {
        let n = self.n_docs();
        (0..self.dim).map(|r| self.head_w[r * n + j]).collect()
    }

    /// Appends head columns (weights `[d]` each, and a bias each).
    pub fn push_columns(&mut self, cols: &[(Vec<f32>, f32)]) {
        let (d, n) = (self.dim, self.n_docs());
        let m = n + cols.len();
        let mut w = vec![0.0; d * m];
        for r in 0..d {
            w[r * m..r * m + n].copy_from_slice(&self.head_w[r * n..(r + 1) * n]);
            for (k, (c, _)) in cols.iter().enumerate() {
                w[r * m + n + k] = c[r];
            }
        }
        self.head_w = w;
        self.head_b.extend(cols.iter().map(|(_, b)| *b));
    }

    /// Keeps the head columns `j` with `keep[j]` (in order), drops the others.
    pub fn retain_columns(&mut self, keep: &[bool]) {
        let (d, n) = (self.dim, self.n_docs());
        let m = keep.iter().filter(|k| **k).count();
        let mut w = Vec::with_capacity(d * m);
        for r in 0..d {
            w.extend((0..n).filter(|&j| keep[j]).map(|j| self.head_w[r * n + j]));
        }
        self.head_w = w;
        self.head_b = (0..n).filter(|&j| keep[j]).map(|j| self.head_b[j]).collect();
    }

    /// Sets column `j` (weights and bias).
    pub fn set_column(&mut self, j: usize, col: &[f32], bias: f32) {
        let n = self.n_docs();
        for (r, v) in col.iter().enumerate() {
            self.head_w[r * n + j] = *v;
        }
        self.head_b[j] = bias;
    }

    /// The burn modules on `device`, the head keyed by `keys` (row-major `[n, d]`; `None`: a head
    /// without keys, the residual alone).
    pub fn to_retriever(&self, keys: Option<&[f32]>, device: &burn::prelude::Device) -> Retriever {
        let mut head = CarHead::from_values(self.head_w.clone(), self.head_b.clone(), self.dim, device);
        if let Some(keys) = keys {
            head = head.with_keys(keys, device);
        }
        head.scale = DEFAULT_HEAD_SCALE;
        Retriever {
            adapter: SoftEmbeddingAdapter::from_values(self.adapter_w.clone(), self.adapter_b.clone(), device),
            head,
        }
    }

    /// Reads a trained retriever back to the host (asynchronously: browser-safe).
    pub async fn from_retriever(r: &Retriever) -> Result<Self> {
        let t = retriever_tensors(r).await?;
        let dim = r.adapter.dim();
        let mut by_name: HashMap<String, Vec<f32>> = t.into_iter().map(|t| (t.name, t.data)).collect();
        let mut take = |n: &str| by_name.remove(n).unwrap_or_default();
        Ok(Self {
            dim,
            adapter_w: take(ADAPTER_WEIGHT),
            adapter_b: take(ADAPTER_BIAS),
            head_w: take(HEAD_WEIGHT),
            head_b: take(HEAD_BIAS),
        })
    }

    /// CaR logits for one pooled query with the head keyed by `keys` (row-major `[n, d]`):
    /// `scale · q · (key_j + w_j) + b_j`, computed on the host (`2 · d × n` multiply-adds).
    pub fn logits(&self, q: &[f32], keys: &[f32]) -> Vec<f32> {
        let n = self.n_docs();
        let mut out = self.head_b.clone();
        for (r, qv) in q.iter().enumerate() {
            let row = &self.head_w[r * n..(r + 1) * n];
            for (o, w) in out.iter_mut().zip(row) {
                *o += DEFAULT_HEAD_SCALE * qv * w;
            }
        }
        for (o, key_dot_q) in out.iter_mut().zip(inner_products(q, keys)) {
            *o += DEFAULT_HEAD_SCALE * key_dot_q;
        }
        out
    }

    /// The four tensors under their wire names, each prefixed with `prefix`.
    pub fn tensors(&self, prefix: &str) -> Vec<HostTensor> {
        let (d, n) = (self.dim, self.n_docs());
        vec![
            HostTensor { name: format!("{prefix}{ADAPTER_WEIGHT}"), shape: vec![d, d], data: self.adapter_w.clone() },
            HostTensor { name: format!("{prefix}{ADAPTER_BIAS}"), shape: vec![d], data: self.adapter_b.clone() },
            HostTensor { name: format!("{prefix}{HEAD_WEIGHT}"), shape: vec![d, n], data: self.head_w.clone() },
            HostTensor { name: format!("{prefix}{HEAD_BIAS}"), shape: vec![n], data: self.head_b.clone() },
        ]
    }

    /// Takes the four tensors named `prefix` + wire name out of `map` (`None` when one is
    /// missing).
    pub fn from_tensors(map: &mut HashMap<String, (Vec<usize>, Vec<f32>)>, prefix: &str) -> Option<Self> {
        let mut take = |n: &str| map.remove(&format!("{prefix}{n}"));
        let (aws, adapter_w) = take(ADAPTER_WEIGHT)?;
        let (_, adapter_b) = take(ADAPTER_BIAS)?;
        let (_, head_w) = take(HEAD_WEIGHT)?;
        let (_, head_b) = take(HEAD_BIAS)?;
        Some(Self { dim: aws[0], adapter_w, adapter_b, head_w, head_b })
    }

    /// A model from named tensors, such as a federation's global model, for a head of `n`
    /// documents over width `d`: a missing adapter is the identity and a missing head is zero
    /// (a federation that trains only one of them); a present tensor of another shape is an
    /// error.
    pub fn from_named<'a>(tensors: impl IntoIterator<Item = (&'a str, &'a [f32])>, d: usize, n: usize) -> Result<Self> {
        let mut m = Self::initial(d, n);
        for (name, data) in tensors {
            let slot = match name {
                ADAPTER_WEIGHT => &mut m.adapter_w,
                ADAPTER_BIAS => &mut m.adapter_b,
                HEAD_WEIGHT => &mut m.head_w,
                HEAD_BIAS => &mut m.head_b,
                other => return Err(CoreError::Checkpoint(format!("unknown tensor {other:?}"))),
            };
            if slot.len() != data.len() {
                return Err(CoreError::Checkpoint(format!(
                    "tensor {name} has {} values, expected {} (d = {d}, {n} documents)",
                    data.len(),
                    slot.len()
                )));
            }
            slot.copy_from_slice(data);
        }
        Ok(m)
    }

    /// The values of the tensor with wire name `name`.
    pub fn values(&self, name: &str) -> Option<&[f32]> {
        match name {
            ADAPTER_WEIGHT => Some(&self.adapter_w),
            ADAPTER_BIAS => Some(&self.adapter_b),
            HEAD_WEIGHT => Some(&self.head_w),
            HEAD_BIAS => Some(&self.head_b),
            _ => None,
        }
    }

    /// `self − base` for the tensor with wire name `name` (both models of one shape).
    pub fn delta(&self, base: &Self, name: &str) -> Result<Vec<f32>> {
        match (self.values(name), base.values(name)) {
            (Some(a), Some(b)) if a.len() == b.len() => Ok(a.iter().zip(b).map(|(x, y)| x - y).collect()),
            _ => Err(CoreError::Checkpoint(format!("no tensor {name:?} of one shape in both models"))),
        }
    }
}
