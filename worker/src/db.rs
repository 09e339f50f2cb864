//! SQLite persistence: schema, connection setup (WAL, FULL sync, busy
//! timeout) and every statement the engine and the `token` CLI run — the
//! engine (engine.rs) keeps the round state machine and calls these; each
//! multi-row change is one transaction here. Only the engine thread writes
//! while the server runs.

use crate::error::{Result, WorkerError};
use rusqlite::{Connection, OptionalExtension, params};
use sha2::{Digest, Sha256};
use std::path::Path;
use std::time::{SystemTime, UNIX_EPOCH};

const SCHEMA: &str = r#"
CREATE TABLE IF NOT EXISTS federations (
    id TEXT PRIMARY KEY,
    mode TEXT NOT NULL,
    dim INTEGER NOT NULL,
    n_docs INTEGER NOT NULL,
    created_at INTEGER NOT NULL
);
CREATE TABLE IF NOT EXISTS rounds (
    federation_id TEXT NOT NULL,
    round INTEGER NOT NULL,
    state TEXT NOT NULL,
    base_version INTEGER NOT NULL,
    opened_at INTEGER NOT NULL,
    deadline INTEGER NOT NULL,
    closed_at INTEGER,
    num_updates INTEGER NOT NULL DEFAULT 0,
    PRIMARY KEY (federation_id, round)
);
CREATE TABLE IF NOT EXISTS clients (
    client_id TEXT PRIMARY KEY,
    federation_id TEXT NOT NULL,
    credential_sha256 BLOB NOT NULL UNIQUE,
    enrolled_at INTEGER NOT NULL
);
CREATE TABLE IF NOT EXISTS enrolment_tokens (
    token_sha256 BLOB PRIMARY KEY,
    federation_id TEXT NOT NULL,
    uses_left INTEGER NOT NULL,
    created_at INTEGER NOT NULL
);
-- Running aggregate of the open round (StreamingFedAvg::to_bytes).
CREATE TABLE IF NOT EXISTS round_aggregates (
    federation_id TEXT NOT NULL,
    round INTEGER NOT NULL,
    num_updates INTEGER NOT NULL,
    state BLOB NOT NULL,
    updated_at INTEGER NOT NULL,
    PRIMARY KEY (federation_id, round)
);
-- One row per accepted (client, round): makes re-sends idempotent.
CREATE TABLE IF NOT EXISTS contributions (
    federation_id TEXT NOT NULL,
    round INTEGER NOT NULL,
    client_id TEXT NOT NULL,
    num_examples INTEGER NOT NULL,
    epsilon_spent REAL NOT NULL,
    received_at INTEGER NOT NULL,
    PRIMARY KEY (federation_id, round, client_id)
);
CREATE TABLE IF NOT EXISTS model_versions (
    federation_id TEXT NOT NULL,
    version INTEGER NOT NULL,
    round INTEGER,
    num_updates INTEGER NOT NULL,
    created_at INTEGER NOT NULL,
    model BLOB NOT NULL,
    optimizer_state BLOB NOT NULL,
    PRIMARY KEY (federation_id, version)
);
-- Secure rounds: every accepted message and phase change of the open round, in order
-- (masked inputs are masked: no row holds an individual update). Replayed at start.
CREATE TABLE IF NOT EXISTS secure_messages (
    seq INTEGER PRIMARY KEY AUTOINCREMENT,
    federation_id TEXT NOT NULL,
    round INTEGER NOT NULL,
    attempt INTEGER NOT NULL,
    client_id TEXT,
    kind TEXT NOT NULL,
    body BLOB NOT NULL
);
CREATE INDEX IF NOT EXISTS secure_messages_round ON secure_messages (federation_id, round, seq);
-- At most one keys row per client and attempt: keys sent again while the keys phase is open
-- overwrite it in place (log_secure), keeping its seq, so a replay gives the client the same
-- index and its latest keys.
CREATE UNIQUE INDEX IF NOT EXISTS secure_messages_keys
    ON secure_messages (federation_id, round, attempt, client_id) WHERE kind = 'keys';
PRAGMA user_version = 1;
"#;

/// Opens (creating if needed) the database with durable settings.
pub fn open(path: &Path) -> Result<Connection> {
    if let Some(dir) = path.parent()
        && !dir.as_os_str().is_empty()
        && !dir.exists()
    {
        return Err(WorkerError::Config(format!("database directory {} does not exist", dir.display())));
    }
    let conn = Connection::open(path)
        .map_err(|e| WorkerError::Storage(format!("cannot open database {}: {e}", path.display())))?;
    conn.busy_timeout(std::time::Duration::from_secs(10))?;
    conn.pragma_update(None, "journal_mode", "WAL")?;
    // FULL: a commit is on disk (WAL fsynced) before we answer 2xx.
    conn.pragma_update(None, "synchronous", "FULL")?;
    conn.execute_batch(SCHEMA)?;
    Ok(conn)
}

/// Current Unix time in seconds.
pub fn now_s() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_secs()).unwrap_or(0)
}

/// SHA-256 of a secret (tokens and credentials are stored only hashed; they
/// carry 256 random bits, so a fast hash is sufficient).
pub fn hash_secret(secret: &str) -> [u8; 32] {
    Sha256::digest(secret.as_bytes()).into()
}

/// `n` random bytes from the OS, hex-encoded.
pub fn random_hex(n: usize) -> Result<String> {
    let mut buf = vec![0u8; n];
    getrandom::fill(&mut buf).map_err(|e| WorkerError::Storage(format!("OS randomness: {e}")))?;
    Ok(buf.iter().map(|b| format!("{b:02x}")).collect())
}

/// Creates an enrolment token for `federation` usable `uses` times; returns
/// the plaintext token (shown once, stored hashed).
pub fn create_token(conn: &Connection, federation: &str, uses: u64) -> Result<String> {
    let token = format!("fst_{}", random_hex(32)?);
    conn.execute(
        "INSERT INTO enrolment_tokens (token_sha256, federation_id, uses_left, created_at) VALUES (?1, ?2, ?3, ?4)",
        params![hash_secret(&token).to_vec(), federation, uses as i64, now_s() as i64],
    )?;
    Ok(token)
}

/// Whether the federation has been initialised in this database.
pub fn federation_exists(conn: &Connection, federation: &str) -> Result<bool> {
    Ok(conn.query_row("SELECT 1 FROM federations WHERE id = ?1", params![federation], |_| Ok(())).optional()?.is_some())
}

// ---- The engine's statements (engine.rs keeps the round state machine, this file its SQL). ----

/// Every enrolled client: (credential hash, client id, federation id).
pub fn client_credentials(conn: &Connection) -> Result<Vec<(Vec<u8>, String, String)>> {
    let mut stmt = conn.prepare("SELECT credential_sha256, client_id, federation_id FROM clients")?;
    let rows = stmt.query_map([], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)))?;
    Ok(rows.collect::<std::result::Result<_, _>>()?)
}

/// The federation's stored (mode, dim, n_docs), inserting the configured ones when it is new.
pub fn ensure_federation(
    conn: &Connection,
    id: &str,
    mode: &str,
    dim: u64,
    n_docs: u64,
    now: u64,
) -> Result<(String, i64, i64)> {
    conn.execute(
        "INSERT OR IGNORE INTO federations (id, mode, dim, n_docs, created_at) VALUES (?1, ?2, ?3, ?4, ?5)",
        params![id, mode, dim as i64, n_docs as i64, now as i64],
    )?;
    Ok(conn.query_row("SELECT mode, dim, n_docs FROM federations WHERE id = ?1", params![id], |r| {
        Ok((r.get(0)?, r.get(1)?, r.get(2)?))
    })?)
}

/// The newest model version's (model, optimizer state) blobs.
pub fn latest_model(conn: &Connection, id: &str) -> Result<Option<(Vec<u8>, Vec<u8>)>> {
    Ok(conn
        .query_row(
            "SELECT model, optimizer_state FROM model_versions WHERE federation_id = ?1 ORDER BY version DESC LIMIT 1",
            params![id],
            |r| Ok((r.get(0)?, r.get(1)?)),
        )
        .optional()?)
}

/// Stores version 0 of a federation's model.
pub fn insert_initial_model(conn: &Connection, id: &str, now: u64, model: &[u8], optimizer_state: &[u8]) -> Result<()> {
    conn.execute(
        "INSERT INTO model_versions (federation_id, version, round, num_updates, created_at, model, optimizer_state)
         VALUES (?1, 0, NULL, 0, ?2, ?3, ?4)",
        params![id, now as i64, model, optimizer_state],
    )?;
    Ok(())
}

/// The newest round: (round, state, deadline).
pub fn latest_round(conn: &Connection, id: &str) -> Result<Option<(i64, String, i64)>> {
    Ok(conn
        .query_row(
            "SELECT round, state, deadline FROM rounds WHERE federation_id = ?1 ORDER BY round DESC LIMIT 1",
            params![id],
            |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)),
        )
        .optional()?)
}

/// Opens a collecting round on `base_version`.
pub fn open_round(conn: &Connection, id: &str, round: u64, base_version: u64, now: u64, deadline: u64) -> Result<()> {
    conn.execute(
        "INSERT INTO rounds (federation_id, round, state, base_version, opened_at, deadline)
         VALUES (?1, ?2, 'collecting', ?3, ?4, ?5)",
        params![id, round as i64, base_version as i64, now as i64, deadline as i64],
    )?;
    Ok(())
}

/// A round's persisted running aggregate.
pub fn round_aggregate(conn: &Connection, id: &str, round: u64) -> Result<Option<Vec<u8>>> {
    Ok(conn
        .query_row(
            "SELECT state FROM round_aggregates WHERE federation_id = ?1 AND round = ?2",
            params![id, round as i64],
            |r| r.get(0),
        )
        .optional()?)
}

/// The clients whose updates a round has accepted.
pub fn round_contributors(conn: &Connection, id: &str, round: u64) -> Result<Vec<String>> {
    let mut stmt = conn.prepare("SELECT client_id FROM contributions WHERE federation_id = ?1 AND round = ?2")?;
    let rows = stmt.query_map(params![id, round as i64], |r| r.get::<_, String>(0))?;
    Ok(rows.collect::<std::result::Result<_, _>>()?)
}

/// Accepted updates, in one transaction: the round's aggregate (`count` updates so far), one
/// contribution row per client (its claimed example count, saturated, recorded but never used;
/// its ε or −1), and the round's count.
pub fn record_accepted(
    conn: &mut Connection,
    id: &str,
    round: u64,
    count: u64,
    aggregate: &[u8],
    accepted: &[(&str, u64, f64)],
    now: u64,
) -> Result<()> {
    let tx = conn.transaction()?;
    tx.execute(
        "INSERT INTO round_aggregates (federation_id, round, num_updates, state, updated_at)
         VALUES (?1, ?2, ?3, ?4, ?5)
         ON CONFLICT (federation_id, round) DO UPDATE SET
           num_updates = excluded.num_updates, state = excluded.state, updated_at = excluded.updated_at",
        params![id, round as i64, count as i64, aggregate, now as i64],
    )?;
    {
        let mut stmt = tx.prepare_cached(
            "INSERT INTO contributions (federation_id, round, client_id, num_examples, epsilon_spent, received_at)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
        )?;
        for &(client, n, eps) in accepted {
            let eps = if eps.is_finite() { eps } else { -1.0 };
            let n = i64::try_from(n).unwrap_or(i64::MAX);
            stmt.execute(params![id, round as i64, client, n, eps, now as i64])?;
        }
    }
    tx.execute(
        "UPDATE rounds SET num_updates = ?3 WHERE federation_id = ?1 AND round = ?2",
        params![id, round as i64, count as i64],
    )?;
    tx.commit()?;
    Ok(())
}

/// Moves a collecting round's deadline.
pub fn extend_deadline(conn: &Connection, id: &str, round: u64, deadline: u64) -> Result<()> {
    conn.execute(
        "UPDATE rounds SET deadline = ?3 WHERE federation_id = ?1 AND round = ?2",
        params![id, round as i64, deadline as i64],
    )?;
    Ok(())
}

/// A round's publication.
pub struct Publication<'a> {
    pub federation_id: &'a str,
    pub round: u64,
    pub num_updates: u64,
    pub version: u64,
    pub model: &'a [u8],
    pub optimizer_state: &'a [u8],
    pub now: u64,
    pub next_deadline: u64,
    /// Model versions kept (older ones are deleted).
    pub keep_versions: u64,
}

/// Publishes a round in one transaction: the new model version, the round closed, the next
/// round opened on it, the round's aggregate dropped, versions beyond `keep_versions` pruned.
pub fn publish_round(conn: &mut Connection, p: &Publication<'_>) -> Result<()> {
    let tx = conn.transaction()?;
    tx.execute(
        "INSERT INTO model_versions (federation_id, version, round, num_updates, created_at, model, optimizer_state)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)",
        params![
            p.federation_id,
            p.version as i64,
            p.round as i64,
            p.num_updates as i64,
            p.now as i64,
            p.model,
            p.optimizer_state
        ],
    )?;
    tx.execute(
        "UPDATE rounds SET state = 'published', closed_at = ?3, num_updates = ?4 WHERE federation_id = ?1 AND round = ?2",
        params![p.federation_id, p.round as i64, p.now as i64, p.num_updates as i64],
    )?;
    open_round(&tx, p.federation_id, p.round + 1, p.version, p.now, p.next_deadline)?;
    tx.execute(
        "DELETE FROM round_aggregates WHERE federation_id = ?1 AND round = ?2",
        params![p.federation_id, p.round as i64],
    )?;
    tx.execute(
        "DELETE FROM secure_messages WHERE federation_id = ?1 AND round <= ?2",
        params![p.federation_id, p.round as i64],
    )?;
    tx.execute(
        "DELETE FROM model_versions WHERE federation_id = ?1 AND version + ?3 <= ?2",
        params![p.federation_id, p.version as i64, p.keep_versions as i64],
    )?;
    tx.commit()?;
    Ok(())
}

/// Enrols a client in one transaction: one use of the token, the client's hashed credential.
/// `false` (nothing written) when the token is unknown for this federation or used up.
pub fn enroll_client(
    conn: &mut Connection,
    federation: &str,
    token_hash: &[u8; 32],
    client_id: &str,
    credential_hash: &[u8; 32],
    now: u64,
) -> Result<bool> {
    let tx = conn.transaction()?;
    let uses: Option<i64> = tx
        .query_row(
            "SELECT uses_left FROM enrolment_tokens WHERE token_sha256 = ?1 AND federation_id = ?2",
            params![token_hash.to_vec(), federation],
            |r| r.get(0),
        )
        .optional()?;
    if !matches!(uses, Some(n) if n > 0) {
        return Ok(false);
    }
    tx.execute(
        "UPDATE enrolment_tokens SET uses_left = uses_left - 1 WHERE token_sha256 = ?1",
        params![token_hash.to_vec()],
    )?;
    tx.execute(
        "INSERT INTO clients (client_id, federation_id, credential_sha256, enrolled_at) VALUES (?1, ?2, ?3, ?4)",
        params![client_id, federation, credential_hash.to_vec(), now as i64],
    )?;
    tx.commit()?;
    Ok(true)
}

/// One logged secure-round message or phase change.
pub struct SecureRow {
    pub attempt: u64,
    pub client_id: Option<String>,
    pub kind: String,
    pub body: Vec<u8>,
}

/// Appends one secure-round message (durable before the reply). A client's keys sent again in
/// the same attempt (a retry in the keys phase) overwrite its keys row in place, at its first
/// position in the log.
pub fn log_secure(conn: &Connection, id: &str, round: u64, row: &SecureRow) -> Result<()> {
    conn.execute(
        "INSERT INTO secure_messages (federation_id, round, attempt, client_id, kind, body) VALUES (?1, ?2, ?3, ?4, ?5, ?6)
         ON CONFLICT (federation_id, round, attempt, client_id) WHERE kind = 'keys' DO UPDATE SET body = excluded.body",
        params![id, round as i64, row.attempt as i64, row.client_id, row.kind, row.body],
    )?;
    Ok(())
}

/// The open round's secure messages of its latest attempt, oldest first.
pub fn secure_log(conn: &Connection, id: &str, round: u64) -> Result<Vec<SecureRow>> {
    let mut stmt = conn.prepare(
        "SELECT attempt, client_id, kind, body FROM secure_messages WHERE federation_id = ?1 AND round = ?2
         AND attempt = (SELECT MAX(attempt) FROM secure_messages WHERE federation_id = ?1 AND round = ?2)
         ORDER BY seq",
    )?;
    let rows = stmt.query_map(params![id, round as i64], |r| {
        Ok(SecureRow { attempt: r.get::<_, i64>(0)? as u64, client_id: r.get(1)?, kind: r.get(2)?, body: r.get(3)? })
    })?;
    Ok(rows.collect::<std::result::Result<_, _>>()?)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn row(attempt: u64, client: Option<&str>, kind: &str, body: &[u8]) -> SecureRow {
        SecureRow { attempt, client_id: client.map(String::from), kind: kind.into(), body: body.to_vec() }
    }

    /// A client's keys logged again in the same attempt overwrite its keys row where it was
    /// (replay order, hence its index, is kept; the log does not grow); other kinds, other
    /// clients and other attempts are appended.
    #[test]
    fn keys_logged_again_overwrite_the_clients_keys_row_in_place() {
        let conn = Connection::open_in_memory().unwrap();
        conn.execute_batch(SCHEMA).unwrap();
        let log = |r: SecureRow| log_secure(&conn, "f", 1, &r).unwrap();
        let summary = |rows: Vec<SecureRow>| -> Vec<(u64, Option<String>, String, Vec<u8>)> {
            rows.into_iter().map(|r| (r.attempt, r.client_id, r.kind, r.body)).collect()
        };
        log(row(0, Some("a"), "keys", b"a1"));
        log(row(0, Some("b"), "keys", b"b1"));
        for n in 2..=5u8 {
            log(row(0, Some("a"), "keys", &[b'a', b'0' + n]));
        }
        log(row(0, None, "close", b""));
        log(row(0, Some("a"), "shares", b"s"));
        log(row(0, Some("a"), "shares", b"s"));
        let want = |c: &str, k: &str, b: &[u8]| (0, (!c.is_empty()).then(|| c.to_string()), k.to_string(), b.to_vec());
        assert_eq!(
            summary(secure_log(&conn, "f", 1).unwrap()),
            vec![
                want("a", "keys", b"a5"),
                want("b", "keys", b"b1"),
                want("", "close", b""),
                want("a", "shares", b"s"),
                want("a", "shares", b"s"),
            ]
        );
        // The next attempt (and another round) keep their own keys rows.
        log(row(1, None, "attempt", b""));
        log(row(1, Some("a"), "keys", b"a6"));
        log_secure(&conn, "f", 2, &row(0, Some("a"), "keys", b"r2")).unwrap();
        assert_eq!(
            summary(secure_log(&conn, "f", 1).unwrap()),
            vec![(1, None, "attempt".into(), vec![]), (1, Some("a".into()), "keys".into(), b"a6".to_vec())]
        );
        let keys_rows: i64 =
            conn.query_row("SELECT COUNT(*) FROM secure_messages WHERE kind = 'keys'", [], |r| r.get(0)).unwrap();
        assert_eq!(keys_rows, 4);
    }
}
