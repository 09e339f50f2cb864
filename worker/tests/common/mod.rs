//! Test harness: runs the real `fedsearch-worker` binary on a free loopback
//! port with a temporary database, plus helpers to enrol clients and build
//! updates with tiny dimensions.
#![allow(dead_code)]

use fedsearch_protocol::*;
use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};

pub const BIN: &str = env!("CARGO_BIN_EXE_fedsearch-worker");
pub const D: u32 = 8;
pub const N_DOCS: u32 = 5;

/// A temporary directory removed on drop.
pub struct TempDir(pub PathBuf);

impl TempDir {
    pub fn new(tag: &str) -> Self {
        static N: AtomicU32 = AtomicU32::new(0);
        let nanos =
            std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.subsec_nanos()).unwrap_or(0);
        let p = std::env::temp_dir().join(format!(
            "fedsearch-worker-{tag}-{}-{}-{nanos}",
            std::process::id(),
            N.fetch_add(1, Ordering::Relaxed)
        ));
        std::fs::create_dir_all(&p).expect("create temp dir");
        Self(p)
    }
    pub fn path(&self) -> &Path {
        &self.0
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// One federation section of a test config.
pub fn federation_toml(id: &str, mode: &str, min: u64, target: u64, deadline_s: u64) -> String {
    format!(
        r#"
[[federations]]
id = "{id}"
mode = "{mode}"
dim = {D}
n_docs = {N_DOCS}
doc_ids = ["a", "b", "c", "d", "e"]
model_sha256 = "00"
model_url = "http://example.invalid/model.safetensors"
min_clients = {min}
target_clients = {target}
round_deadline_s = {deadline_s}
[federations.dp]
clip = 1.0
noise_multiplier = 1.0
delta = 1e-5
[federations.optimizer]
kind = "fed_avg"
lr = 1.0
"#
    )
}

/// A running worker process.
pub struct Worker {
    pub child: Child,
    pub base: String,
    pub db: PathBuf,
    pub config: PathBuf,
}

impl Worker {
    /// Writes `config` into `dir` and starts the worker on 127.0.0.1:0.
    pub fn start(dir: &Path, config: &str) -> Self {
        let config_path = dir.join("worker.toml");
        std::fs::write(&config_path, format!("tick_ms = 100\n{config}")).expect("write config");
        Self::start_with(dir, &config_path)
    }

    pub fn start_with(dir: &Path, config_path: &Path) -> Self {
        let db = dir.join("worker.db");
        let log = std::fs::OpenOptions::new().create(true).append(true).open(dir.join("worker.log")).expect("log file");
        let mut child = Command::new(BIN)
            .args(["--listen", "127.0.0.1:0", "--db"])
            .arg(&db)
            .arg("--config")
            .arg(config_path)
            .env("RUST_LOG", "info")
            .stdout(Stdio::piped())
            .stderr(log)
            .spawn()
            .expect("spawn worker");
        let stdout = child.stdout.take().expect("stdout");
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            let mut lines = BufReader::new(stdout).lines();
            if let Some(Ok(line)) = lines.next() {
                let _ = tx.send(line);
            }
            for _ in lines {} // keep draining
        });
        let line = rx.recv_timeout(Duration::from_secs(30)).unwrap_or_else(|_| {
            let log = std::fs::read_to_string(dir.join("worker.log")).unwrap_or_default();
            panic!("worker did not start; log:\n{log}")
        });
        let addr = line.strip_prefix("listening on ").expect("listening line").trim().to_string();
        Self { child, base: format!("http://{addr}"), db, config: config_path.to_path_buf() }
    }

    pub fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base)
    }

    /// The worker's process id.
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// The worker's peak resident set size so far (`VmHWM`), in KiB.
    pub fn peak_rss_kb(&self) -> u64 {
        proc_status_kb(self.pid(), "VmHWM:")
    }

    /// The worker's resident set size now (`VmRSS`), in KiB.
    pub fn rss_kb(&self) -> u64 {
        proc_status_kb(self.pid(), "VmRSS:")
    }

    /// SIGKILL (no graceful shutdown).
    pub fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for Worker {
    fn drop(&mut self) {
        self.kill();
    }
}

/// A `kB` field of `/proc/<pid>/status` (Linux), e.g. `VmHWM:`.
pub fn proc_status_kb(pid: u32, field: &str) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).expect("read /proc/<pid>/status");
    status
        .lines()
        .find_map(|l| l.strip_prefix(field))
        .and_then(|v| v.split_whitespace().next())
        .and_then(|v| v.parse().ok())
        .unwrap_or_else(|| panic!("no {field} in /proc/{pid}/status"))
}

/// `fedsearch-worker token create`.
pub fn create_token(db: &Path, federation: &str, uses: u64) -> String {
    let out = Command::new(BIN)
        .args(["token", "create", "--db"])
        .arg(db)
        .args(["--federation", federation, "--uses", &uses.to_string()])
        .output()
        .expect("run token create");
    assert!(out.status.success(), "token create failed: {}", String::from_utf8_lossy(&out.stderr));
    String::from_utf8(out.stdout).expect("utf8").trim().to_string()
}

pub fn client() -> reqwest::Client {
    reqwest::Client::builder().no_proxy().timeout(Duration::from_secs(30)).build().expect("client")
}

pub struct Enrolled {
    pub client_id: String,
    pub credential: String,
}

pub async fn enroll(c: &reqwest::Client, w: &Worker, fed: &str, token: &str) -> reqwest::Response {
    c.post(w.url(&format!("/v1/federations/{fed}/enroll")))
        .header("content-type", "application/json")
        .body(serde_json::json!({ "token": token }).to_string())
        .send()
        .await
        .expect("enroll request")
}

pub async fn enroll_ok(c: &reqwest::Client, w: &Worker, fed: &str, token: &str) -> Enrolled {
    let r = enroll(c, w, fed, token).await;
    assert_eq!(r.status(), 200);
    let v: serde_json::Value = r.json_value().await;
    Enrolled {
        client_id: v["client_id"].as_str().expect("client_id").into(),
        credential: v["credential"].as_str().expect("credential").into(),
    }
}

pub trait JsonValue {
    fn json_value(self) -> impl std::future::Future<Output = serde_json::Value>;
}

impl JsonValue for reqwest::Response {
    async fn json_value(self) -> serde_json::Value {
        let bytes = self.bytes().await.expect("body");
        serde_json::from_slice(&bytes).unwrap_or_else(|_| panic!("not JSON: {:?}", String::from_utf8_lossy(&bytes)))
    }
}

/// SplitMix64 for reproducible test deltas.
pub struct Rng(pub u64);
impl Rng {
    pub fn unit(&mut self) -> f32 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^= z >> 31;
        ((z >> 40) as f32 / (1u64 << 24) as f32) * 2.0 - 1.0
    }
}

pub fn make_update(
    fed: &str,
    mode: FederationMode,
    client_id: &str,
    round: u64,
    base_version: u64,
    num_examples: u64,
    seed: u64,
) -> Update {
    let mut rng = Rng(seed);
    Update {
        federation_id: fed.into(),
        round,
        client_id: client_id.into(),
        base_version,
        num_examples,
        mode,
        dp: DpParams { clip: 1.0, noise_multiplier: 1.0, delta: 1e-5, epsilon_spent: 0.3 },
        tensors: federated_tensor_specs(mode, D, N_DOCS)
            .into_iter()
            .map(|s| {
                let n = s.numel();
                NamedTensor::new(s.name, s.shape, (0..n).map(|_| rng.unit() * 0.05).collect())
            })
            .collect(),
    }
}

pub async fn post_update(
    c: &reqwest::Client,
    w: &Worker,
    fed: &str,
    credential: Option<&str>,
    body: Vec<u8>,
) -> reqwest::Response {
    let mut req = c
        .post(w.url(&format!("/v1/federations/{fed}/updates")))
        .header("content-type", "application/octet-stream")
        .body(body);
    if let Some(cred) = credential {
        req = req.bearer_auth(cred);
    }
    req.send().await.expect("upload request")
}

pub async fn round_status(c: &reqwest::Client, w: &Worker, fed: &str) -> serde_json::Value {
    c.get(w.url(&format!("/v1/federations/{fed}/round"))).send().await.expect("round").json_value().await
}

pub async fn get_model(c: &reqwest::Client, w: &Worker, fed: &str) -> GlobalModel {
    let r = c.get(w.url(&format!("/v1/federations/{fed}/model"))).send().await.expect("model");
    assert_eq!(r.status(), 200);
    decode_global_model(&r.bytes().await.expect("model body")).expect("decode model")
}

/// Polls until the federation's model version is at least `version`.
pub async fn wait_for_version(c: &reqwest::Client, w: &Worker, fed: &str, version: u64) {
    let start = Instant::now();
    loop {
        let s = round_status(c, w, fed).await;
        if s["current_version"].as_u64() >= Some(version) {
            return;
        }
        assert!(start.elapsed() < Duration::from_secs(20), "version {version} never published: {s}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// `base + Σ n_i Δ_i / Σ n_i`, computed independently of the worker.
/// Base + the uniform mean of the updates' deltas (the worker weighs every update 1).
pub fn expected_model(base: &GlobalModel, updates: &[Update]) -> Vec<NamedTensor> {
    let total = updates.len() as f64;
    base.tensors
        .iter()
        .map(|t| {
            let data = t
                .data
                .iter()
                .enumerate()
                .map(|(j, &x)| {
                    let avg: f64 =
                        updates.iter().map(|u| u.tensor(&t.name).unwrap().data[j] as f64).sum::<f64>() / total;
                    (x as f64 + avg) as f32
                })
                .collect();
            NamedTensor::new(t.name.clone(), t.shape.clone(), data)
        })
        .collect()
}

pub fn assert_tensors_close(got: &[NamedTensor], want: &[NamedTensor]) {
    assert_eq!(got.len(), want.len());
    for (g, w) in got.iter().zip(want) {
        assert_eq!(g.name, w.name);
        assert_eq!(g.shape, w.shape);
        for (i, (a, b)) in g.data.iter().zip(&w.data).enumerate() {
            assert!((a - b).abs() <= 1e-6, "{}[{i}]: got {a}, want {b}", g.name);
        }
    }
}
