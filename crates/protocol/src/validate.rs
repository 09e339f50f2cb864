//! Server-side checks an `Update` must pass before it may be aggregated.
//!
//! Every rejection is a `ValidationError` variant that serialises to a JSON
//! body such as
//! `{"error":"shape_mismatch","tensor":"head.weight","expected":[384,1000],"got":[384,999]}`.

use crate::dp;
use crate::error::ProtocolError;
use crate::types::{FederationMode, TensorSpec, Update, federated_tensor_specs, is_head_tensor};
use serde::Serialize;

/// What the server requires of an update for the current round.
#[derive(Debug, Clone, PartialEq)]
pub struct UpdateSpec {
    pub federation_id: String,
    pub mode: FederationMode,
    /// Global version updates must be based on.
    pub base_version: u64,
    /// Exact set of tensors (names + shapes) an update must contain.
    pub tensors: Vec<TensorSpec>,
    /// Largest clipping bound a client may declare.
    pub clip: f32,
    /// Smallest noise multiplier a client may declare.
    pub noise_multiplier: f32,
    /// Largest delta a client may declare (None: not checked).
    pub max_delta: Option<f64>,
    /// Largest plausible L2 norm of the flattened (clipped + noised) delta.
    pub max_norm: f64,
    /// Largest plausible |value| of any one coordinate: a bound on how far one client can
    /// move any single weight, which the L2 bound (dominated by the noise) is not.
    pub max_abs: f64,
}

impl UpdateSpec {
    /// Spec for a federation with the canonical tensors for `mode`, the
    /// required DP params, and `max_norm = max_plausible_norm(clip, sigma,
    /// total number of federated values)`. Errors if clip or sigma is not
    /// positive (a federation without local noise has no plausible-norm bound).
    pub fn for_federation(
        federation_id: impl Into<String>,
        mode: FederationMode,
        dim: u32,
        n_docs: u32,
        base_version: u64,
        clip: f32,
        noise_multiplier: f32,
    ) -> Result<Self, ProtocolError> {
        let tensors = federated_tensor_specs(mode, dim, n_docs);
        let total: usize = tensors.iter().map(TensorSpec::numel).sum();
        Ok(Self {
            federation_id: federation_id.into(),
            mode,
            base_version,
            max_norm: dp::max_plausible_norm(clip, noise_multiplier, total)?,
            // f16 uploads round each value by a relative 2⁻¹¹ at most.
            max_abs: dp::max_plausible_coordinate(clip, noise_multiplier, total)? * (1.0 + 1e-3),
            tensors,
            clip,
            noise_multiplier,
            max_delta: None,
        })
    }
}

/// Why an update was rejected. Serialises as `{"error": "<snake_case>", ...}`.
#[derive(Debug, Clone, PartialEq, Serialize, thiserror::Error)]
#[serde(tag = "error", rename_all = "snake_case")]
pub enum ValidationError {
    #[error("update is for federation {got:?} but was sent to {expected:?}")]
    WrongFederation { expected: String, got: String },

    #[error("update declares mode {got} but the federation is {expected}")]
    WrongMode { expected: FederationMode, got: FederationMode },

    #[error(
        "update was trained from model version {got}, the current version is {expected}; \
         download the current model and retrain"
    )]
    WrongBaseVersion { expected: u64, got: u64 },

    #[error("client_id is empty")]
    EmptyClientId,

    #[error("num_examples is 0; an update must be trained on at least one example")]
    ZeroExamples,

    #[error("tensor {tensor:?} is a classifier-head tensor, which personal-mode federations never share")]
    HeadInPersonalMode { tensor: String },

    #[error("required tensor {tensor:?} is missing")]
    MissingTensor { tensor: String },

    #[error("unexpected tensor {tensor:?}; expected only {expected:?}")]
    UnexpectedTensor { tensor: String, expected: Vec<String> },

    #[error("tensor {tensor:?} appears more than once")]
    DuplicateTensor { tensor: String },

    #[error("tensor {tensor:?} has shape {got:?}, expected {expected:?}")]
    ShapeMismatch { tensor: String, expected: Vec<u32>, got: Vec<u32> },

    #[error("tensor {tensor:?} holds {got} values but its shape implies {expected}")]
    DataLengthMismatch { tensor: String, expected: u64, got: u64 },

    #[error("tensor {tensor:?} has a non-finite value (NaN or ±inf) at index {index}")]
    NonFinite { tensor: String, index: u64 },

    #[error(
        "update L2 norm {norm} exceeds the plausible bound {max} for the required clip and \
         noise; clip the delta before adding noise"
    )]
    NormTooLarge { norm: f64, max: f64 },

    #[error(
        "tensor {tensor:?} value {value} at index {index} exceeds the plausible bound {max} for \
         the required clip and noise: one update may not move a single weight that far"
    )]
    CoordinateTooLarge { tensor: String, index: u64, value: f64, max: f64 },

    #[error("declared DP parameter {field} = {declared} is weaker than the required {required}")]
    WeakerDp { field: &'static str, required: f64, declared: f64 },

    #[error("DP parameter {field} = {value} is not a valid value")]
    InvalidDp { field: &'static str, value: f64 },
}

impl ValidationError {
    /// The snake_case code also used as the JSON `error` field.
    pub fn code(&self) -> &'static str {
        match self {
            ValidationError::WrongFederation { .. } => "wrong_federation",
            ValidationError::WrongMode { .. } => "wrong_mode",
            ValidationError::WrongBaseVersion { .. } => "wrong_base_version",
            ValidationError::EmptyClientId => "empty_client_id",
            ValidationError::ZeroExamples => "zero_examples",
            ValidationError::HeadInPersonalMode { .. } => "head_in_personal_mode",
            ValidationError::MissingTensor { .. } => "missing_tensor",
            ValidationError::UnexpectedTensor { .. } => "unexpected_tensor",
            ValidationError::DuplicateTensor { .. } => "duplicate_tensor",
            ValidationError::ShapeMismatch { .. } => "shape_mismatch",
            ValidationError::DataLengthMismatch { .. } => "data_length_mismatch",
            ValidationError::NonFinite { .. } => "non_finite",
            ValidationError::NormTooLarge { .. } => "norm_too_large",
            ValidationError::CoordinateTooLarge { .. } => "coordinate_too_large",
            ValidationError::WeakerDp { .. } => "weaker_dp",
            ValidationError::InvalidDp { .. } => "invalid_dp",
        }
    }
}

/// Relative slack when comparing declared float DP params with required ones
/// (clients may round-trip them through f32/JSON).
const DP_TOLERANCE: f64 = 1e-6;

/// Checks an update against the spec. Returns the first problem found.
pub fn validate_update(u: &Update, spec: &UpdateSpec) -> Result<(), ValidationError> {
    if u.federation_id != spec.federation_id {
        return Err(ValidationError::WrongFederation {
            expected: spec.federation_id.clone(),
            got: u.federation_id.clone(),
        });
    }
    if u.client_id.is_empty() {
        return Err(ValidationError::EmptyClientId);
    }
    if u.num_examples == 0 {
        return Err(ValidationError::ZeroExamples);
    }
    if spec.mode == FederationMode::Personal
        && let Some(t) = u.tensors.iter().find(|t| is_head_tensor(&t.name))
    {
        return Err(ValidationError::HeadInPersonalMode { tensor: t.name.clone() });
    }
    if u.mode != spec.mode {
        return Err(ValidationError::WrongMode { expected: spec.mode, got: u.mode });
    }
    if u.base_version != spec.base_version {
        return Err(ValidationError::WrongBaseVersion { expected: spec.base_version, got: u.base_version });
    }
    check_dp(u, spec)?;

    // Tensor set: no duplicates, nothing extra, nothing missing, right shapes.
    for (i, t) in u.tensors.iter().enumerate() {
        if u.tensors[..i].iter().any(|p| p.name == t.name) {
            return Err(ValidationError::DuplicateTensor { tensor: t.name.clone() });
        }
        match spec.tensors.iter().find(|s| s.name == t.name) {
            None => {
                return Err(ValidationError::UnexpectedTensor {
                    tensor: t.name.clone(),
                    expected: spec.tensors.iter().map(|s| s.name.clone()).collect(),
                });
            }
            Some(s) if s.shape != t.shape => {
                return Err(ValidationError::ShapeMismatch {
                    tensor: t.name.clone(),
                    expected: s.shape.clone(),
                    got: t.shape.clone(),
                });
            }
            Some(s) => {
                let expected = s.numel() as u64;
                if t.data.len() as u64 != expected {
                    return Err(ValidationError::DataLengthMismatch {
                        tensor: t.name.clone(),
                        expected,
                        got: t.data.len() as u64,
                    });
                }
            }
        }
    }
    for s in &spec.tensors {
        if !u.tensors.iter().any(|t| t.name == s.name) {
            return Err(ValidationError::MissingTensor { tensor: s.name.clone() });
        }
    }

    // Values: all finite, each within the plausible coordinate bound, and the flattened L2 norm
    // within the plausible norm bound.
    let mut sumsq = 0.0f64;
    for t in &u.tensors {
        if let Some(index) = t.data.iter().position(|x| !x.is_finite()) {
            return Err(ValidationError::NonFinite { tensor: t.name.clone(), index: index as u64 });
        }
        if let Some(index) = t.data.iter().position(|x| f64::from(x.abs()) > spec.max_abs) {
            return Err(ValidationError::CoordinateTooLarge {
                tensor: t.name.clone(),
                index: index as u64,
                value: f64::from(t.data[index]),
                max: spec.max_abs,
            });
        }
        let n = dp::l2_norm(&t.data);
        sumsq += n * n;
    }
    let norm = sumsq.sqrt();
    if norm.is_nan() || norm > spec.max_norm {
        return Err(ValidationError::NormTooLarge { norm, max: spec.max_norm });
    }
    Ok(())
}

fn check_dp(u: &Update, spec: &UpdateSpec) -> Result<(), ValidationError> {
    let clip = u.dp.clip as f64;
    let sigma = u.dp.noise_multiplier as f64;
    if !clip.is_finite() || clip <= 0.0 {
        return Err(ValidationError::InvalidDp { field: "clip", value: clip });
    }
    if !sigma.is_finite() || sigma < 0.0 {
        return Err(ValidationError::InvalidDp { field: "noise_multiplier", value: sigma });
    }
    if !u.dp.delta.is_finite() || u.dp.delta < 0.0 || u.dp.delta >= 1.0 {
        return Err(ValidationError::InvalidDp { field: "delta", value: u.dp.delta });
    }
    if u.dp.epsilon_spent.is_nan() || u.dp.epsilon_spent < 0.0 {
        return Err(ValidationError::InvalidDp { field: "epsilon_spent", value: u.dp.epsilon_spent });
    }
    let req_clip = spec.clip as f64;
    if clip > req_clip * (1.0 + DP_TOLERANCE) {
        return Err(ValidationError::WeakerDp { field: "clip", required: req_clip, declared: clip });
    }
    let req_sigma = spec.noise_multiplier as f64;
    if sigma < req_sigma * (1.0 - DP_TOLERANCE) {
        return Err(ValidationError::WeakerDp { field: "noise_multiplier", required: req_sigma, declared: sigma });
    }
    if let Some(max_delta) = spec.max_delta
        && u.dp.delta > max_delta * (1.0 + DP_TOLERANCE)
    {
        return Err(ValidationError::WeakerDp { field: "delta", required: max_delta, declared: u.dp.delta });
    }
    Ok(())
}
