//! Distributed DP for secure aggregation: the Skellam mechanism (Agarwal, Kairouz & Liu 2021,
//! "The Skellam Mechanism for Differentially Private Federated Learning", NeurIPS).
//!
//! Each client clips its update to L2 norm `C`, scales it by `γ`, rounds it to integers with
//! conditional randomized rounding (Kairouz, Liu & Steinke 2021, "The Distributed Discrete
//! Gaussian Mechanism", §4: round stochastically, re-round until the squared norm is within a known
//! bound, so the integer vector's sensitivity is known) and adds its share of the noise,
//! `Sk(μ/m, μ/m)` per coordinate (a Poisson draw minus another). Independent Skellam variables sum
//! to a Skellam variable, so the integer sum of `m` or more surviving clients carries `Sk(μ, μ)`
//! (variance `2μ`), the noise of one central mechanism, while each client adds only `1/m` of it;
//! secure aggregation hides everything but that sum.
//!
//! RDP of `Sk(μ, μ)^d` on an integer query with L1 / L2 sensitivities `Δ1`, `Δ2` (paper, Thm 3.5),
//! for integer `α > 1`:
//!
//! `ε(α) = α Δ2² / (4μ) + min( ((2α − 1) Δ2² + 6 Δ1) / (16 μ²), 3 Δ1 / (4μ) )`,
//!
//! composed over rounds by addition and turned into (ε, δ) with the accountant's conversion.
//! `Δ2² = min(γ²C² + d/4 + √(2 ln(1/β))·(γC + √d/2), (γC + √d)²)` after conditional rounding with
//! `β = e^{-1/2}` (DDG paper, Thm 4.1 / Lemma 4.2), and `Δ1 ≤ min(√d·Δ2, Δ2²)` for integer vectors.

use serde::{Deserialize, Serialize};

use crate::accountant::{check_delta, integer_orders, privacy_spent, sigma_for_epsilon};
use crate::clip::check_clip;
use crate::error::{PrivacyError, Result};
use crate::noise::NoiseRng;

/// Failure probability of one conditional-rounding try (`e^{-1/2}`, as in the DDG paper).
pub const ROUNDING_BETA: f64 = 0.606_530_659_712_633_4;

/// Conditional rounding gives up after this many tries (each succeeds with probability ≥ 1 − β).
const MAX_ROUNDING_TRIES: usize = 1000;

/// Every coordinate of the modular sum must stay below this magnitude (a signed 32-bit value).
pub const SUM_LIMIT: f64 = 2_147_483_647.0;

/// The parameters every client of a secure round uses, and the worker checks.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct SkellamParams {
    /// L2 clip bound `C` of each client's update, in model units.
    pub clip: f64,
    /// `γ`: model units to integers (`round(γ·x)`).
    pub scale: f64,
    /// Values per update.
    pub dim: usize,
    /// `μ` of the noise the sum carries each round: `Sk(μ, μ)`.
    pub mu: f64,
    /// The fewest surviving clients the guarantee assumes; each client adds `Sk(μ/m, μ/m)`.
    pub min_clients: usize,
}

impl SkellamParams {
    /// Plans a run: the scale that keeps a sum of `max_clients` updates and its noise inside 32
    /// bits (with a factor-2 margin), and the smallest `μ` whose `rounds`-fold composition stays
    /// within `target_epsilon` at `delta`. Errors on bad parameters or an unreachable target.
    pub fn for_target(
        target_epsilon: f64,
        delta: f64,
        rounds: u64,
        clip: f64,
        dim: usize,
        max_clients: usize,
        min_clients: usize,
    ) -> Result<Self> {
        check_delta(delta)?;
        check_clip(clip as f32)?;
        if dim == 0 || min_clients == 0 || max_clients < min_clients || rounds == 0 {
            return Err(PrivacyError::InvalidParameter {
                name: "dimension / clients / rounds",
                value: dim.min(min_clients).min(rounds as usize) as f64,
                expected: "dim ≥ 1, rounds ≥ 1, 1 ≤ min_clients ≤ max_clients",
            });
        }
        // The Gaussian with the same variance is a close guide to the noise the sum will carry.
        let sigma = sigma_for_epsilon(target_epsilon, 1.0, rounds, delta)?;
        let scale = scale_for(clip, max_clients, min_clients, sigma);
        let mut p = SkellamParams { clip, scale, dim, mu: 0.0, min_clients };
        p.mu = p.mu_for_epsilon(target_epsilon, rounds, delta)?;
        p.check_no_wrap(max_clients)?;
        Ok(p)
    }

    /// `Δ2²` of one client's rounded, scaled, clipped update.
    pub fn l2_sensitivity_sq(&self) -> f64 {
        let c = self.clip * self.scale;
        let d = self.dim as f64;
        let slack = (2.0 * (1.0 / ROUNDING_BETA).ln()).sqrt();
        (c * c + d / 4.0 + slack * (c + d.sqrt() / 2.0)).min((c + d.sqrt()).powi(2))
    }

    /// `Δ1 ≤ min(√d·Δ2, Δ2²)`.
    pub fn l1_sensitivity(&self) -> f64 {
        let l2_sq = self.l2_sensitivity_sq();
        ((self.dim as f64).sqrt() * l2_sq.sqrt()).min(l2_sq)
    }

    /// Rate of each of the two Poisson draws a client adds per coordinate: `μ / m`.
    pub fn lambda_per_client(&self) -> f64 {
        self.mu / self.min_clients as f64
    }

    /// Standard deviation of the sum's noise, in model units: `√(2μ)/γ`.
    pub fn sum_noise_std(&self) -> f64 {
        (2.0 * self.mu).sqrt() / self.scale
    }

    /// The Gaussian noise multiplier with the same variance: `√(2μ)/Δ2`.
    pub fn equivalent_noise_multiplier(&self) -> f64 {
        (2.0 * self.mu).sqrt() / self.l2_sensitivity_sq().sqrt()
    }

    /// RDP of one round at integer order `alpha`. Errors on a `μ` that is not positive.
    pub fn rdp(&self, alpha: f64) -> Result<f64> {
        if !(self.mu > 0.0 && self.mu.is_finite()) {
            return Err(PrivacyError::InvalidParameter {
                name: "Skellam mu",
                value: self.mu,
                expected: "positive and finite",
            });
        }
        Ok(skellam_rdp(alpha, self.mu, self.l1_sensitivity(), self.l2_sensitivity_sq()))
    }

    /// ε after `rounds` published rounds at `delta`.
    pub fn epsilon(&self, rounds: u64, delta: f64) -> Result<f64> {
        check_delta(delta)?;
        self.rdp(2.0)?; // checks μ
        if rounds == 0 {
            return Ok(0.0);
        }
        let orders = integer_orders();
        let mut rdp = Vec::with_capacity(orders.len());
        for &a in &orders {
            rdp.push(rounds as f64 * self.rdp(a)?);
        }
        Ok(privacy_spent(&orders, &rdp, delta).0)
    }

    /// The smallest `μ` (relative precision 1e-9) with `epsilon(rounds, delta) ≤ target`.
    pub fn mu_for_epsilon(&self, target: f64, rounds: u64, delta: f64) -> Result<f64> {
        if !(target > 0.0 && target.is_finite()) {
            return Err(PrivacyError::InvalidParameter {
                name: "target epsilon",
                value: target,
                expected: "positive and finite",
            });
        }
        let l2_sq = self.l2_sensitivity_sq();
        let eps_at = |mu: f64| SkellamParams { mu, ..*self }.epsilon(rounds, delta);
        let (mut lo, mut hi) = (l2_sq * 1e-6, l2_sq * 1e12);
        let floor = eps_at(hi)?;
        if floor > target {
            return Err(PrivacyError::UnreachableEpsilon { target, floor });
        }
        if eps_at(lo)? <= target {
            return Ok(lo);
        }
        while hi / lo > 1.0 + 1e-9 {
            let mid = (lo * hi).sqrt();
            if eps_at(mid)? <= target {
                hi = mid;
            } else {
                lo = mid;
            }
        }
        Ok(hi)
    }

    /// Errors if `max_clients` updates (each `≤ γC + 1` per coordinate after rounding) plus twelve
    /// standard deviations of their noise could leave the signed 32-bit range of the modular sum.
    pub fn check_no_wrap(&self, max_clients: usize) -> Result<()> {
        let noise = 12.0 * (2.0 * self.mu * max_clients as f64 / self.min_clients as f64).sqrt();
        let worst = max_clients as f64 * (self.clip * self.scale + 1.0) + noise;
        if worst < SUM_LIMIT {
            Ok(())
        } else {
            Err(PrivacyError::InvalidParameter {
                name: "worst-case coordinate of the secure sum",
                value: worst,
                expected: "below 2^31 (lower the scale or the number of clients)",
            })
        }
    }
}

/// The scale `γ` that keeps the sum of `max_clients` clipped updates (`|x| ≤ C` per coordinate)
/// and twelve standard deviations of noise of multiplier `sigma` (0: none) within half of the
/// signed 32-bit range: `γ = 2^31 / (2·C·(n + 12σ√(n/m)))`.
pub fn scale_for(clip: f64, max_clients: usize, min_clients: usize, sigma: f64) -> f64 {
    let n = max_clients.max(1) as f64;
    let spread = n + 12.0 * sigma * (n / min_clients.max(1) as f64).sqrt();
    SUM_LIMIT / (2.0 * clip * spread)
}

/// RDP at integer order `alpha` of `Sk(μ, μ)^d` with sensitivities `l1` and `l2_sq` (= Δ2²).
pub fn skellam_rdp(alpha: f64, mu: f64, l1: f64, l2_sq: f64) -> f64 {
    alpha * l2_sq / (4.0 * mu)
        + (((2.0 * alpha - 1.0) * l2_sq + 6.0 * l1) / (16.0 * mu * mu)).min(3.0 * l1 / (4.0 * mu))
}

/// Scales an already clipped `v` by `params.scale` and rounds it to integers: each coordinate up
/// with probability equal to its fractional part, re-drawn until the squared norm is within
/// `Δ2²` (conditional randomized rounding). Errors on NaN/∞ or if no draw fits in 1,000 tries
/// (which means `v` was not clipped to `params.clip`).
pub fn quantise(v: &[f32], params: &SkellamParams, rng: &mut NoiseRng) -> Result<Vec<i64>> {
    if v.iter().any(|x| !x.is_finite()) {
        return Err(PrivacyError::NonFinite { what: "update to quantise" });
    }
    let bound = params.l2_sensitivity_sq();
    let scaled: Vec<f64> = v.iter().map(|&x| f64::from(x) * params.scale).collect();
    let mut out = vec![0i64; v.len()];
    for _ in 0..MAX_ROUNDING_TRIES {
        let mut norm_sq = 0.0;
        for (o, &x) in out.iter_mut().zip(&scaled) {
            let floor = x.floor();
            let up = rng.uniform() < x - floor;
            *o = floor as i64 + i64::from(up);
            norm_sq += (*o as f64).powi(2);
        }
        if norm_sq <= bound {
            return Ok(out);
        }
    }
    Err(PrivacyError::InvalidParameter {
        name: "rounded update norm²",
        value: out.iter().map(|&o| (o as f64).powi(2)).sum(),
        expected: "within the sensitivity bound (clip the update to the declared C first)",
    })
}

/// Adds this client's share of the noise, `Poisson(μ/m) − Poisson(μ/m)`, to every coordinate.
pub fn add_skellam_noise(v: &mut [i64], params: &SkellamParams, rng: &mut NoiseRng) -> Result<()> {
    let lambda = params.lambda_per_client();
    if !(lambda > 0.0 && lambda.is_finite()) {
        return Err(PrivacyError::InvalidParameter {
            name: "Skellam rate per client",
            value: lambda,
            expected: "positive and finite (zero noise gives no privacy)",
        });
    }
    for x in v.iter_mut() {
        let diff = rng.poisson(lambda)? as i64 - rng.poisson(lambda)? as i64;
        *x = x.saturating_add(diff);
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn params(mu: f64) -> SkellamParams {
        SkellamParams { clip: 1.0, scale: 1000.0, dim: 10_000, mu, min_clients: 10 }
    }

    #[test]
    fn rdp_matches_the_papers_formula_by_hand() {
        // α = 2, μ = 100, Δ1 = 30, Δ2² = 20:
        // 2·20/400 + min((3·20 + 180)/160000, 90/400) = 0.1 + 0.0015 = 0.1015.
        assert!((skellam_rdp(2.0, 100.0, 30.0, 20.0) - 0.1015).abs() < 1e-12);
        // Small μ: the second branch, 3Δ1/(4μ), is the smaller one.
        // α = 3, μ = 1, Δ1 = 2, Δ2² = 2: 3·2/4 + min((5·2 + 12)/16, 6/4) = 1.5 + 1.375.
        assert!((skellam_rdp(3.0, 1.0, 2.0, 2.0) - 2.875).abs() < 1e-12);
    }

    /// Values printed by `crates/privacy/scripts/skellam_ref.py` (an independent Python version of
    /// the paper's bound, the rounding bound and the conversion).
    #[test]
    fn epsilon_matches_the_reference_script() {
        for (clip, scale, dim, mu, rounds, delta, want) in [
            (1.0, 1000.0, 10_000, 1e6, 1, 1e-5, 3.196565225776106),
            (1.0, 1000.0, 10_000, 5e5, 10, 1e-5, 19.854955527078037),
            (0.5, 1e6, 532_840, 2e11, 10, 1e-5, 14.17671523912419),
            (1.0, 10.0, 100, 20.0, 3, 1e-6, 22.363888514339273),
        ] {
            let p = SkellamParams { clip, scale, dim, mu, min_clients: 1 };
            let got = p.epsilon(rounds, delta).unwrap();
            assert!((got - want).abs() < 1e-9 * want, "{p:?}: {got} vs {want}");
        }
    }

    #[test]
    fn sensitivity_follows_conditional_rounding_bound() {
        let p = params(1.0);
        // γC = 1000, d = 10,000: 1e6 + 2500 + 1·(1000 + 50) = 1,003,550 (√(2 ln(1/β)) = 1).
        assert!((p.l2_sensitivity_sq() - 1_003_550.0).abs() < 1e-6, "{}", p.l2_sensitivity_sq());
        assert!((p.l1_sensitivity() - (100.0 * 1_003_550f64.sqrt())).abs() < 1e-6);
    }

    #[test]
    fn large_mu_approaches_the_gaussian_with_the_same_variance() {
        // At large μ the Skellam RDP is the Gaussian's α Δ²/(2σ²) with σ² = 2μ: the ε of the
        // accountant at σ = √(2μ)/Δ2 must be met from above within a small margin (the Skellam
        // bound holds at integer orders only, the Gaussian's also at fractional ones).
        let mut p = params(0.0);
        p.mu = 0.5 * (1.5f64).powi(2) * p.l2_sensitivity_sq();
        let eps = p.epsilon(10, 1e-5).unwrap();
        let gauss = crate::epsilon(1.5, 1.0, 10, 1e-5).unwrap();
        assert!(eps >= gauss && eps < gauss * 1.01, "skellam {eps} gaussian {gauss}");
    }

    #[test]
    fn mu_for_epsilon_meets_the_target_and_is_tight() {
        let p = params(0.0);
        let mu = p.mu_for_epsilon(8.0, 20, 1e-5).unwrap();
        let at = |mu: f64| SkellamParams { mu, ..p }.epsilon(20, 1e-5).unwrap();
        assert!(at(mu) <= 8.0 && at(mu * 0.999) > 8.0, "{} {}", at(mu), at(mu * 0.999));
        assert!(p.mu_for_epsilon(0.01, 20, 1e-5).is_err());
    }

    #[test]
    fn composing_with_the_gaussian_accountant_adds_rdp() {
        let p = SkellamParams { clip: 1.0, scale: 1000.0, dim: 10_000, mu: 5e5, min_clients: 1 };
        let empty = crate::RdpAccountant::new();
        // Secure rounds alone: the same as the Skellam accountant.
        let alone = empty.epsilon_with_skellam(&[p; 10], 1e-5).unwrap();
        assert!((alone - p.epsilon(10, 1e-5).unwrap()).abs() < 1e-12);
        // With Gaussian rounds too: more than either part.
        let mut g = crate::RdpAccountant::new();
        g.step(2.0, 1.0, 5).unwrap();
        let both = g.epsilon_with_skellam(&[p; 10], 1e-5).unwrap();
        assert!(both > alone && both > g.epsilon(1e-5).unwrap().0, "{both}");
        assert_eq!(g.epsilon_with_skellam(&[], 1e-5).unwrap(), g.epsilon(1e-5).unwrap().0);
    }

    #[test]
    fn a_planned_run_fits_32_bits_and_meets_its_target() {
        let p = SkellamParams::for_target(8.0, 1e-5, 10, 1.0, 532_840, 1000, 800).unwrap();
        assert!(p.epsilon(10, 1e-5).unwrap() <= 8.0);
        p.check_no_wrap(1000).unwrap();
        assert!(p.check_no_wrap(3000).is_err());
        // Rounding adds at most d/4 + … to the squared norm: negligible at this scale.
        assert!(p.l2_sensitivity_sq() < (p.clip * p.scale).powi(2) * 1.001);
    }

    #[test]
    fn quantise_is_unbiased_and_within_the_bound() {
        let p = SkellamParams { clip: 1.0, scale: 10.0, dim: 4, mu: 1.0, min_clients: 1 };
        let v = [0.5f32, -0.25, 0.05, 0.0];
        let mut rng = NoiseRng::from_seed([3; 32]);
        let mut mean = [0.0f64; 4];
        for _ in 0..4000 {
            let q = quantise(&v, &p, &mut rng).unwrap();
            assert!(q.iter().map(|&x| (x as f64).powi(2)).sum::<f64>() <= p.l2_sensitivity_sq());
            assert!(q[0] == 5 && (q[1] == -3 || q[1] == -2) && (q[2] == 0 || q[2] == 1) && q[3] == 0, "{q:?}");
            for (m, x) in mean.iter_mut().zip(&q) {
                *m += *x as f64 / 4000.0;
            }
        }
        assert!((mean[1] + 2.5).abs() < 0.05 && (mean[2] - 0.5).abs() < 0.05, "{mean:?}");
        // An unclipped vector cannot meet the bound, and NaN is refused.
        assert!(quantise(&[5.0, 5.0, 5.0, 5.0], &p, &mut rng).is_err());
        assert!(quantise(&[f32::NAN, 0.0, 0.0, 0.0], &p, &mut rng).is_err());
    }

    #[test]
    fn noise_shares_sum_to_the_central_variance() {
        // 4 clients each add Sk(μ/4, μ/4): the sum's variance is 2μ.
        let p = SkellamParams { clip: 1.0, scale: 1.0, dim: 20_000, mu: 50.0, min_clients: 4 };
        let mut rng = NoiseRng::from_seed([9; 32]);
        let mut sum = vec![0i64; p.dim];
        for _ in 0..4 {
            let mut share = vec![0i64; p.dim];
            add_skellam_noise(&mut share, &p, &mut rng).unwrap();
            for (s, x) in sum.iter_mut().zip(&share) {
                *s += x;
            }
        }
        let mean = sum.iter().sum::<i64>() as f64 / p.dim as f64;
        let var = sum.iter().map(|&x| (x as f64 - mean).powi(2)).sum::<f64>() / p.dim as f64;
        assert!(mean.abs() < 0.3 && (var / 100.0 - 1.0).abs() < 0.05, "mean {mean} var {var}");
        assert!((p.sum_noise_std() - 10.0).abs() < 1e-12);
        let zero = SkellamParams { mu: 0.0, ..p };
        assert!(add_skellam_noise(&mut sum, &zero, &mut rng).is_err());
    }
}
