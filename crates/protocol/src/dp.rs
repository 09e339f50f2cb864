//! DP helpers the protocol needs, delegated to `fedsearch-privacy` so client
//! and server compute norms and bounds with the same code.

use crate::error::ProtocolError;

pub use fedsearch_privacy::{NoiseRng, l2_norm};

/// Largest plausible L2 norm of a clipped-then-noised vector of `dim` values:
/// `C + sigma*C*(sqrt(dim) + 10)`. Errors on a non-positive clip or sigma.
pub fn max_plausible_norm(clip: f32, sigma: f32, dim: usize) -> Result<f64, ProtocolError> {
    fedsearch_privacy::max_plausible_norm(clip, sigma, dim).map_err(|e| ProtocolError::Privacy(e.to_string()))
}

/// Largest plausible |value| of any one coordinate of such a vector: `C + σC·k` with
/// `k = √(2 ln(2·dim/10⁻¹²))` (see `fedsearch_privacy::max_plausible_coordinate`).
pub fn max_plausible_coordinate(clip: f32, sigma: f32, dim: usize) -> Result<f64, ProtocolError> {
    fedsearch_privacy::max_plausible_coordinate(clip, sigma, dim).map_err(|e| ProtocolError::Privacy(e.to_string()))
}
