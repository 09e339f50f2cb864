//! fedsearch-client: the browser edge device of fedsearch.
//!
//! `FedsearchClient` (wasm-bindgen, see `wasm.rs`) downloads and caches the frozen sentence
//! encoder, keeps the user's documents, their embeddings, clicks and the locally trained
//! adapter + head in IndexedDB, trains with core's one training loop on WebGPU or the CPU,
//! searches offline, and contributes differentially private model deltas to the aggregation
//! worker. Text never leaves the device; only clipped and noised numbers do.
//!
//! The browser-independent logic lives in [`engine`] (documents are read by
//! `fedsearch_core::document`) and is tested natively.

pub mod engine;

#[cfg(target_arch = "wasm32")]
mod idb;
#[cfg(target_arch = "wasm32")]
mod net;
#[cfg(target_arch = "wasm32")]
mod secure_round;
#[cfg(target_arch = "wasm32")]
pub mod wasm;

pub use engine::{ClientError, Result};
