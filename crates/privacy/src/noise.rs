//! The only source of privacy noise: a ChaCha20 CSPRNG ([`NoiseRng`]) and
//! Gaussian sampling on top of it.
//!
//! DP noise must be unpredictable to whoever sees the noised update, so it
//! comes from a cryptographic generator seeded with 32 bytes of OS entropy
//! (`getrandom`; in the browser, `crypto.getRandomValues`). `NoiseRng` is
//! deliberately not `Clone`: two copies would emit the same noise, and a party
//! that sees two updates noised identically can cancel the noise.

use rand_chacha::ChaCha20Rng;
use rand_chacha::rand_core::{RngCore, SeedableRng};
use rand_distr::{Distribution, Poisson, StandardNormal};

use crate::error::{PrivacyError, Result};

/// A ChaCha20 CSPRNG used for all privacy noise.
pub struct NoiseRng {
    inner: ChaCha20Rng,
}

impl NoiseRng {
    /// Seeds a fresh generator with 32 bytes from the OS (native) or
    /// `crypto.getRandomValues` (browser). This is the constructor to use for
    /// anything that leaves the device.
    pub fn from_os_entropy() -> Result<Self> {
        let mut seed = [0u8; 32];
        getrandom::fill(&mut seed).map_err(|e| PrivacyError::Entropy(e.to_string()))?;
        Ok(Self::from_seed(seed))
    }

    /// A generator with a fixed seed, for tests and reproducible simulations
    /// only: anyone who knows the seed can subtract the noise.
    pub fn from_seed(seed: [u8; 32]) -> Self {
        Self { inner: ChaCha20Rng::from_seed(seed) }
    }

    /// One draw from N(0, 1).
    pub fn standard_normal(&mut self) -> f64 {
        StandardNormal.sample(&mut self.inner)
    }

    /// One draw from U[0, 1) with 53 random bits.
    pub fn uniform(&mut self) -> f64 {
        (self.inner.next_u64() >> 11) as f64 * (1.0 / (1u64 << 53) as f64)
    }

    /// One draw from Poisson(λ); 0 for λ = 0. Errors on a negative, NaN or too large λ.
    pub fn poisson(&mut self, lambda: f64) -> Result<u64> {
        if lambda == 0.0 {
            return Ok(0);
        }
        let p = Poisson::new(lambda).map_err(|_| PrivacyError::InvalidParameter {
            name: "Poisson rate",
            value: lambda,
            expected: "finite, ≥ 0 and below 1.8e19",
        })?;
        Ok(p.sample(&mut self.inner) as u64)
    }

    /// Fills `out` with generator bytes (key material: secure-aggregation secrets).
    pub fn fill_bytes(&mut self, out: &mut [u8]) {
        self.inner.fill_bytes(out);
    }
}

impl std::fmt::Debug for NoiseRng {
    /// Never prints the generator state (it would reveal future noise).
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("NoiseRng { .. }")
    }
}

/// Checks that `std` is a usable noise standard deviation.
pub(crate) fn check_std(std: f64) -> Result<()> {
    if std > 0.0 && std.is_finite() {
        Ok(())
    } else {
        Err(PrivacyError::InvalidParameter {
            name: "noise standard deviation",
            value: std,
            expected: "positive and finite (zero noise gives no privacy)",
        })
    }
}

/// Adds independent N(0, std²) noise to every coordinate of `v`, in index
/// order (sum computed in `f64`, rounded once to `f32`).
///
/// Errors (leaving `v` untouched) if `std` is not positive and finite.
pub fn add_gaussian_noise(v: &mut [f32], std: f64, rng: &mut NoiseRng) -> Result<()> {
    check_std(std)?;
    for x in v.iter_mut() {
        *x = (f64::from(*x) + std * rng.standard_normal()) as f32;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn draws(rng: &mut NoiseRng, n: usize) -> Vec<f64> {
        (0..n).map(|_| rng.standard_normal()).collect()
    }

    #[test]
    fn from_seed_is_reproducible() {
        let a = draws(&mut NoiseRng::from_seed([42; 32]), 64);
        let b = draws(&mut NoiseRng::from_seed([42; 32]), 64);
        assert_eq!(a, b);
        let c = draws(&mut NoiseRng::from_seed([43; 32]), 64);
        assert_ne!(a, c);
    }

    #[test]
    fn os_entropy_streams_differ() {
        let a = draws(&mut NoiseRng::from_os_entropy().unwrap(), 16);
        let b = draws(&mut NoiseRng::from_os_entropy().unwrap(), 16);
        assert_ne!(a, b);
        // And neither equals the all-zero seed's stream (entropy really used).
        let z = draws(&mut NoiseRng::from_seed([0; 32]), 16);
        assert_ne!(a, z);
        assert_ne!(b, z);
    }

    #[test]
    fn debug_does_not_leak_state() {
        assert_eq!(format!("{:?}", NoiseRng::from_seed([1; 32])), "NoiseRng { .. }");
    }

    #[test]
    fn add_noise_has_requested_std() {
        let mut rng = NoiseRng::from_seed([3; 32]);
        let n = 200_000;
        let mut v = vec![5.0f32; n];
        add_gaussian_noise(&mut v, 0.25, &mut rng).unwrap();
        let mean = v.iter().map(|&x| f64::from(x)).sum::<f64>() / n as f64;
        let var = v.iter().map(|&x| (f64::from(x) - mean).powi(2)).sum::<f64>() / (n - 1) as f64;
        assert!((mean - 5.0).abs() < 0.003, "mean {mean}");
        assert!((var.sqrt() / 0.25 - 1.0).abs() < 0.02, "std {}", var.sqrt());
    }

    #[test]
    fn add_noise_rejects_bad_std() {
        let mut rng = NoiseRng::from_seed([0; 32]);
        let mut v = vec![1.0f32; 3];
        for s in [0.0, -1.0, f64::NAN, f64::INFINITY] {
            assert!(add_gaussian_noise(&mut v, s, &mut rng).is_err());
        }
        assert_eq!(v, vec![1.0; 3]);
    }
}
