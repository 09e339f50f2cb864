//! Secure rounds against the real binary: clients run SecAgg+ over the HTTP API with the protocol
//! crate. The worker publishes base + the mean of the survivors' clipped deltas, though it never
//! holds one of them unmasked; a client that drops after sending its shares has its masks removed;
//! a SIGKILL in each phase loses no accepted message; a round with too few survivors is not
//! published; out-of-place reveals and plain uploads are refused; a client that sends its keys
//! again while the keys phase is open (a retry) replaces its earlier keys, also across a SIGKILL,
//! and is refused once the roster is out.

mod common;
use common::*;
use fedsearch_protocol::secagg::*;
use fedsearch_protocol::*;
use std::time::{Duration, Instant};

const FED: &str = "sec";

fn secure_toml(min: u64, target: u64, phase_secs: u64, epsilon: Option<f64>) -> String {
    let eps = epsilon.map_or(String::new(), |e| format!("target_epsilon = {e}\n"));
    format!(
        "{}[federations.secure]\nneighbours = 4\nplanned_rounds = 3\nphase_secs = {phase_secs}\n{eps}",
        federation_toml(FED, "shared", min, target, 300)
    )
}

/// `GET /v1/federations/{FED}`.
async fn federation_info(c: &reqwest::Client, w: &Worker) -> FederationInfo {
    let body = c.get(w.url(&format!("/v1/federations/{FED}"))).send().await.unwrap().bytes().await.unwrap();
    serde_json::from_slice(&body).unwrap()
}

async fn status(c: &reqwest::Client, w: &Worker) -> SecureStatus {
    let r = c.get(w.url(&format!("/v1/federations/{FED}/secure"))).send().await.unwrap();
    assert_eq!(r.status(), 200);
    serde_json::from_slice(&r.bytes().await.unwrap()).unwrap()
}

/// Polls until the open attempt is in `phase` (or the version moved past `version`).
async fn wait_phase(c: &reqwest::Client, w: &Worker, phase: ServerPhase) -> SecureStatus {
    let start = Instant::now();
    loop {
        let s = status(c, w).await;
        if s.phase == Some(phase) {
            return s;
        }
        assert!(start.elapsed() < Duration::from_secs(20), "phase {phase:?} never came: {s:?}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

async fn post_json<T: serde::Serialize>(
    c: &reqwest::Client,
    w: &Worker,
    path: &str,
    s: &SecureStatus,
    cred: &str,
    body: &T,
) -> reqwest::Response {
    let url = w.url(&format!("/v1/federations/{FED}/secure/{path}?round={}&attempt={}", s.round, s.attempt));
    c.post(url)
        .bearer_auth(cred)
        .header("content-type", "application/json")
        .body(serde_json::to_vec(body).unwrap())
        .send()
        .await
        .unwrap()
}

async fn get_json<T: serde::de::DeserializeOwned>(c: &reqwest::Client, w: &Worker, path: &str, cred: &str) -> T {
    let r = c.get(w.url(&format!("/v1/federations/{FED}/secure/{path}"))).bearer_auth(cred).send().await.unwrap();
    assert_eq!(r.status(), 200, "{path}");
    serde_json::from_slice(&r.bytes().await.unwrap()).unwrap()
}

/// One test client: credential, protocol state, its delta.
struct Party {
    cred: String,
    sc: SecAggClient,
    rng: NoiseRng,
    delta: Vec<NamedTensor>,
}

async fn join(
    c: &reqwest::Client,
    w: &Worker,
    token: &str,
    s: &SecureStatus,
    range: std::ops::Range<usize>,
) -> Vec<Party> {
    let mut parties = Vec::new();
    for i in range {
        let e = enroll_ok(c, w, FED, token).await;
        let mut rng = NoiseRng::from_seed([i as u8 + 1; 32]);
        let (mut sc, keys) = SecAggClient::new(0, s.session, 3, &mut rng);
        let r = post_json(c, w, "keys", s, &e.credential, &keys).await;
        assert_eq!(r.status(), 200);
        let joined: SecureJoined = serde_json::from_slice(&r.bytes().await.unwrap()).unwrap();
        assert_eq!(joined.index, i as u32);
        sc.assign_index(joined.index).unwrap();
        let u = make_update(FED, FederationMode::Shared, &e.client_id, s.round, 0, 1, 700 + i as u64);
        parties.push(Party { cred: e.credential, sc, rng, delta: u.tensors });
    }
    parties
}

async fn send_shares(c: &reqwest::Client, w: &Worker, s: &SecureStatus, parties: &mut [Party]) {
    for p in parties.iter_mut() {
        let roster: SecureRoster = get_json(c, w, "roster", &p.cred).await;
        let shares = p.sc.share_keys(&roster.roster, 4, &mut p.rng).unwrap();
        assert_eq!(post_json(c, w, "shares", s, &p.cred, &shares).await.status(), 200);
    }
}

async fn send_masked(c: &reqwest::Client, w: &Worker, s: &SecureStatus, p: &mut Party, params: &SkellamParams) {
    let shares: SecureShares = get_json(c, w, "shares", &p.cred).await;
    let built = build_secure_update(&p.delta, params, params.mu > 0.0, &mut p.rng, &mut p.sc, &shares.shares).unwrap();
    let url = w.url(&format!("/v1/federations/{FED}/secure/masked?round={}&attempt={}", s.round, s.attempt));
    let r = c.post(url).bearer_auth(&p.cred).body(encode_masked_input(&built.masked)).send().await.unwrap();
    assert_eq!(r.status(), 200, "{}", r.text().await.unwrap());
}

/// SIGKILL, then a new worker on the same database and config.
fn restart(mut w: Worker, dir: &std::path::Path) -> Worker {
    let config = w.config.clone();
    w.kill();
    drop(w);
    Worker::start_with(dir, &config)
}

fn clipped(delta: &[NamedTensor], clip: f32) -> Vec<NamedTensor> {
    let norm = delta.iter().flat_map(|t| &t.data).map(|x| f64::from(*x).powi(2)).sum::<f64>().sqrt();
    let f = if norm > f64::from(clip) { f64::from(clip) / norm } else { 1.0 };
    delta
        .iter()
        .map(|t| {
            NamedTensor::new(
                t.name.clone(),
                t.shape.clone(),
                t.data.iter().map(|x| (f64::from(*x) * f) as f32).collect(),
            )
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_secure_round_publishes_the_survivors_mean_and_survives_sigkill() {
    let dir = TempDir::new("secure");
    // Phases wait 5 s: long enough for the test to send between restarts, short for the
    // client that drops.
    let mut w = Worker::start(dir.path(), &secure_toml(3, 4, 5, None));
    let c = client();
    let token = create_token(&w.db, FED, 10);
    let info = federation_info(&c, &w).await;
    let params = info.secure.expect("secure federation").params;
    assert_eq!(params.mu, 0.0);
    let base = get_model(&c, &w, FED).await;

    // Plain uploads are refused.
    let e = enroll_ok(&c, &w, FED, &token).await;
    let u = make_update(FED, FederationMode::Shared, &e.client_id, 1, 0, 1, 1);
    let r = post_update(&c, &w, FED, Some(&e.credential), encode_update(&u, Encoding::F32)).await;
    assert_eq!(r.status(), 409);
    assert_eq!(r.json_value().await["error"], "wrong_aggregation");

    // A SIGKILL in every phase: after half of the keys, half of the shares, two of the three
    // masked inputs and one of the reveals. Nothing accepted is lost, and the round goes on.
    let s = status(&c, &w).await;
    assert_eq!((s.round, s.attempt, s.phase), (1, 0, Some(ServerPhase::Keys)));
    let mut parties = join(&c, &w, &token, &s, 0..2).await;
    w = restart(w, dir.path());
    assert_eq!(status(&c, &w).await.counts, [2, 0, 0, 0], "keys survived the SIGKILL");
    parties.extend(join(&c, &w, &token, &s, 2..4).await);
    let s = wait_phase(&c, &w, ServerPhase::Shares).await;
    send_shares(&c, &w, &s, &mut parties[..2]).await;
    w = restart(w, dir.path());
    assert_eq!(status(&c, &w).await.counts, [4, 2, 0, 0], "shares survived the SIGKILL");
    send_shares(&c, &w, &s, &mut parties[2..]).await;
    let s = wait_phase(&c, &w, ServerPhase::Masked).await;
    // Party 3 drops after sending its shares; two of the others send, then the worker is killed.
    for p in parties.iter_mut().take(2) {
        send_masked(&c, &w, &s, p, &params).await;
    }
    w = restart(w, dir.path());
    let after = status(&c, &w).await;
    assert_eq!((after.round, after.attempt, after.phase), (1, 0, Some(ServerPhase::Masked)));
    assert_eq!(after.counts, [4, 4, 2, 0], "every accepted message survived the SIGKILL");
    send_masked(&c, &w, &s, &mut parties[2], &params).await;
    // A second masked input from the same client is refused.
    let r = c
        .post(w.url(&format!("/v1/federations/{FED}/secure/masked?round=1&attempt=0")))
        .bearer_auth(&parties[2].cred)
        .body(encode_masked_input(&MaskedInput { index: 2, values: vec![0; params.dim] }))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 409);

    // The masked phase closes at its deadline with 3 of 4: party 3's masks must be removed.
    let s = wait_phase(&c, &w, ServerPhase::Unmask).await;
    let survivors: SecureSurvivors = get_json(&c, &w, "survivors", &parties[0].cred).await;
    assert_eq!(survivors.survivors, vec![0, 1, 2]);
    // A reveal of the wrong kind (a self-mask share of the client that dropped) is refused.
    let forged = vec![RevealedShare { owner: 3, kind: ShareKind::SelfMask, share: vec![1; 33] }];
    let r = post_json(&c, &w, "reveals", &s, &parties[0].cred, &forged).await;
    assert_eq!(r.status(), 422, "{}", r.text().await.unwrap());
    for (i, p) in parties.iter_mut().take(3).enumerate() {
        let reveals = p.sc.unmask(&survivors.survivors).unwrap();
        assert_eq!(post_json(&c, &w, "reveals", &s, &p.cred, &reveals).await.status(), 200);
        if i == 0 {
            w = restart(w, dir.path());
            assert_eq!(status(&c, &w).await.counts, [4, 4, 3, 1], "reveals survived the SIGKILL");
        }
    }
    wait_for_version(&c, &w, FED, 1).await;
    let model = get_model(&c, &w, FED).await;
    let survived: Vec<Update> =
        parties[..3].iter().map(|p| Update { tensors: clipped(&p.delta, params.clip as f32), ..u.clone() }).collect();
    let want = expected_model(&base, &survived);
    for (g, t) in model.tensors.iter().zip(&want) {
        for (a, b) in g.data.iter().zip(&t.data) {
            assert!((a - b).abs() < 1e-5, "{}: got {a}, want {b}", g.name);
        }
    }
    let s = status(&c, &w).await;
    assert_eq!((s.round, s.attempt, s.phase), (2, 0, Some(ServerPhase::Keys)));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn too_few_survivors_publish_nothing_and_restart_the_round() {
    let dir = TempDir::new("secure-few");
    let w = Worker::start(dir.path(), &secure_toml(3, 3, 1, Some(8.0)));
    let c = client();
    let token = create_token(&w.db, FED, 10);
    let info = federation_info(&c, &w).await;
    let sec = info.secure.unwrap();
    assert!(sec.params.mu > 0.0 && sec.epsilon.unwrap() <= 8.0 + 1e-9, "{sec:?}");
    let s = status(&c, &w).await;
    let mut parties = join(&c, &w, &token, &s, 0..3).await;
    let s = wait_phase(&c, &w, ServerPhase::Shares).await;
    send_shares(&c, &w, &s, &mut parties).await;
    let s = wait_phase(&c, &w, ServerPhase::Masked).await;
    // Only two of three send their masked input: below min_clients = 3 at the deadline.
    for p in parties.iter_mut().take(2) {
        send_masked(&c, &w, &s, p, &sec.params).await;
    }
    let start = Instant::now();
    let restarted = loop {
        let now = status(&c, &w).await;
        if now.attempt == 1 {
            break now;
        }
        assert!(start.elapsed() < Duration::from_secs(20), "no restart: {now:?}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    assert_eq!((restarted.round, restarted.phase, restarted.counts), (1, Some(ServerPhase::Keys), [0; 4]));
    assert_ne!(restarted.session, s.session, "a new attempt has a new session");
    assert_eq!(round_status(&c, &w, FED).await["current_version"], 0, "nothing published");
    // A message for the old attempt is refused.
    let r = post_json(&c, &w, "reveals", &s, &parties[0].cred, &Vec::<RevealedShare>::new()).await;
    assert_eq!(r.status(), 409);
    let metrics = c.get(w.url("/metrics")).send().await.unwrap().text().await.unwrap();
    assert!(metrics.contains("fedsearch_secure_restarts_total 1"), "{metrics}");
}

/// New key pairs for `p` (a retry), sent with its credential and `claimed_index` in the body;
/// the party keeps the new client state only when the worker accepted them.
async fn resend_keys(
    c: &reqwest::Client,
    w: &Worker,
    s: &SecureStatus,
    p: &mut Party,
    claimed_index: u32,
    seed: u8,
) -> (reqwest::Response, PublicKeys) {
    let mut rng = NoiseRng::from_seed([seed; 32]);
    let (sc, mut keys) = SecAggClient::new(0, s.session, 3, &mut rng);
    keys.index = claimed_index;
    let r = post_json(c, w, "keys", s, &p.cred, &keys).await;
    if r.status().is_success() {
        p.sc = sc;
        p.rng = rng;
    }
    (r, keys)
}

/// The keys rows the worker logged for the open round.
fn logged_keys_rows(w: &Worker) -> i64 {
    let conn = rusqlite::Connection::open(&w.db).unwrap();
    conn.query_row("SELECT COUNT(*) FROM secure_messages WHERE kind = 'keys'", [], |r| r.get(0)).unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn keys_sent_again_in_the_keys_phase_replace_the_earlier_ones() {
    let dir = TempDir::new("secure-rekey");
    // min = target = 3: the keys phase waits (its deadline extended) until a third client comes.
    let mut w = Worker::start(dir.path(), &secure_toml(3, 3, 3, None));
    let c = client();
    let token = create_token(&w.db, FED, 10);
    let info = federation_info(&c, &w).await;
    let params = info.secure.expect("secure federation").params;
    let base = get_model(&c, &w, FED).await;
    let s = status(&c, &w).await;
    assert_eq!((s.round, s.attempt, s.phase), (1, 0, Some(ServerPhase::Keys)));
    let mut parties = join(&c, &w, &token, &s, 0..2).await;
    // Two tabs wait in the keys phase past its deadline (it is extended: too few clients) ...
    let start = Instant::now();
    while status(&c, &w).await.deadline_unix_s == s.deadline_unix_s {
        assert!(start.elapsed() < Duration::from_secs(20), "the keys deadline was never extended");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    // ... then retry in the same attempt with fresh keys: accepted, same index, counted once.
    let mut latest = Vec::new();
    for (i, p) in parties.iter_mut().enumerate() {
        // Party 1 claims party 0's index: the index is the credential's, never the body's.
        let (r, mut keys) = resend_keys(&c, &w, &s, p, 0, 100 + i as u8).await;
        assert_eq!(r.status(), 200);
        let joined: SecureJoined = serde_json::from_slice(&r.bytes().await.unwrap()).unwrap();
        assert_eq!((joined.round, joined.attempt, joined.index), (1, 0, i as u32));
        p.sc.assign_index(joined.index).unwrap();
        keys.index = joined.index;
        latest.push(keys);
    }
    // Party 0 retries once more; its keys row is overwritten, not added to.
    let (r, keys) = resend_keys(&c, &w, &s, &mut parties[0], 0, 102).await;
    assert_eq!(r.status(), 200);
    parties[0].sc.assign_index(0).unwrap();
    latest[0] = keys;
    // A retry may not take another client's key (party 1 keeps its own).
    let theirs = PublicKeys { index: 1, ..latest[0] };
    let r = post_json(&c, &w, "keys", &s, &parties[1].cred, &theirs).await;
    assert_eq!(r.status(), 422);
    assert_eq!(r.json_value().await["error"], "secure_refused");
    assert_eq!(status(&c, &w).await.counts, [2, 0, 0, 0], "each client counted once");
    assert_eq!(logged_keys_rows(&w), 2, "one keys row per client");

    // A SIGKILL before the keys phase closes: the latest keys are the ones replayed.
    w = restart(w, dir.path());
    let after = status(&c, &w).await;
    assert_eq!((after.round, after.attempt, after.phase, after.counts), (1, 0, Some(ServerPhase::Keys), [2, 0, 0, 0]));
    parties.extend(join(&c, &w, &token, &s, 2..3).await);
    let s = wait_phase(&c, &w, ServerPhase::Shares).await;
    let roster: SecureRoster = get_json(&c, &w, "roster", &parties[0].cred).await;
    assert_eq!(roster.roster.len(), 3);
    assert_eq!(roster.roster[..2], latest[..], "the latest keys survived the SIGKILL");

    // Once the roster is out, keys sent again are refused as before.
    let (r, _) = resend_keys(&c, &w, &s, &mut parties[0], 0, 103).await;
    assert_eq!(r.status(), 409);
    assert_eq!(r.json_value().await["error"], "secure_phase");

    // The round completes with the replaced keys: every client's own keys are in the roster
    // (share_keys checks), and the masks cancel.
    send_shares(&c, &w, &s, &mut parties).await;
    let s = wait_phase(&c, &w, ServerPhase::Masked).await;
    for p in parties.iter_mut() {
        send_masked(&c, &w, &s, p, &params).await;
    }
    let s = wait_phase(&c, &w, ServerPhase::Unmask).await;
    let survivors: SecureSurvivors = get_json(&c, &w, "survivors", &parties[0].cred).await;
    assert_eq!(survivors.survivors, vec![0, 1, 2]);
    for p in parties.iter_mut() {
        let reveals = p.sc.unmask(&survivors.survivors).unwrap();
        assert_eq!(post_json(&c, &w, "reveals", &s, &p.cred, &reveals).await.status(), 200);
    }
    wait_for_version(&c, &w, FED, 1).await;
    let model = get_model(&c, &w, FED).await;
    let u = make_update(FED, FederationMode::Shared, "x", 1, 0, 1, 1);
    let all: Vec<Update> =
        parties.iter().map(|p| Update { tensors: clipped(&p.delta, params.clip as f32), ..u.clone() }).collect();
    let want = expected_model(&base, &all);
    for (g, t) in model.tensors.iter().zip(&want) {
        for (a, b) in g.data.iter().zip(&t.data) {
            assert!((a - b).abs() < 1e-5, "{}: got {a}, want {b}", g.name);
        }
    }
}
