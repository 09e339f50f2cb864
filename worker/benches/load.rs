//! Load benchmark (criterion-free): starts the real `fedsearch-worker` as a
//! child on loopback, enrols M clients and has all M post one full-size
//! shared-mode update concurrently (d = 384 adapter + head for 1,000 docs).
//! Reports updates/s, p50/p99 latency and the worker's peak RSS (VmHWM).
//!
//! Run: `cargo bench -p fedsearch-worker --bench load -- --clients 10,100,500`
//! Options: `--dim N`, `--n-docs N`, `--encoding f32|f16`, `--max-concurrent-uploads N`.

use fedsearch_protocol::{
    DpParams, Encoding, FederationMode, NamedTensor, Update, encode_update, federated_tensor_specs,
};
use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

const BIN: &str = env!("CARGO_BIN_EXE_fedsearch-worker");

struct Opts {
    clients: Vec<usize>,
    dim: u32,
    n_docs: u32,
    encoding: Encoding,
    max_uploads: usize,
}

fn parse_args() -> Result<Opts, String> {
    let mut o = Opts { clients: vec![10, 100, 500], dim: 384, n_docs: 1000, encoding: Encoding::F32, max_uploads: 32 };
    let mut args = std::env::args().skip(1);
    while let Some(a) = args.next() {
        let mut val = |name: &str| args.next().ok_or(format!("{name} needs a value"));
        match a.as_str() {
            "--clients" => {
                o.clients = val("--clients")?
                    .split(',')
                    .map(|s| s.trim().parse().map_err(|_| format!("bad client count {s:?}")))
                    .collect::<Result<_, _>>()?;
                if o.clients.iter().any(|&m| m == 0 || m > 5000) {
                    return Err("client counts must be in 1..=5000".into());
                }
            }
            "--dim" => o.dim = val("--dim")?.parse().map_err(|_| "bad --dim")?,
            "--n-docs" => o.n_docs = val("--n-docs")?.parse().map_err(|_| "bad --n-docs")?,
            "--max-concurrent-uploads" => {
                o.max_uploads = val("--max-concurrent-uploads")?.parse().map_err(|_| "bad value")?
            }
            "--encoding" => {
                o.encoding = match val("--encoding")?.as_str() {
                    "f32" => Encoding::F32,
                    "f16" => Encoding::F16,
                    e => return Err(format!("unknown encoding {e}")),
                }
            }
            "--bench" => {} // appended by `cargo bench`
            other => return Err(format!("unknown argument {other}")),
        }
    }
    Ok(o)
}

struct Worker {
    child: Child,
    base: String,
}

impl Drop for Worker {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn start_worker(dir: &Path, o: &Opts, m: usize) -> Worker {
    let config = format!(
        r#"
max_concurrent_uploads = {max}
[[federations]]
id = "bench"
mode = "shared"
dim = {dim}
n_docs = {n_docs}
min_clients = 1
target_clients = {m}
round_deadline_s = 3600
[federations.dp]
clip = 1.0
noise_multiplier = 1.0
"#,
        max = o.max_uploads,
        dim = o.dim,
        n_docs = o.n_docs,
    );
    let cfg_path = dir.join("bench.toml");
    std::fs::write(&cfg_path, config).expect("write config");
    let log = std::fs::File::create(dir.join("worker.log")).expect("log");
    let mut child = Command::new(BIN)
        .args(["--listen", "127.0.0.1:0", "--db"])
        .arg(dir.join("bench.db"))
        .arg("--config")
        .arg(&cfg_path)
        .env("RUST_LOG", "warn")
        .stdout(Stdio::piped())
        .stderr(log)
        .spawn()
        .expect("spawn worker");
    let mut line = String::new();
    BufReader::new(child.stdout.take().expect("stdout")).read_line(&mut line).expect("read addr");
    let addr = line.trim().strip_prefix("listening on ").expect("listening line").to_string();
    Worker { child, base: format!("http://{addr}") }
}

fn proc_status_kb(pid: u32, field: &str) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with(field))
                .and_then(|l| l.split_whitespace().nth(1))
                .and_then(|v| v.parse().ok())
        })
        .unwrap_or(0)
}

fn token(db: &Path, uses: usize) -> String {
    let out = Command::new(BIN)
        .args(["token", "create", "--db"])
        .arg(db)
        .args(["--federation", "bench", "--uses", &uses.to_string()])
        .output()
        .expect("token create");
    assert!(out.status.success());
    String::from_utf8_lossy(&out.stdout).trim().to_string()
}

/// Deterministic small deltas (norm well inside the plausible bound).
fn tensors(dim: u32, n_docs: u32, seed: u64) -> Vec<NamedTensor> {
    let mut s = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
    federated_tensor_specs(FederationMode::Shared, dim, n_docs)
        .into_iter()
        .map(|spec| {
            let n = spec.numel();
            let data = (0..n)
                .map(|_| {
                    s ^= s << 13;
                    s ^= s >> 7;
                    s ^= s << 17;
                    ((s >> 40) as f32 / (1u64 << 24) as f32 - 0.5) * 2e-3
                })
                .collect();
            NamedTensor::new(spec.name, spec.shape, data)
        })
        .collect()
}

struct Row {
    m: usize,
    ok: usize,
    body_mb: f64,
    secs: f64,
    p50: Duration,
    p99: Duration,
    publish: Duration,
    rss_idle_mb: f64,
    rss_peak_mb: f64,
}

async fn run_one(o: &Opts, m: usize) -> Row {
    let dir = std::env::temp_dir().join(format!("fedsearch-bench-{}-{m}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).expect("bench dir");
    let worker = start_worker(&dir, o, m);
    let pid = worker.child.id();
    let client = reqwest::Client::builder()
        .no_proxy()
        .pool_max_idle_per_host(m)
        .timeout(Duration::from_secs(600))
        .build()
        .expect("client");
    let tok = token(&dir.join("bench.db"), m);

    // enrol all clients first (not timed)
    let mut creds = Vec::with_capacity(m);
    for _ in 0..m {
        let r = client
            .post(format!("{}/v1/federations/bench/enroll", worker.base))
            .body(format!("{{\"token\":\"{tok}\"}}"))
            .send()
            .await
            .expect("enroll");
        let v: serde_json::Value = serde_json::from_slice(&r.bytes().await.expect("body")).expect("json");
        creds.push((
            v["client_id"].as_str().expect("client_id").to_string(),
            v["credential"].as_str().expect("credential").to_string(),
        ));
    }
    let rss_idle = proc_status_kb(pid, "VmRSS:");
    let base_tensors = Arc::new(tensors(o.dim, o.n_docs, 7));
    let body_len = encode_update(
        &Update {
            federation_id: "bench".into(),
            round: 1,
            client_id: creds[0].0.clone(),
            base_version: 0,
            num_examples: 1,
            mode: FederationMode::Shared,
            dp: DpParams { clip: 1.0, noise_multiplier: 1.0, delta: 1e-5, epsilon_spent: 0.1 },
            tensors: Vec::new(),
        },
        o.encoding,
    )
    .len()
        + base_tensors.iter().map(|t| t.data.len() * o.encoding.elem_size() + 32).sum::<usize>();

    // Every client encodes its own body, then all start together.
    let barrier = Arc::new(tokio::sync::Barrier::new(m + 1));
    let url = format!("{}/v1/federations/bench/updates", worker.base);
    let mut tasks = Vec::with_capacity(m);
    for (i, (client_id, cred)) in creds.into_iter().enumerate() {
        let (client, url, barrier, tensors, enc) =
            (client.clone(), url.clone(), barrier.clone(), base_tensors.clone(), o.encoding);
        tasks.push(tokio::spawn(async move {
            let u = Update {
                federation_id: "bench".into(),
                round: 1,
                client_id,
                base_version: 0,
                num_examples: 1 + (i as u64 % 50),
                mode: FederationMode::Shared,
                dp: DpParams { clip: 1.0, noise_multiplier: 1.0, delta: 1e-5, epsilon_spent: 0.1 },
                tensors: (*tensors).clone(),
            };
            let body = encode_update(&u, enc);
            drop(u);
            barrier.wait().await;
            let t0 = Instant::now();
            let r = client.post(&url).bearer_auth(cred).body(body).send().await;
            let ok = match r {
                Ok(r) => {
                    let s = r.status();
                    let _ = r.bytes().await;
                    s.is_success()
                }
                Err(_) => false,
            };
            (t0.elapsed(), ok)
        }));
    }
    barrier.wait().await;
    let start = Instant::now();
    let mut lat = Vec::with_capacity(m);
    let mut ok = 0;
    for t in tasks {
        if let Ok((d, good)) = t.await {
            lat.push(d);
            ok += usize::from(good);
        }
    }
    let secs = start.elapsed().as_secs_f64();
    // wait for the round (target = M) to be published
    let t_pub = Instant::now();
    let deadline = Instant::now() + Duration::from_secs(120);
    while Instant::now() < deadline {
        let r = client.get(format!("{}/v1/federations/bench/round", worker.base)).send().await;
        if let Ok(r) = r
            && let Ok(v) = serde_json::from_slice::<serde_json::Value>(&r.bytes().await.unwrap_or_default())
            && v["current_version"].as_u64() >= Some(1)
        {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let publish = t_pub.elapsed();
    let peak = proc_status_kb(pid, "VmHWM:");
    drop(worker);
    let _ = std::fs::remove_dir_all(&dir);
    lat.sort();
    let pct = |p: f64| lat.get(((lat.len() as f64 - 1.0) * p).round() as usize).copied().unwrap_or_default();
    Row {
        m,
        ok,
        body_mb: body_len as f64 / 1e6,
        secs,
        p50: pct(0.50),
        p99: pct(0.99),
        publish,
        rss_idle_mb: rss_idle as f64 / 1024.0,
        rss_peak_mb: peak as f64 / 1024.0,
    }
}

#[tokio::main]
async fn main() {
    let o = match parse_args() {
        Ok(o) => o,
        Err(e) => {
            eprintln!("error: {e}");
            std::process::exit(2);
        }
    };
    println!(
        "d = {}, n_docs = {}, encoding = {:?}, max_concurrent_uploads = {}",
        o.dim, o.n_docs, o.encoding, o.max_uploads
    );
    println!(
        "| clients M | accepted | body MB | wall s | updates/s | p50 ms | p99 ms | publish ms | worker RSS idle MB | worker peak RSS (VmHWM) MB |"
    );
    println!("|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|");
    for &m in &o.clients {
        let r = run_one(&o, m).await;
        println!(
            "| {} | {} | {:.2} | {:.2} | {:.1} | {:.0} | {:.0} | {:.0} | {:.1} | {:.1} |",
            r.m,
            r.ok,
            r.body_mb,
            r.secs,
            r.ok as f64 / r.secs,
            r.p50.as_secs_f64() * 1e3,
            r.p99.as_secs_f64() * 1e3,
            r.publish.as_secs_f64() * 1e3,
            r.rss_idle_mb,
            r.rss_peak_mb
        );
    }
}
