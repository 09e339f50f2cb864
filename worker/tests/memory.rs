//! Memory under crafted uploads (issue 15): the real worker's peak RSS (`VmHWM`) while 32
//! enrolled clients post bodies built to make it allocate more than they send stays within 2×
//! its peak while 32 clients post normal full-size updates. Each run is a fresh worker.

mod common;
use common::*;
use fedsearch_protocol::*;
use std::sync::Arc;

/// Uploads at once: the worker's default `max_concurrent_uploads`, so every permit is busy.
const CLIENTS: usize = 32;

/// The demo federation's size (d = 384, 1,000 documents: 532,840 values, 2.13 MB f32 bodies);
/// the round never closes during a run (target 1,000), so only upload handling is measured.
fn config() -> String {
    r#"
[[federations]]
id = "mem"
mode = "shared"
dim = 384
n_docs = 1000
min_clients = 1
target_clients = 1000
round_deadline_s = 3600
[federations.dp]
clip = 1.0
noise_multiplier = 1.0
"#
    .to_string()
}

fn update(client_id: &str, tensors: Vec<NamedTensor>) -> Update {
    Update {
        federation_id: "mem".into(),
        round: 1,
        client_id: client_id.into(),
        base_version: 0,
        num_examples: 10,
        mode: FederationMode::Shared,
        dp: DpParams { clip: 1.0, noise_multiplier: 1.0, delta: 1e-5, epsilon_spent: 0.3 },
        tensors,
    }
}

/// A valid full-size update (small values, within the norm and coordinate bounds).
fn normal(client_id: &str, _limit: usize) -> Vec<u8> {
    let mut rng = Rng(7);
    let tensors = federated_tensor_specs(FederationMode::Shared, 384, 1000)
        .into_iter()
        .map(|s| {
            let n = s.numel();
            NamedTensor::new(s.name, s.shape, (0..n).map(|_| rng.unit() * 0.05).collect())
        })
        .collect();
    encode_update(&update(client_id, tensors), Encoding::F32)
}

/// `n` bytes that every error text escapes (`\u{1}` in a Debug string, `\u0001` in JSON): an
/// answer that quotes them is ~12× their size.
fn escaped(n: usize) -> String {
    "\u{1}".repeat(n)
}

/// A `client_id` that fills the body, for another client: refused 403 `client_id_mismatch`,
/// whose answer names both ids.
fn echoed_client_id(_client_id: &str, limit: usize) -> Vec<u8> {
    let fill = limit - encode_update(&update("", Vec::new()), Encoding::F32).len();
    encode_update(&update(&escaped(fill), Vec::new()), Encoding::F32)
}

/// One empty tensor whose name fills the body: refused 422 `unexpected_tensor`, whose answer
/// names the tensor.
fn echoed_tensor_name(client_id: &str, limit: usize) -> Vec<u8> {
    let empty = |name: String| vec![NamedTensor::new(name, vec![0], Vec::new())];
    let fill = limit - encode_update(&update(client_id, empty(String::new())), Encoding::F32).len();
    encode_update(&update(client_id, empty(escaped(fill))), Encoding::F32)
}

/// The most tensors a message may hold (`MAX_TENSORS`), each of rank 8, in f16: every 2 wire
/// bytes decode to a 4-byte f32, the largest amplification the codec still decodes in full.
fn max_tensors_f16(client_id: &str, limit: usize) -> Vec<u8> {
    let n = MAX_TENSORS as usize;
    let tensors =
        |k: u32| (0..n).map(|i| NamedTensor::zeros(format!("t{i}"), vec![k, 1, 1, 1, 1, 1, 1, 1])).collect::<Vec<_>>();
    let overhead = encode_update(&update(client_id, tensors(0)), Encoding::F16).len();
    let k = ((limit - overhead) / n / Encoding::F16.elem_size()) as u32;
    encode_update(&update(client_id, tensors(k)), Encoding::F16)
}

/// As many 9-byte tensors as fit (~244,000): without the `MAX_TENSORS` cap each would decode to
/// ~100 bytes of structs; with it the body is refused 400 `undecodable` before any is built.
fn tiny_tensors(client_id: &str, limit: usize) -> Vec<u8> {
    let overhead = encode_update(&update(client_id, Vec::new()), Encoding::F32).len();
    let count = (limit - overhead) / 9;
    let tensors = (0..count).map(|_| NamedTensor::new("", Vec::new(), vec![0.0])).collect();
    encode_update(&update(client_id, tensors), Encoding::F32)
}

/// Builds one client's upload body from its `client_id` and the federation's byte limit.
type BodyFn = fn(&str, usize) -> Vec<u8>;

struct Run {
    peak_kb: u64,
    idle_kb: u64,
    body_bytes: usize,
    answers: Vec<(u16, String, usize)>,
}

/// A fresh worker, `CLIENTS` enrolled clients, and all of them posting `body(client_id, limit)`
/// at once (bodies built first, then released together). Returns the worker's peak RSS and each
/// answer's status, error code and length.
async fn run(tag: &str, body: BodyFn) -> Run {
    let dir = TempDir::new(tag);
    let started = std::time::Instant::now();
    let w = Worker::start(dir.path(), &config());
    // Quoting a 2 MB id in full took the worker over a minute for 32 answers (issue 15).
    let c = reqwest::Client::builder().no_proxy().timeout(std::time::Duration::from_secs(60)).build().unwrap();
    let token = create_token(&w.db, "mem", CLIENTS as u64);
    let info = c.get(w.url("/v1/federations/mem")).send().await.unwrap().json_value().await;
    let limit = info["max_update_bytes"].as_u64().unwrap() as usize;
    let mut enrolled = Vec::new();
    for _ in 0..CLIENTS {
        enrolled.push(enroll_ok(&c, &w, "mem", &token).await);
    }
    let bodies: Vec<Vec<u8>> = enrolled.iter().map(|e| body(&e.client_id, limit)).collect();
    let body_bytes = bodies[0].len();
    assert!(body_bytes <= limit && body_bytes > limit * 9 / 10, "{tag}: {body_bytes} bytes, limit {limit}");
    let idle_kb = w.rss_kb();
    let barrier = Arc::new(tokio::sync::Barrier::new(CLIENTS + 1));
    let url = w.url("/v1/federations/mem/updates");
    let mut tasks = Vec::new();
    for (e, body) in enrolled.into_iter().zip(bodies) {
        let (c, url, barrier) = (c.clone(), url.clone(), barrier.clone());
        tasks.push(tokio::spawn(async move {
            barrier.wait().await;
            // No answer within the client's timeout is status 0: the memory check still reports.
            let Ok(r) = c.post(url).bearer_auth(e.credential).body(body).send().await else {
                return (0, String::new(), 0);
            };
            let status = r.status().as_u16();
            let text = r.text().await.unwrap_or_default();
            let code = serde_json::from_str::<serde_json::Value>(&text)
                .ok()
                .and_then(|v| v["error"].as_str().map(str::to_string))
                .unwrap_or_default();
            (status, code, text.len())
        }));
    }
    barrier.wait().await;
    let mut answers = Vec::new();
    for t in tasks {
        answers.push(t.await.unwrap());
    }
    let peak_kb = w.peak_rss_kb();
    eprintln!(
        "{tag}: {body_bytes}-byte bodies, worker RSS idle {:.1} MB, peak {:.1} MB; answers {:?} ({:.1} s)",
        idle_kb as f64 / 1024.0,
        peak_kb as f64 / 1024.0,
        answers.first(),
        started.elapsed().as_secs_f64()
    );
    Run { peak_kb, idle_kb, body_bytes, answers }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn crafted_bodies_stay_within_twice_the_peak_rss_of_normal_updates() {
    let normal = run("normal", normal).await;
    assert!(normal.answers.iter().all(|(s, _, _)| *s == 200), "normal updates refused: {:?}", normal.answers);
    // The normal run really held its bodies: 32 of them in flight is tens of MB over idle.
    assert!(normal.peak_kb > normal.idle_kb + 8 * normal.body_bytes as u64 / 1024, "{} KiB", normal.peak_kb);
    let crafted: [(&str, BodyFn, u16, &str); 4] = [
        ("echoed-client-id", echoed_client_id, 403, "client_id_mismatch"),
        ("echoed-tensor-name", echoed_tensor_name, 422, "unexpected_tensor"),
        ("max-tensors-f16", max_tensors_f16, 422, "unexpected_tensor"),
        ("tiny-tensors", tiny_tensors, 400, "undecodable"),
    ];
    for (tag, body, status, code) in crafted {
        let r = run(tag, body).await;
        assert!(
            r.peak_kb <= 2 * normal.peak_kb,
            "{tag}: peak RSS {} KiB is over twice the {} KiB of normal updates",
            r.peak_kb,
            normal.peak_kb
        );
        for (s, c, len) in &r.answers {
            assert_eq!((*s, c.as_str()), (status, code), "{tag}: the body did not take the path it was built for");
            // An error answer quotes at most a short prefix of what the client sent.
            assert!(*len < 4096, "{tag}: a {len}-byte error answer");
        }
    }
}
