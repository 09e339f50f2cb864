//! The trained model as the client keeps it on the host: adapter and head residual in plain
//! vectors, column by column in document order, converted to and from Burn modules and tensors.

use super::*;

/// Adapter + head on the host, the head's columns in document order. The head is the trained
/// residual on top of fixed keys (`fedsearch_core::head`): here the keys are the documents'
/// frozen embeddings moved towards their category questions (`State::key_emb`), so a fresh
/// model ranks like inner-product search against them and only the residual is trained,
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

    /// The burn modules on `device`, the head keyed by `keys` (row-major `[n, d]`).
    pub fn to_retriever(&self, keys: &[f32], device: &burn::prelude::Device) -> Retriever {
        let mut head =
            CarHead::from_values(self.head_w.clone(), self.head_b.clone(), self.dim, device).with_keys(keys, device);
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
            adapter_w: take("adapter.weight"),
            adapter_b: take("adapter.bias"),
            head_w: take("head.weight"),
            head_b: take("head.bias"),
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

    pub(super) fn tensors(&self, prefix: &str) -> Vec<HostTensor> {
        let (d, n) = (self.dim, self.n_docs());
        vec![
            HostTensor { name: format!("{prefix}adapter.weight"), shape: vec![d, d], data: self.adapter_w.clone() },
            HostTensor { name: format!("{prefix}adapter.bias"), shape: vec![d], data: self.adapter_b.clone() },
            HostTensor { name: format!("{prefix}head.weight"), shape: vec![d, n], data: self.head_w.clone() },
            HostTensor { name: format!("{prefix}head.bias"), shape: vec![n], data: self.head_b.clone() },
        ]
    }

    pub(super) fn from_tensors(map: &mut HashMap<String, (Vec<usize>, Vec<f32>)>, prefix: &str) -> Option<Self> {
        let mut take = |n: &str| map.remove(&format!("{prefix}{n}"));
        let (aws, adapter_w) = take("adapter.weight")?;
        let (_, adapter_b) = take("adapter.bias")?;
        let (_, head_w) = take("head.weight")?;
        let (_, head_b) = take("head.bias")?;
        Some(Self { dim: aws[0], adapter_w, adapter_b, head_w, head_b })
    }
}
