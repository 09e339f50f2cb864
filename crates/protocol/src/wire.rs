//! The worker's JSON replies as types, written by the worker and read by the browser client:
//! one definition, so that a renamed, missing or unknown field is an error on the reading side,
//! never a silent zero or a guess ("an unreadable upload reply means accepted").

use crate::aggregate::ServerOptimizer;
use crate::secagg::{EncryptedShare, PublicKeys, ServerPhase, SessionId};
use crate::types::{FederationMode, TensorSpec};
use fedsearch_privacy::SkellamParams;
use serde::{Deserialize, Serialize};

/// The frozen encoder a federation trains on top of.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ModelRef {
    pub id: String,
    pub sha256: Option<String>,
    pub url: Option<String>,
}

/// The differential-privacy parameters every update of a federation must declare (at least).
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DpRequirement {
    pub clip: f32,
    pub noise_multiplier: f32,
    pub delta: f64,
}

/// `GET /v1/federations/{id}`: what a client needs to train and contribute.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FederationInfo {
    pub id: String,
    pub model: ModelRef,
    pub mode: FederationMode,
    pub dim: u32,
    /// Head columns (shared mode); 0 in personal mode.
    pub n_docs: u32,
    /// Document ids of the head columns, in column order (shared mode).
    pub doc_ids: Option<Vec<String>>,
    /// The tensors an update carries, in order.
    pub tensors: Vec<TensorSpec>,
    pub dp: DpRequirement,
    pub min_clients: u64,
    pub target_clients: u64,
    pub round_deadline_s: u64,
    /// Largest upload body the worker reads.
    pub max_update_bytes: u64,
    pub optimizer: ServerOptimizer,
    pub current_version: u64,
    pub current_round: u64,
    /// Present when the federation aggregates securely (SecAgg+ with distributed DP): plain
    /// uploads are refused and clients follow the phases of `GET …/secure`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub secure: Option<SecureInfo>,
}

/// How a federation's secure rounds run.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SecureInfo {
    /// Neighbours of each client in the SecAgg+ graph.
    pub neighbours: usize,
    /// Clip, integer scale, and the Skellam noise the sum carries (`mu = 0`: no noise). Each
    /// client adds `Sk(mu/min_clients, mu/min_clients)`.
    pub params: SkellamParams,
    /// Published rounds the ε covers; no secure round opens after them.
    pub planned_rounds: u64,
    /// ε of the whole run at `dp.delta` (absent without noise).
    pub epsilon: Option<f64>,
    /// Seconds each phase waits for the clients.
    pub phase_secs: u64,
}

/// `GET /v1/federations/{id}/secure`: where the federation's secure round stands.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SecureStatus {
    pub round: u64,
    /// Restarts of this round after a phase ended with too few clients; part of the session.
    pub attempt: u64,
    /// The attempt's session: every key and mask is derived under it.
    pub session: SessionId,
    /// `None` once the planned rounds are all published.
    pub phase: Option<ServerPhase>,
    pub deadline_unix_s: u64,
    /// Clients that took part in each phase so far: keys, shares, masked inputs, reveals.
    pub counts: [usize; 4],
    pub base_version: u64,
}

/// `POST …/secure/keys`: the index the worker gave this client for the round.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SecureJoined {
    pub round: u64,
    pub attempt: u64,
    pub index: u32,
}

/// `GET …/secure/roster`: every client's keys, once the keys phase closed.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SecureRoster {
    pub round: u64,
    pub attempt: u64,
    pub roster: Vec<PublicKeys>,
}

/// `GET …/secure/shares`: the sealed shares addressed to this client.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SecureShares {
    pub round: u64,
    pub attempt: u64,
    pub shares: Vec<EncryptedShare>,
}

/// `GET …/secure/survivors`: the clients whose masked input arrived.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SecureSurvivors {
    pub round: u64,
    pub attempt: u64,
    pub survivors: Vec<u32>,
}

/// `POST /v1/federations/{id}/enroll`: the client's id and its bearer credential.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EnrollReply {
    pub client_id: String,
    pub credential: String,
}

/// `POST /v1/federations/{id}/updates` when the update was taken (errors are JSON
/// `{"error", "message", …}` with a 4xx/5xx status).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "status", rename_all = "snake_case", deny_unknown_fields)]
pub enum UploadReply {
    /// Counted in `round`; `updates_received` so far in that round.
    Accepted { round: u64, updates_received: u64 },
    /// This client's update for `round` was already accepted; it counts once.
    Duplicate { round: u64, message: String },
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn upload_replies_round_trip_and_reject_what_they_do_not_know() {
        let accepted = UploadReply::Accepted { round: 4, updates_received: 2 };
        let text = serde_json::to_string(&accepted).unwrap();
        assert_eq!(text, r#"{"status":"accepted","round":4,"updates_received":2}"#);
        assert_eq!(serde_json::from_str::<UploadReply>(&text).unwrap(), accepted);
        for bad in [
            r#"{"status":"acepted","round":4,"updates_received":2}"#,
            r#"{"round":4,"updates_received":2}"#,
            r#"{"status":"accepted","round":4}"#,
            r#"{"status":"accepted","round":4,"updates_received":2,"extra":1}"#,
            "",
        ] {
            assert!(serde_json::from_str::<UploadReply>(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn federation_info_needs_every_field() {
        let info = FederationInfo {
            id: "f".into(),
            model: ModelRef { id: "m".into(), sha256: None, url: None },
            mode: FederationMode::Shared,
            dim: 4,
            n_docs: 2,
            doc_ids: Some(vec!["a".into(), "b".into()]),
            tensors: vec![],
            dp: DpRequirement { clip: 1.0, noise_multiplier: 1.0, delta: 1e-5 },
            min_clients: 1,
            target_clients: 2,
            round_deadline_s: 60,
            max_update_bytes: 1 << 20,
            optimizer: ServerOptimizer::default(),
            current_version: 3,
            current_round: 4,
            secure: None,
        };
        let mut v = serde_json::to_value(&info).unwrap();
        assert_eq!(serde_json::from_value::<FederationInfo>(v.clone()).unwrap(), info);
        v.as_object_mut().unwrap().remove("current_version");
        assert!(serde_json::from_value::<FederationInfo>(v.clone()).is_err(), "a missing version is not 0");
        v["current_version"] = 3.into();
        v["renamed_field"] = 1.into();
        assert!(serde_json::from_value::<FederationInfo>(v).is_err());
    }
}
