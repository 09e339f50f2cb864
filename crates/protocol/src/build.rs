//! The one update builder, shared by the browser client, the simulator and tests: a client's
//! model delta (already laid out as the federation's tensors) is clipped and noised as ONE
//! vector (client-level DP: the sensitivity is C over the whole update) and put into the wire
//! [`Update`] with weight 1 — what the worker enforces and the DP accounting assumes.
//!
//! Under secure aggregation the same builder goes further ([`build_secure_update`]): clip →
//! scale and round to integers → add this client's share of the Skellam noise → mask
//! ([`crate::secagg`]); the worker only ever decodes the sum ([`secure_mean`]), in which every
//! surviving client weighs 1.

use crate::error::ProtocolError;
use crate::secagg::{EncryptedShare, MaskedInput, SecAggClient};
use crate::types::{DpParams, FederationMode, NamedTensor, TensorSpec, Update};
use fedsearch_privacy::{
    NoiseRng, SkellamParams, add_skellam_noise, clip_to_norm, l2_norm, privatize_update, quantise,
};

/// What is done to the delta before it leaves the device.
pub enum UpdatePrivacy<'a> {
    /// Clip to L2 norm `clip`, add N(0, (σ·clip)²) to every coordinate from a CSPRNG.
    Gaussian { clip: f32, noise_multiplier: f32, rng: &'a mut NoiseRng },
    /// Clip only (a simulation without noise; never what the tab sends under DP).
    ClipOnly { clip: f32 },
    /// Neither (a simulation without DP).
    Exact,
}

/// Who sends the update, for which round and version, and the DP parameters it declares.
#[derive(Debug, Clone)]
pub struct UpdateHeader {
    pub federation_id: String,
    pub round: u64,
    pub client_id: String,
    pub base_version: u64,
    pub mode: FederationMode,
    pub dp: DpParams,
}

/// The built update and what privatizing it did.
#[derive(Debug, Clone)]
pub struct BuiltUpdate {
    pub update: Update,
    /// L2 norm of the raw delta.
    pub norm_before_clip: f64,
    /// L2 norm after clipping, before noise (the raw norm when nothing clips).
    pub norm_after_clip: f64,
    /// Per-coordinate noise standard deviation σ·C (0 without noise).
    pub noise_std: f64,
}

/// Builds the update from `deltas` (local minus base, one tensor per federated tensor, in the
/// federation's order): privatizes their concatenation as one vector, writes it back, and sets
/// `num_examples = 1`. Errors (nothing built) on a non-finite delta or invalid DP parameters.
pub fn build_update(
    header: UpdateHeader,
    mut deltas: Vec<NamedTensor>,
    privacy: UpdatePrivacy<'_>,
) -> Result<BuiltUpdate, ProtocolError> {
    let privacy_error = |e: fedsearch_privacy::PrivacyError| ProtocolError::Privacy(e.to_string());
    let mut flat: Vec<f32> = deltas.iter().flat_map(|t| t.data.iter().copied()).collect();
    let (norm_before_clip, norm_after_clip, noise_std) = match privacy {
        UpdatePrivacy::Gaussian { clip, noise_multiplier, rng } => {
            let r = privatize_update(&mut flat, clip, noise_multiplier, rng).map_err(privacy_error)?;
            (r.norm_before_clip, r.norm_after_clip, r.noise_std)
        }
        UpdatePrivacy::ClipOnly { clip } => {
            let r = clip_to_norm(&mut flat, clip).map_err(privacy_error)?;
            (r.norm_before, r.norm_after, 0.0)
        }
        UpdatePrivacy::Exact => {
            let n = l2_norm(&flat);
            if !n.is_finite() {
                return Err(ProtocolError::Privacy("the update contains NaN or infinity".into()));
            }
            (n, n, 0.0)
        }
    };
    let mut off = 0;
    for t in &mut deltas {
        let n = t.data.len();
        t.data.copy_from_slice(&flat[off..off + n]);
        off += n;
    }
    let update = Update {
        federation_id: header.federation_id,
        round: header.round,
        client_id: header.client_id,
        base_version: header.base_version,
        num_examples: 1,
        mode: header.mode,
        dp: header.dp,
        tensors: deltas,
    };
    Ok(BuiltUpdate { update, norm_before_clip, norm_after_clip, noise_std })
}

/// A masked update and what privatizing it did.
#[derive(Debug, Clone)]
pub struct BuiltSecureUpdate {
    pub masked: MaskedInput,
    /// L2 norm of the raw delta.
    pub norm_before_clip: f64,
    /// L2 norm after clipping.
    pub norm_after_clip: f64,
}

/// Builds a client's input to a secure round from `deltas` (the federation's tensors in order):
/// clips their concatenation to `params.clip`, scales and rounds it to integers (conditional
/// randomized rounding), adds `Sk(μ/m, μ/m)` per coordinate when `noise` is on (distributed DP),
/// and masks it with `secagg` using the neighbours' `shares`. Errors (nothing built) on a
/// non-finite delta, a length other than `params.dim`, or a protocol failure.
pub fn build_secure_update(
    deltas: &[NamedTensor],
    params: &SkellamParams,
    noise: bool,
    rng: &mut NoiseRng,
    secagg: &mut SecAggClient,
    shares: &[EncryptedShare],
) -> Result<BuiltSecureUpdate, ProtocolError> {
    let privacy_error = |e: fedsearch_privacy::PrivacyError| ProtocolError::Privacy(e.to_string());
    let mut flat: Vec<f32> = deltas.iter().flat_map(|t| t.data.iter().copied()).collect();
    if flat.len() != params.dim {
        return Err(ProtocolError::Privacy(format!(
            "the update has {} values, the secure round {}",
            flat.len(),
            params.dim
        )));
    }
    let clipped = clip_to_norm(&mut flat, params.clip as f32).map_err(privacy_error)?;
    let mut ints = quantise(&flat, params, rng).map_err(privacy_error)?;
    if noise {
        add_skellam_noise(&mut ints, params, rng).map_err(privacy_error)?;
    }
    // Modulo 2^32: two's complement wrapping keeps negative values exact in the sum.
    let input: Vec<u32> = ints.iter().map(|&x| x as u32).collect();
    let masked = secagg.mask(shares, input).map_err(|e| ProtocolError::Privacy(e.to_string()))?;
    Ok(BuiltSecureUpdate { masked, norm_before_clip: clipped.norm_before, norm_after_clip: clipped.norm_after })
}

/// The mean update from a secure round's unmasked sum of `survivors` inputs: each coordinate read
/// as a signed 32-bit integer (the plan keeps honest sums inside that range), divided by the
/// scale and by the number of survivors (every update weighs 1), laid out as `specs`.
pub fn secure_mean(
    sum: &[u32],
    survivors: usize,
    params: &SkellamParams,
    specs: &[TensorSpec],
) -> Result<Vec<NamedTensor>, ProtocolError> {
    if survivors == 0 {
        return Err(ProtocolError::EmptyAggregate);
    }
    let total: usize = specs.iter().map(TensorSpec::numel).sum();
    if sum.len() != total || total != params.dim {
        return Err(ProtocolError::Privacy(format!("the secure sum has {} values, the model {total}", sum.len())));
    }
    let inv = 1.0 / (params.scale * survivors as f64);
    let mut off = 0;
    Ok(specs
        .iter()
        .map(|s| {
            let n = s.numel();
            let data = sum[off..off + n].iter().map(|&v| (f64::from(v as i32) * inv) as f32).collect();
            off += n;
            NamedTensor::new(s.name.clone(), s.shape.clone(), data)
        })
        .collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn header() -> UpdateHeader {
        UpdateHeader {
            federation_id: "f".into(),
            round: 3,
            client_id: "c".into(),
            base_version: 2,
            mode: FederationMode::Personal,
            dp: DpParams { clip: 1.0, noise_multiplier: 0.5, delta: 1e-5, epsilon_spent: 0.1 },
        }
    }

    fn deltas() -> Vec<NamedTensor> {
        // Norm 5 over both tensors together (3 and 4), each under the clip alone.
        vec![NamedTensor::new("a", vec![1], vec![3.0]), NamedTensor::new("b", vec![1], vec![4.0])]
    }

    #[test]
    fn clips_the_whole_update_as_one_vector_and_weighs_it_one() {
        let built = build_update(header(), deltas(), UpdatePrivacy::ClipOnly { clip: 1.0 }).unwrap();
        let v: Vec<f32> = built.update.tensors.iter().map(|t| t.data[0]).collect();
        assert!((v[0] - 0.6).abs() < 1e-6 && (v[1] - 0.8).abs() < 1e-6, "{v:?}");
        assert_eq!((built.norm_before_clip, built.noise_std), (5.0, 0.0));
        assert!((built.norm_after_clip - 1.0).abs() < 1e-6);
        assert_eq!(built.update.num_examples, 1);
        assert_eq!((built.update.round, built.update.base_version), (3, 2));
        assert_eq!(built.update.tensors[1].name, "b");
    }

    #[test]
    fn gaussian_adds_noise_of_sigma_c() {
        let mut rng = NoiseRng::from_seed([7; 32]);
        let big = vec![NamedTensor::new("a", vec![10_000], vec![0.0; 10_000])];
        let built =
            build_update(header(), big, UpdatePrivacy::Gaussian { clip: 2.0, noise_multiplier: 0.5, rng: &mut rng })
                .unwrap();
        let d = &built.update.tensors[0].data;
        let var = d.iter().map(|x| f64::from(*x).powi(2)).sum::<f64>() / d.len() as f64;
        assert_eq!(built.noise_std, 1.0);
        assert!((var.sqrt() - 1.0).abs() < 0.05, "noise std {}", var.sqrt());
    }

    #[test]
    fn refuses_non_finite_deltas_and_bad_parameters() {
        let mut bad = deltas();
        bad[0].data[0] = f32::NAN;
        for privacy in [UpdatePrivacy::Exact, UpdatePrivacy::ClipOnly { clip: 1.0 }] {
            assert!(build_update(header(), bad.clone(), privacy).is_err());
        }
        assert!(build_update(header(), deltas(), UpdatePrivacy::ClipOnly { clip: 0.0 }).is_err());
        let mut rng = NoiseRng::from_seed([1; 32]);
        let r = build_update(
            header(),
            deltas(),
            UpdatePrivacy::Gaussian { clip: 1.0, noise_multiplier: -1.0, rng: &mut rng },
        );
        assert!(r.is_err());
    }

    #[test]
    fn a_secure_round_yields_the_mean_of_the_clipped_updates() {
        use crate::secagg::{SecAggServer, SessionId};
        let specs = vec![TensorSpec::new("a", vec![2]), TensorSpec::new("b", vec![1])];
        let params = SkellamParams { clip: 1.0, scale: 1e6, dim: 3, mu: 1.0, min_clients: 3 };
        let deltas = [[0.3f32, -0.4, 0.0], [0.0, 0.0, -2.0], [0.1, 0.1, 0.1]];
        let session = SessionId::new("f", 1, 3, 2);
        let mut rng = NoiseRng::from_seed([2; 32]);
        let mut server = SecAggServer::new(session, 3, 2, 2);
        let mut clients: Vec<SecAggClient> = (0..3)
            .map(|i| {
                let (c, k) = SecAggClient::new(i, session, 2, &mut rng);
                server.add_keys(k).unwrap();
                c
            })
            .collect();
        let roster = server.close_keys().unwrap();
        for c in &mut clients {
            let s = c.share_keys(&roster, 2, &mut rng).unwrap();
            server.add_shares(c.index(), s).unwrap();
        }
        server.close_shares().unwrap();
        for (c, d) in clients.iter_mut().zip(&deltas) {
            let t = vec![NamedTensor::new("a", vec![2], d[..2].to_vec()), NamedTensor::new("b", vec![1], vec![d[2]])];
            let shares = server.shares_for(c.index());
            let built = build_secure_update(&t, &params, false, &mut rng, c, &shares).unwrap();
            server.add_masked(&built.masked).unwrap();
        }
        let survivors = server.close_masked().unwrap();
        for c in &mut clients {
            server.add_reveals(c.index(), c.unmask(&survivors).unwrap()).unwrap();
        }
        let (sum, n) = server.finish().unwrap();
        let mean = secure_mean(&sum, n, &params, &specs).unwrap();
        // The second update is clipped to norm 1; the mean is exact to the rounding (1e-6).
        let want = [(0.3 + 0.1) / 3.0, (-0.4 + 0.1) / 3.0, (-1.0 + 0.1) / 3.0];
        let got = [mean[0].data[0], mean[0].data[1], mean[1].data[0]];
        for (g, w) in got.iter().zip(want) {
            assert!((f64::from(*g) - w).abs() < 2e-6, "{got:?} vs {want:?}");
        }
        assert_eq!(mean[1].name, "b");
        assert!(secure_mean(&sum, 0, &params, &specs).is_err());
        assert!(secure_mean(&sum[..2], n, &params, &specs).is_err());
    }
}
