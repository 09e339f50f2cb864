//! Secure rounds inside the engine: one `fedsearch_protocol::secagg::SecAggServer` per open round
//! (and attempt), fed the clients' messages in order, each logged to SQLite before its reply so a
//! restart replays the round exactly (db::secure_log). The worker only ever holds masked inputs
//! and their running sum; the sum is unmasked once the round has at least `min_clients`
//! survivors, and `secure_mean` turns it into the round's mean delta. A phase that ends with too
//! few clients starts the round again as a new attempt (a new session: fresh keys and masks).
//! Until the keys phase closes, a client may send its keys again (a retry): they replace its
//! earlier ones.

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

/// How many times one client may replace its keys in one attempt's keys phase (each replacement
/// is one durable write: this bounds what one credential can make the engine write; a tab retries
/// at human pace, minutes apart).
const MAX_KEYS_REPLACEMENTS: u32 = 16;

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
    /// Keys replacements per client in this attempt (since the worker started: the log keeps only
    /// the latest keys).
    keys_replaced: HashMap<String, u32>,
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
            keys_replaced: HashMap::new(),
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
                // A client's first keys get the next index. Keys sent again while the keys phase
                // is open (a retry with fresh key pairs; nobody has the roster yet) replace its
                // earlier ones under the same index, and db::log_secure overwrites its keys row.
                // Once the roster is out its keys are fixed.
                match known {
                    Some(index) if self.phase() == ServerPhase::Keys => {
                        let replaced = self.keys_replaced.get(client_id).copied().unwrap_or(0);
                        if replaced >= MAX_KEYS_REPLACEMENTS {
                            return Err(WorkerError::SecurePhase(format!(
                                "client {client_id} replaced its keys {replaced} times in this attempt; \
                                 wait for the next attempt"
                            )));
                        }
                        keys.index = index;
                        self.server.replace_keys(keys).map_err(refused)?;
                        self.keys_replaced.insert(client_id.to_string(), replaced + 1);
                    }
                    Some(_) => {
                        return Err(WorkerError::SecurePhase(format!("client {client_id} already sent its keys")));
                    }
                    None => {
                        keys.index = self.index_of.len() as u32;
                        self.server.add_keys(keys).map_err(refused)?;
                        self.index_of.insert(client_id.to_string(), keys.index);
                    }
                }
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::{Config, SecureConfig};
    use fedsearch_protocol::NoiseRng;
    use fedsearch_protocol::secagg::SecAggClient;

    fn state(min_clients: u64) -> (SecureState, Vec<TensorSpec>) {
        let mut cfg = Config::demo().federations.remove(0);
        (cfg.dim, cfg.n_docs, cfg.min_clients, cfg.target_clients) = (4, 3, min_clients, 3);
        cfg.secure = Some(SecureConfig { neighbours: 4, target_epsilon: None, planned_rounds: 1, phase_secs: 60 });
        let params = cfg.skellam().unwrap().unwrap();
        (SecureState::new(&cfg, params, 1, 0, u64::MAX), cfg.tensor_specs())
    }

    fn fresh_keys(session: SessionId, seed: u8) -> PublicKeys {
        SecAggClient::new(0, session, 2, &mut NoiseRng::from_seed([seed; 32])).1
    }

    fn send(state: &mut SecureState, log: &mut Vec<SecureRow>, client: &str, keys: PublicKeys) -> Result<u32> {
        let (row, index) = state.apply(client, SecureMsg::Keys(keys))?;
        // As db::log_secure: a client's keys row is overwritten where it was.
        match log.iter_mut().find(|r| r.kind == "keys" && r.client_id == row.client_id) {
            Some(earlier) => *earlier = row,
            None => log.push(row),
        }
        Ok(index.unwrap())
    }

    /// Keys sent again in the keys phase replace the client's earlier ones under its index (at
    /// most `MAX_KEYS_REPLACEMENTS` times), a replay of the log gives the latest keys and the same
    /// indices, and once the keys phase closed a second keys message is refused.
    #[test]
    fn keys_sent_again_replace_the_earlier_ones_until_the_keys_phase_closes() {
        let (mut live, specs) = state(2);
        let mut log = Vec::new();
        let session = live.server.session();
        assert_eq!(send(&mut live, &mut log, "a", fresh_keys(session, 1)).unwrap(), 0);
        assert_eq!(send(&mut live, &mut log, "b", fresh_keys(session, 2)).unwrap(), 1);
        let mut latest_a = fresh_keys(session, 3);
        latest_a.index = 1; // the body's index is ignored
        assert_eq!(send(&mut live, &mut log, "a", latest_a).unwrap(), 0);
        latest_a.index = 0;
        // Another client's key is refused and changes nothing.
        let err = send(&mut live, &mut log, "b", latest_a).unwrap_err();
        assert!(matches!(err, WorkerError::SecureRefused(_)), "{err}");
        assert_eq!(live.server.roster()[1], PublicKeys { index: 1, ..fresh_keys(session, 2) });
        // Replacements 2 to MAX − 1, then the last one allowed, then one too many.
        for seed in 4..(2 + MAX_KEYS_REPLACEMENTS) as u8 {
            send(&mut live, &mut log, "a", fresh_keys(session, seed)).unwrap();
        }
        latest_a = PublicKeys { index: 0, ..fresh_keys(session, 100) };
        send(&mut live, &mut log, "a", latest_a).unwrap();
        let err = send(&mut live, &mut log, "a", fresh_keys(session, 101)).unwrap_err();
        assert!(matches!(err, WorkerError::SecurePhase(_)), "{err}");
        assert_eq!(live.server.counts()[0], 2, "each client counted once");
        assert_eq!(log.len(), 2, "one keys row per client");

        // A restart replays the log: same indices, latest keys.
        let (mut replayed, _) = state(2);
        replayed.replay(&log, &specs).unwrap();
        assert_eq!(replayed.index_of, live.index_of);
        assert_eq!(replayed.server.roster(), live.server.roster());
        assert_eq!(replayed.server.roster()[0], latest_a);

        assert!(matches!(live.close_phase(&specs).unwrap(), Progress::Closed(ServerPhase::Keys)));
        assert_eq!(live.roster[0], latest_a);
        let err = send(&mut live, &mut log, "b", fresh_keys(session, 102)).unwrap_err();
        assert!(matches!(&err, WorkerError::SecurePhase(m) if m.contains("already sent its keys")), "{err}");
    }
}
