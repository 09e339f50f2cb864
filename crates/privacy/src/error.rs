//! The crate's single error type. Every message names the offending value and
//! what would have been accepted, so a CLI can print it as is.

use thiserror::Error;

/// Result alias used throughout the crate.
pub type Result<T> = std::result::Result<T, PrivacyError>;

/// Everything that can go wrong in `fedsearch-privacy`.
#[derive(Debug, Clone, PartialEq, Error)]
pub enum PrivacyError {
    /// A scalar parameter is outside its valid range (or NaN).
    #[error("invalid {name} = {value}: must be {expected}")]
    InvalidParameter { name: &'static str, value: f64, expected: &'static str },

    /// A buffer does not have the length its declared shape implies.
    #[error("{what} has {got} values but its shape needs {expected}")]
    ShapeMismatch { what: &'static str, expected: usize, got: usize },

    /// An input buffer contains NaN or ±infinity; such an update cannot be
    /// clipped meaningfully and is refused rather than passed on.
    #[error(
        "{what} contains NaN or infinite values; refusing to clip or noise it (check the training step that produced it)"
    )]
    NonFinite { what: &'static str },

    /// The OS / browser entropy source failed.
    #[error(
        "could not seed the noise generator from OS entropy: {0} (in a browser, `crypto.getRandomValues` must be available)"
    )]
    Entropy(String),

    /// `sigma_for_epsilon` was asked for an ε that no noise multiplier reaches.
    #[error(
        "target epsilon {target} is unreachable at this delta/q/steps: even infinite noise only reaches {floor:.6} with the RDP orders used; raise epsilon or delta"
    )]
    UnreachableEpsilon { target: f64, floor: f64 },

    /// A step count overflowed `u64` when composing.
    #[error("step count overflow while composing the accountant history")]
    StepOverflow,
}
