//! Wire-level data types (updates, global models, round status) and the
//! canonical tensor names/shapes every fedsearch component agrees on.

use serde::{Deserialize, Serialize};

/// Adapter weight `[d, d]`, row-major, applied as `x·W + b` (identity at start).
pub const ADAPTER_WEIGHT: &str = "adapter.weight";
/// Adapter bias `[d]`.
pub const ADAPTER_BIAS: &str = "adapter.bias";
/// Classifier head weight `[d, n_docs]`, row-major.
pub const HEAD_WEIGHT: &str = "head.weight";
/// Classifier head bias `[n_docs]`.
pub const HEAD_BIAS: &str = "head.bias";

/// Embedding dimension of all-MiniLM-L6-v2.
pub const MINILM_DIM: u32 = 384;

/// Returns true for tensors that belong to the (per-federation) classifier head.
pub fn is_head_tensor(name: &str) -> bool {
    name == HEAD_WEIGHT || name == HEAD_BIAS
}

/// Which tensors a federation shares.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum FederationMode {
    /// Adapter and classifier head are both federated.
    Shared,
    /// Only the adapter is federated; each client keeps its own head.
    Personal,
}

impl FederationMode {
    pub(crate) fn to_byte(self) -> u8 {
        match self {
            FederationMode::Shared => 0,
            FederationMode::Personal => 1,
        }
    }

    pub(crate) fn from_byte(b: u8) -> Option<Self> {
        match b {
            0 => Some(FederationMode::Shared),
            1 => Some(FederationMode::Personal),
            _ => None,
        }
    }

    /// Lower-case name used in JSON and configs.
    pub fn as_str(self) -> &'static str {
        match self {
            FederationMode::Shared => "shared",
            FederationMode::Personal => "personal",
        }
    }
}

impl std::fmt::Display for FederationMode {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Differential-privacy parameters a client declares for its update.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct DpParams {
    /// L2 clipping bound applied to the whole (flattened) delta.
    pub clip: f32,
    /// Gaussian noise std divided by `clip`.
    pub noise_multiplier: f32,
    /// Target delta of the (epsilon, delta) guarantee.
    pub delta: f64,
    /// Privacy budget the client has spent so far (informational).
    pub epsilon_spent: f64,
}

/// A named, row-major f32 tensor.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct NamedTensor {
    pub name: String,
    pub shape: Vec<u32>,
    pub data: Vec<f32>,
}

impl NamedTensor {
    pub fn new(name: impl Into<String>, shape: Vec<u32>, data: Vec<f32>) -> Self {
        Self { name: name.into(), shape, data }
    }

    /// A tensor filled with zeros.
    pub fn zeros(name: impl Into<String>, shape: Vec<u32>) -> Self {
        let n = shape_numel(&shape).unwrap_or(0);
        Self { name: name.into(), shape, data: vec![0.0; n] }
    }

    /// Number of elements implied by the shape (None on overflow).
    pub fn numel(&self) -> Option<usize> {
        shape_numel(&self.shape)
    }
}

/// Product of the dimensions, None on overflow.
pub fn shape_numel(shape: &[u32]) -> Option<usize> {
    shape.iter().try_fold(1usize, |acc, &d| acc.checked_mul(d as usize))
}

/// Expected name and shape of one tensor.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TensorSpec {
    pub name: String,
    pub shape: Vec<u32>,
}

impl TensorSpec {
    pub fn new(name: impl Into<String>, shape: Vec<u32>) -> Self {
        Self { name: name.into(), shape }
    }

    pub fn numel(&self) -> usize {
        shape_numel(&self.shape).unwrap_or(usize::MAX)
    }
}

/// The federated tensors for a mode: adapter always, head only in shared mode.
pub fn federated_tensor_specs(mode: FederationMode, dim: u32, n_docs: u32) -> Vec<TensorSpec> {
    let mut v = vec![TensorSpec::new(ADAPTER_WEIGHT, vec![dim, dim]), TensorSpec::new(ADAPTER_BIAS, vec![dim])];
    if mode == FederationMode::Shared {
        v.push(TensorSpec::new(HEAD_WEIGHT, vec![dim, n_docs]));
        v.push(TensorSpec::new(HEAD_BIAS, vec![n_docs]));
    }
    v
}

/// A client's contribution to one round. `tensors` hold the DELTA
/// (local weights − global base weights), already clipped and noised.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Update {
    pub federation_id: String,
    pub round: u64,
    pub client_id: String,
    /// Global model version the client trained from.
    pub base_version: u64,
    /// Number of local training examples (the FedAvg weight).
    pub num_examples: u64,
    pub mode: FederationMode,
    pub dp: DpParams,
    pub tensors: Vec<NamedTensor>,
}

impl Update {
    /// Looks up a tensor by name.
    pub fn tensor(&self, name: &str) -> Option<&NamedTensor> {
        self.tensors.iter().find(|t| t.name == name)
    }
}

/// Full global weights of a federation at some version (not deltas).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct GlobalModel {
    pub federation_id: String,
    pub version: u64,
    pub mode: FederationMode,
    pub tensors: Vec<NamedTensor>,
    /// Document ids, in head-column order (shared mode).
    pub doc_ids: Option<Vec<String>>,
}

impl GlobalModel {
    /// Version-0 model: identity adapter, zero adapter bias, and (shared mode)
    /// a zero head of `n_docs` columns.
    pub fn initial(
        federation_id: impl Into<String>,
        mode: FederationMode,
        dim: u32,
        n_docs: u32,
        doc_ids: Option<Vec<String>>,
    ) -> Self {
        let d = dim as usize;
        let mut w = vec![0.0f32; d * d];
        for i in 0..d {
            w[i * d + i] = 1.0;
        }
        let mut tensors =
            vec![NamedTensor::new(ADAPTER_WEIGHT, vec![dim, dim], w), NamedTensor::zeros(ADAPTER_BIAS, vec![dim])];
        if mode == FederationMode::Shared {
            tensors.push(NamedTensor::zeros(HEAD_WEIGHT, vec![dim, n_docs]));
            tensors.push(NamedTensor::zeros(HEAD_BIAS, vec![n_docs]));
        }
        Self { federation_id: federation_id.into(), version: 0, mode, tensors, doc_ids }
    }

    /// Looks up a tensor by name.
    pub fn tensor(&self, name: &str) -> Option<&NamedTensor> {
        self.tensors.iter().find(|t| t.name == name)
    }
}

/// Lifecycle state of a round.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum RoundState {
    Collecting,
    Aggregating,
    Published,
}

impl RoundState {
    pub fn as_str(self) -> &'static str {
        match self {
            RoundState::Collecting => "collecting",
            RoundState::Aggregating => "aggregating",
            RoundState::Published => "published",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "collecting" => Some(RoundState::Collecting),
            "aggregating" => Some(RoundState::Aggregating),
            "published" => Some(RoundState::Published),
            _ => None,
        }
    }
}

/// Progress of the current round (sent as JSON).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RoundStatus {
    pub federation_id: String,
    pub round: u64,
    pub state: RoundState,
    pub updates_received: u64,
    pub min_clients: u64,
    pub target_clients: u64,
    /// Deadline as Unix seconds.
    pub deadline_unix_s: u64,
    /// Global model version updates of this round must be based on.
    pub current_version: u64,
}
