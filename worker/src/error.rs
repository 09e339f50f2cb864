//! The worker's single error type. Every variant maps to an HTTP status and a
//! JSON body `{"error": "<code>", "message": "...", ...details}`.

use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use fedsearch_protocol::{ProtocolError, ValidationError};
use serde_json::{Value, json};

#[derive(Debug, thiserror::Error)]
pub enum WorkerError {
    #[error("unknown federation {0:?}; check the federation id in the URL")]
    UnknownFederation(String),

    #[error("missing credential: send `Authorization: Bearer <credential>` from enrolment")]
    MissingCredential,

    #[error("credential is not valid for this federation; enrol again to get a new one")]
    InvalidCredential,

    #[error("enrolment token is unknown, used up, or for another federation; ask the operator for a new token")]
    InvalidToken,

    #[error("credential belongs to client {credential_client:?} but the update says {update_client:?}")]
    ClientMismatch { credential_client: String, update_client: String },

    #[error("request body exceeds the {limit}-byte limit for this federation")]
    BodyTooLarge { limit: u64 },

    #[error("could not read request body: {0}")]
    BodyRead(String),

    #[error("the request body did not arrive within {secs} s")]
    BodyTimeout { secs: u64 },

    #[error("this credential already has an upload in flight; wait for its answer")]
    UploadInProgress,

    #[error("bad request: {0}")]
    BadRequest(String),

    #[error("update body could not be decoded: {0}")]
    Undecodable(ProtocolError),

    #[error("update is for round {got}, the current round is {current_round}; fetch /round and the current model")]
    WrongRound { current_round: u64, got: u64 },

    #[error(
        "round {round} already has its target of {target} updates and is closing; fetch /round and the next model, then train and contribute again"
    )]
    RoundFull { round: u64, target: u64 },

    #[error("{0}")]
    Invalid(ValidationError),

    /// A secure-aggregation message that does not fit the round's current phase (too early, too
    /// late, twice, or for another round or attempt).
    #[error("{0}; fetch /secure for the round's phase")]
    SecurePhase(String),

    /// A secure-aggregation message the protocol refuses (malformed, misaddressed, out of place).
    #[error("{0}")]
    SecureRefused(String),

    /// Plain uploads to a federation that aggregates securely, or secure messages to one that
    /// does not.
    #[error("{0}")]
    WrongAggregation(String),

    #[error("the aggregation engine is shutting down; retry shortly")]
    Unavailable,

    #[error("database error: {0}")]
    Db(#[from] rusqlite::Error),

    #[error("storage: {0}")]
    Storage(String),

    #[error("configuration: {0}")]
    Config(String),

    #[error("I/O: {0}")]
    Io(#[from] std::io::Error),

    #[error("protocol: {0}")]
    Protocol(#[from] ProtocolError),
}

impl WorkerError {
    /// HTTP status for this error.
    pub fn status(&self) -> StatusCode {
        use WorkerError::*;
        match self {
            UnknownFederation(_) => StatusCode::NOT_FOUND,
            MissingCredential | InvalidCredential | InvalidToken => StatusCode::UNAUTHORIZED,
            ClientMismatch { .. } => StatusCode::FORBIDDEN,
            BodyTooLarge { .. } => StatusCode::PAYLOAD_TOO_LARGE,
            BodyTimeout { .. } => StatusCode::REQUEST_TIMEOUT,
            UploadInProgress => StatusCode::TOO_MANY_REQUESTS,
            BodyRead(_) | BadRequest(_) | Undecodable(_) => StatusCode::BAD_REQUEST,
            WrongRound { .. } | RoundFull { .. } | SecurePhase(_) | WrongAggregation(_) => StatusCode::CONFLICT,
            SecureRefused(_) => StatusCode::UNPROCESSABLE_ENTITY,
            Invalid(_) => StatusCode::UNPROCESSABLE_ENTITY,
            Unavailable => StatusCode::SERVICE_UNAVAILABLE,
            Db(_) | Storage(_) | Config(_) | Io(_) | Protocol(_) => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }

    /// Machine-readable code (also the `error` field and the metrics label).
    pub fn code(&self) -> &'static str {
        use WorkerError::*;
        match self {
            UnknownFederation(_) => "unknown_federation",
            MissingCredential => "missing_credential",
            InvalidCredential => "invalid_credential",
            InvalidToken => "invalid_token",
            ClientMismatch { .. } => "client_id_mismatch",
            BodyTooLarge { .. } => "body_too_large",
            BodyRead(_) => "body_read_failed",
            BodyTimeout { .. } => "body_timeout",
            UploadInProgress => "upload_in_progress",
            BadRequest(_) => "bad_request",
            Undecodable(_) => "undecodable",
            WrongRound { .. } => "wrong_round",
            RoundFull { .. } => "round_full",
            SecurePhase(_) => "secure_phase",
            SecureRefused(_) => "secure_refused",
            WrongAggregation(_) => "wrong_aggregation",
            Invalid(v) => v.code(),
            Unavailable => "unavailable",
            Db(_) | Storage(_) | Protocol(_) => "internal",
            Config(_) => "config",
            Io(_) => "io",
        }
    }

    /// JSON body for this error.
    pub fn body(&self) -> Value {
        let mut v = match self {
            WorkerError::Invalid(e) => serde_json::to_value(e).unwrap_or_else(|_| json!({})),
            WorkerError::UnknownFederation(id) => json!({ "federation": id }),
            WorkerError::ClientMismatch { credential_client, update_client } => {
                json!({ "credential_client_id": credential_client, "update_client_id": update_client })
            }
            WorkerError::BodyTooLarge { limit } => json!({ "limit_bytes": limit }),
            WorkerError::WrongRound { current_round, got } => {
                json!({ "current_round": current_round, "got": got })
            }
            WorkerError::RoundFull { round, target } => json!({ "round": round, "target": target }),
            _ => json!({}),
        };
        if let Value::Object(map) = &mut v {
            map.insert("error".into(), Value::String(self.code().into()));
            // Internal details stay in the logs.
            let message = if self.status().is_server_error() && !matches!(self, WorkerError::Unavailable) {
                "internal error; see worker logs".to_string()
            } else {
                self.to_string()
            };
            map.insert("message".into(), Value::String(message));
        }
        v
    }
}

/// Most characters of a client-chosen string (an id, a tensor name) that an error quotes; the
/// rest is cut. Without it a 2 MB `client_id` of control characters came back quoted twice and
/// escaped (`\u{1}`, `\u0001`): a 26 MB answer built per upload (issue 15).
const QUOTED_CHARS: usize = 64;

/// Cuts `s` to `QUOTED_CHARS` characters, marking the cut with `…`.
fn clip(s: &mut String) {
    if let Some((end, _)) = s.char_indices().nth(QUOTED_CHARS) {
        s.truncate(end);
        s.push('…');
    }
}

impl WorkerError {
    /// The same error with every string the client chose cut to `QUOTED_CHARS` characters, so
    /// that its message and JSON stay small whatever the request held.
    pub fn clipped(mut self) -> Self {
        use ValidationError as V;
        match &mut self {
            WorkerError::UnknownFederation(s) => clip(s),
            WorkerError::ClientMismatch { credential_client, update_client } => {
                clip(credential_client);
                clip(update_client);
            }
            WorkerError::Undecodable(ProtocolError::TooManyDims { tensor, .. }) => clip(tensor),
            WorkerError::Invalid(v) => match v {
                V::WrongFederation { expected, got } => {
                    clip(expected);
                    clip(got);
                }
                V::HeadInPersonalMode { tensor }
                | V::MissingTensor { tensor }
                | V::UnexpectedTensor { tensor, .. }
                | V::DuplicateTensor { tensor }
                | V::ShapeMismatch { tensor, .. }
                | V::DataLengthMismatch { tensor, .. }
                | V::NonFinite { tensor, .. }
                | V::CoordinateTooLarge { tensor, .. } => clip(tensor),
                _ => {}
            },
            _ => {}
        }
        self
    }
}

impl IntoResponse for WorkerError {
    fn into_response(self) -> Response {
        let e = self.clipped();
        if e.status().is_server_error() {
            tracing::error!(error = %e, "request failed");
        }
        (e.status(), axum::Json(e.body())).into_response()
    }
}

pub type Result<T, E = WorkerError> = std::result::Result<T, E>;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn clipped_errors_quote_a_short_prefix_of_client_strings() {
        let long = "é".repeat(10_000);
        let e = WorkerError::ClientMismatch { credential_client: "c1".into(), update_client: long.clone() }.clipped();
        let WorkerError::ClientMismatch { credential_client, update_client } = &e else { unreachable!() };
        assert_eq!(credential_client, "c1");
        assert_eq!(update_client.chars().count(), QUOTED_CHARS + 1);
        assert!(update_client.ends_with('…'));
        let e = WorkerError::Invalid(ValidationError::UnexpectedTensor { tensor: long, expected: vec!["a".into()] });
        assert!(e.clipped().body().to_string().len() < 1024);
    }
}
