//! The server side of a secure round: collects keys, relays sealed shares, adds masked inputs
//! modulo 2^32, and removes the masks from the sum with the revealed shares. It holds only the
//! running sum of masked inputs, never an individual input.

use super::{
    EncryptedShare, MaskedInput, PublicKeys, RevealedShare, SELF_MASK, SecAggError, SessionId, ShareKind, apply_mask,
    apply_pair_mask, derive_key, fail, neighbour_graph, out_of_phase, threshold,
};
use blahaj::{Share, Sharks};
use std::collections::{BTreeMap, BTreeSet};
use x25519_dalek::{PublicKey, StaticSecret};
use zeroize::Zeroizing;

/// Where a secure round stands (persisted by the worker so a restart resumes it).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ServerPhase {
    Keys,
    Shares,
    Masked,
    Unmask,
    Done,
}

/// One secure round as the server sees it.
#[derive(Debug)]
pub struct SecAggServer {
    session: SessionId,
    dim: usize,
    neighbours: usize,
    min_survivors: usize,
    phase: ServerPhase,
    roster: BTreeMap<u32, PublicKeys>,
    graph: BTreeMap<u32, Vec<u32>>,
    /// Sealed shares waiting for their recipient.
    mailbox: BTreeMap<u32, Vec<EncryptedShare>>,
    /// Clients whose shares arrived (U2).
    shared: BTreeSet<u32>,
    /// Clients whose masked input arrived (U3).
    survivors: BTreeSet<u32>,
    sum: Vec<u32>,
    /// Revealed shares per (owner, kind), keyed by who revealed them.
    revealed: BTreeMap<(u32, ShareKind), BTreeMap<u32, Vec<u8>>>,
    answered: BTreeSet<u32>,
}

impl SecAggServer {
    /// A round over updates of `dim` values, a degree-`neighbours` graph, and at least
    /// `min_survivors` masked inputs before anything is unmasked.
    pub fn new(session: SessionId, dim: usize, neighbours: usize, min_survivors: usize) -> Self {
        SecAggServer {
            session,
            dim,
            neighbours,
            min_survivors: min_survivors.max(2),
            phase: ServerPhase::Keys,
            roster: BTreeMap::new(),
            graph: BTreeMap::new(),
            mailbox: BTreeMap::new(),
            shared: BTreeSet::new(),
            survivors: BTreeSet::new(),
            sum: vec![0; dim],
            revealed: BTreeMap::new(),
            answered: BTreeSet::new(),
        }
    }

    pub fn phase(&self) -> ServerPhase {
        self.phase
    }

    /// Clients that took part in each phase so far: keys, shares, masked inputs, reveals.
    pub fn counts(&self) -> [usize; 4] {
        [self.roster.len(), self.shared.len(), self.survivors.len(), self.answered.len()]
    }

    /// Whether the current phase has heard from everyone still in the round (`target` clients
    /// in the keys phase).
    pub fn phase_complete(&self, target: usize) -> bool {
        match self.phase {
            ServerPhase::Keys => self.roster.len() >= target,
            ServerPhase::Shares => self.shared.len() >= self.roster.len(),
            ServerPhase::Masked => self.survivors.len() >= self.shared.len(),
            ServerPhase::Unmask | ServerPhase::Done => self.answered.len() >= self.survivors.len(),
        }
    }

    /// The roster (after the keys phase closed).
    pub fn roster(&self) -> Vec<PublicKeys> {
        self.roster.values().copied().collect()
    }

    /// The survivors (after the masked phase closed).
    pub fn survivor_list(&self) -> Vec<u32> {
        self.survivors.iter().copied().collect()
    }

    /// The round's session.
    pub fn session(&self) -> SessionId {
        self.session
    }

    fn expect(&self, phase: ServerPhase) -> Result<(), SecAggError> {
        if self.phase == phase {
            Ok(())
        } else {
            out_of_phase(format!("expected the {phase:?} phase, the round is in {:?}", self.phase))
        }
    }

    fn enough(&self, what: &'static str, have: usize) -> Result<(), SecAggError> {
        if have >= self.min_survivors {
            Ok(())
        } else {
            Err(SecAggError::TooFew { what, need: self.min_survivors, have })
        }
    }

    /// Phase 1: one client's public keys (each index and each key once).
    pub fn add_keys(&mut self, keys: PublicKeys) -> Result<(), SecAggError> {
        self.put_keys(keys, false)
    }

    /// Phase 1: new keys for a client that already sent some (a retry generates fresh key
    /// pairs), in place of its earlier ones under the same index. Only while the keys phase is
    /// open, i.e. before anyone received the roster; the roster does not grow.
    pub fn replace_keys(&mut self, keys: PublicKeys) -> Result<(), SecAggError> {
        self.put_keys(keys, true)
    }

    /// Adds (`replacing` false: a new index) or replaces (`replacing` true: a known index) one
    /// client's keys; no key may be another client's key.
    fn put_keys(&mut self, keys: PublicKeys, replacing: bool) -> Result<(), SecAggError> {
        self.expect(ServerPhase::Keys)?;
        match (self.roster.contains_key(&keys.index), replacing) {
            (true, false) => return out_of_phase(format!("client {} already sent keys", keys.index)),
            (false, true) => return fail(format!("client {} has no keys to replace", keys.index)),
            _ => {}
        }
        let others = self.roster.iter().filter(|(i, _)| **i != keys.index).map(|(_, k)| k);
        if keys.c_pk == keys.s_pk || others.flat_map(|k| [k.c_pk, k.s_pk]).any(|x| x == keys.c_pk || x == keys.s_pk) {
            return fail(format!("client {} reuses a key", keys.index));
        }
        self.roster.insert(keys.index, keys);
        Ok(())
    }

    /// Closes phase 1: the roster every client receives, and the neighbour graph over it.
    pub fn close_keys(&mut self) -> Result<Vec<PublicKeys>, SecAggError> {
        self.expect(ServerPhase::Keys)?;
        self.enough("clients with keys", self.roster.len())?;
        let members: Vec<u32> = self.roster.keys().copied().collect();
        self.graph = neighbour_graph(&members, self.neighbours, &self.session);
        self.phase = ServerPhase::Shares;
        Ok(self.roster.values().copied().collect())
    }

    /// Phase 2: a client's sealed shares, exactly one for each of its neighbours.
    pub fn add_shares(&mut self, from: u32, shares: Vec<EncryptedShare>) -> Result<(), SecAggError> {
        self.expect(ServerPhase::Shares)?;
        let Some(nb) = self.graph.get(&from) else { return fail(format!("client {from} is not in the roster")) };
        if self.shared.contains(&from) {
            return out_of_phase(format!("client {from} already sent its shares"));
        }
        let to: BTreeSet<u32> = shares.iter().map(|s| s.to).collect();
        if shares.iter().any(|s| s.from != from) || to.len() != shares.len() || to.iter().ne(nb.iter()) {
            return fail(format!("client {from}'s shares must go to each of its {} neighbours once", nb.len()));
        }
        for s in shares {
            self.mailbox.entry(s.to).or_default().push(s);
        }
        self.shared.insert(from);
        Ok(())
    }

    /// Closes phase 2 (U2 = the clients whose shares arrived).
    pub fn close_shares(&mut self) -> Result<(), SecAggError> {
        self.expect(ServerPhase::Shares)?;
        self.enough("clients with shares", self.shared.len())?;
        self.phase = ServerPhase::Masked;
        Ok(())
    }

    /// The sealed shares addressed to `to` by clients in U2.
    pub fn shares_for(&self, to: u32) -> Vec<EncryptedShare> {
        let shared = &self.shared;
        self.mailbox
            .get(&to)
            .map(|v| v.iter().filter(|s| shared.contains(&s.from)).cloned().collect())
            .unwrap_or_default()
    }

    /// Phase 3: one masked input, added to the running sum and not kept.
    pub fn add_masked(&mut self, input: &MaskedInput) -> Result<(), SecAggError> {
        self.expect(ServerPhase::Masked)?;
        if !self.shared.contains(&input.index) {
            return fail(format!("client {} sent no shares, so its input cannot be unmasked", input.index));
        }
        if input.values.len() != self.dim {
            return fail(format!("a masked input has {} values, the round {}", input.values.len(), self.dim));
        }
        if !self.survivors.insert(input.index) {
            return out_of_phase(format!("client {} already sent its masked input", input.index));
        }
        for (s, v) in self.sum.iter_mut().zip(&input.values) {
            *s = s.wrapping_add(*v);
        }
        Ok(())
    }

    /// Closes phase 3: the survivors (U3) every client is told. Errors (and the round stays open)
    /// with fewer than the minimum: nothing is unmasked for a cohort too small to hide in.
    pub fn close_masked(&mut self) -> Result<Vec<u32>, SecAggError> {
        self.expect(ServerPhase::Masked)?;
        self.enough("surviving clients", self.survivors.len())?;
        self.phase = ServerPhase::Unmask;
        Ok(self.survivors.iter().copied().collect())
    }

    /// Phase 4: one survivor's answer. Each share must be about a neighbour in U2 and of the kind
    /// the survivor list implies.
    pub fn add_reveals(&mut self, from: u32, shares: Vec<RevealedShare>) -> Result<(), SecAggError> {
        self.expect(ServerPhase::Unmask)?;
        if !self.survivors.contains(&from) {
            return fail(format!("client {from} is not a survivor"));
        }
        if self.answered.contains(&from) {
            return out_of_phase(format!("client {from} already answered"));
        }
        // All or nothing: a bad share refuses the whole answer and records none of it.
        let nb = &self.graph[&from];
        let mut owners = BTreeSet::new();
        for r in &shares {
            let kind = if self.survivors.contains(&r.owner) { ShareKind::SelfMask } else { ShareKind::MaskingKey };
            if !nb.contains(&r.owner) || !self.shared.contains(&r.owner) || r.kind != kind || !owners.insert(r.owner) {
                return fail(format!("client {from} revealed a {:?} share of {} out of place", r.kind, r.owner));
            }
        }
        self.answered.insert(from);
        for r in shares {
            self.revealed.entry((r.owner, r.kind)).or_default().insert(from, r.share);
        }
        Ok(())
    }

    fn recover(&self, owner: u32, kind: ShareKind) -> Result<Zeroizing<[u8; 32]>, SecAggError> {
        let t = threshold(self.graph[&owner].len());
        let shares: Vec<Share> = self
            .revealed
            .get(&(owner, kind))
            .into_iter()
            .flat_map(|m| m.values())
            .filter_map(|b| Share::try_from(b.as_slice()).ok())
            .collect();
        if shares.len() < t {
            return Err(SecAggError::TooFew { what: "revealed shares of one client", need: t, have: shares.len() });
        }
        let secret = Zeroizing::new(
            Sharks(t as u8)
                .recover(&shares)
                .map_err(|e| SecAggError::Protocol(format!("rebuilding {owner}'s secret: {e}")))?,
        );
        <[u8; 32]>::try_from(secret.as_slice())
            .map(Zeroizing::new)
            .map_err(|_| SecAggError::Protocol(format!("{owner}'s rebuilt secret has {} bytes", secret.len())))
    }

    /// Ends the round: removes every survivor's self-mask and every dropped client's pairwise
    /// masks with its surviving neighbours, and returns `Σ x_u mod 2^32` over the survivors.
    pub fn finish(&mut self) -> Result<(Vec<u32>, usize), SecAggError> {
        self.expect(ServerPhase::Unmask)?;
        let mut sum = self.sum.clone();
        for &u in &self.survivors {
            let b = self.recover(u, ShareKind::SelfMask)?;
            apply_mask(&derive_key(&self.session, b.as_ref(), SELF_MASK, u, u), &mut sum, true);
        }
        for &u in self.shared.difference(&self.survivors) {
            let s_sk = StaticSecret::from(*self.recover(u, ShareKind::MaskingKey)?);
            if PublicKey::from(&s_sk).to_bytes() != self.roster[&u].s_pk {
                return fail(format!("the masking key rebuilt for client {u} does not match its public key"));
            }
            for &v in self.graph[&u].iter().filter(|v| self.survivors.contains(v)) {
                let agreed = Zeroizing::new(s_sk.diffie_hellman(&PublicKey::from(self.roster[&v].s_pk)).to_bytes());
                // v added its mask with u (u sent v its shares); remove v's side of it.
                apply_pair_mask(&self.session, &agreed, v, u, &mut sum, true);
            }
        }
        self.phase = ServerPhase::Done;
        Ok((sum, self.survivors.len()))
    }
}
