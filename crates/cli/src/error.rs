//! The CLI's error type and exit codes: 2 for anything the user can fix (bad input files, bad
//! flags, a missing model), 1 for failures of the machine or its tools.

use fedsearch_core::CoreError;
use thiserror::Error;

#[derive(Debug, Error)]
pub enum CliError {
    #[error("{0}")]
    Core(#[from] CoreError),
    #[error("{0}")]
    Input(String),
    #[error("{0}")]
    Privacy(#[from] fedsearch_privacy::PrivacyError),
    #[error("{0}")]
    Io(String),
    #[error("{0}")]
    Tool(String),
}

impl CliError {
    /// The process exit code for this error.
    pub fn exit_code(&self) -> u8 {
        match self {
            CliError::Core(CoreError::Backend(_) | CoreError::Diverged { .. })
            | CliError::Io(_)
            | CliError::Tool(_) => 1,
            CliError::Core(_) | CliError::Input(_) | CliError::Privacy(_) => 2,
        }
    }
}

pub type CliResult<T> = Result<T, CliError>;

/// Reads a file the user named, with an error that names it.
pub fn read_input(path: &std::path::Path, what: &str) -> CliResult<String> {
    std::fs::read_to_string(path).map_err(|e| CliError::Input(format!("cannot read {what} {}: {e}", path.display())))
}
