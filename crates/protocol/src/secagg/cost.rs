//! What one client's part of a secure round costs, measured the same way natively
//! (`fedsearch bench secagg`) and in the tab (`web/bench.html?secagg=DIM,K`, via the client's
//! `secaggClientCost`): one client with `k` neighbours (a complete graph of `k + 1`), its keys,
//! sealed shares, the masked update built by `build_secure_update` (clip, quantise, Skellam
//! share, `k + 1` mask expansions) and its unmasking answer, each phase timed with the caller's
//! clock, and the bytes it sends and receives in the worker's encodings. The other clients'
//! keys and shares are prepared beforehand and not timed.

use super::{SecAggClient, SecAggError, SecAggServer, SessionId, encode_masked_input, message_bytes};
use crate::build::build_secure_update;
use crate::dp::NoiseRng;
use crate::types::NamedTensor;
use fedsearch_privacy::SkellamParams;
use serde::Serialize;

/// Milliseconds per phase and bytes of one client's part of a secure round.
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct ClientCost {
    pub dim: usize,
    pub neighbours: usize,
    pub keys_ms: f64,
    pub shares_ms: f64,
    /// Opening the neighbours' shares, clipping, quantising, the Skellam share and the masks.
    pub mask_ms: f64,
    pub unmask_ms: f64,
    pub total_ms: f64,
    /// Sent: keys, sealed shares, the masked input, the reveals.
    pub bytes_up: usize,
    /// Received: the roster, the shares addressed to it, the survivor list.
    pub bytes_down: usize,
    /// `(bytes_up + bytes_down) / (4 · dim)`: traffic against a plain f32 update.
    pub traffic_ratio: f64,
}

/// Measures one client's part of a secure round over `dim` values with `neighbours` neighbours
/// and distributed DP planned for ε = 8 over 10 rounds of 1,000 clients; `now_ms` is the clock.
pub fn client_cost(dim: usize, neighbours: usize, now_ms: &dyn Fn() -> f64) -> Result<ClientCost, SecAggError> {
    let fail = |e: String| SecAggError::Protocol(e);
    if dim == 0 || !(1..=254).contains(&neighbours) {
        return Err(fail(format!("need dim ≥ 1 and 1 ≤ neighbours ≤ 254, got {dim} and {neighbours}")));
    }
    let params = SkellamParams::for_target(8.0, 1e-5, 10, 1.0, dim, 1000, 800).map_err(|e| fail(e.to_string()))?;
    let session = SessionId::new("cost", 1, dim, neighbours);
    let mut rng = NoiseRng::from_seed([11; 32]);
    let mut server = SecAggServer::new(session, dim, neighbours, 2);
    let t0 = now_ms();
    let (mut me, my_keys) = SecAggClient::new(0, session, 2, &mut rng);
    let keys_ms = now_ms() - t0;
    server.add_keys(my_keys)?;
    let mut others = Vec::new();
    for i in 1..=neighbours as u32 {
        let (c, k) = SecAggClient::new(i, session, 2, &mut rng);
        server.add_keys(k)?;
        others.push(c);
    }
    let roster = server.close_keys()?;
    let t0 = now_ms();
    let my_shares = me.share_keys(&roster, neighbours, &mut rng)?;
    let shares_ms = now_ms() - t0;
    let sent_shares = message_bytes(&my_shares);
    server.add_shares(0, my_shares)?;
    for c in &mut others {
        let s = c.share_keys(&roster, neighbours, &mut rng)?;
        server.add_shares(c.index(), s)?;
    }
    server.close_shares()?;
    let for_me = server.shares_for(0);
    // A delta of norm 2 (so clipping works), spread over every value.
    let value = 2.0 / (dim as f32).sqrt();
    let deltas = vec![NamedTensor::new("update", vec![dim as u32], vec![value; dim])];
    let t0 = now_ms();
    let built =
        build_secure_update(&deltas, &params, true, &mut rng, &mut me, &for_me).map_err(|e| fail(e.to_string()))?;
    let mask_ms = now_ms() - t0;
    let masked_bytes = encode_masked_input(&built.masked).len();
    let survivors: Vec<u32> = (0..=neighbours as u32).collect();
    let t0 = now_ms();
    let reveals = me.unmask(&survivors)?;
    let unmask_ms = now_ms() - t0;
    let bytes_up = message_bytes(&my_keys) + sent_shares + masked_bytes + message_bytes(&reveals);
    let bytes_down = message_bytes(&roster) + message_bytes(&for_me) + message_bytes(&survivors);
    Ok(ClientCost {
        dim,
        neighbours,
        keys_ms,
        shares_ms,
        mask_ms,
        unmask_ms,
        total_ms: keys_ms + shares_ms + mask_ms + unmask_ms,
        bytes_up,
        bytes_down,
        traffic_ratio: (bytes_up + bytes_down) as f64 / (4.0 * dim as f64),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_small_round_costs_something_and_counts_its_bytes() {
        let start = std::time::Instant::now();
        let now = || start.elapsed().as_secs_f64() * 1e3;
        let c = client_cost(1000, 8, &now).unwrap();
        assert!(c.total_ms >= c.mask_ms && c.mask_ms >= 0.0);
        // The masked input alone is 4 bytes a value plus its 17-byte frame.
        assert!(c.bytes_up > 4 * 1000 + 17 && c.bytes_down > 0, "{c:?}");
        assert!(client_cost(0, 8, &now).is_err() && client_cost(10, 300, &now).is_err());
    }
}
