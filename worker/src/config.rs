//! Worker configuration: the TOML file format, the built-in demo federation,
//! defaults and sanity checks.

use crate::error::{Result, WorkerError};
use fedsearch_protocol::{Encoding, FederationMode, ServerOptimizer, TensorSpec, federated_tensor_specs};
use serde::{Deserialize, Serialize};
use std::path::{Path, PathBuf};

/// Number of documents of the demo federation when no config is given.
pub const DEMO_N_DOCS: u32 = 1000;
/// Default cap on concurrently processed uploads (bounds memory).
pub const DEFAULT_MAX_CONCURRENT_UPLOADS: usize = 32;

/// Top-level TOML file.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    pub listen: Option<String>,
    pub db: Option<PathBuf>,
    /// Origin allowed by CORS (e.g. "https://search.example.org"); none: no CORS headers.
    pub allowed_origin: Option<String>,
    /// Uploads decoded/validated at the same time; others wait before their body is read.
    #[serde(default = "default_max_uploads")]
    pub max_concurrent_uploads: usize,
    /// Seconds an upload may take to send its body once it holds a permit (then 408
    /// `body_timeout`), so that slow bodies cannot keep the permits from everyone else.
    #[serde(default = "default_upload_body_secs")]
    pub upload_body_secs: u64,
    /// Seconds any other request has from its head to its answer (then 408 `body_timeout`):
    /// their bodies are at most 16 KiB, so a body that trickles in is cut off, not held.
    #[serde(default = "default_request_secs")]
    pub request_secs: u64,
    /// Seconds between deadline checks.
    #[serde(default = "default_tick")]
    pub tick_ms: u64,
    pub federations: Vec<FederationConfig>,
}

fn default_max_uploads() -> usize {
    DEFAULT_MAX_CONCURRENT_UPLOADS
}
fn default_upload_body_secs() -> u64 {
    120
}
fn default_request_secs() -> u64 {
    30
}
fn default_tick() -> u64 {
    500
}

/// Required differential-privacy parameters of a federation.
#[derive(Debug, Clone, Copy, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DpConfig {
    pub clip: f32,
    pub noise_multiplier: f32,
    #[serde(default = "default_delta")]
    pub delta: f64,
}

fn default_delta() -> f64 {
    1e-5
}

/// One federation.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FederationConfig {
    pub id: String,
    #[serde(default = "default_model_id")]
    pub model_id: String,
    pub model_sha256: Option<String>,
    pub model_url: Option<String>,
    pub mode: FederationMode,
    pub dim: u32,
    #[serde(default)]
    pub n_docs: u32,
    pub doc_ids: Option<Vec<String>>,
    pub dp: DpConfig,
    pub min_clients: u64,
    pub target_clients: u64,
    pub round_deadline_s: u64,
    /// Largest accepted upload; default: the f32 encoding of a full update + 64 KiB.
    pub max_update_bytes: Option<u64>,
    #[serde(default)]
    pub optimizer: ServerOptimizer,
    /// Std of central Gaussian noise added to each averaged delta (0 = none).
    #[serde(default)]
    pub central_noise_std: f64,
    /// Secure aggregation (SecAgg+) with distributed DP: the worker decodes only each round's
    /// sum. Absent: plain uploads with local DP.
    #[serde(default)]
    pub secure: Option<SecureConfig>,
}

/// `[federations.secure]`: how secure rounds run. The cohort is `min_clients..=target_clients`:
/// a round is published only with at least `min_clients` surviving clients, and each client adds
/// `1/min_clients` of the noise.
#[derive(Debug, Clone, Copy, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SecureConfig {
    /// Neighbours of each client in the SecAgg+ graph (all when ≥ target_clients − 1).
    #[serde(default = "default_neighbours")]
    pub neighbours: usize,
    /// ε (at `dp.delta`) of the whole run; the Skellam noise is planned for it. Absent: no noise.
    pub target_epsilon: Option<f64>,
    /// Published rounds the ε covers; no secure round opens after them.
    pub planned_rounds: u64,
    /// Seconds each phase (keys, shares, masked inputs, reveals) waits for the clients.
    #[serde(default = "default_phase_secs")]
    pub phase_secs: u64,
}

fn default_neighbours() -> usize {
    32
}
fn default_phase_secs() -> u64 {
    60
}

impl FederationConfig {
    /// The quantisation and noise of this federation's secure rounds.
    pub fn skellam(&self) -> Result<Option<fedsearch_privacy::SkellamParams>> {
        let Some(s) = &self.secure else { return Ok(None) };
        let dim = self.tensor_specs().iter().map(TensorSpec::numel).sum();
        let (max, min) = (self.target_clients as usize, self.min_clients as usize);
        let err = |e: fedsearch_privacy::PrivacyError| WorkerError::Config(format!("federation {:?}: {e}", self.id));
        Ok(Some(match s.target_epsilon {
            Some(eps) => fedsearch_privacy::SkellamParams::for_target(
                eps,
                self.dp.delta,
                s.planned_rounds,
                f64::from(self.dp.clip),
                dim,
                max,
                min,
            )
            .map_err(err)?,
            None => fedsearch_privacy::SkellamParams {
                clip: f64::from(self.dp.clip),
                scale: fedsearch_privacy::scale_for(f64::from(self.dp.clip), max, min, 0.0),
                dim,
                mu: 0.0,
                min_clients: min,
            },
        }))
    }
}

fn default_model_id() -> String {
    "sentence-transformers/all-MiniLM-L6-v2".into()
}

impl FederationConfig {
    /// The tensors this federation aggregates.
    pub fn tensor_specs(&self) -> Vec<TensorSpec> {
        federated_tensor_specs(self.mode, self.dim, self.n_docs)
    }

    /// Effective upload limit in bytes.
    pub fn max_update_bytes(&self) -> u64 {
        self.max_update_bytes.unwrap_or_else(|| {
            let values: u64 = self.tensor_specs().iter().map(|s| s.numel() as u64).sum();
            values * Encoding::F32.elem_size() as u64 + 64 * 1024
        })
    }

    fn check(&self) -> Result<()> {
        let bad = |msg: String| Err(WorkerError::Config(format!("federation {:?}: {msg}", self.id)));
        if self.id.is_empty() || !self.id.chars().all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_') {
            return bad("id must be non-empty and use only [A-Za-z0-9_-]".into());
        }
        if self.dim == 0 || self.dim > 8192 {
            return bad(format!("dim = {} must be in 1..=8192", self.dim));
        }
        if self.mode == FederationMode::Shared && self.n_docs == 0 {
            return bad("shared mode needs n_docs > 0".into());
        }
        if let Some(ids) = &self.doc_ids
            && ids.len() as u64 != self.n_docs as u64
        {
            return bad(format!("doc_ids has {} entries but n_docs = {}", ids.len(), self.n_docs));
        }
        if !(self.dp.clip > 0.0 && self.dp.clip.is_normal()) {
            return bad(format!("dp.clip = {} must be positive", self.dp.clip));
        }
        if !(self.dp.noise_multiplier > 0.0 && self.dp.noise_multiplier.is_finite()) {
            return bad(format!("dp.noise_multiplier = {} must be positive", self.dp.noise_multiplier));
        }
        if !(self.dp.delta > 0.0 && self.dp.delta < 1.0) {
            return bad(format!("dp.delta = {} must be in (0, 1)", self.dp.delta));
        }
        if self.min_clients == 0 || self.min_clients > self.target_clients {
            return bad(format!(
                "need 1 <= min_clients ({}) <= target_clients ({})",
                self.min_clients, self.target_clients
            ));
        }
        if self.round_deadline_s == 0 {
            return bad("round_deadline_s must be > 0".into());
        }
        if !(self.central_noise_std >= 0.0 && self.central_noise_std.is_finite()) {
            return bad(format!("central_noise_std = {} must be >= 0", self.central_noise_std));
        }
        if let Some(s) = &self.secure {
            if self.min_clients < 2 {
                return bad("secure aggregation needs min_clients >= 2: a sum of one is that client's update".into());
            }
            if !(1..=254).contains(&s.neighbours) || s.planned_rounds == 0 || s.phase_secs == 0 {
                return bad("secure: neighbours must be in 1..=254, planned_rounds and phase_secs > 0".into());
            }
            if s.target_epsilon.is_some_and(|e| !(e.is_finite() && e > 0.0)) {
                return bad("secure.target_epsilon must be a positive number".into());
            }
            self.skellam()?;
        }
        self.optimizer.check().map_err(|e| WorkerError::Config(format!("federation {:?}: {e}", self.id)))
    }
}

impl Config {
    /// Reads and checks a TOML config file.
    pub fn load(path: &Path) -> Result<Self> {
        let text = std::fs::read_to_string(path)
            .map_err(|e| WorkerError::Config(format!("cannot read {}: {e}", path.display())))?;
        let cfg: Config = toml::from_str(&text).map_err(|e| WorkerError::Config(format!("{}: {e}", path.display())))?;
        cfg.check()?;
        Ok(cfg)
    }

    /// The demo setup used when no config file is given: federation "demo",
    /// shared mode, d = 384, n_docs = 1000, clip 1, sigma 1, 1..2 clients,
    /// 300 s deadline, FedAvg lr 1.
    pub fn demo() -> Self {
        Self {
            listen: None,
            db: None,
            allowed_origin: None,
            max_concurrent_uploads: DEFAULT_MAX_CONCURRENT_UPLOADS,
            upload_body_secs: default_upload_body_secs(),
            request_secs: default_request_secs(),
            tick_ms: default_tick(),
            federations: vec![FederationConfig {
                id: "demo".into(),
                model_id: default_model_id(),
                model_sha256: None,
                model_url: None,
                mode: FederationMode::Shared,
                dim: 384,
                n_docs: DEMO_N_DOCS,
                doc_ids: None,
                dp: DpConfig { clip: 1.0, noise_multiplier: 1.0, delta: 1e-5 },
                min_clients: 1,
                target_clients: 2,
                round_deadline_s: 300,
                max_update_bytes: None,
                optimizer: ServerOptimizer::FedAvg { lr: 1.0 },
                central_noise_std: 0.0,
                secure: None,
            }],
        }
    }

    pub fn check(&self) -> Result<()> {
        if self.federations.is_empty() {
            return Err(WorkerError::Config("no [[federations]] configured".into()));
        }
        if self.upload_body_secs == 0 || self.request_secs == 0 {
            return Err(WorkerError::Config("upload_body_secs and request_secs must be > 0".into()));
        }
        if self.max_concurrent_uploads == 0 {
            return Err(WorkerError::Config("max_concurrent_uploads must be > 0".into()));
        }
        for (i, f) in self.federations.iter().enumerate() {
            f.check()?;
            if self.federations[..i].iter().any(|g| g.id == f.id) {
                return Err(WorkerError::Config(format!("federation id {:?} appears twice", f.id)));
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn example_and_demo_configs_are_valid() {
        let cfg: Config = toml::from_str(include_str!("../config.example.toml")).expect("example parses");
        cfg.check().expect("example is valid");
        assert_eq!(cfg.federations[0].dim, 384);
        Config::demo().check().expect("demo is valid");
        // default upload limit fits a full f32 update
        let f = &Config::demo().federations[0];
        assert!(f.max_update_bytes() > (384 * 384 + 384 + 384 * 1000 + 1000) * 4);
    }

    #[test]
    fn bad_configs_are_rejected_with_a_reason() {
        let mut cfg = Config::demo();
        cfg.federations[0].min_clients = 5;
        cfg.federations[0].target_clients = 2;
        let e = cfg.check().unwrap_err().to_string();
        assert!(e.contains("min_clients"), "{e}");
        let mut cfg = Config::demo();
        cfg.federations.push(cfg.federations[0].clone());
        assert!(cfg.check().unwrap_err().to_string().contains("twice"));
        let mut cfg = Config::demo();
        cfg.federations[0].doc_ids = Some(vec!["x".into()]);
        assert!(cfg.check().unwrap_err().to_string().contains("doc_ids"));
    }

    #[test]
    fn secure_federations_plan_their_noise_and_refuse_a_cohort_of_one() {
        let secure = SecureConfig { neighbours: 32, target_epsilon: Some(8.0), planned_rounds: 10, phase_secs: 60 };
        let mut cfg = Config::demo();
        cfg.federations[0].secure = Some(secure);
        // The demo's min_clients = 1: a sum of one client is that client's update.
        assert!(cfg.check().unwrap_err().to_string().contains("min_clients >= 2"));
        cfg.federations[0].min_clients = 2;
        cfg.check().unwrap();
        let p = cfg.federations[0].skellam().unwrap().unwrap();
        assert!(p.mu > 0.0 && p.epsilon(10, 1e-5).unwrap() <= 8.0 + 1e-9);
        cfg.federations[0].secure = Some(SecureConfig { neighbours: 0, ..secure });
        assert!(cfg.check().unwrap_err().to_string().contains("neighbours"));
        cfg.federations[0].secure = Some(SecureConfig { target_epsilon: None, ..secure });
        assert_eq!(cfg.federations[0].skellam().unwrap().unwrap().mu, 0.0, "no target: no noise");
    }
}
