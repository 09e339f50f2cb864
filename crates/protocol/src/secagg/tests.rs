//! Secure aggregation end to end in memory: sums, dropouts, a curious and an equivocating server,
//! tampered messages.

use super::*;
use crate::dp::NoiseRng;

const DIM: usize = 50;

fn input(i: u32) -> Vec<u32> {
    (0..DIM as u32).map(|j| i.wrapping_mul(1_000_003).wrapping_add(j * 7919)).collect()
}

fn plain_sum(members: impl Iterator<Item = u32>) -> Vec<u32> {
    let mut s = vec![0u32; DIM];
    for i in members {
        for (a, b) in s.iter_mut().zip(input(i)) {
            *a = a.wrapping_add(b);
        }
    }
    s
}

/// Runs one round over clients `0..n`; the `after_*` sets drop out right after that phase.
fn run_round(
    n: u32,
    k: usize,
    after_keys: &[u32],
    after_shares: &[u32],
    after_masked: &[u32],
) -> Result<(Vec<u32>, usize), SecAggError> {
    let session = SessionId::new("f", 1, DIM, k);
    let mut rng = NoiseRng::from_seed([5; 32]);
    let mut server = SecAggServer::new(session, DIM, k, 2);
    let mut clients = Vec::new();
    for i in 0..n {
        let (c, keys) = SecAggClient::new(i, session, 2, &mut rng);
        server.add_keys(keys)?;
        clients.push(c);
    }
    let roster = server.close_keys()?;
    clients.retain(|c| !after_keys.contains(&c.index()));
    for c in &mut clients {
        let shares = c.share_keys(&roster, k, &mut rng)?;
        server.add_shares(c.index(), shares)?;
    }
    server.close_shares()?;
    clients.retain(|c| !after_shares.contains(&c.index()));
    for c in &mut clients {
        let masked = c.mask(&server.shares_for(c.index()), input(c.index()))?;
        server.add_masked(&masked)?;
    }
    let survivors = server.close_masked()?;
    clients.retain(|c| !after_masked.contains(&c.index()));
    for c in &mut clients {
        let reveals = c.unmask(&survivors)?;
        server.add_reveals(c.index(), reveals)?;
    }
    server.finish()
}

#[test]
fn masks_cancel_exactly() {
    for (n, k) in [(2, 1), (5, 4), (12, 4), (30, 8)] {
        let (sum, count) = run_round(n, k, &[], &[], &[]).unwrap();
        assert_eq!(count, n as usize);
        assert_eq!(sum, plain_sum(0..n), "n = {n}, k = {k}");
    }
}

#[test]
fn every_dropout_set_within_the_threshold_recovers_the_sum() {
    // Complete graph of 6: 5 neighbours each, threshold 3, so any 2 clients may fail. Every such
    // set, both dropping after their shares (their pairwise masks must be removed), or one of
    // them after its masked input instead (its input counts; it reveals nothing).
    let n = 6u32;
    for a in 0..n {
        for b in a + 1..n {
            let (sum, count) = run_round(n, 5, &[], &[a, b], &[]).unwrap();
            assert_eq!(count, 4);
            assert_eq!(sum, plain_sum((0..n).filter(|x| ![a, b].contains(x))), "dropped {a}, {b}");
            let (sum, count) = run_round(n, 5, &[], &[a], &[b]).unwrap();
            assert_eq!(count, 5);
            assert_eq!(sum, plain_sum((0..n).filter(|&x| x != a)), "dropped {a}, late {b}");
        }
    }
    // Sparse graph, 40 clients of degree 8 (threshold 5): a drop in every phase.
    let (sum, count) = run_round(40, 8, &[3], &[21], &[30]).unwrap();
    assert_eq!(count, 38);
    assert_eq!(sum, plain_sum((0..40).filter(|x| ![3, 21].contains(x))));
}

#[test]
fn too_many_dropouts_stop_the_round_without_unmasking() {
    // Four of six drop after their shares: a survivor sees 1 surviving neighbour + itself, below
    // the threshold of 3, and refuses to reveal anything.
    let err = run_round(6, 5, &[], &[0, 1, 2, 3], &[]).unwrap_err();
    assert!(matches!(err, SecAggError::TooFew { .. }), "{err:?}");
    // Fewer survivors than the server's minimum: nothing is unmasked.
    let session = SessionId::new("f", 1, DIM, 5);
    let mut server = SecAggServer::new(session, DIM, 5, 5);
    let mut rng = NoiseRng::from_seed([1; 32]);
    for i in 0..4 {
        server.add_keys(SecAggClient::new(i, session, 2, &mut rng).1).unwrap();
    }
    assert!(matches!(server.close_keys(), Err(SecAggError::TooFew { .. })));
}

/// Three clients on a complete graph; returns the server mid-round after all masked inputs,
/// the clients, the roster and the inputs' session.
fn masked_round() -> (SecAggServer, Vec<SecAggClient>, Vec<PublicKeys>, Vec<MaskedInput>, SessionId) {
    let session = SessionId::new("f", 9, DIM, 4);
    let mut rng = NoiseRng::from_seed([7; 32]);
    let mut server = SecAggServer::new(session, DIM, 4, 2);
    let mut clients = Vec::new();
    for i in 0..5 {
        let (c, keys) = SecAggClient::new(i, session, 2, &mut rng);
        server.add_keys(keys).unwrap();
        clients.push(c);
    }
    let roster = server.close_keys().unwrap();
    for c in &mut clients {
        let s = c.share_keys(&roster, 4, &mut rng).unwrap();
        server.add_shares(c.index(), s).unwrap();
    }
    server.close_shares().unwrap();
    let mut masked = Vec::new();
    for c in &mut clients {
        let m = c.mask(&server.shares_for(c.index()), input(c.index())).unwrap();
        server.add_masked(&m).unwrap();
        masked.push(m);
    }
    (server, clients, roster, masked, session)
}

#[test]
fn a_curious_server_cannot_unmask_one_update() {
    // The server kept client 0's masked input and claims client 0 dropped, to collect the shares
    // of its masking key and strip its pairwise masks.
    let (_server, mut clients, roster, masked, session) = masked_round();
    let lie: Vec<u32> = (1..5).collect();
    let mut key_shares = Vec::new();
    for c in clients.iter_mut().skip(1) {
        key_shares.extend(c.unmask(&lie).unwrap().into_iter().filter(|r| r.owner == 0));
        // Asking again, now with client 0 alive, to get its self-mask: refused.
        assert!(c.unmask(&(0..5).collect::<Vec<_>>()).is_err());
    }
    assert!(key_shares.iter().all(|r| r.kind == ShareKind::MaskingKey));
    assert!(!key_shares.is_empty());
    // Even with client 0's masking key rebuilt, its input stays hidden under PRG(b_0).
    let shares: Vec<blahaj::Share> =
        key_shares.iter().map(|r| blahaj::Share::try_from(r.share.as_slice()).unwrap()).collect();
    let s0 = blahaj::Sharks(threshold(4) as u8).recover(&shares).unwrap();
    let s0 = x25519_dalek::StaticSecret::from(<[u8; 32]>::try_from(s0.as_slice()).unwrap());
    let mut y0 = masked[0].values.clone();
    for p in roster.iter().filter(|p| p.index != 0) {
        let agreed = s0.diffie_hellman(&x25519_dalek::PublicKey::from(p.s_pk)).to_bytes();
        apply_pair_mask(&session, &agreed, 0, p.index, &mut y0, true);
    }
    let x0 = input(0);
    let equal = y0.iter().zip(&x0).filter(|(a, b)| a == b).count();
    assert!(equal <= 1, "{equal} of {DIM} values of client 0's input visible");
}

#[test]
fn an_equivocating_server_gets_at_most_one_secret_per_client() {
    // Two clients are told client 0 survived, two that it dropped: 2 shares of each kind, below
    // the threshold of 3 (a majority of 4 neighbours) for both.
    let (mut server, mut clients, _roster, _masked, _session) = masked_round();
    let survivors = server.close_masked().unwrap();
    let dropped0: Vec<u32> = survivors.iter().copied().filter(|&i| i != 0).collect();
    let mut by_kind = std::collections::BTreeMap::<ShareKind, usize>::new();
    for (i, c) in clients.iter_mut().enumerate().skip(1) {
        let list = if i <= 2 { &survivors } else { &dropped0 };
        for r in c.unmask(list).unwrap().into_iter().filter(|r| r.owner == 0) {
            *by_kind.entry(r.kind).or_default() += 1;
        }
    }
    assert!(by_kind.values().all(|&n| n < threshold(4)), "{by_kind:?}");
}

#[test]
fn tampered_or_misplaced_messages_are_refused() {
    let session = SessionId::new("f", 2, DIM, 4);
    let mut rng = NoiseRng::from_seed([3; 32]);
    let mut server = SecAggServer::new(session, DIM, 4, 2);
    let mut clients = Vec::new();
    for i in 0..3 {
        let (c, keys) = SecAggClient::new(i, session, 2, &mut rng);
        server.add_keys(keys).unwrap();
        if i == 0 {
            assert!(server.add_keys(keys).is_err(), "the same index twice");
        }
        clients.push(c);
    }
    let roster = server.close_keys().unwrap();
    // A roster that drops a client's own keys is refused by that client.
    let mut wrong = roster.clone();
    wrong[0].s_pk[0] ^= 1;
    assert!(clients[0].share_keys(&wrong, 4, &mut rng).is_err());
    let mut sent = Vec::new();
    for c in &mut clients {
        let s = c.share_keys(&roster, 4, &mut rng).unwrap();
        sent.push(s.clone());
        server.add_shares(c.index(), s).unwrap();
    }
    assert!(server.add_shares(0, sent[0].clone()).is_err(), "shares twice");
    server.close_shares().unwrap();
    let mut for_1 = server.shares_for(1);
    for_1[0].ciphertext[3] ^= 0x40;
    assert!(clients[1].mask(&for_1, input(1)).is_err(), "a flipped bit must not open");
    let m = clients[2].mask(&server.shares_for(2), input(2)).unwrap();
    assert!(server.add_masked(&MaskedInput { index: 2, values: vec![0; DIM - 1] }).is_err());
    server.add_masked(&m).unwrap();
    assert!(server.add_masked(&m).is_err(), "the same input twice");
    assert!(server.add_masked(&MaskedInput { index: 7, values: vec![0; DIM] }).is_err());
}

/// A client that sends its keys again while the keys phase is open replaces its earlier keys
/// under the same index (the roster does not grow), and the round's masks cancel with the new
/// keys; another client's key, an unknown index, or a replacement once the roster is out are
/// refused.
#[test]
fn keys_are_replaced_only_while_the_keys_phase_is_open() {
    let session = SessionId::new("f", 3, DIM, 4);
    let mut rng = NoiseRng::from_seed([11; 32]);
    let mut server = SecAggServer::new(session, DIM, 4, 2);
    let mut clients = Vec::new();
    for i in 0..3 {
        let (c, keys) = SecAggClient::new(i, session, 2, &mut rng);
        server.add_keys(keys).unwrap();
        clients.push(c);
    }
    let old_1 = server.roster()[1];
    // Client 1 retries with fresh key pairs: same index, same roster size.
    let (retried, new_keys) = SecAggClient::new(1, session, 2, &mut rng);
    server.replace_keys(new_keys).unwrap();
    let stale = std::mem::replace(&mut clients[1], retried);
    assert_eq!(server.counts()[0], 3, "a replacement does not grow the roster");
    assert_eq!(server.roster()[1], new_keys);
    // Sending the same keys again is a replacement by the same keys.
    server.replace_keys(new_keys).unwrap();
    // Nobody may take another client's key, nor replace keys that were never sent.
    let theirs = PublicKeys { index: 1, c_pk: server.roster()[0].s_pk, s_pk: new_keys.s_pk };
    assert!(matches!(server.replace_keys(theirs), Err(SecAggError::Protocol(_))));
    let unknown = SecAggClient::new(7, session, 2, &mut rng).1;
    assert!(matches!(server.replace_keys(unknown), Err(SecAggError::Protocol(_))));
    assert!(matches!(server.add_keys(PublicKeys { index: 7, ..new_keys }), Err(SecAggError::Protocol(_))));
    // The replaced keys are free again (they are no longer in the roster).
    server.add_keys(PublicKeys { index: 3, ..old_1 }).unwrap();
    clients.push(stale);
    clients[3].assign_index(3).unwrap();
    let roster = server.close_keys().unwrap();
    assert_eq!(roster.len(), 4);
    assert!(matches!(server.replace_keys(new_keys), Err(SecAggError::Phase(_))), "the roster is out");
    for c in &mut clients {
        let shares = c.share_keys(&roster, 4, &mut rng).unwrap();
        server.add_shares(c.index(), shares).unwrap();
    }
    server.close_shares().unwrap();
    for c in &mut clients {
        let masked = c.mask(&server.shares_for(c.index()), input(c.index())).unwrap();
        server.add_masked(&masked).unwrap();
    }
    let survivors = server.close_masked().unwrap();
    for c in &mut clients {
        let reveals = c.unmask(&survivors).unwrap();
        server.add_reveals(c.index(), reveals).unwrap();
    }
    let (sum, n) = server.finish().unwrap();
    assert_eq!((sum, n), (plain_sum(0..4), 4), "the masks cancel with the replaced keys");
}

#[test]
fn masked_inputs_round_trip_and_refuse_corruption() {
    let m = MaskedInput { index: 42, values: vec![1, u32::MAX, 7] };
    let bytes = encode_masked_input(&m);
    assert_eq!(bytes.len(), 17 + 12);
    assert_eq!(decode_masked_input(&bytes).unwrap(), m);
    for at in [0, 4, 9, 20, bytes.len() - 1] {
        let mut bad = bytes.clone();
        bad[at] ^= 1;
        assert!(decode_masked_input(&bad).is_err(), "byte {at}");
    }
    assert!(decode_masked_input(&bytes[..bytes.len() - 1]).is_err());
}

#[test]
fn graph_is_symmetric_regular_and_session_dependent() {
    let members: Vec<u32> = (0..50).collect();
    let s1 = SessionId::new("f", 1, 10, 8);
    let g = neighbour_graph(&members, 8, &s1);
    for (m, nb) in &g {
        assert_eq!(nb.len(), 8);
        assert!(!nb.contains(m));
        for v in nb {
            assert!(g[v].contains(m), "{m} → {v} not symmetric");
        }
    }
    assert_ne!(g, neighbour_graph(&members, 8, &SessionId::new("f", 2, 10, 8)));
    assert_eq!(neighbour_graph(&members[..5], 8, &s1)[&0].len(), 4, "complete when k ≥ n − 1");
}
