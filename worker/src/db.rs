//! SQLite persistence: schema, connection setup (WAL, FULL sync, busy
//! timeout) and the statements the engine and the `token` CLI use.
//! Only the engine thread writes while the server runs.

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
