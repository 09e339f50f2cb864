//! Client-level DP for a whole model update (the federated "DP-FedAvg"
//! recipe): clip the update to `C`, add N(0, (σC)²) per coordinate; and the
//! matching server-side plausibility bound on the norm of what arrives.

use crate::clip::{check_clip, clip_to_norm};
use crate::error::{PrivacyError, Result};
use crate::noise::{NoiseRng, add_gaussian_noise};

/// What [`privatize_update`] did.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct PrivatizeReport {
    /// L2 norm of the raw update.
    pub norm_before_clip: f64,
    /// L2 norm after clipping (before noise); always `≤ C`.
    pub norm_after_clip: f64,
    /// Standard deviation of the per-coordinate noise: `σ · C`.
    pub noise_std: f64,
}

fn check_sigma(sigma: f64) -> Result<()> {
    if sigma > 0.0 && sigma.is_finite() {
        Ok(())
    } else {
        Err(PrivacyError::InvalidParameter {
            name: "noise multiplier sigma",
            value: sigma,
            expected: "positive and finite",
        })
    }
}

/// Privatizes a model update in place: clip `delta` to L2 norm `clip`, then add
/// independent N(0, (noise_multiplier · clip)²) noise to every coordinate.
///
/// This is the Gaussian mechanism with sensitivity `clip`; account for it with
/// [`crate::RdpAccountant::step`]`(noise_multiplier, q, 1)` per round, where `q`
/// is the probability this client was sampled for the round.
///
/// Errors (leaving `delta` untouched) if `clip` is not a positive normal `f32`,
/// `noise_multiplier` is not positive and finite, or `delta` contains NaN/∞.
pub fn privatize_update(
    delta: &mut [f32],
    clip: f32,
    noise_multiplier: f32,
    rng: &mut NoiseRng,
) -> Result<PrivatizeReport> {
    check_clip(clip)?;
    check_sigma(f64::from(noise_multiplier))?;
    let noise_std = f64::from(noise_multiplier) * f64::from(clip);
    let report = clip_to_norm(delta, clip)?;
    add_gaussian_noise(delta, noise_std, rng)?;
    Ok(PrivatizeReport { norm_before_clip: report.norm_before, norm_after_clip: report.norm_after, noise_std })
}

/// Largest L2 norm a server should accept for a `dim`-dimensional update that
/// claims to be clipped to `clip` and noised with multiplier `sigma`:
///
/// `C + σC · (√dim + 10)`.
///
/// Why: the update is `u + z` with `‖u‖ ≤ C` and `z ~ N(0, (σC)² I)`. The map
/// `z ↦ ‖z‖/(σC)` is 1-Lipschitz with mean `≤ √dim`, so by Gaussian
/// concentration `P(‖z‖ ≥ σC(√dim + t)) ≤ exp(−t²/2)`; with `t = 10` an honest
/// update is rejected with probability below `exp(−50) ≈ 2·10⁻²²`. A norm above
/// this bound means the client skipped clipping (or used a larger `C`) — reject
/// it. The check cannot detect a client that clipped *less* within the bound.
pub fn max_plausible_norm(clip: f32, sigma: f32, dim: usize) -> Result<f64> {
    check_clip(clip)?;
    check_sigma(f64::from(sigma))?;
    let c = f64::from(clip);
    Ok(c + f64::from(sigma) * c * ((dim as f64).sqrt() + 10.0))
}

/// Probability bound that an honest update fails [`max_plausible_coordinate`].
pub const HONEST_COORDINATE_REJECTION: f64 = 1e-12;

/// Largest absolute value a server should accept in any one coordinate of a `dim`-dimensional
/// update that claims to be clipped to `clip` and noised with multiplier `sigma`:
///
/// `C + σC · k`, `k = √(2 ln(2·dim / p))`, `p` = [`HONEST_COORDINATE_REJECTION`].
///
/// Why: coordinate `i` is `u_i + z_i` with `|u_i| ≤ ‖u‖ ≤ C` and `z_i ~ N(0, (σC)²)`, and
/// `P(|z_i| > kσC) ≤ 2·exp(−k²/2)`; over `dim` coordinates an honest update exceeds the bound
/// with probability at most `p`. The L2 bound of [`max_plausible_norm`] cannot tell a
/// noise-free update that puts its whole (large) norm on one coordinate from honest noise
/// spread over all of them; this bound can: one client moves no coordinate by more than
/// `C(1 + kσ)` (about 10 C for σ = 1 and half a million coordinates), against `C` for an
/// honest clipped signal.
pub fn max_plausible_coordinate(clip: f32, sigma: f32, dim: usize) -> Result<f64> {
    check_clip(clip)?;
    check_sigma(f64::from(sigma))?;
    let c = f64::from(clip);
    let k = (2.0 * (2.0 * dim.max(1) as f64 / HONEST_COORDINATE_REJECTION).ln()).sqrt();
    Ok(c + f64::from(sigma) * c * k)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::clip::l2_norm;

    fn mean_std(v: &[f64]) -> (f64, f64) {
        let n = v.len() as f64;
        let mean = v.iter().sum::<f64>() / n;
        let var = v.iter().map(|x| (x - mean).powi(2)).sum::<f64>() / (n - 1.0);
        (mean, var.sqrt())
    }

    /// σ = 0.5, C = 2 must give noise std σC = 1.0 (not σ² C = 0.5, not σ = 0.5,
    /// not σC² = 2) within 2%, mean ≈ 0, and a Gaussian shape (68.27% within 1 std).
    #[test]
    fn emitted_noise_std_is_sigma_times_clip() {
        let n = 200_000;
        let mut rng = NoiseRng::from_seed([11; 32]);
        let mut v = vec![0.0f32; n];
        let r = privatize_update(&mut v, 2.0, 0.5, &mut rng).unwrap();
        assert_eq!(r.noise_std, 1.0);
        assert_eq!(r.norm_before_clip, 0.0);
        let x: Vec<f64> = v.iter().map(|&x| f64::from(x)).collect();
        let (mean, std) = mean_std(&x);
        assert!((std - 1.0).abs() < 0.02, "empirical std {std}, expected 1.0");
        assert!(mean.abs() < 0.01, "empirical mean {mean}");
        let within = x.iter().filter(|x| x.abs() <= 1.0).count() as f64 / n as f64;
        assert!((within - 0.6827).abs() < 0.005, "fraction within 1 std: {within}");
    }

    /// Same check with OS entropy (what production uses), on a vector that needs
    /// clipping: the residual after subtracting the clipped vector has std σC.
    #[test]
    fn noise_around_clipped_vector_with_os_entropy() {
        let n = 200_000;
        let mut rng = NoiseRng::from_os_entropy().unwrap();
        let orig: Vec<f32> = (0..n).map(|i| ((i % 7) as f32 - 3.0) * 10.0).collect();
        let mut clipped = orig.clone();
        clip_to_norm(&mut clipped, 2.0).unwrap();
        let mut v = orig.clone();
        let r = privatize_update(&mut v, 2.0, 0.5, &mut rng).unwrap();
        assert!(r.norm_before_clip > 2.0);
        assert!(r.norm_after_clip <= 2.0 && r.norm_after_clip > 1.99);
        let resid: Vec<f64> = v.iter().zip(&clipped).map(|(&a, &b)| f64::from(a) - f64::from(b)).collect();
        let (mean, std) = mean_std(&resid);
        assert!((std - 1.0).abs() < 0.02, "empirical std {std}");
        assert!(mean.abs() < 0.015, "empirical mean {mean}");
    }

    #[test]
    fn rejects_bad_parameters_without_touching_update() {
        let mut rng = NoiseRng::from_seed([0; 32]);
        let mut v = vec![1.0f32, 2.0];
        for (c, s) in [(0.0, 1.0), (-1.0, 1.0), (1.0, 0.0), (1.0, -0.5), (1.0, f32::NAN)] {
            assert!(privatize_update(&mut v, c, s, &mut rng).is_err());
        }
        assert_eq!(v, vec![1.0, 2.0]);
        let mut bad = vec![f32::NAN];
        assert!(privatize_update(&mut bad, 1.0, 1.0, &mut rng).is_err());
    }

    #[test]
    fn plausible_norm_bound() {
        assert_eq!(max_plausible_norm(2.0, 0.5, 100).unwrap(), 2.0 + 1.0 * 20.0);
        assert!(max_plausible_norm(0.0, 1.0, 10).is_err());
        assert!(max_plausible_norm(1.0, 0.0, 10).is_err());
        // Honest updates pass, across many seeds, including the all-clipped case.
        let dim = 10_000;
        let bound = max_plausible_norm(1.0, 1.0, dim).unwrap();
        for seed in 0..20u8 {
            let mut rng = NoiseRng::from_seed([seed; 32]);
            let mut v = vec![100.0f32; dim];
            privatize_update(&mut v, 1.0, 1.0, &mut rng).unwrap();
            assert!(l2_norm(&v) <= bound);
        }
        // An unclipped update with a large norm is caught.
        let mut rng = NoiseRng::from_seed([1; 32]);
        let mut v = vec![1.0f32; dim]; // norm 100 ≫ C = 1
        add_gaussian_noise(&mut v, 1.0, &mut rng).unwrap();
        assert!(l2_norm(&v) > bound);
    }

    /// Honest clipped-and-noised updates stay within the coordinate bound (their largest noise
    /// value is near `√(2 ln dim)·σC`, well below `kσC`), while a noise-free update with its
    /// whole norm on one coordinate — which passes the L2 bound — does not.
    #[test]
    fn coordinate_bound_admits_honest_updates_and_refuses_one_big_coordinate() {
        let dim = 100_000;
        let (clip, sigma) = (1.0f32, 1.0f32);
        let bound = max_plausible_coordinate(clip, sigma, dim).unwrap();
        assert!(bound > 9.0 && bound < 11.0, "{bound}");
        let mut rng = NoiseRng::from_seed([9; 32]);
        for _ in 0..5 {
            let mut v: Vec<f32> = (0..dim).map(|i| if i == 0 { 5.0 } else { 0.0 }).collect();
            privatize_update(&mut v, clip, sigma, &mut rng).unwrap();
            let max = v.iter().fold(0f32, |m, x| m.max(x.abs()));
            assert!(f64::from(max) <= bound, "honest max |x| = {max} over {bound}");
        }
        let mut poisoned = vec![0f32; dim];
        poisoned[0] = 21.0;
        assert!(l2_norm(&poisoned) <= max_plausible_norm(clip, sigma, dim).unwrap());
        assert!(f64::from(poisoned[0]) > bound);
        assert!(max_plausible_coordinate(0.0, 1.0, dim).is_err());
    }
}
