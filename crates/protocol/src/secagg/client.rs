//! The client side of a secure round: keys, sealed shares, the masked input, the one unmasking
//! answer. Secrets never leave this struct except as shares sealed for neighbours.

use super::{
    EncryptedShare, MaskedInput, PublicKeys, RevealedShare, SELF_MASK, SHARE_SEAL, SecAggError, SessionId, ShareKind,
    apply_mask, apply_pair_mask, derive_key, fail, neighbour_graph, out_of_phase, threshold,
};
use crate::dp::NoiseRng;
use blahaj::{Share, Sharks};
use chacha20::ChaCha20Rng;
use chacha20::rand_core::SeedableRng;
use chacha20poly1305::ChaCha20Poly1305;
use chacha20poly1305::aead::{Aead, KeyInit, Payload};
use std::collections::{BTreeMap, BTreeSet};
use x25519_dalek::{PublicKey, StaticSecret};
use zeroize::Zeroizing;

/// Length of one GF(256) Shamir share of a 32-byte secret: x coordinate + 32 bytes.
const SHARE_LEN: usize = 33;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Phase {
    Keys,
    Shares,
    Masked,
    Done,
}

/// One client's state for one secure round.
pub struct SecAggClient {
    index: u32,
    session: SessionId,
    /// The fewest survivors this client accepts before revealing anything (the cohort its share
    /// of the noise assumes).
    min_survivors: usize,
    c_sk: StaticSecret,
    s_sk: StaticSecret,
    b_seed: Zeroizing<[u8; 32]>,
    phase: Phase,
    roster: BTreeMap<u32, PublicKeys>,
    neighbours: Vec<u32>,
    /// Shares of the neighbours whose shares arrived: (of `s_sk`, of `b`).
    held: BTreeMap<u32, (Vec<u8>, Vec<u8>)>,
}

impl std::fmt::Debug for SecAggClient {
    /// Never prints a secret.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SecAggClient").field("index", &self.index).field("phase", &self.phase).finish()
    }
}

fn secret(rng: &mut NoiseRng) -> [u8; 32] {
    let mut b = [0u8; 32];
    rng.fill_bytes(&mut b);
    b
}

fn seal_cipher(session: &SessionId, my_c: &StaticSecret, their_c: &[u8; 32], from: u32, to: u32) -> ChaCha20Poly1305 {
    let agreed = Zeroizing::new(my_c.diffie_hellman(&PublicKey::from(*their_c)).to_bytes());
    let key = Zeroizing::new(derive_key(session, agreed.as_ref(), SHARE_SEAL, from, to));
    ChaCha20Poly1305::new(&chacha20poly1305::Key::from(*key))
}

impl SecAggClient {
    /// Fresh keys and self-mask seed for one round, drawn from `rng` (OS-seeded in the tab). The
    /// client reveals nothing for a round with fewer than `min_survivors` survivors.
    pub fn new(index: u32, session: SessionId, min_survivors: usize, rng: &mut NoiseRng) -> (Self, PublicKeys) {
        let c_sk = StaticSecret::from(secret(rng));
        let s_sk = StaticSecret::from(secret(rng));
        let keys =
            PublicKeys { index, c_pk: PublicKey::from(&c_sk).to_bytes(), s_pk: PublicKey::from(&s_sk).to_bytes() };
        let client = SecAggClient {
            index,
            session,
            min_survivors,
            c_sk,
            s_sk,
            b_seed: Zeroizing::new(secret(rng)),
            phase: Phase::Keys,
            roster: BTreeMap::new(),
            neighbours: Vec::new(),
            held: BTreeMap::new(),
        };
        (client, keys)
    }

    pub fn index(&self) -> u32 {
        self.index
    }

    /// Takes the index the server gave this client when it received its keys (keys phase only;
    /// the keys themselves do not depend on it).
    pub fn assign_index(&mut self, index: u32) -> Result<(), SecAggError> {
        if self.phase != Phase::Keys {
            return out_of_phase("the index is fixed once shares are sent");
        }
        self.index = index;
        Ok(())
    }

    /// This client's neighbours (after [`Self::share_keys`]).
    pub fn neighbours(&self) -> &[u32] {
        &self.neighbours
    }

    /// Phase 2: checks the roster (unique indices, this client's own keys in it), finds this
    /// client's neighbours in the degree-`k` graph, and seals one share of `s_sk` and one of `b`
    /// for each of them.
    pub fn share_keys(
        &mut self,
        roster: &[PublicKeys],
        k: usize,
        rng: &mut NoiseRng,
    ) -> Result<Vec<EncryptedShare>, SecAggError> {
        if self.phase != Phase::Keys {
            return out_of_phase("shares were already sent this round");
        }
        let mut by_index = BTreeMap::new();
        for p in roster {
            if by_index.insert(p.index, *p).is_some() {
                return fail(format!("the roster names client {} twice", p.index));
            }
        }
        let own = PublicKeys {
            index: self.index,
            c_pk: PublicKey::from(&self.c_sk).to_bytes(),
            s_pk: PublicKey::from(&self.s_sk).to_bytes(),
        };
        if by_index.get(&self.index) != Some(&own) {
            return fail("the roster does not carry this client's own keys");
        }
        let members: Vec<u32> = by_index.keys().copied().collect();
        let neighbours = neighbour_graph(&members, k, &self.session).remove(&self.index).unwrap_or_default();
        if neighbours.is_empty() {
            return fail("no neighbours: a secure round needs at least two clients");
        }
        let t = threshold(neighbours.len());
        let mut share_rng = ChaCha20Rng::from_seed(secret(rng));
        let dealer = Sharks(t as u8);
        let s_bytes = Zeroizing::new(self.s_sk.to_bytes());
        let s_shares: Vec<Share> = dealer.dealer_rng(s_bytes.as_ref(), &mut share_rng).take(neighbours.len()).collect();
        let b_shares: Vec<Share> =
            dealer.dealer_rng(self.b_seed.as_ref(), &mut share_rng).take(neighbours.len()).collect();
        let mut out = Vec::with_capacity(neighbours.len());
        for ((&to, s), b) in neighbours.iter().zip(&s_shares).zip(&b_shares) {
            let mut plain = Zeroizing::new(Vec::with_capacity(8 + 2 * SHARE_LEN));
            plain.extend_from_slice(&self.index.to_le_bytes());
            plain.extend_from_slice(&to.to_le_bytes());
            plain.extend_from_slice(&Vec::<u8>::from(s));
            plain.extend_from_slice(&Vec::<u8>::from(b));
            let cipher = seal_cipher(&self.session, &self.c_sk, &by_index[&to].c_pk, self.index, to);
            let ciphertext = cipher
                .encrypt(&[0u8; 12].into(), Payload { msg: &plain, aad: &self.session.0 })
                .map_err(|_| SecAggError::Protocol("sealing a share failed".into()))?;
            out.push(EncryptedShare { from: self.index, to, ciphertext });
        }
        self.roster = by_index;
        self.neighbours = neighbours;
        self.phase = Phase::Shares;
        Ok(out)
    }

    /// Phase 3: opens the shares neighbours sent (each must come from a neighbour, be addressed
    /// here and open under the agreed key), refuses to go on with fewer than a threshold of them
    /// (the masks would hide too little), and returns `input` masked.
    pub fn mask(&mut self, received: &[EncryptedShare], mut input: Vec<u32>) -> Result<MaskedInput, SecAggError> {
        if self.phase != Phase::Shares {
            return out_of_phase("masking needs the shares phase first, and happens once");
        }
        let mut held = BTreeMap::new();
        for e in received {
            if e.to != self.index || !self.neighbours.contains(&e.from) {
                return fail(format!("a share from {} to {} is not for this client", e.from, e.to));
            }
            let cipher = seal_cipher(&self.session, &self.c_sk, &self.roster[&e.from].c_pk, e.from, e.to);
            let plain = Zeroizing::new(
                cipher
                    .decrypt(&[0u8; 12].into(), Payload { msg: &e.ciphertext, aad: &self.session.0 })
                    .map_err(|_| SecAggError::Protocol(format!("the share from {} does not open", e.from)))?,
            );
            if plain.len() != 8 + 2 * SHARE_LEN
                || plain[..4] != e.from.to_le_bytes()
                || plain[4..8] != self.index.to_le_bytes()
            {
                return fail(format!("the share from {} is malformed", e.from));
            }
            let s = plain[8..8 + SHARE_LEN].to_vec();
            let b = plain[8 + SHARE_LEN..].to_vec();
            if held.insert(e.from, (s, b)).is_some() {
                return fail(format!("two shares from {}", e.from));
            }
        }
        let t = threshold(self.neighbours.len());
        if held.len() < t {
            return Err(SecAggError::TooFew { what: "neighbours' shares", need: t, have: held.len() });
        }
        apply_mask(
            &super::derive_key(&self.session, self.b_seed.as_ref(), SELF_MASK, self.index, self.index),
            &mut input,
            false,
        );
        for &v in held.keys() {
            let agreed = Zeroizing::new(self.s_sk.diffie_hellman(&PublicKey::from(self.roster[&v].s_pk)).to_bytes());
            apply_pair_mask(&self.session, &agreed, self.index, v, &mut input, false);
        }
        self.held = held;
        self.phase = Phase::Masked;
        Ok(MaskedInput { index: self.index, values: input })
    }

    /// Phase 4, once: for each neighbour whose shares this client holds, the share of its
    /// self-mask if it is among `survivors`, of its masking key otherwise. Refuses a second call
    /// (a server that asks twice could collect both secrets of one client), a survivor list
    /// shorter than the minimum cohort, and one with fewer than a threshold of this client's
    /// neighbours.
    pub fn unmask(&mut self, survivors: &[u32]) -> Result<Vec<RevealedShare>, SecAggError> {
        if self.phase != Phase::Masked {
            return out_of_phase("unmasking is answered once, after masking");
        }
        self.phase = Phase::Done;
        let survivors: BTreeSet<u32> = survivors.iter().copied().collect();
        if survivors.len() < self.min_survivors {
            return Err(SecAggError::TooFew { what: "survivors", need: self.min_survivors, have: survivors.len() });
        }
        let t = threshold(self.neighbours.len());
        let alive = self.neighbours.iter().filter(|v| survivors.contains(v)).count() + 1;
        if alive < t {
            return Err(SecAggError::TooFew { what: "surviving neighbours", need: t, have: alive });
        }
        Ok(self
            .held
            .iter()
            .map(|(&owner, (s, b))| {
                if survivors.contains(&owner) {
                    RevealedShare { owner, kind: ShareKind::SelfMask, share: b.clone() }
                } else {
                    RevealedShare { owner, kind: ShareKind::MaskingKey, share: s.clone() }
                }
            })
            .collect())
    }
}
