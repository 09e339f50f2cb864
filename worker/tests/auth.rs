//! Enrolment and authentication: token uses, federation scoping,
//! credentials stored only hashed and valid across restarts.

mod common;
use common::*;
use fedsearch_protocol::*;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn enrolment_and_credentials() {
    let dir = TempDir::new("auth");
    let cfg =
        format!("{}{}", federation_toml("alpha", "shared", 5, 5, 300), federation_toml("beta", "shared", 5, 5, 300));
    let mut w = Worker::start(dir.path(), &cfg);
    let c = client();

    // a token for alpha works `uses` times and only for alpha
    let token = create_token(&w.db, "alpha", 2);
    assert!(token.starts_with("fst_") && token.len() > 40);
    let r = enroll(&c, &w, "beta", &token).await;
    assert_eq!(r.status(), 401);
    let a1 = enroll_ok(&c, &w, "alpha", &token).await;
    let a2 = enroll_ok(&c, &w, "alpha", &token).await;
    assert_ne!(a1.client_id, a2.client_id);
    assert_ne!(a1.credential, a2.credential);
    let r = enroll(&c, &w, "alpha", &token).await;
    assert_eq!(r.status(), 401, "token used up");
    assert_eq!(r.json_value().await["error"], "invalid_token");

    // upload authorised by the client's own credential
    let u = make_update("alpha", FederationMode::Shared, &a1.client_id, 1, 0, 3, 9);
    let r = post_update(&c, &w, "alpha", Some(&a1.credential), encode_update(&u, Encoding::F16)).await;
    assert_eq!(r.status(), 200);
    // ... not by another client's, nor on another federation
    let u2 = make_update("alpha", FederationMode::Shared, &a2.client_id, 1, 0, 3, 10);
    let r = post_update(&c, &w, "alpha", Some(&a1.credential), encode_update(&u2, Encoding::F32)).await;
    assert_eq!(r.status(), 403);
    let ub = make_update("beta", FederationMode::Shared, &a1.client_id, 1, 0, 3, 11);
    let r = post_update(&c, &w, "beta", Some(&a1.credential), encode_update(&ub, Encoding::F32)).await;
    assert_eq!(r.status(), 401);

    // secrets are stored only hashed
    w.kill();
    let db_bytes = std::fs::read(&w.db).unwrap();
    let wal = std::fs::read(w.db.with_extension("db-wal")).unwrap_or_default();
    for secret in [&token, &a1.credential, &a2.credential] {
        let s = secret.as_bytes();
        for bytes in [&db_bytes, &wal] {
            assert!(!bytes.windows(s.len()).any(|win| win == s), "plaintext secret in database");
        }
    }

    // credentials survive a restart
    let w = Worker::start_with(dir.path(), &w.config.clone());
    let r = post_update(&c, &w, "alpha", Some(&a2.credential), encode_update(&u2, Encoding::F32)).await;
    assert_eq!(r.status(), 200);
    assert_eq!(round_status(&c, &w, "alpha").await["updates_received"], 2);
}
