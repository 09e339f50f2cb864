//! Every kind of bad request gets its HTTP status and a JSON error body
//! naming the problem, and the worker keeps serving afterwards.

mod common;
use common::*;
use fedsearch_protocol::*;

async fn expect_error(r: reqwest::Response, status: u16, code: &str) -> serde_json::Value {
    assert_eq!(r.status().as_u16(), status, "expected {status} {code}");
    let v = r.json_value().await;
    assert_eq!(v["error"], code, "{v}");
    assert!(v["message"].as_str().is_some_and(|m| !m.is_empty()), "{v}");
    v
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_inputs_get_status_and_json_error() {
    let dir = TempDir::new("bad");
    let cfg =
        format!("{}{}", federation_toml("fed", "shared", 5, 5, 300), federation_toml("pers", "personal", 5, 5, 300));
    let w = Worker::start(dir.path(), &cfg);
    let c = client();
    let token = create_token(&w.db, "fed", 2);
    let ptoken = create_token(&w.db, "pers", 1);
    let e = enroll_ok(&c, &w, "fed", &token).await;
    let other = enroll_ok(&c, &w, "fed", &token).await;
    let pe = enroll_ok(&c, &w, "pers", &ptoken).await;
    let good = make_update("fed", FederationMode::Shared, &e.client_id, 1, 0, 10, 1);
    let cred = Some(e.credential.as_str());

    // 404 unknown federation (upload and info)
    let r = post_update(&c, &w, "nope", cred, encode_update(&good, Encoding::F32)).await;
    expect_error(r, 404, "unknown_federation").await;
    let r = c.get(w.url("/v1/federations/nope")).send().await.unwrap();
    expect_error(r, 404, "unknown_federation").await;

    // 401 missing / invalid credential
    let r = post_update(&c, &w, "fed", None, encode_update(&good, Encoding::F32)).await;
    expect_error(r, 401, "missing_credential").await;
    let r = post_update(&c, &w, "fed", Some("fsc_not-a-real-credential"), encode_update(&good, Encoding::F32)).await;
    expect_error(r, 401, "invalid_credential").await;
    // a credential of another federation is not valid here
    let r = post_update(&c, &w, "fed", Some(&pe.credential), encode_update(&good, Encoding::F32)).await;
    expect_error(r, 401, "invalid_credential").await;

    // 403 credential of another client
    let r = post_update(&c, &w, "fed", Some(&other.credential), encode_update(&good, Encoding::F32)).await;
    expect_error(r, 403, "client_id_mismatch").await;

    // 413 body over max_update_bytes (cut off from Content-Length)
    let info = c.get(w.url("/v1/federations/fed")).send().await.unwrap().json_value().await;
    let limit = info["max_update_bytes"].as_u64().unwrap();
    let r = post_update(&c, &w, "fed", cred, vec![0u8; limit as usize + 1]).await;
    let v = expect_error(r, 413, "body_too_large").await;
    assert_eq!(v["limit_bytes"], limit);

    // 400 undecodable: garbage, truncated, flipped byte
    let r = post_update(&c, &w, "fed", cred, b"hello".to_vec()).await;
    expect_error(r, 400, "undecodable").await;
    let bytes = encode_update(&good, Encoding::F32);
    let r = post_update(&c, &w, "fed", cred, bytes[..bytes.len() / 2].to_vec()).await;
    expect_error(r, 400, "undecodable").await;
    let mut flipped = bytes.clone();
    flipped[40] ^= 0x10;
    let r = post_update(&c, &w, "fed", cred, flipped).await;
    expect_error(r, 400, "undecodable").await;

    // 409 wrong round
    let mut u = good.clone();
    u.round = 7;
    let r = post_update(&c, &w, "fed", cred, encode_update(&u, Encoding::F32)).await;
    let v = expect_error(r, 409, "wrong_round").await;
    assert_eq!(v["current_round"], 1);

    // 422 validation failures
    let mut u = good.clone();
    let t = u.tensors.iter_mut().find(|t| t.name == HEAD_WEIGHT).unwrap();
    t.shape = vec![D, N_DOCS - 1];
    t.data.truncate((D * (N_DOCS - 1)) as usize);
    let r = post_update(&c, &w, "fed", cred, encode_update(&u, Encoding::F32)).await;
    let v = expect_error(r, 422, "shape_mismatch").await;
    assert_eq!(v["tensor"], "head.weight");
    assert_eq!(v["expected"], serde_json::json!([D, N_DOCS]));
    assert_eq!(v["got"], serde_json::json!([D, N_DOCS - 1]));

    let mut u = good.clone();
    u.tensors.retain(|t| t.name != ADAPTER_BIAS);
    let r = post_update(&c, &w, "fed", cred, encode_update(&u, Encoding::F32)).await;
    expect_error(r, 422, "missing_tensor").await;

    let mut u = good.clone();
    u.tensors.push(NamedTensor::zeros("extra.weight", vec![2]));
    let r = post_update(&c, &w, "fed", cred, encode_update(&u, Encoding::F32)).await;
    expect_error(r, 422, "unexpected_tensor").await;

    let mut u = good.clone();
    u.base_version = 3;
    let r = post_update(&c, &w, "fed", cred, encode_update(&u, Encoding::F32)).await;
    let v = expect_error(r, 422, "wrong_base_version").await;
    assert_eq!(v["expected"], 0);

    let mut u = good.clone();
    u.tensors[0].data[5] = f32::NAN;
    let r = post_update(&c, &w, "fed", cred, encode_update(&u, Encoding::F32)).await;
    let v = expect_error(r, 422, "non_finite").await;
    assert_eq!(v["tensor"], ADAPTER_WEIGHT);
    assert_eq!(v["index"], 5);

    let mut u = good.clone();
    u.tensors[0].data.iter_mut().for_each(|x| *x = 5.0);
    let r = post_update(&c, &w, "fed", cred, encode_update(&u, Encoding::F32)).await;
    expect_error(r, 422, "norm_too_large").await;

    // The poisoning: no noise, the whole norm (21, within the L2 bound) on one bias.
    let mut u = good.clone();
    let bias = u.tensors.iter_mut().find(|t| t.name == HEAD_BIAS).unwrap();
    bias.data.iter_mut().for_each(|x| *x = 0.0);
    bias.data[2] = 21.0;
    let r = post_update(&c, &w, "fed", cred, encode_update(&u, Encoding::F32)).await;
    let v = expect_error(r, 422, "coordinate_too_large").await;
    assert_eq!(v["tensor"], HEAD_BIAS);
    assert_eq!(v["index"], 2);
    assert!(v["max"].as_f64().unwrap() < 21.0 && v["max"].as_f64().unwrap() > 1.0, "{v}");

    let mut u = good.clone();
    u.dp.noise_multiplier = 0.5;
    let r = post_update(&c, &w, "fed", cred, encode_update(&u, Encoding::F32)).await;
    let v = expect_error(r, 422, "weaker_dp").await;
    assert_eq!(v["field"], "noise_multiplier");

    let mut u = good.clone();
    u.num_examples = 0;
    let r = post_update(&c, &w, "fed", cred, encode_update(&u, Encoding::F32)).await;
    expect_error(r, 422, "zero_examples").await;

    // head tensors in a personal-mode federation
    let mut pu = make_update("pers", FederationMode::Shared, &pe.client_id, 1, 0, 10, 2);
    pu.mode = FederationMode::Personal;
    let r = post_update(&c, &w, "pers", Some(&pe.credential), encode_update(&pu, Encoding::F32)).await;
    let v = expect_error(r, 422, "head_in_personal_mode").await;
    assert!(v["tensor"].as_str().unwrap().starts_with("head."));

    // bad enrolment bodies/tokens
    let r = c.post(w.url("/v1/federations/fed/enroll")).body("not json").send().await.unwrap();
    expect_error(r, 400, "bad_request").await;
    let r = enroll(&c, &w, "fed", "fst_bogus").await;
    expect_error(r, 401, "invalid_token").await;
    let r = c.get(w.url("/v1/federations/fed/model?encoding=f8")).send().await.unwrap();
    expect_error(r, 400, "bad_request").await;

    // still healthy, nothing was counted, and the good update is accepted
    let r = c.get(w.url("/v1/health")).send().await.unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(round_status(&c, &w, "fed").await["updates_received"], 0);
    let r = post_update(&c, &w, "fed", cred, encode_update(&good, Encoding::F32)).await;
    assert_eq!(r.status(), 200);
    let metrics = c.get(w.url("/metrics")).send().await.unwrap().text().await.unwrap();
    for reason in ["undecodable", "shape_mismatch", "body_too_large", "wrong_round", "non_finite"] {
        assert!(
            metrics.contains(&format!("fedsearch_updates_rejected_total{{reason=\"{reason}\"}}")),
            "{reason} missing from metrics:\n{metrics}"
        );
    }
    assert!(metrics.contains("fedsearch_bytes_received_total"));
}

/// A chunked upload (no Content-Length) is cut off with 413 once it passes
/// the limit, and the worker keeps serving.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn chunked_body_over_limit_is_cut_off() {
    use std::io::Write;
    let dir = TempDir::new("chunked");
    let w = Worker::start(dir.path(), &federation_toml("fed", "shared", 5, 5, 300));
    let c = client();
    let token = create_token(&w.db, "fed", 1);
    let e = enroll_ok(&c, &w, "fed", &token).await;
    let limit = max_update_bytes(&c, &w, "fed").await as usize;
    let addr = w.base.trim_start_matches("http://").to_string();
    let cred = e.credential.clone();
    let response = tokio::task::spawn_blocking(move || {
        let mut s = std::net::TcpStream::connect(addr).unwrap();
        s.set_read_timeout(Some(std::time::Duration::from_secs(20))).unwrap();
        let head = format!(
            "POST /v1/federations/fed/updates HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {cred}\r\n\
             Content-Type: application/octet-stream\r\nTransfer-Encoding: chunked\r\n\r\n"
        );
        s.write_all(head.as_bytes()).unwrap();
        let chunk = vec![0u8; 16 * 1024];
        let mut sent = 0;
        // send up to 4× the limit; the server may stop reading early
        while sent < limit * 4 {
            let mut msg = format!("{:x}\r\n", chunk.len()).into_bytes();
            msg.extend_from_slice(&chunk);
            msg.extend_from_slice(b"\r\n");
            if s.write_all(&msg).is_err() {
                break;
            }
            sent += chunk.len();
        }
        let _ = s.write_all(b"0\r\n\r\n");
        read_json_answer(&mut s)
    })
    .await
    .unwrap();
    assert!(response.starts_with("HTTP/1.1 413"), "{response}");
    assert!(response.contains("\"error\":\"body_too_large\""), "{response}");
    assert_eq!(c.get(w.url("/v1/health")).send().await.unwrap().status(), 200);
}

/// axum's own rejections (body over the JSON limit, unknown route, wrong method) are the
/// documented JSON too, with their status kept.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn framework_rejections_are_json() {
    let dir = TempDir::new("rejections");
    let w = Worker::start(dir.path(), &federation_toml("fed", "shared", 1, 2, 300));
    let c = client();
    let big = format!("{{\"token\": \"{}\"}}", "x".repeat(20 * 1024));
    let r = c
        .post(w.url("/v1/federations/fed/enroll"))
        .header("content-type", "application/json")
        .body(big)
        .send()
        .await
        .unwrap();
    expect_error(r, 413, "body_too_large").await;
    let r = c.get(w.url("/v1/nothing-here")).send().await.unwrap();
    expect_error(r, 404, "not_found").await;
    let r = c.get(w.url("/v1/federations/fed/enroll")).send().await.unwrap();
    let allow = r.headers().get("allow").cloned();
    expect_error(r, 405, "method_not_allowed").await;
    assert!(allow.is_some(), "the Allow header is kept");
    // The worker still answers.
    let r = c.get(w.url("/v1/health")).send().await.unwrap();
    assert_eq!(r.status(), 200);
}

/// Reads a raw HTTP answer whose body is JSON, up to its closing brace or the socket's end
/// (or its read timeout).
fn read_json_answer(s: &mut std::net::TcpStream) -> String {
    use std::io::Read;
    let mut out = Vec::new();
    let mut buf = [0u8; 4096];
    while let Ok(n) = s.read(&mut buf) {
        if n == 0 {
            break;
        }
        out.extend_from_slice(&buf[..n]);
        if out.windows(4).any(|w| w == b"\r\n\r\n") && out.ends_with(b"}") {
            break;
        }
    }
    String::from_utf8_lossy(&out).to_string()
}

/// `max_update_bytes` of a federation, from its public info.
async fn max_update_bytes(c: &reqwest::Client, w: &Worker, fed: &str) -> u64 {
    let info = c.get(w.url(&format!("/v1/federations/{fed}"))).send().await.unwrap().json_value().await;
    info["max_update_bytes"].as_u64().unwrap()
}

/// Sends a request head (and `partial` body bytes) without the rest of the body, and returns
/// the raw answer the worker gives (waits at most 20 s).
fn slow_request(addr: String, head: String, partial: usize) -> std::thread::JoinHandle<String> {
    use std::io::Write;
    std::thread::spawn(move || {
        let mut s = std::net::TcpStream::connect(addr).unwrap();
        s.set_read_timeout(Some(std::time::Duration::from_secs(20))).unwrap();
        s.write_all(head.as_bytes()).unwrap();
        s.write_all(&vec![0u8; partial]).unwrap();
        read_json_answer(&mut s)
    })
}

/// Slow bodies cannot hold the upload permits (shared by every federation) forever: with both
/// permits taken by uploads whose bodies never finish, their credentials cannot start another
/// (429), and another federation's upload still completes once their deadline (1 s here)
/// answers them 408 `body_timeout`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn slow_bodies_lose_their_upload_permit_at_the_deadline() {
    let dir = TempDir::new("slow");
    let cfg = format!(
        "max_concurrent_uploads = 2\nupload_body_secs = 1\n{}{}",
        federation_toml("fed", "shared", 5, 5, 300),
        federation_toml("other", "shared", 5, 5, 300)
    );
    let w = Worker::start(dir.path(), &cfg);
    let c = client();
    let token = create_token(&w.db, "fed", 2);
    let other_token = create_token(&w.db, "other", 1);
    let addr = w.base.trim_start_matches("http://").to_string();
    let declared = max_update_bytes(&c, &w, "fed").await;
    let mut slow = Vec::new();
    let mut slow_credentials = Vec::new();
    for _ in 0..2 {
        let e = enroll_ok(&c, &w, "fed", &token).await;
        slow_credentials.push(e.credential.clone());
        let head = format!(
            "POST /v1/federations/fed/updates HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {}\r\n\
             Content-Type: application/octet-stream\r\nContent-Length: {declared}\r\n\r\n",
            e.credential
        );
        slow.push(slow_request(addr.clone(), head, 10));
    }
    tokio::time::sleep(std::time::Duration::from_millis(300)).await;
    // A credential has one upload in flight at a time.
    let r = post_update(&c, &w, "fed", Some(&slow_credentials[0]), vec![0u8; 10]).await;
    expect_error(r, 429, "upload_in_progress").await;
    let o = enroll_ok(&c, &w, "other", &other_token).await;
    let update = make_update("other", FederationMode::Shared, &o.client_id, 1, 0, 10, 7);
    let r = post_update(&c, &w, "other", Some(&o.credential), encode_update(&update, Encoding::F32)).await;
    assert_eq!(r.status(), 200, "{:?}", r.text().await);
    for s in slow {
        let answer = tokio::task::spawn_blocking(move || s.join().unwrap()).await.unwrap();
        assert!(answer.starts_with("HTTP/1.1 408"), "{answer}");
        assert!(answer.contains("\"error\":\"body_timeout\""), "{answer}");
    }
}

/// Any request but an upload is answered within `request_secs` of its head, body included: an
/// enrolment whose body trickles in (a byte every 200 ms, never finishing within 1 s) gets 408
/// `body_timeout` instead of holding its connection for as long as it keeps trickling.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_trickling_json_body_is_cut_off_at_the_request_deadline() {
    use std::io::Write;
    let dir = TempDir::new("trickle");
    let w = Worker::start(dir.path(), &format!("request_secs = 1\n{}", federation_toml("fed", "shared", 5, 5, 300)));
    let addr = w.base.trim_start_matches("http://").to_string();
    let answer = tokio::task::spawn_blocking(move || {
        let mut s = std::net::TcpStream::connect(addr).unwrap();
        s.set_read_timeout(Some(std::time::Duration::from_millis(200))).unwrap();
        s.write_all(b"POST /v1/federations/fed/enroll HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: 100\r\n\r\n").unwrap();
        let started = std::time::Instant::now();
        // One byte at a time (each its own frame), for up to 10 s or until the worker answers.
        while started.elapsed() < std::time::Duration::from_secs(10) {
            if s.write_all(b" ").is_err() {
                break;
            }
            let answer = read_json_answer(&mut s);
            if !answer.is_empty() {
                return answer;
            }
        }
        String::new()
    })
    .await
    .unwrap();
    assert!(answer.starts_with("HTTP/1.1 408"), "{answer:?}");
    assert!(answer.contains("\"error\":\"body_timeout\""), "{answer}");
}
