//! The one update builder, shared by the browser client, the simulator and tests: a client's
//! model delta (already laid out as the federation's tensors) is clipped and noised as ONE
//! vector (client-level DP: the sensitivity is C over the whole update) and put into the wire
//! [`Update`] with weight 1 — what the worker enforces and the DP accounting assumes.

use crate::error::ProtocolError;
use crate::types::{DpParams, FederationMode, NamedTensor, Update};
use fedsearch_privacy::{NoiseRng, clip_to_norm, l2_norm, privatize_update};

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
}
