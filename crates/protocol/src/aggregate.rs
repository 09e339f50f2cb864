//! Federated aggregation shared by the worker and the native simulator:
//! a streaming weighted FedAvg accumulator (O(model) memory, persistable)
//! and the server optimizer (FedAvg / FedAdam) that applies the averaged
//! delta to the global model, optionally adding central Gaussian noise.

use crate::codec::{Encoding, KIND_AGGREGATE_STATE, KIND_OPTIMIZER_STATE, Reader, Writer, open_frame};
use crate::error::ProtocolError;
use crate::types::{GlobalModel, NamedTensor, TensorSpec, Update, shape_numel};
use fedsearch_privacy::NoiseRng;
use serde::{Deserialize, Serialize};

/// Running weighted sum of one tensor.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct AccTensor {
    pub name: String,
    pub shape: Vec<u32>,
    /// Σ weight·delta, in f64 so the result is order-independent up to
    /// ~1e-16 relative error.
    pub sum: Vec<f64>,
}

/// Streaming weighted FedAvg: keeps one f64 accumulator per federated value,
/// never a list of updates.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct StreamingFedAvg {
    tensors: Vec<AccTensor>,
    total_weight: f64,
    count: u64,
}

impl StreamingFedAvg {
    /// An empty accumulator for exactly these tensors.
    pub fn new(specs: &[TensorSpec]) -> Self {
        Self {
            tensors: specs
                .iter()
                .map(|s| AccTensor {
                    name: s.name.clone(),
                    shape: s.shape.clone(),
                    sum: vec![0.0; shape_numel(&s.shape).unwrap_or(0)],
                })
                .collect(),
            total_weight: 0.0,
            count: 0,
        }
    }

    /// Adds `weight · update.tensors`. The update must contain exactly the
    /// accumulator's tensors (any order). On error nothing is changed.
    pub fn add(&mut self, update: &Update, weight: f64) -> Result<(), ProtocolError> {
        if !(weight.is_finite() && weight > 0.0) {
            return Err(ProtocolError::InvalidWeight(weight));
        }
        if update.tensors.len() != self.tensors.len() {
            return Err(ProtocolError::AggregateMismatch {
                tensor: String::new(),
                reason: format!(
                    "set differs: update has {} tensors, aggregate expects {}",
                    update.tensors.len(),
                    self.tensors.len()
                ),
            });
        }
        // Resolve and check everything first so a failure leaves no partial sum.
        let mut order = Vec::with_capacity(self.tensors.len());
        for acc in &self.tensors {
            let t = update.tensor(&acc.name).ok_or_else(|| ProtocolError::AggregateMismatch {
                tensor: acc.name.clone(),
                reason: "is missing from the update".into(),
            })?;
            if t.shape != acc.shape || t.data.len() != acc.sum.len() {
                return Err(ProtocolError::AggregateMismatch {
                    tensor: acc.name.clone(),
                    reason: format!(
                        "has shape {:?} with {} values, aggregate expects {:?}",
                        t.shape,
                        t.data.len(),
                        acc.shape
                    ),
                });
            }
            order.push(t);
        }
        for (acc, t) in self.tensors.iter_mut().zip(order) {
            for (s, &x) in acc.sum.iter_mut().zip(&t.data) {
                *s += weight * x as f64;
            }
        }
        self.total_weight += weight;
        self.count += 1;
        Ok(())
    }

    /// Number of updates added.
    pub fn count(&self) -> u64 {
        self.count
    }

    /// Sum of the weights added.
    pub fn total_weight(&self) -> f64 {
        self.total_weight
    }

    /// Tensor layout of the accumulator.
    pub fn specs(&self) -> Vec<TensorSpec> {
        self.tensors.iter().map(|t| TensorSpec::new(t.name.clone(), t.shape.clone())).collect()
    }

    /// The weighted mean delta `Σ wᵢ Δᵢ / Σ wᵢ`.
    pub fn finish(&self) -> Result<Vec<NamedTensor>, ProtocolError> {
        if self.count == 0 || self.total_weight <= 0.0 {
            return Err(ProtocolError::EmptyAggregate);
        }
        let inv = 1.0 / self.total_weight;
        Ok(self
            .tensors
            .iter()
            .map(|a| NamedTensor {
                name: a.name.clone(),
                shape: a.shape.clone(),
                data: a.sum.iter().map(|&s| (s * inv) as f32).collect(),
            })
            .collect())
    }

    /// Compact binary form (f64 sums, CRC-protected) for persistence.
    pub fn to_bytes(&self) -> Vec<u8> {
        let cap =
            32 + self.tensors.iter().map(|t| 16 + t.name.len() + 4 * t.shape.len() + 8 * t.sum.len()).sum::<usize>();
        let mut w = Writer::new(KIND_AGGREGATE_STATE, Encoding::F32, cap);
        w.u64(self.count);
        w.f64(self.total_weight);
        w.u32(self.tensors.len() as u32);
        for t in &self.tensors {
            w.str(&t.name);
            w.u8(t.shape.len() as u8);
            for d in &t.shape {
                w.u32(*d);
            }
            w.f64_slice(&t.sum);
        }
        w.finish()
    }

    /// Inverse of [`StreamingFedAvg::to_bytes`].
    pub fn from_bytes(data: &[u8]) -> Result<Self, ProtocolError> {
        let (mut r, _) = open_frame(data, KIND_AGGREGATE_STATE, "aggregate state", true)?;
        let count = r.u64("aggregate count")?;
        let total_weight = r.f64("aggregate weight")?;
        let n = r.count("aggregate tensor count", 5)?;
        let mut tensors = Vec::with_capacity(n);
        for _ in 0..n {
            let (name, shape, numel) = r.tensor_header()?;
            let sum = r.f64_vec(numel, "aggregate sums")?;
            tensors.push(AccTensor { name, shape, sum });
        }
        r.finish()?;
        Ok(Self { tensors, total_weight, count })
    }
}

/// How the server applies the averaged client delta Δ to the global weights x.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum ServerOptimizer {
    /// x += lr · Δ  (lr = 1 is plain FedAvg).
    FedAvg { lr: f64 },
    /// Reddi et al., "Adaptive Federated Optimization":
    /// m = β1 m + (1-β1) Δ; v = β2 v + (1-β2) Δ²; x += lr · m / (√v + ε).
    FedAdam { lr: f64, beta1: f64, beta2: f64, eps: f64 },
}

impl Default for ServerOptimizer {
    fn default() -> Self {
        ServerOptimizer::FedAvg { lr: 1.0 }
    }
}

/// Server optimizer moments (FedAdam); empty for FedAvg. Persist it with
/// each published version.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
pub struct OptimizerState {
    pub step: u64,
    pub m: Vec<NamedTensor>,
    pub v: Vec<NamedTensor>,
}

impl OptimizerState {
    /// Compact binary form (f32, CRC-protected).
    pub fn to_bytes(&self) -> Vec<u8> {
        let cap = 16 + 4 * (self.m.iter().chain(&self.v).map(|t| t.data.len() + 8).sum::<usize>());
        let mut w = Writer::new(KIND_OPTIMIZER_STATE, Encoding::F32, cap);
        w.u64(self.step);
        for list in [&self.m, &self.v] {
            w.u32(list.len() as u32);
            for t in list {
                w.tensor(t, Encoding::F32);
            }
        }
        w.finish()
    }

    /// Inverse of [`OptimizerState::to_bytes`].
    pub fn from_bytes(data: &[u8]) -> Result<Self, ProtocolError> {
        let (mut r, enc): (Reader<'_>, Encoding) = open_frame(data, KIND_OPTIMIZER_STATE, "optimizer state", true)?;
        let step = r.u64("optimizer step")?;
        let m = r.tensors(enc)?;
        let v = r.tensors(enc)?;
        r.finish()?;
        Ok(Self { step, m, v })
    }
}

impl ServerOptimizer {
    /// Checks hyper-parameters are usable.
    pub fn check(&self) -> Result<(), ProtocolError> {
        let bad = |what: &str, v: f64| Err(ProtocolError::Optimizer(format!("{what} = {v} is out of range")));
        match *self {
            ServerOptimizer::FedAvg { lr } => {
                if !(lr.is_finite() && lr > 0.0) {
                    return bad("lr", lr);
                }
            }
            ServerOptimizer::FedAdam { lr, beta1, beta2, eps } => {
                if !(lr.is_finite() && lr > 0.0) {
                    return bad("lr", lr);
                }
                if !(0.0..1.0).contains(&beta1) {
                    return bad("beta1", beta1);
                }
                if !(0.0..1.0).contains(&beta2) {
                    return bad("beta2", beta2);
                }
                if !(eps.is_finite() && eps > 0.0) {
                    return bad("eps", eps);
                }
            }
        }
        Ok(())
    }

    /// Applies the averaged delta to `model` and bumps `model.version` by one.
    /// With `noise = Some((std, rng))`, N(0, std²) is added to the averaged
    /// delta first (central DP; `std` must be positive and finite). On error
    /// nothing is changed.
    pub fn apply(
        &self,
        model: &mut GlobalModel,
        delta: &[NamedTensor],
        state: &mut OptimizerState,
        noise: Option<(f64, &mut NoiseRng)>,
    ) -> Result<(), ProtocolError> {
        self.check()?;
        for d in delta {
            let Some(t) = model.tensor(&d.name) else {
                return Err(ProtocolError::Optimizer(format!(
                    "delta tensor {:?} does not exist in the global model",
                    d.name
                )));
            };
            if t.shape != d.shape || t.data.len() != d.data.len() {
                return Err(ProtocolError::Optimizer(format!(
                    "delta tensor {:?} has shape {:?}, the model has {:?}",
                    d.name, d.shape, t.shape
                )));
            }
        }
        let mut delta: Vec<NamedTensor> = delta.to_vec();
        if let Some((std, rng)) = noise {
            for d in &mut delta {
                fedsearch_privacy::add_gaussian_noise(&mut d.data, std, rng)
                    .map_err(|e| ProtocolError::Privacy(e.to_string()))?;
            }
        }
        match *self {
            ServerOptimizer::FedAvg { lr } => {
                for d in &delta {
                    if let Some(t) = model.tensors.iter_mut().find(|t| t.name == d.name) {
                        for (x, &g) in t.data.iter_mut().zip(&d.data) {
                            *x = (*x as f64 + lr * g as f64) as f32;
                        }
                    }
                }
            }
            ServerOptimizer::FedAdam { lr, beta1, beta2, eps } => {
                for d in &delta {
                    let m = moment(&mut state.m, d);
                    for (mi, &g) in m.data.iter_mut().zip(&d.data) {
                        *mi = (beta1 * *mi as f64 + (1.0 - beta1) * g as f64) as f32;
                    }
                    let v = moment(&mut state.v, d);
                    for (vi, &g) in v.data.iter_mut().zip(&d.data) {
                        let g = g as f64;
                        *vi = (beta2 * *vi as f64 + (1.0 - beta2) * g * g) as f32;
                    }
                }
                for d in &delta {
                    let (Some(m), Some(v)) =
                        (state.m.iter().find(|t| t.name == d.name), state.v.iter().find(|t| t.name == d.name))
                    else {
                        continue;
                    };
                    if let Some(t) = model.tensors.iter_mut().find(|t| t.name == d.name) {
                        for ((x, &mi), &vi) in t.data.iter_mut().zip(&m.data).zip(&v.data) {
                            let step = lr * mi as f64 / ((vi as f64).sqrt() + eps);
                            *x = (*x as f64 + step) as f32;
                        }
                    }
                }
            }
        }
        state.step += 1;
        model.version += 1;
        Ok(())
    }
}

/// The moment tensor matching `d`, created (zeros) or reset if its shape changed.
fn moment<'a>(list: &'a mut Vec<NamedTensor>, d: &NamedTensor) -> &'a mut NamedTensor {
    let idx = match list.iter().position(|t| t.name == d.name) {
        Some(i) => {
            if list[i].shape != d.shape || list[i].data.len() != d.data.len() {
                list[i] = NamedTensor::new(d.name.clone(), d.shape.clone(), vec![0.0; d.data.len()]);
            }
            i
        }
        None => {
            list.push(NamedTensor::new(d.name.clone(), d.shape.clone(), vec![0.0; d.data.len()]));
            list.len() - 1
        }
    };
    &mut list[idx]
}
