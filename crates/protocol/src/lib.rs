//! fedsearch wire protocol: the types, compact binary encoding, server-side
//! validation and federated aggregation shared by the browser client (wasm),
//! the aggregation worker and the native simulator.
//!
//! Tensors (d = 384 for all-MiniLM-L6-v2): `adapter.weight` [d, d] (row-major,
//! applied as x·W + b, identity at start), `adapter.bias` [d], `head.weight`
//! [d, n_docs], `head.bias` [n_docs]. Personal-mode federations share only the
//! adapter tensors.

mod aggregate;
mod build;
mod codec;
pub mod dp;
mod error;
pub mod secagg;
mod types;
mod validate;
mod wire;

pub use aggregate::{AccTensor, OptimizerState, ServerOptimizer, StreamingFedAvg};
pub use build::{
    BuiltSecureUpdate, BuiltUpdate, UpdateHeader, UpdatePrivacy, build_secure_update, build_update, secure_mean,
};
pub use codec::{
    Encoding, HEADER_LEN, MAGIC, MAX_DIMS, MAX_TENSORS, SCHEMA_VERSION, TRAILER_LEN, decode_global_model,
    decode_global_model_ignoring_checksum, decode_update, decode_update_ignoring_checksum, encode_global_model,
    encode_update, peek_encoding,
};
pub use dp::NoiseRng;
pub use error::ProtocolError;
pub use fedsearch_privacy::SkellamParams;
pub use types::{
    ADAPTER_BIAS, ADAPTER_WEIGHT, DpParams, FederationMode, GlobalModel, HEAD_BIAS, HEAD_WEIGHT, MINILM_DIM,
    NamedTensor, RoundState, RoundStatus, TensorSpec, Update, federated_tensor_specs, is_head_tensor, shape_numel,
};
pub use validate::{UpdateSpec, ValidationError, validate_update};
pub use wire::{
    DpRequirement, EnrollReply, FederationInfo, ModelRef, SecureInfo, SecureJoined, SecureRoster, SecureShares,
    SecureStatus, SecureSurvivors, UploadReply,
};
