//! The aggregation engine: one dedicated thread that owns the SQLite
//! connection and every federation's mutable state (round, running
//! aggregate, global model). HTTP handlers send it jobs; it group-commits
//! accepted updates (aggregate blob + contributor rows in one transaction,
//! durable before the reply), runs the round state machine
//! (collecting → aggregating → published → next round) and publishes
//! read-only snapshots handlers serve without touching the database.

use crate::config::{Config, FederationConfig};
use crate::db::{self, hash_secret, now_s, random_hex};
use crate::error::{Result, WorkerError};
use crate::metrics::Metrics;
use crate::secure::{Progress, SecureMsg, SecureState, SecureView};
use axum::body::Bytes;
use fedsearch_protocol::{
    Encoding, FederationMode, GlobalModel, NamedTensor, NoiseRng, OptimizerState, RoundState, RoundStatus,
    SkellamParams, StreamingFedAvg, TensorSpec, Update, ValidationError, decode_global_model, encode_global_model,
};
use rusqlite::Connection;
use std::collections::{HashMap, HashSet};
use std::sync::atomic::Ordering;
use std::sync::{Arc, RwLock};
use std::time::Instant;
use tokio::sync::{mpsc, oneshot};

/// Published model versions kept in the database per federation.
const KEEP_VERSIONS: u64 = 16;
/// Most jobs handled in one group commit.
const MAX_BATCH: usize = 64;

/// What handlers see of a federation: immutable config + the latest snapshot.
pub struct FedShared {
    pub cfg: FederationConfig,
    pub specs: Vec<TensorSpec>,
    /// Quantisation and noise of a secure federation's rounds, planned once at start
    /// (`FederationConfig::skellam`).
    pub skellam: Option<SkellamParams>,
    snapshot: RwLock<Arc<Snapshot>>,
    /// The open secure round (secure federations only).
    secure_view: RwLock<Option<Arc<SecureView>>>,
}

impl FedShared {
    pub fn snapshot(&self) -> Arc<Snapshot> {
        match self.snapshot.read() {
            Ok(s) => s.clone(),
            Err(poisoned) => poisoned.into_inner().clone(),
        }
    }
    pub fn secure_view(&self) -> Option<Arc<SecureView>> {
        match self.secure_view.read() {
            Ok(s) => s.clone(),
            Err(poisoned) => poisoned.into_inner().clone(),
        }
    }
    fn set_secure_view(&self, v: SecureView) {
        match self.secure_view.write() {
            Ok(mut g) => *g = Some(Arc::new(v)),
            Err(poisoned) => *poisoned.into_inner() = Some(Arc::new(v)),
        }
    }
    fn set(&self, s: Snapshot) {
        match self.snapshot.write() {
            Ok(mut g) => *g = Arc::new(s),
            Err(poisoned) => *poisoned.into_inner() = Arc::new(s),
        }
    }
}

/// Read-only view of a federation's current round and model.
pub struct Snapshot {
    pub status: RoundStatus,
    pub model_f32: Bytes,
    pub model_f16: Bytes,
    pub etag: String,
}

/// Who a credential belongs to.
#[derive(Clone, Debug)]
pub struct ClientIdent {
    pub client_id: String,
    pub federation_id: String,
}

/// sha256(credential) → client, loaded at start and extended on enrolment.
pub type Credentials = RwLock<HashMap<[u8; 32], ClientIdent>>;

pub enum Job {
    Submit {
        update: Box<Update>,
        reply: oneshot::Sender<Result<SubmitOutcome>>,
    },
    Enroll {
        federation: String,
        token: String,
        reply: oneshot::Sender<Result<Enrolled>>,
    },
    /// A secure-round message for the round and attempt the client believes open; the reply
    /// carries the client's index for keys.
    Secure {
        federation: String,
        client_id: String,
        round: u64,
        attempt: u64,
        msg: SecureMsg,
        reply: oneshot::Sender<Result<Option<u32>>>,
    },
    Tick,
}

#[derive(Debug)]
pub enum SubmitOutcome {
    Accepted { round: u64, updates_received: u64 },
    Duplicate { round: u64 },
}

#[derive(Debug)]
pub struct Enrolled {
    pub client_id: String,
    pub credential: String,
}

struct FedState {
    shared: Arc<FedShared>,
    round: u64,
    state: RoundState,
    deadline: u64,
    agg: StreamingFedAvg,
    contributors: HashSet<String>,
    model: GlobalModel,
    opt_state: OptimizerState,
    model_f32: Bytes,
    model_f16: Bytes,
    /// The open secure round (secure federations only).
    secure: Option<SecureState>,
}

impl FedState {
    fn cfg(&self) -> &FederationConfig {
        &self.shared.cfg
    }

    /// Whether every planned secure round is published (no further round opens).
    fn secure_finished(&self) -> bool {
        self.cfg().secure.is_some_and(|s| self.model.version >= s.planned_rounds)
    }

    fn publish_secure_view(&self) {
        if let Some(ss) = &self.secure {
            self.shared.set_secure_view(ss.view(self.model.version, self.secure_finished()));
        }
    }

    fn publish_snapshot(&self) {
        let cfg = self.cfg();
        self.shared.set(Snapshot {
            status: RoundStatus {
                federation_id: cfg.id.clone(),
                round: self.round,
                state: self.state,
                updates_received: self.agg.count(),
                min_clients: cfg.min_clients,
                target_clients: cfg.target_clients,
                deadline_unix_s: self.deadline,
                current_version: self.model.version,
            },
            model_f32: self.model_f32.clone(),
            model_f16: self.model_f16.clone(),
            etag: format!("\"{}-v{}\"", cfg.id, self.model.version),
        });
    }

    fn encode_model(&mut self) {
        self.model_f32 = Bytes::from(encode_global_model(&self.model, Encoding::F32));
        self.model_f16 = Bytes::from(encode_global_model(&self.model, Encoding::F16));
    }
}

pub struct Engine {
    conn: Connection,
    feds: Vec<FedState>,
    metrics: Arc<Metrics>,
    creds: Arc<Credentials>,
    rng: Option<NoiseRng>,
}

/// Handles produced by [`Engine::open`] for the HTTP side.
pub struct Opened {
    pub engine: Engine,
    pub feds: HashMap<String, Arc<FedShared>>,
    pub creds: Arc<Credentials>,
}

impl Engine {
    /// Opens the database, creates missing federations (version-0 model,
    /// round 1) and restores any in-progress round from disk.
    pub fn open(conn: Connection, cfg: &Config, metrics: Arc<Metrics>) -> Result<Opened> {
        let mut feds = Vec::new();
        let mut shared_map = HashMap::new();
        for fc in &cfg.federations {
            let st = load_federation(&conn, fc)?;
            shared_map.insert(fc.id.clone(), st.shared.clone());
            feds.push(st);
        }
        let mut creds = HashMap::new();
        for (h, client_id, federation_id) in db::client_credentials(&conn)? {
            if let Ok(h) = <[u8; 32]>::try_from(h.as_slice()) {
                creds.insert(h, ClientIdent { client_id, federation_id });
            }
        }
        let rng = if cfg.federations.iter().any(|f| f.central_noise_std > 0.0) {
            Some(NoiseRng::from_os_entropy().map_err(|e| WorkerError::Config(e.to_string()))?)
        } else {
            None
        };
        let creds = Arc::new(RwLock::new(creds));
        let mut engine = Engine { conn, feds, metrics, creds: creds.clone(), rng };
        // A crash between the last accepted update and publishing: finish now.
        engine.tick();
        Ok(Opened { engine, feds: shared_map, creds })
    }

    /// Runs until every job sender is dropped.
    pub fn run(mut self, mut rx: mpsc::Receiver<Job>) {
        while let Some(first) = rx.blocking_recv() {
            let mut batch = vec![first];
            while batch.len() < MAX_BATCH {
                match rx.try_recv() {
                    Ok(j) => batch.push(j),
                    Err(_) => break,
                }
            }
            let mut submits = Vec::new();
            let mut tick = false;
            for job in batch {
                match job {
                    Job::Submit { update, reply } => submits.push((update, reply)),
                    Job::Enroll { federation, token, reply } => {
                        let _ = reply.send(self.enroll(&federation, &token));
                    }
                    Job::Secure { federation, client_id, round, attempt, msg, reply } => {
                        let _ = reply.send(self.secure_message(&federation, &client_id, (round, attempt), msg));
                        if let Some(i) = self.fed_index(&federation) {
                            self.secure_progress(i, false);
                        }
                    }
                    Job::Tick => tick = true,
                }
            }
            if !submits.is_empty() {
                self.submit_batch(submits);
            }
            if tick {
                self.tick();
            }
        }
        tracing::info!("engine stopped");
    }

    fn fed_index(&self, id: &str) -> Option<usize> {
        self.feds.iter().position(|f| f.cfg().id == id)
    }

    fn submit_batch(&mut self, submits: Vec<(Box<Update>, oneshot::Sender<Result<SubmitOutcome>>)>) {
        let mut by_fed: HashMap<usize, Vec<_>> = HashMap::new();
        for (u, reply) in submits {
            match self.fed_index(&u.federation_id) {
                Some(i) => by_fed.entry(i).or_default().push((u, reply)),
                None => {
                    let _ = reply.send(Err(WorkerError::UnknownFederation(u.federation_id.clone())));
                }
            }
        }
        for (i, group) in by_fed {
            self.submit_group(i, group);
            self.maybe_close(i, false);
        }
    }

    /// Adds a group of validated updates to one federation's aggregate and
    /// persists aggregate + contributor rows in one transaction before replying.
    fn submit_group(&mut self, i: usize, group: Vec<(Box<Update>, oneshot::Sender<Result<SubmitOutcome>>)>) {
        let fed = &self.feds[i];
        let mut agg = fed.agg.clone();
        let mut accepted = Vec::new();
        let mut duplicates = Vec::new();
        let mut in_batch: HashSet<String> = HashSet::new();
        for (u, reply) in group {
            if u.round != fed.round || fed.state != RoundState::Collecting {
                let _ = reply.send(Err(WorkerError::WrongRound { current_round: fed.round, got: u.round }));
                continue;
            }
            if fed.contributors.contains(&u.client_id) || in_batch.contains(&u.client_id) {
                duplicates.push(reply);
                continue;
            }
            // A round closes at its target exactly: updates beyond it (e.g. later in the same
            // batch) are refused, not folded in.
            if agg.count() >= fed.cfg().target_clients {
                let _ = reply.send(Err(WorkerError::RoundFull { round: fed.round, target: fed.cfg().target_clients }));
                continue;
            }
            if u.base_version != fed.model.version {
                let _ = reply.send(Err(WorkerError::Invalid(ValidationError::WrongBaseVersion {
                    expected: fed.model.version,
                    got: u.base_version,
                })));
                continue;
            }
            // Every update weighs 1, whatever `num_examples` claims: every federation runs
            // client-level DP, whose accounting assumes each client moves the mean by at most
            // C / n; a client-chosen weight would let one client outweigh all the others.
            if let Err(e) = agg.add(&u, 1.0) {
                let _ = reply.send(Err(WorkerError::Protocol(e)));
                continue;
            }
            in_batch.insert(u.client_id.clone());
            accepted.push((u.client_id.clone(), u.num_examples, u.dp.epsilon_spent, reply));
        }
        let round = fed.round;
        let fed_id = fed.cfg().id.clone();
        if !accepted.is_empty() {
            let blob = agg.to_bytes();
            let count = agg.count();
            let rows: Vec<(&str, u64, f64)> =
                accepted.iter().map(|(client, n, eps, _)| (client.as_str(), *n, *eps)).collect();
            let res = db::record_accepted(&mut self.conn, &fed_id, round, count, &blob, &rows, now_s());
            match res {
                Ok(()) => {
                    let fed = &mut self.feds[i];
                    fed.agg = agg;
                    let n = accepted.len() as u64;
                    for (client, _, _, _) in &accepted {
                        fed.contributors.insert(client.clone());
                    }
                    // Snapshot first, so a client that got 2xx sees its update counted.
                    fed.publish_snapshot();
                    self.metrics.updates_accepted.fetch_add(n, Ordering::Relaxed);
                    for (_, _, _, reply) in accepted {
                        let _ = reply.send(Ok(SubmitOutcome::Accepted { round, updates_received: count }));
                    }
                    tracing::info!(
                        federation = %fed_id, round, accepted = n, received = count,
                        target = fed.cfg().target_clients, "updates accepted"
                    );
                }
                Err(e) => {
                    tracing::error!(federation = %fed_id, round, error = %e, "persisting updates failed");
                    for (_, _, _, reply) in accepted {
                        let _ = reply.send(Err(WorkerError::Storage(e.to_string())));
                    }
                }
            }
        }
        for reply in duplicates {
            self.metrics.updates_duplicate.fetch_add(1, Ordering::Relaxed);
            let _ = reply.send(Ok(SubmitOutcome::Duplicate { round }));
        }
    }

    /// Deadline handling for every federation.
    fn tick(&mut self) {
        for i in 0..self.feds.len() {
            if self.feds[i].secure.is_some() {
                self.secure_progress(i, true);
            } else {
                self.maybe_close(i, true);
            }
        }
    }

    /// One client's secure-round message: applied, logged durably, then answered.
    fn secure_message(
        &mut self,
        federation: &str,
        client_id: &str,
        (round, attempt): (u64, u64),
        msg: SecureMsg,
    ) -> Result<Option<u32>> {
        let i = self.fed_index(federation).ok_or_else(|| WorkerError::UnknownFederation(federation.into()))?;
        let fed = &mut self.feds[i];
        if fed.secure_finished() {
            return Err(WorkerError::SecurePhase("every planned secure round is published".into()));
        }
        let id = fed.shared.cfg.id.clone();
        let ss = fed
            .secure
            .as_mut()
            .ok_or_else(|| WorkerError::WrongAggregation(format!("{id} does not aggregate securely")))?;
        if (ss.round, ss.attempt) != (round, attempt) {
            return Err(WorkerError::SecurePhase(format!(
                "the message is for round {round} attempt {attempt}; round {} attempt {} is open",
                ss.round, ss.attempt
            )));
        }
        let (row, index) = ss.apply(client_id, msg)?;
        if let Err(e) = db::log_secure(&self.conn, &id, ss.round, &row) {
            // Applied but not durable: restart the round rather than diverge from the log.
            tracing::error!(federation = %id, error = %e, "logging a secure message failed; restarting the round");
            let (round, attempt) = (ss.round, ss.attempt);
            self.restart_secure(i, round, attempt + 1, "storage failure");
            return Err(e);
        }
        self.feds[i].publish_secure_view();
        Ok(index)
    }

    /// Closes the secure round's phase when everyone still in it answered, or at its deadline.
    fn secure_progress(&mut self, i: usize, check_deadline: bool) {
        let now = now_s();
        let fed = &mut self.feds[i];
        if fed.secure_finished() {
            return;
        }
        let target = fed.shared.cfg.target_clients as usize;
        let phase_secs = fed.shared.cfg.secure.map_or(60, |s| s.phase_secs);
        let specs = fed.shared.specs.clone();
        let id = fed.shared.cfg.id.clone();
        let Some(ss) = fed.secure.as_mut() else { return };
        let due = check_deadline && now >= ss.deadline;
        if !(ss.complete(target) || due) {
            return;
        }
        let (round, attempt) = (ss.round, ss.attempt);
        match ss.close_phase(&specs) {
            Ok(Progress::Closed(phase)) => {
                let row = ss.close_row();
                ss.deadline = now + phase_secs;
                if let Err(e) = db::log_secure(&self.conn, &id, round, &row) {
                    tracing::error!(federation = %id, error = %e, "logging a phase change failed; restarting the round");
                    self.restart_secure(i, round, attempt + 1, "storage failure");
                    return;
                }
                tracing::info!(federation = %id, round, attempt, ?phase, "secure phase closed");
                self.feds[i].publish_secure_view();
            }
            Ok(Progress::Extended) => {
                ss.deadline = now + phase_secs;
                self.feds[i].publish_secure_view();
            }
            Ok(Progress::Restart(why)) => self.restart_secure(i, round, attempt + 1, &why),
            Ok(Progress::Mean(mean, n)) => self.close_round(i, "secure round unmasked", Some((mean, n))),
            Ok(Progress::Waiting) => {}
            Err(e) => {
                tracing::error!(federation = %id, round, error = %e, "secure round failed; restarting it");
                self.restart_secure(i, round, attempt + 1, "decoding the sum failed");
            }
        }
    }

    /// Starts `round` again as a new attempt (fresh session), logged so a restart resumes it.
    fn restart_secure(&mut self, i: usize, round: u64, attempt: u64, why: &str) {
        let fed = &mut self.feds[i];
        let cfg = fed.shared.cfg.clone();
        let Some(params) = fed.shared.skellam else { return };
        let deadline = now_s() + cfg.secure.map_or(60, |s| s.phase_secs);
        let marker = db::SecureRow { attempt, client_id: None, kind: "attempt".into(), body: Vec::new() };
        if let Err(e) = db::log_secure(&self.conn, &cfg.id, round, &marker) {
            tracing::error!(federation = %cfg.id, error = %e, "logging a new attempt failed");
        }
        fed.secure = Some(SecureState::new(&cfg, params, round, attempt, deadline));
        fed.publish_secure_view();
        self.metrics.secure_restarts.fetch_add(1, Ordering::Relaxed);
        tracing::warn!(federation = %cfg.id, round, attempt, reason = why, "secure round restarted");
    }

    /// Closes the round when the target is reached, or at the deadline when
    /// at least `min_clients` contributed; below the minimum at the deadline
    /// the deadline is extended (updates are never dropped).
    fn maybe_close(&mut self, i: usize, check_deadline: bool) {
        let now = now_s();
        let fed = &self.feds[i];
        if fed.state != RoundState::Collecting || fed.secure.is_some() {
            return;
        }
        let count = fed.agg.count();
        let cfg = fed.cfg();
        if count >= cfg.target_clients {
            self.close_round(i, "target reached", None);
        } else if check_deadline && now >= fed.deadline {
            if count >= cfg.min_clients {
                self.close_round(i, "deadline", None);
            } else {
                let new_deadline = now + cfg.round_deadline_s;
                let (id, round, min) = (cfg.id.clone(), fed.round, cfg.min_clients);
                let res = db::extend_deadline(&self.conn, &id, round, new_deadline);
                if let Err(e) = res {
                    tracing::error!(federation = %id, round, error = %e, "extending deadline failed");
                    return;
                }
                let fed = &mut self.feds[i];
                fed.deadline = new_deadline;
                fed.publish_snapshot();
                tracing::info!(
                    federation = %id, round, received = count, min_clients = min,
                    new_deadline, "deadline reached below min_clients; extending"
                );
            }
        }
    }

    /// Publishes the round: the mean of the plain aggregate, or `secure`'s unmasked mean and
    /// survivor count.
    fn close_round(&mut self, i: usize, reason: &str, secure: Option<(Vec<NamedTensor>, u64)>) {
        let t0 = Instant::now();
        self.feds[i].state = RoundState::Aggregating;
        self.feds[i].publish_snapshot();
        let fed = &self.feds[i];
        let cfg = fed.cfg().clone();
        let round = fed.round;
        let count = secure.as_ref().map_or(fed.agg.count(), |(_, n)| *n);
        let mut model = fed.model.clone();
        let mut opt_state = fed.opt_state.clone();
        let result = (|| -> Result<()> {
            let delta = match secure {
                Some((mean, _)) => mean,
                None => fed.agg.finish()?,
            };
            let noise =
                if cfg.central_noise_std > 0.0 { self.rng.as_mut().map(|r| (cfg.central_noise_std, r)) } else { None };
            cfg.optimizer.apply(&mut model, &delta, &mut opt_state, noise)?;
            let blob = encode_global_model(&model, Encoding::F32);
            let now = now_s();
            db::publish_round(
                &mut self.conn,
                &db::Publication {
                    federation_id: &cfg.id,
                    round,
                    num_updates: count,
                    version: model.version,
                    model: &blob,
                    optimizer_state: &opt_state.to_bytes(),
                    now,
                    next_deadline: now + cfg.round_deadline_s,
                    keep_versions: KEEP_VERSIONS,
                },
            )?;
            Ok(())
        })();
        let fed = &mut self.feds[i];
        match result {
            Ok(()) => {
                fed.model = model;
                fed.opt_state = opt_state;
                fed.encode_model();
                fed.round = round + 1;
                fed.agg = StreamingFedAvg::new(&fed.shared.specs);
                fed.contributors.clear();
                fed.deadline = now_s() + cfg.round_deadline_s;
                fed.state = RoundState::Collecting;
                if let (Some(s), Some(params)) = (cfg.secure, fed.shared.skellam) {
                    fed.secure = Some(SecureState::new(&cfg, params, round + 1, 0, now_s() + s.phase_secs));
                    fed.publish_secure_view();
                }
                fed.publish_snapshot();
                let secs = t0.elapsed();
                self.metrics.rounds_published.fetch_add(1, Ordering::Relaxed);
                self.metrics.aggregations.fetch_add(1, Ordering::Relaxed);
                self.metrics.aggregation_micros.fetch_add(secs.as_micros() as u64, Ordering::Relaxed);
                tracing::info!(
                    federation = %cfg.id, round, updates = count, version = fed.model.version,
                    reason, seconds = secs.as_secs_f64(), "round published"
                );
            }
            Err(e) => {
                fed.state = RoundState::Collecting;
                fed.publish_snapshot();
                tracing::error!(federation = %cfg.id, round, error = %e, "publishing round failed; will retry on the next tick");
                if fed.secure.is_some() {
                    // The sum is gone from the server state: run the round again.
                    let attempt = fed.secure.as_ref().map_or(0, |s| s.attempt);
                    self.restart_secure(i, round, attempt + 1, "publishing failed");
                }
            }
        }
    }

    fn enroll(&mut self, federation: &str, token: &str) -> Result<Enrolled> {
        if self.fed_index(federation).is_none() {
            return Err(WorkerError::UnknownFederation(federation.into()));
        }
        let token_hash = hash_secret(token);
        let client_id = format!("c_{}", random_hex(8)?);
        let credential = format!("fsc_{}", random_hex(32)?);
        let cred_hash = hash_secret(&credential);
        if !db::enroll_client(&mut self.conn, federation, &token_hash, &client_id, &cred_hash, now_s())? {
            return Err(WorkerError::InvalidToken);
        }
        if let Ok(mut c) = self.creds.write() {
            c.insert(cred_hash, ClientIdent { client_id: client_id.clone(), federation_id: federation.into() });
        }
        self.metrics.enrolments.fetch_add(1, Ordering::Relaxed);
        tracing::info!(federation, client_id = %client_id, "client enrolled");
        Ok(Enrolled { client_id, credential })
    }
}

/// Loads (or initialises) one federation's persistent state.
fn load_federation(conn: &Connection, fc: &FederationConfig) -> Result<FedState> {
    let now = now_s();
    let specs = fc.tensor_specs();
    let (mode, dim, n_docs) =
        db::ensure_federation(conn, &fc.id, fc.mode.as_str(), fc.dim as u64, fc.n_docs as u64, now)?;
    if mode != fc.mode.as_str() || dim != fc.dim as i64 || n_docs != fc.n_docs as i64 {
        return Err(WorkerError::Config(format!(
            "federation {:?} in the database has mode {mode}, dim {dim}, n_docs {n_docs} but the config says \
             mode {}, dim {}, n_docs {}; use a new federation id or a fresh --db",
            fc.id, fc.mode, fc.dim, fc.n_docs
        )));
    }

    let latest = db::latest_model(conn, &fc.id)?;
    let (model, opt_state) = match latest {
        Some((m, o)) => {
            let model = decode_global_model(&m)
                .map_err(|e| WorkerError::Storage(format!("stored model of {:?} is corrupt: {e}", fc.id)))?;
            let opt = OptimizerState::from_bytes(&o)
                .map_err(|e| WorkerError::Storage(format!("stored optimizer state of {:?} is corrupt: {e}", fc.id)))?;
            (model, opt)
        }
        None => {
            let doc_ids = if fc.mode == FederationMode::Shared { fc.doc_ids.clone() } else { None };
            let model = GlobalModel::initial(fc.id.clone(), fc.mode, fc.dim, fc.n_docs, doc_ids);
            let opt = OptimizerState::default();
            db::insert_initial_model(conn, &fc.id, now, &encode_global_model(&model, Encoding::F32), &opt.to_bytes())?;
            tracing::info!(federation = %fc.id, "initialised version 0 (identity adapter)");
            (model, opt)
        }
    };
    for s in &specs {
        if model.tensor(&s.name).is_none_or(|t| t.shape != s.shape) {
            return Err(WorkerError::Storage(format!(
                "stored model of {:?} lacks tensor {} {:?}",
                fc.id, s.name, s.shape
            )));
        }
    }

    let current = db::latest_round(conn, &fc.id)?;
    let (round, deadline) = match current {
        Some((r, state, d)) if state != "published" => (r as u64, d as u64),
        other => {
            let r = other.map_or(1, |(r, _, _)| r as u64 + 1);
            let d = now + fc.round_deadline_s;
            db::open_round(conn, &fc.id, r, model.version, now, d)?;
            (r, d)
        }
    };

    let agg_blob = db::round_aggregate(conn, &fc.id, round)?;
    let agg = match agg_blob {
        Some(b) => {
            let a = StreamingFedAvg::from_bytes(&b)
                .map_err(|e| WorkerError::Storage(format!("stored aggregate of {:?} is corrupt: {e}", fc.id)))?;
            if a.specs() != specs {
                return Err(WorkerError::Storage(format!("stored aggregate of {:?} has other tensors", fc.id)));
            }
            a
        }
        None => StreamingFedAvg::new(&specs),
    };
    let contributors: HashSet<String> = db::round_contributors(conn, &fc.id, round)?.into_iter().collect();
    if contributors.len() as u64 != agg.count() {
        tracing::warn!(
            federation = %fc.id, round, contributors = contributors.len(), aggregated = agg.count(),
            "contributor list and aggregate disagree"
        );
    }
    tracing::info!(
        federation = %fc.id, round, version = model.version, received = agg.count(),
        "restored round state"
    );
    let skellam = fc.skellam()?;
    let shared = Arc::new(FedShared {
        cfg: fc.clone(),
        specs: specs.clone(),
        skellam,
        snapshot: RwLock::new(Arc::new(Snapshot {
            status: RoundStatus {
                federation_id: fc.id.clone(),
                round,
                state: RoundState::Collecting,
                updates_received: 0,
                min_clients: fc.min_clients,
                target_clients: fc.target_clients,
                deadline_unix_s: deadline,
                current_version: 0,
            },
            model_f32: Bytes::new(),
            model_f16: Bytes::new(),
            etag: String::new(),
        })),
        secure_view: RwLock::new(None),
    });
    // A secure round: replay its log (the latest attempt), with a fresh phase deadline.
    let secure = match skellam {
        Some(params) => {
            let rows = db::secure_log(conn, &fc.id, round)?;
            let attempt = rows.first().map_or(0, |r| r.attempt);
            let phase_secs = fc.secure.map_or(60, |s| s.phase_secs);
            let mut ss = SecureState::new(fc, params, round, attempt, now + phase_secs);
            ss.replay(&rows, &specs)?;
            tracing::info!(federation = %fc.id, round, attempt, phase = ?ss.phase(), messages = rows.len(), "restored secure round");
            Some(ss)
        }
        None => None,
    };
    let mut st = FedState {
        shared,
        round,
        state: RoundState::Collecting,
        deadline,
        agg,
        contributors,
        model,
        opt_state,
        model_f32: Bytes::new(),
        model_f16: Bytes::new(),
        secure,
    };
    st.encode_model();
    st.publish_snapshot();
    st.publish_secure_view();
    Ok(st)
}

#[cfg(test)]
mod tests {
    use super::*;
    use fedsearch_protocol::{DpParams, FederationMode, NamedTensor, Update, federated_tensor_specs};

    /// Updates that reach the engine in one batch beyond the round's target are refused
    /// (`round_full`), not folded in: the round closes at its target exactly. (Over HTTP the
    /// batch only forms under load, so this drives the engine directly.)
    #[test]
    fn a_batch_beyond_the_target_is_refused() {
        let dir = std::env::temp_dir().join(format!("fedsearch-engine-test-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        let mut cfg = Config::demo();
        cfg.federations[0].dim = 4;
        cfg.federations[0].n_docs = 3;
        let conn = crate::db::open(&dir.join("w.db")).unwrap();
        let opened = Engine::open(conn, &cfg, Arc::new(Metrics::default())).unwrap();
        let (tx, rx) = mpsc::channel(16);
        let mut replies = Vec::new();
        for i in 0..3 {
            let tensors = federated_tensor_specs(FederationMode::Shared, 4, 3)
                .into_iter()
                .map(|s| NamedTensor::new(s.name.clone(), s.shape.clone(), vec![0.01; s.numel()]))
                .collect();
            let update = Update {
                federation_id: "demo".into(),
                round: 1,
                client_id: format!("c{i}"),
                base_version: 0,
                num_examples: 1,
                mode: FederationMode::Shared,
                dp: DpParams { clip: 1.0, noise_multiplier: 1.0, delta: 1e-5, epsilon_spent: 0.1 },
                tensors,
            };
            let (reply, rx_reply) = oneshot::channel();
            tx.try_send(Job::Submit { update: Box::new(update), reply }).unwrap();
            replies.push(rx_reply);
        }
        drop(tx);
        opened.engine.run(rx);
        let outcomes: Vec<Result<SubmitOutcome>> = replies.into_iter().map(|r| r.blocking_recv().unwrap()).collect();
        let accepted = outcomes.iter().filter(|o| matches!(o, Ok(SubmitOutcome::Accepted { .. }))).count();
        assert_eq!(accepted, 2, "{outcomes:?}");
        assert!(matches!(outcomes[2], Err(WorkerError::RoundFull { round: 1, target: 2 })), "{outcomes:?}");
        let _ = std::fs::remove_dir_all(&dir);
    }
}
