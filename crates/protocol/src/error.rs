//! The crate's error type: decoding, aggregation and (wrapped) validation failures.

use crate::validate::ValidationError;

/// Everything that can go wrong in this crate.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum ProtocolError {
    #[error(
        "message truncated while reading {what}: needed {needed} more bytes, only {available} left \
         (was the upload cut off?)"
    )]
    Truncated { what: &'static str, needed: u64, available: u64 },

    #[error("not a fedsearch message: magic bytes {found:02x?}, expected {expected:02x?}")]
    BadMagic { found: [u8; 4], expected: [u8; 4] },

    #[error(
        "unsupported schema version {found} (this build understands {supported}); \
         update the client or worker so both speak the same protocol"
    )]
    UnsupportedVersion { found: u16, supported: u16 },

    #[error("wrong message kind: expected {expected}, found kind byte {found}")]
    WrongKind { expected: &'static str, found: u8 },

    #[error("unknown tensor encoding byte {0} (expected 0 = f32 or 1 = f16)")]
    UnknownEncoding(u8),

    #[error("unknown federation mode byte {0} (expected 0 = shared or 1 = personal)")]
    UnknownMode(u8),

    #[error(
        "checksum mismatch: message says {expected:#010x}, computed {computed:#010x}; \
         the bytes were corrupted in transit"
    )]
    ChecksumMismatch { expected: u32, computed: u32 },

    #[error("field {what} is not valid UTF-8")]
    InvalidUtf8 { what: &'static str },

    #[error(
        "declared {what} of {declared} cannot fit in the {available} bytes that remain; \
         refusing to allocate"
    )]
    LengthTooLarge { what: &'static str, declared: u64, available: u64 },

    #[error("tensor {tensor:?} declares {ndim} dimensions; at most {max} are allowed")]
    TooManyDims { tensor: String, ndim: u32, max: u32 },

    #[error("message declares {count} tensors; at most {max} are accepted")]
    TooManyTensors { count: u64, max: u32 },

    #[error("{0} unexpected bytes after the end of the message")]
    TrailingBytes(usize),

    #[error("invalid update: {0}")]
    Invalid(#[from] ValidationError),

    #[error("aggregation: tensor {tensor:?} {reason}")]
    AggregateMismatch { tensor: String, reason: String },

    #[error("aggregation weight must be finite and > 0, got {0}")]
    InvalidWeight(f64),

    #[error("aggregation has no updates yet; nothing to average")]
    EmptyAggregate,

    #[error("privacy parameters: {0}")]
    Privacy(String),

    #[error("server optimizer: {0}")]
    Optimizer(String),
}
