//! The one error type of `fedsearch-core`: every failure a user can cause (bad model files, bad
//! corpus or query files, a backend that fails) with a message that says what to do next.

use thiserror::Error;

/// Errors from loading models, reading data, training and searching.
#[derive(Debug, Error)]
pub enum CoreError {
    /// `config.json` could not be parsed or describes a model we cannot run.
    #[error("model config: {0}")]
    Config(String),
    /// `model.safetensors` is corrupt, incomplete or of another architecture.
    #[error("model weights: {0}")]
    Weights(String),
    /// `tokenizer.json` is unreadable or belongs to another model.
    #[error("tokenizer: {0}")]
    Tokenizer(String),
    /// A corpus, queries or pairs file is malformed or inconsistent.
    #[error("data: {0}")]
    Data(String),
    /// A saved adapter/head checkpoint does not fit the model.
    #[error("checkpoint: {0}")]
    Checkpoint(String),
    /// The tensor backend failed (device lost, out of memory, read-back failed).
    #[error("backend: {0}")]
    Backend(String),
    /// A queries or pairs file (or the part of it that a subset keeps) has no queries.
    #[error("data: the queries file has no queries")]
    NoQueries,
    /// Training was cancelled through its progress callback.
    #[error("training cancelled")]
    Cancelled,
    /// The training loss stopped being a finite number.
    #[error("backend: the loss became {loss} at step {step}: lower the learning rate")]
    Diverged { step: usize, loss: f32 },
}

/// Result alias for this crate.
pub type Result<T> = std::result::Result<T, CoreError>;

impl From<burn::tensor::ExecutionError> for CoreError {
    fn from(e: burn::tensor::ExecutionError) -> Self {
        CoreError::Backend(format!("{e:?}"))
    }
}
