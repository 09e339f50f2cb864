//! fedsearch-core: the retrieval model on any Burn device — frozen BERT encoder, soft-embedding
//! adapter, classifier-as-retriever head, pooling, safetensors loading from bytes, tokenizer,
//! the one training loop, pseudo-queries, metrics and the MIPS/BM25 baselines.
//!
//! Architecture invariants: this crate never touches the network or the DOM, has no
//! `cfg(target_arch)`, reads tensors back only asynchronously (so it runs unchanged in a
//! browser), and never updates the encoder's weights.

pub mod adapter;
pub mod bench;
pub mod bm25;
pub mod checkpoint;
pub mod config;
pub mod data;
pub mod document;
pub mod encoder;
pub mod error;
pub mod head;
pub mod host;
pub mod index;
pub mod loader;
pub mod metrics;
pub mod model;
pub mod pseudo;
pub mod search;
pub mod text;
pub mod tiny;
pub mod tokenizer;
pub mod train;

pub use error::{CoreError, Result};
