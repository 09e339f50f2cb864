//! Contributing: the privatized update built from the local model's delta to the global model
//! it started from (one update builder: `fedsearch_protocol::build_update`), and the privacy
//! accounting and round bookkeeping after it was accepted.

use super::*;

/// What [`build_update`] produced, besides the body.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ContributionReport {
    pub round: u64,
    pub base_version: u64,
    pub bytes: usize,
    pub norm_before_clip: f64,
    pub norm_after_clip: f64,
    pub noise_std: f64,
    pub epsilon_before: f64,
    pub epsilon: f64,
    pub delta: f64,
    pub tensors: Vec<String>,
}

/// The delta of the local model against the global version it started from, laid out as the
/// federation's tensors (adapter; in shared mode also the head's federated columns). Errors when
/// the model does not fit the federation or the federation moved on since it started.
pub fn contribution_deltas(state: &State, info: &FederationInfo) -> Result<Vec<NamedTensor>> {
    let d = state.dim();
    if info.dim as usize != d {
        return err(format!(
            "the federation's model width is {} but this model's is {d}: the federation uses another model",
            info.dim
        ));
    }
    let Some(global) = &state.meta.global else {
        return err("sync with the federation (syncGlobal) before contributing");
    };
    if global.federation_id != info.id {
        return err(format!("the local model started from federation {:?}, not {:?}", global.federation_id, info.id));
    }
    if global.version != info.current_version {
        return err(format!(
            "the federation moved on to version {} since this model started from version {}: \
             sync (syncGlobal), train again, then contribute",
            info.current_version, global.version
        ));
    }
    let (m, b) = (&state.model, &state.base);
    let mut tensors = vec![
        NamedTensor::new(ADAPTER_WEIGHT, vec![d as u32, d as u32], m.delta(b, ADAPTER_WEIGHT)?),
        NamedTensor::new(ADAPTER_BIAS, vec![d as u32], m.delta(b, ADAPTER_BIAS)?),
    ];
    if info.mode == FederationMode::Shared {
        let n_fed = info.n_docs as usize;
        let mut hw = vec![0.0f32; d * n_fed];
        let mut hb = vec![0.0f32; n_fed];
        let n_local = m.n_docs();
        for (i, col) in state.federated_columns().into_iter().enumerate() {
            let Some(j) = col.filter(|&j| j < n_fed) else { continue };
            for r in 0..d {
                hw[r * n_fed + j] = m.head_w[r * n_local + i] - b.head_w[r * n_local + i];
            }
            hb[j] = m.head_b[i] - b.head_b[i];
        }
        tensors.push(NamedTensor::new(HEAD_WEIGHT, vec![d as u32, n_fed as u32], hw));
        tensors.push(NamedTensor::new(HEAD_BIAS, vec![n_fed as u32], hb));
    }
    Ok(tensors)
}

/// The delta ([`contribution_deltas`]), privatized (clip to the federation's C, add
/// N(0, (σC)²) noise from a CSPRNG) and encoded as the worker's binary `Update`.
/// In personal mode only the adapter is sent. It contains numbers only: no text, no document
/// ids, no queries. `num_examples` is always 1 (uniform weights: each client's influence on
/// the average is bounded by C, which is what the DP accounting assumes).
pub fn build_update(
    state: &State,
    info: &FederationInfo,
    client_id: &str,
    rng: &mut NoiseRng,
) -> Result<(Vec<u8>, Update, ContributionReport)> {
    if info.secure.is_some() {
        return err("this federation aggregates securely: contribute through its secure round");
    }
    let tensors = contribution_deltas(state, info)?;
    let Some(global) = &state.meta.global else {
        return err("sync with the federation (syncGlobal) before contributing");
    };
    // Clip and noise the whole delta at once (client-level DP), weight 1: the one builder.
    let epsilon_before = state.meta.privacy.epsilon();
    let epsilon = state.meta.privacy.epsilon_after(info.dp.noise_multiplier, info.dp.delta)?;
    let header = UpdateHeader {
        federation_id: info.id.clone(),
        round: info.current_round,
        client_id: client_id.to_string(),
        base_version: global.version,
        mode: info.mode,
        dp: DpParams {
            clip: info.dp.clip,
            noise_multiplier: info.dp.noise_multiplier,
            delta: info.dp.delta,
            epsilon_spent: epsilon,
        },
    };
    let privacy = UpdatePrivacy::Gaussian { clip: info.dp.clip, noise_multiplier: info.dp.noise_multiplier, rng };
    let rep = fedsearch_protocol::build_update(header, tensors, privacy)
        .map_err(|e| ClientError::new(format!("cannot privatize the update: {e}")))?;
    let update = rep.update;
    let body = encode_update(&update, Encoding::F32);
    let report = ContributionReport {
        round: info.current_round,
        base_version: global.version,
        bytes: body.len(),
        norm_before_clip: rep.norm_before_clip,
        norm_after_clip: rep.norm_after_clip,
        noise_std: rep.noise_std,
        epsilon_before,
        epsilon,
        delta: info.dp.delta,
        tensors: update.tensors.iter().map(|t| t.name.clone()).collect(),
    };
    Ok((body, update, report))
}

/// Books a secure round this device took part in (its masked input was counted).
pub fn record_secure_contribution(state: &mut State, info: &FederationInfo, round: u64, bytes: usize) -> Result<()> {
    let Some(sec) = &info.secure else { return err("not a secure federation") };
    let p = &mut state.meta.privacy;
    if sec.params.mu > 0.0 {
        p.secure_rounds.push(sec.params);
    }
    p.delta = Some(info.dp.delta);
    p.contributions += 1;
    p.rounds.push(round);
    p.bytes_sent += bytes as u64;
    p.last_clip = Some(info.dp.clip);
    Ok(())
}

/// Books an accepted contribution in the privacy state.
pub fn record_contribution(state: &mut State, info: &FederationInfo, report: &ContributionReport) -> Result<()> {
    let p = &mut state.meta.privacy;
    p.accountant
        .step(f64::from(info.dp.noise_multiplier), 1.0, 1)
        .map_err(|e| ClientError::new(format!("privacy accounting: {e}")))?;
    p.delta = Some(info.dp.delta);
    p.contributions += 1;
    p.rounds.push(report.round);
    p.bytes_sent += report.bytes as u64;
    p.last_clip = Some(info.dp.clip);
    p.last_noise_multiplier = Some(info.dp.noise_multiplier);
    Ok(())
}
