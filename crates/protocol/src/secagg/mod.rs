//! Secure aggregation of integer updates modulo 2^32, so the worker learns only the sum of a
//! round's updates: SecAgg (Bonawitz et al. 2017, "Practical Secure Aggregation for
//! Privacy-Preserving Machine Learning") with the sparse neighbour graph of SecAgg+ (Bell et al.
//! 2020, "Secure Single-Server Aggregation with (Poly)Logarithmic Overhead"). One implementation
//! for the tab, the worker and the simulator; no I/O here, only the messages and the state of
//! each side.
//!
//! A round, for the clients that reach each phase:
//! 1. **keys**: each client sends two X25519 public keys, `c` (to encrypt shares) and `s` (to
//!    agree on pairwise masks) — [`PublicKeys`].
//! 2. **shares**: the roster is fixed, and with it a `k`-regular neighbour graph (a Harary graph
//!    over an order drawn from the session id). Each client splits its masking secret `s_sk` and
//!    a fresh self-mask seed `b` into Shamir shares (threshold `t` = a majority of its
//!    neighbours) and sends each neighbour its pair, sealed with ChaCha20-Poly1305 under a key
//!    agreed with X25519 over `c` — [`EncryptedShare`], relayed by the server.
//! 3. **masked input**: `y_u = x_u + PRG(b_u) + Σ_v ±PRG(s_uv) mod 2^32` over the neighbours `v`
//!    whose shares arrived (`+` when `u < v`), with `s_uv` the X25519 agreement of `s` keys and
//!    PRG the ChaCha20 keystream under an HKDF-SHA256 key — [`MaskedInput`].
//! 4. **unmasking**: told the survivors, each client reveals, for each neighbour that sent it
//!    shares, the share of `b` if that neighbour survived and the share of `s_sk` if it did not;
//!    never both, and only once — [`RevealedShare`]. The server removes the survivors' self-masks
//!    and the dropped clients' pairwise masks, and is left with `Σ x_u` over the survivors.
//!
//! Guarantee (honest-but-curious server, clients that follow the protocol): the server sees each
//! `y_u` masked by `PRG(b_u)`, and learns `b_u` only for survivors, whose pairwise masks it cannot
//! remove without `s_sk` shares, which honest clients reveal only for clients they were told had
//! dropped. Because `t` is a majority of each client's neighbours and each client answers the
//! unmasking request once, a server that tells different clients different survivor lists still
//! collects `t` shares of at most one of the two secrets. See PRIVACY.md for what colluding
//! clients and a malicious server can still do.

mod client;
mod cost;
mod server;

pub use client::SecAggClient;
pub use cost::{ClientCost, client_cost};
pub use server::{SecAggServer, ServerPhase};

use chacha20::ChaCha20;
use chacha20::cipher::{KeyIvInit, StreamCipher};
use hkdf::Hkdf;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use std::collections::BTreeMap;

/// What can go wrong in a secure round (a message out of place, a bad share, too few peers).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SecAggError {
    /// A message the protocol refuses: malformed, misaddressed, out of place.
    #[error("secure aggregation: {0}")]
    Protocol(String),
    /// A message at the wrong time: before or after its phase, or a second one of its kind.
    #[error("secure aggregation: {0}")]
    Phase(String),
    #[error("secure aggregation: {what}: need {need}, have {have}")]
    TooFew { what: &'static str, need: usize, have: usize },
}

pub(crate) fn fail<T>(msg: impl Into<String>) -> Result<T, SecAggError> {
    Err(SecAggError::Protocol(msg.into()))
}

pub(crate) fn out_of_phase<T>(msg: impl Into<String>) -> Result<T, SecAggError> {
    Err(SecAggError::Phase(msg.into()))
}

/// Identifies one secure round: every key and mask is derived under it, so nothing carries over
/// between rounds or federations.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct SessionId(pub [u8; 32]);

impl SessionId {
    /// SHA-256 over the federation, round, update length and neighbour count.
    pub fn new(federation_id: &str, round: u64, dim: usize, neighbours: usize) -> Self {
        let mut h = Sha256::new();
        h.update(b"fedsearch/secagg/v1\0");
        h.update((federation_id.len() as u64).to_le_bytes());
        h.update(federation_id.as_bytes());
        h.update(round.to_le_bytes());
        h.update((dim as u64).to_le_bytes());
        h.update((neighbours as u64).to_le_bytes());
        SessionId(h.finalize().into())
    }
}

/// A client's two public keys for one round.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct PublicKeys {
    pub index: u32,
    /// X25519 key for sealing shares.
    pub c_pk: [u8; 32],
    /// X25519 key for pairwise masks.
    pub s_pk: [u8; 32],
}

/// One client's shares for one neighbour, sealed so only that neighbour can open them.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct EncryptedShare {
    pub from: u32,
    pub to: u32,
    pub ciphertext: Vec<u8>,
}

/// A client's masked update.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MaskedInput {
    pub index: u32,
    pub values: Vec<u32>,
}

/// Which of a client's two secrets a revealed share belongs to.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ShareKind {
    /// The self-mask seed `b` of a client that survived.
    SelfMask,
    /// The masking key `s_sk` of a client that dropped.
    MaskingKey,
}

/// A share one client reveals about another (its `owner`) in the unmasking phase.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RevealedShare {
    pub owner: u32,
    pub kind: ShareKind,
    pub share: Vec<u8>,
}

/// Shares needed to rebuild a secret dealt to `neighbours` neighbours: a strict majority, so an
/// equivocating server cannot collect enough of both kinds.
pub fn threshold(neighbours: usize) -> usize {
    neighbours / 2 + 1
}

/// The neighbours of every member: a Harary graph of degree `k` (rounded down to even; the
/// complete graph when `k ≥ n − 1`) over the members ordered by SHA-256(session ‖ index).
pub fn neighbour_graph(members: &[u32], k: usize, session: &SessionId) -> BTreeMap<u32, Vec<u32>> {
    let mut order: Vec<(Vec<u8>, u32)> = members
        .iter()
        .map(|&m| {
            let mut h = Sha256::new();
            h.update(session.0);
            h.update(m.to_le_bytes());
            (h.finalize().to_vec(), m)
        })
        .collect();
    order.sort();
    let n = order.len();
    let mut graph = BTreeMap::new();
    for (pos, &(_, m)) in order.iter().enumerate() {
        let mut nb: Vec<u32> = if k + 1 >= n {
            order.iter().map(|(_, o)| *o).filter(|&o| o != m).collect()
        } else {
            let half = (k / 2).max(1);
            (1..=half).flat_map(|off| [order[(pos + off) % n].1, order[(pos + n - off) % n].1]).collect()
        };
        nb.sort_unstable();
        nb.dedup();
        graph.insert(m, nb);
    }
    graph
}

/// Bytes of a small secure-aggregation message (keys, sealed shares, survivors, reveals) in the
/// worker's JSON: how the simulator and the cost benchmark count traffic.
pub fn message_bytes<T: Serialize>(v: &T) -> usize {
    serde_json::to_vec(v).map(|b| b.len()).unwrap_or(0)
}

/// 32 bytes from HKDF-SHA256 of `ikm` under the session, for `label` and the two parties.
pub(crate) fn derive_key(session: &SessionId, ikm: &[u8], label: &[u8], a: u32, b: u32) -> [u8; 32] {
    let mut info = label.to_vec();
    info.extend_from_slice(&a.to_le_bytes());
    info.extend_from_slice(&b.to_le_bytes());
    let mut out = [0u8; 32];
    Hkdf::<Sha256>::new(Some(&session.0), ikm).expand(&info, &mut out).expect("32 bytes is a valid HKDF length");
    out
}

/// Adds (`subtract = false`) or subtracts the ChaCha20 keystream under `key`, read as
/// little-endian `u32`s, to `out`, modulo 2^32.
pub(crate) fn apply_mask(key: &[u8; 32], out: &mut [u32], subtract: bool) {
    let mut cipher = ChaCha20::new(key.into(), &[0u8; 12].into());
    let mut buf = vec![0u8; 4 * 4096];
    for chunk in out.chunks_mut(4096) {
        let bytes = &mut buf[..4 * chunk.len()];
        bytes.fill(0);
        cipher.apply_keystream(bytes);
        for (o, w) in chunk.iter_mut().zip(bytes.chunks_exact(4)) {
            let m = u32::from_le_bytes([w[0], w[1], w[2], w[3]]);
            *o = if subtract { o.wrapping_sub(m) } else { o.wrapping_add(m) };
        }
    }
}

/// Label of the pairwise masks' keys; the pair is ordered (low, high) so both ends agree.
pub(crate) const PAIR_MASK: &[u8] = b"fedsearch/secagg/pair-mask";
/// Label of the self-mask key.
pub(crate) const SELF_MASK: &[u8] = b"fedsearch/secagg/self-mask";
/// Label of the share-sealing keys (directional: from, to).
pub(crate) const SHARE_SEAL: &[u8] = b"fedsearch/secagg/share";

/// Adds or removes the pairwise mask between `me` and `other` given their agreed secret: `me`
/// adds `+PRG` when `me < other` and `−PRG` otherwise (`remove` flips it).
pub(crate) fn apply_pair_mask(
    session: &SessionId,
    agreed: &[u8; 32],
    me: u32,
    other: u32,
    out: &mut [u32],
    remove: bool,
) {
    let key = derive_key(session, agreed, PAIR_MASK, me.min(other), me.max(other));
    let subtract = (me > other) != remove;
    apply_mask(&key, out, subtract);
}

/// Wire form of a masked input: `FSMI`, version 1, index, length, the values (LE), CRC-32 of
/// everything before it.
pub fn encode_masked_input(m: &MaskedInput) -> Vec<u8> {
    let mut out = Vec::with_capacity(17 + 4 * m.values.len());
    out.extend_from_slice(b"FSMI");
    out.push(1);
    out.extend_from_slice(&m.index.to_le_bytes());
    out.extend_from_slice(&(m.values.len() as u32).to_le_bytes());
    for v in &m.values {
        out.extend_from_slice(&v.to_le_bytes());
    }
    let crc = crc32fast::hash(&out);
    out.extend_from_slice(&crc.to_le_bytes());
    out
}

/// Reads [`encode_masked_input`]'s bytes; errors on a wrong magic, version, length or checksum.
pub fn decode_masked_input(bytes: &[u8]) -> Result<MaskedInput, SecAggError> {
    if bytes.len() < 17 || &bytes[..4] != b"FSMI" || bytes[4] != 1 {
        return fail("not a version-1 masked input");
    }
    let word = |at: usize| u32::from_le_bytes([bytes[at], bytes[at + 1], bytes[at + 2], bytes[at + 3]]);
    let (index, len) = (word(5), word(9) as usize);
    if bytes.len() != 17 + 4 * len {
        return fail(format!("masked input declares {len} values but carries {} bytes", bytes.len()));
    }
    if crc32fast::hash(&bytes[..bytes.len() - 4]) != word(bytes.len() - 4) {
        return fail("masked input checksum mismatch");
    }
    let values = (0..len).map(|i| word(13 + 4 * i)).collect();
    Ok(MaskedInput { index, values })
}

#[cfg(test)]
mod tests;
