//! Differential privacy for fedsearch: clipping, Gaussian noise, per-example
//! DP-SGD for a linear layer, the Rényi-DP accountant that turns
//! (noise multiplier, sampling rate, steps) into an (ε, δ) guarantee, and the
//! Skellam mechanism for distributed DP under secure aggregation.
//!
//! Everything here is plain Rust and builds for `wasm32-unknown-unknown`, so the
//! browser client privatizes its update with exactly the code the native client
//! uses.
//!
//! # Invariants this crate keeps
//!
//! - Noise is only ever drawn from [`NoiseRng`], a ChaCha20 CSPRNG seeded from
//!   the operating system (or the browser's `crypto.getRandomValues`). It never
//!   draws noise from a non-cryptographic or time-seeded generator;
//!   [`NoiseRng::from_seed`] exists for tests and reproducible simulations only.
//! - A clipped vector's L2 norm (measured in `f64`) never exceeds the clip
//!   bound, including after `f32` rounding.
//! - Bad parameters (σ ≤ 0, q ∉ (0, 1], δ ∉ (0, 1), NaN inputs, mismatched
//!   shapes) are reported as [`PrivacyError`]; nothing here panics on input, and
//!   nothing mutates its buffer before its parameters have been validated.
//! - The accountant reproduces Opacus' `RDPAccountant` (same orders, same
//!   RDP→(ε, δ) conversion), so ε values can be checked against it.
//!
//! It never touches the network, the file system, or a model; callers hand it
//! flat `f32` buffers.

pub mod accountant;
pub mod clip;
pub mod dpsgd;
mod error;
pub mod noise;
pub mod skellam;
pub mod update;

pub use accountant::{MechanismStep, RdpAccountant, epsilon, sigma_for_epsilon};
pub use clip::{ClipReport, clip_to_norm, l2_norm};
pub use dpsgd::{DpSgdParams, LinearGrad, dp_linear_grad};
pub use error::{PrivacyError, Result};
pub use noise::{NoiseRng, add_gaussian_noise};
pub use skellam::{SkellamParams, add_skellam_noise, quantise, scale_for, skellam_rdp};
pub use update::{PrivatizeReport, max_plausible_coordinate, max_plausible_norm, privatize_update};
