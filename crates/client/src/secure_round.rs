//! The tab's part of a secure round (SecAgg+ with distributed DP, `fedsearch_protocol::secagg`):
//! join the open round with fresh keys, seal shares for the neighbours, send the masked update
//! built by the one update builder (`build_secure_update`: clip, quantise, this device's share of
//! the Skellam noise, masks), and answer the unmasking request once. The worker sees only the
//! masked input; it decodes the round's sum, never this device's update. Phases are followed by
//! polling `GET …/secure`; a restarted attempt (too few clients in some phase) is joined again.

use crate::net;
use fedsearch_privacy::NoiseRng;
use fedsearch_protocol::secagg::{SecAggClient, ServerPhase, encode_masked_input};
use fedsearch_protocol::{
    FederationInfo, NamedTensor, SecureJoined, SecureRoster, SecureShares, SecureStatus, SecureSurvivors,
    build_secure_update,
};
use wasm_bindgen::prelude::*;

/// What taking part cost and sent.
pub struct SecureOutcome {
    pub round: u64,
    /// Bytes of the masked input.
    pub bytes: usize,
    pub norm_before_clip: f64,
    pub norm_after_clip: f64,
}

fn error(msg: impl AsRef<str>) -> JsValue {
    js_sys::Error::new(msg.as_ref()).into()
}

/// Polls the round's status every 250 ms until `done` holds, for at most `limit_s` seconds.
async fn wait_for(
    status_url: &str,
    limit_s: f64,
    what: &str,
    done: impl Fn(&SecureStatus) -> bool,
) -> Result<SecureStatus, JsValue> {
    let start = js_sys::Date::now();
    loop {
        let s: SecureStatus = net::get_json(status_url, "reading the secure round").await?;
        if done(&s) {
            return Ok(s);
        }
        if js_sys::Date::now() - start > limit_s * 1000.0 {
            return Err(error(format!(
                "the secure round did not reach {what} within {limit_s:.0} s (round {}, phase {:?}, clients per phase {:?})",
                s.round, s.phase, s.counts
            )));
        }
        net::sleep_ms(250).await?;
    }
}

/// Waits until the attempt `s` reaches `phase`; `false` when the round moved on to another
/// attempt or round first (too few clients in some phase: join the new attempt).
async fn reached(status_url: &str, limit_s: f64, s: &SecureStatus, phase: ServerPhase) -> Result<bool, JsValue> {
    let same = |t: &SecureStatus| t.round == s.round && t.attempt == s.attempt;
    let t =
        wait_for(status_url, limit_s, &format!("its {phase:?} phase"), |t| !same(t) || t.phase >= Some(phase)).await?;
    Ok(same(&t))
}

/// Runs one secure round for `deltas` (the federation's tensors, against `base_version`).
/// `fed_url(path)` is the federation's URL + path. Errors when the round moves to another model
/// version, restarts more than twice, or a phase does not come within its deadline twice over.
pub async fn contribute(
    fed_url: &dyn Fn(&str) -> String,
    info: &FederationInfo,
    credential: &str,
    deltas: &[NamedTensor],
    base_version: u64,
) -> Result<SecureOutcome, JsValue> {
    let sec = info.secure.ok_or_else(|| error("this federation does not aggregate securely"))?;
    let mut rng = NoiseRng::from_os_entropy().map_err(|e| error(format!("no secure randomness: {e}")))?;
    let status_url = fed_url("/secure");
    let limit = 3.0 * sec.phase_secs as f64 + 10.0;
    for _ in 0..3 {
        // Join at the keys phase of a round on the model this delta is against.
        let s = wait_for(&status_url, limit, "its keys phase", |s| {
            s.phase == Some(ServerPhase::Keys) || s.phase.is_none() || s.base_version != base_version
        })
        .await?;
        if s.phase.is_none() {
            return Err(error("the federation has published all its planned secure rounds"));
        }
        if s.base_version != base_version {
            return Err(error(format!(
                "the federation moved on to version {}: sync (syncGlobal), train again, then contribute",
                s.base_version
            )));
        }
        let q = |path: &str| fed_url(&format!("/secure/{path}?round={}&attempt={}", s.round, s.attempt));
        let (mut client, keys) = SecAggClient::new(0, s.session, sec.params.min_clients, &mut rng);
        let joined: SecureJoined =
            net::post_json_auth(&q("keys"), &keys, credential, "joining the secure round").await?;
        client.assign_index(joined.index).map_err(|e| error(e.to_string()))?;
        if !reached(&status_url, limit, &s, ServerPhase::Shares).await? {
            continue;
        }
        let roster: SecureRoster =
            net::get_json_auth(&fed_url("/secure/roster"), credential, "reading the roster").await?;
        let shares = client.share_keys(&roster.roster, sec.neighbours, &mut rng).map_err(|e| error(e.to_string()))?;
        let _: serde_json::Value = net::post_json_auth(&q("shares"), &shares, credential, "sending the shares").await?;

        if !reached(&status_url, limit, &s, ServerPhase::Masked).await? {
            continue;
        }
        let mine: SecureShares =
            net::get_json_auth(&fed_url("/secure/shares"), credential, "reading the shares").await?;
        let built = build_secure_update(deltas, &sec.params, sec.params.mu > 0.0, &mut rng, &mut client, &mine.shares)
            .map_err(|e| error(format!("cannot build the masked update: {e}")))?;
        let body = encode_masked_input(&built.masked);
        let resp = net::post_binary(&q("masked"), &body, credential).await?;
        if !resp.ok() {
            return Err(net::http_error("sending the masked update", &resp).await);
        }

        if !reached(&status_url, limit, &s, ServerPhase::Unmask).await? {
            continue;
        }
        let survivors: SecureSurvivors =
            net::get_json_auth(&fed_url("/secure/survivors"), credential, "reading the survivors").await?;
        let reveals = client.unmask(&survivors.survivors).map_err(|e| error(e.to_string()))?;
        let _: serde_json::Value = net::post_json_auth(&q("reveals"), &reveals, credential, "unmasking").await?;
        // Counted once the round is published (or restarted without this device's input).
        let t = wait_for(&status_url, limit, "publication", |t| t.round != s.round || t.attempt != s.attempt).await?;
        if t.round == s.round {
            continue;
        }
        return Ok(SecureOutcome {
            round: s.round,
            bytes: body.len(),
            norm_before_clip: built.norm_before_clip,
            norm_after_clip: built.norm_after_clip,
        });
    }
    Err(error("the secure round restarted three times without enough clients: try again later"))
}
