//! Durability: SIGKILL the worker after k accepted updates mid-round,
//! restart on the same database, re-send one of the k (must not be counted
//! twice) and the rest → the published version counts each update once.

mod common;
use common::*;
use fedsearch_protocol::*;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigkill_mid_round_loses_nothing_and_counts_once() {
    let dir = TempDir::new("crash");
    let cfg = federation_toml("fed", "shared", 5, 5, 300);
    let mut w = Worker::start(dir.path(), &cfg);
    let c = client();
    let token = create_token(&w.db, "fed", 5);
    let base = get_model(&c, &w, "fed").await;

    let mut clients = Vec::new();
    for _ in 0..5 {
        clients.push(enroll_ok(&c, &w, "fed", &token).await);
    }
    let updates: Vec<Update> = clients
        .iter()
        .enumerate()
        .map(|(i, e)| make_update("fed", FederationMode::Shared, &e.client_id, 1, 0, 5 + 3 * i as u64, 50 + i as u64))
        .collect();

    let k = 3;
    for (e, u) in clients.iter().zip(&updates).take(k) {
        let r = post_update(&c, &w, "fed", Some(&e.credential), encode_update(u, Encoding::F32)).await;
        assert_eq!(r.status(), 200, "accepted before the crash");
    }
    w.kill(); // SIGKILL: no graceful shutdown

    let w = Worker::start_with(dir.path(), &w.config.clone());
    let s = round_status(&c, &w, "fed").await;
    assert_eq!(s["round"], 1);
    assert_eq!(s["updates_received"], k as u64, "all {k} accepted updates survived: {s}");

    // re-send one of the k: idempotent 200, not counted again
    let r = post_update(&c, &w, "fed", Some(&clients[1].credential), encode_update(&updates[1], Encoding::F32)).await;
    assert_eq!(r.status(), 200);
    assert_eq!(r.json_value().await["status"], "duplicate");
    assert_eq!(round_status(&c, &w, "fed").await["updates_received"], k as u64);

    for (e, u) in clients.iter().zip(&updates).skip(k) {
        let r = post_update(&c, &w, "fed", Some(&e.credential), encode_update(u, Encoding::F32)).await;
        assert_eq!(r.status(), 200);
    }
    wait_for_version(&c, &w, "fed", 1).await;
    let m = get_model(&c, &w, "fed").await;
    assert_eq!(m.version, 1);
    assert_tensors_close(&m.tensors, &expected_model(&base, &updates));

    // an update for the closed round is now a conflict
    let r = post_update(&c, &w, "fed", Some(&clients[0].credential), encode_update(&updates[0], Encoding::F32)).await;
    assert_eq!(r.status(), 409);
    let v = r.json_value().await;
    assert_eq!(v["error"], "wrong_round");
    assert_eq!(v["current_round"], 2);
}
