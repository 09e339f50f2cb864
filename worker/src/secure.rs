//! Secure rounds inside the engine: one `fedsearch_protocol::secagg::SecAggServer` per open round
//! (and attempt), fed the clients' messages in order, each logged to SQLite before its reply so a
//! restart replays the round exactly (db::secure_log). The worker only ever holds masked inputs
//! and their running sum; the sum is unmasked once the round has at least `min_clients`
//! survivors, and `secure_mean` turns it into the round's mean delta. A phase that ends with too
//! few clients starts the round again as a new attempt (a new session: fresh keys and masks).

use crate::config::FederationConfig;
use crate::db::SecureRow;
use crate::error::{Result, WorkerError};
use fedsearch_privacy::SkellamParams;
use fedsearch_protocol::secagg::{
    EncryptedShare, MaskedInput, PublicKeys, RevealedShare, SecAggError, SecAggServer, ServerPhase, SessionId,
    decode_masked_input, encode_masked_input,
};
use fedsearch_protocol::{NamedTensor, SecureStatus, TensorSpec, secure_mean};
use std::collections::HashMap;
use std::sync::Arc;

/// A client's message to the secure round.
pub enum SecureMsg {
    Keys(PublicKeys),
    Shares(Vec<EncryptedShare>),
    Masked(MaskedInput),
    Reveals(Vec<RevealedShare>),
}

/// What handlers serve of the secure round without asking the engine.
#[derive(Clone)]
pub struct SecureView {
    pub status: SecureStatus,
    /// Fixed once the keys phase closed (nobody needs an index before).
    pub index_of: Arc<HashMap<String, u32>>,
    pub roster: Arc<Vec<PublicKeys>>,
    pub mailbox: Arc<HashMap<u32, Vec<EncryptedShare>>>,
    pub survivors: Arc<Vec<u32>>,
}

/// What a phase change did.
pub enum Progress {
    /// Nothing to do yet.
    Waiting,
    /// A phase closed; the round goes on.
    Closed(ServerPhase),
    /// The keys phase ran out of time with too few clients: its deadline was extended.
    Extended,
    /// Too few clients to go on: the round restarts as a new attempt.
    Restart(String),
    /// The round's mean delta, from this many survivors.
    Mean(Vec<NamedTensor>, u64),
}

/// The open secure round of one federation.
pub struct SecureState {
    pub params: SkellamParams,
    pub round: u64,
    pub attempt: u64,
    pub deadline: u64,
    server: SecAggServer,
    index_of: HashMap<String, u32>,
    index_view: Arc<HashMap<String, u32>>,
    roster: Arc<Vec<PublicKeys>>,
    mailbox: Arc<HashMap<u32, Vec<EncryptedShare>>>,
    survivors: Arc<Vec<u32>>,
}

/// 409 for a message at the wrong time, 422 for one the protocol refuses.
fn refused(e: SecAggError) -> WorkerError {
    match e {
        SecAggError::TooFew { .. } | SecAggError::Phase(_) => WorkerError::SecurePhase(e.to_string()),
        SecAggError::Protocol(m) => WorkerError::SecureRefused(m),
    }
}

impl SecureState {
    /// A fresh attempt of `round`.
    pub fn new(cfg: &FederationConfig, params: SkellamParams, round: u64, attempt: u64, deadline: u64) -> Self {
        let k = cfg.secure.map_or(32, |s| s.neighbours);
        let session = SessionId::new(&format!("{}#{attempt}", cfg.id), round, params.dim, k);
        SecureState {
            params,
            round,
            attempt,
            deadline,
            server: SecAggServer::new(session, params.dim, k, cfg.min_clients as usize),
            index_of: HashMap::new(),
            index_view: Arc::default(),
            roster: Arc::default(),
            mailbox: Arc::default(),
            survivors: Arc::default(),
        }
    }

    pub fn phase(&self) -> ServerPhase {
        self.server.phase()
    }

    /// Applies one client's message; returns the row to log (before replying) and, for keys,
    /// the index given to the client.
    pub fn apply(&mut self, client_id: &str, msg: SecureMsg) -> Result<(SecureRow, Option<u32>)> {
        let attempt = self.attempt;
        let row = |kind: &str, body: Vec<u8>| SecureRow {
            attempt,
            client_id: Some(client_id.to_string()),
            kind: kind.into(),
            body,
        };
        let known = self.index_of.get(client_id).copied();
        let not_joined = || WorkerError::SecurePhase(format!("client {client_id} sent no keys this round"));
        match msg {
            SecureMsg::Keys(mut keys) => {
                if known.is_some() {
                    return Err(WorkerError::SecurePhase(format!("client {client_id} already sent its keys")));
                }
                keys.index = self.index_of.len() as u32;
                self.server.add_keys(keys).map_err(refused)?;
                self.index_of.insert(client_id.to_string(), keys.index);
                let body = serde_json::to_vec(&keys).expect("keys serialise");
                Ok((row("keys", body), Some(keys.index)))
            }
            SecureMsg::Shares(shares) => {
                let index = known.ok_or_else(not_joined)?;
                let body = serde_json::to_vec(&shares).expect("shares serialise");
                self.server.add_shares(index, shares).map_err(refused)?;
                Ok((row("shares", body), None))
            }
            SecureMsg::Masked(input) => {
                let index = known.ok_or_else(not_joined)?;
                if input.index != index {
                    return Err(WorkerError::SecureRefused(format!(
                        "the masked input names client {}, this credential is client {index}",
                        input.index
                    )));
                }
                self.server.add_masked(&input).map_err(refused)?;
                Ok((row("masked", encode_masked_input(&input)), None))
            }
            SecureMsg::Reveals(reveals) => {
                let index = known.ok_or_else(not_joined)?;
                let body = serde_json::to_vec(&reveals).expect("reveals serialise");
                self.server.add_reveals(index, reveals).map_err(refused)?;
                Ok((row("reveals", body), None))
            }
        }
    }

    /// Replays a logged attempt (rows of one attempt, oldest first).
    pub fn replay(&mut self, rows: &[SecureRow], specs: &[TensorSpec]) -> Result<()> {
        let corrupt = |what: &str, e: String| WorkerError::Storage(format!("secure log: {what}: {e}"));
        for r in rows {
            let client = r.client_id.clone().unwrap_or_default();
            let msg = match r.kind.as_str() {
                "attempt" => continue,
                "close" => {
                    self.close_phase(specs).map_err(|e| corrupt("replaying a phase change", e.to_string()))?;
                    continue;
                }
                "keys" => SecureMsg::Keys(serde_json::from_slice(&r.body).map_err(|e| corrupt("keys", e.to_string()))?),
                "shares" => {
                    SecureMsg::Shares(serde_json::from_slice(&r.body).map_err(|e| corrupt("shares", e.to_string()))?)
                }
                "masked" => {
                    SecureMsg::Masked(decode_masked_input(&r.body).map_err(|e| corrupt("masked", e.to_string()))?)
                }
                "reveals" => {
                    SecureMsg::Reveals(serde_json::from_slice(&r.body).map_err(|e| corrupt("reveals", e.to_string()))?)
                }
                other => return Err(corrupt("unknown row kind", other.to_string())),
            };
            self.apply(&client, msg)?;
        }
        Ok(())
    }

    /// Whether the current phase has heard from everyone still in the round.
    pub fn complete(&self, target: usize) -> bool {
        self.server.phase_complete(target)
    }

    /// Closes the current phase. In the unmasking phase this removes the masks and returns the
    /// mean delta; too few clients in a later phase asks for a restart.
    pub fn close_phase(&mut self, specs: &[TensorSpec]) -> Result<Progress> {
        let phase = self.phase();
        let result = match phase {
            ServerPhase::Keys => self.server.close_keys().map(|r| {
                self.roster = Arc::new(r);
                self.index_view = Arc::new(self.index_of.clone());
            }),
            ServerPhase::Shares => self.server.close_shares().map(|()| {
                let mut mailbox = HashMap::new();
                for &i in self.index_of.values() {
                    mailbox.insert(i, self.server.shares_for(i));
                }
                self.mailbox = Arc::new(mailbox);
            }),
            ServerPhase::Masked => self.server.close_masked().map(|s| self.survivors = Arc::new(s)),
            ServerPhase::Unmask => {
                return match self.server.finish() {
                    Ok((sum, n)) => {
                        let mean = secure_mean(&sum, n, &self.params, specs)?;
                        Ok(Progress::Mean(mean, n as u64))
                    }
                    Err(e) => Ok(Progress::Restart(e.to_string())),
                };
            }
            ServerPhase::Done => return Ok(Progress::Waiting),
        };
        match result {
            Ok(()) => Ok(Progress::Closed(phase)),
            Err(SecAggError::TooFew { .. }) if phase == ServerPhase::Keys => Ok(Progress::Extended),
            Err(e) => Ok(Progress::Restart(e.to_string())),
        }
    }

    /// The row that marks a phase change in the log.
    pub fn close_row(&self) -> SecureRow {
        SecureRow { attempt: self.attempt, client_id: None, kind: "close".into(), body: Vec::new() }
    }

    /// What handlers serve.
    pub fn view(&self, base_version: u64, finished: bool) -> SecureView {
        SecureView {
            status: SecureStatus {
                round: self.round,
                attempt: self.attempt,
                session: self.server.session(),
                phase: (!finished).then(|| self.phase()),
                deadline_unix_s: self.deadline,
                counts: self.server.counts(),
                base_version,
            },
            index_of: self.index_view.clone(),
            roster: self.roster.clone(),
            mailbox: self.mailbox.clone(),
            survivors: self.survivors.clone(),
        }
    }
}
