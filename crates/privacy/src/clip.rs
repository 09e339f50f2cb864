//! L2 clipping of a flat `f32` vector to a norm bound `C`.
//!
//! Clipping bounds one participant's influence (the sensitivity); the
//! Gaussian noise added afterwards is calibrated to `C`, so the guarantee only
//! holds if the clipped norm really is `≤ C`. Norms are accumulated in `f64`,
//! and after scaling we re-measure the `f32` result and shrink a little further
//! if rounding pushed it over the bound.

use crate::error::{PrivacyError, Result};

/// What [`clip_to_norm`] did.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct ClipReport {
    /// L2 norm of the input, accumulated in `f64`.
    pub norm_before: f64,
    /// Factor the vector was multiplied by: `min(1, C / norm_before)`, times
    /// any tiny extra shrink needed to absorb `f32` rounding.
    pub scale: f64,
    /// L2 norm of the output, re-measured in `f64`; always `≤ C`.
    pub norm_after: f64,
}

/// L2 norm of `v`, accumulated in `f64` (so it neither overflows nor loses
/// precision for long `f32` vectors). NaN/∞ entries give a non-finite result.
pub fn l2_norm(v: &[f32]) -> f64 {
    v.iter()
        .map(|&x| {
            let x = f64::from(x);
            x * x
        })
        .sum::<f64>()
        .sqrt()
}

/// Checks that `c` is usable as a clip bound: a positive, normal, finite `f32`
/// (subnormal bounds are rejected because rounding at that scale cannot be
/// controlled).
pub(crate) fn check_clip(c: f32) -> Result<()> {
    if c > 0.0 && c.is_normal() {
        Ok(())
    } else {
        Err(PrivacyError::InvalidParameter {
            name: "clip norm C",
            value: f64::from(c),
            expected: "a positive, finite, normal f32",
        })
    }
}

/// Largest number of extra shrink rounds before giving up and zeroing the
/// vector; one round always suffices for normal `C`, this is a safety net.
const MAX_SHRINK_ROUNDS: usize = 64;
/// Multiplicative shrink per extra round: far above `f32` rounding (≈6e-8).
const SHRINK: f64 = 1.0 - 1e-6;

/// Scales `v` in place so that `l2_norm(v) ≤ c`: multiplies by
/// `min(1, c / ‖v‖)`. A vector already within the bound is left bit-for-bit
/// unchanged.
///
/// Errors if `c` is not a positive normal `f32` or `v` contains NaN/∞; `v` is
/// untouched in that case.
pub fn clip_to_norm(v: &mut [f32], c: f32) -> Result<ClipReport> {
    check_clip(c)?;
    let norm_before = l2_norm(v);
    if !norm_before.is_finite() {
        return Err(PrivacyError::NonFinite { what: "vector to clip" });
    }
    let bound = f64::from(c);
    if norm_before <= bound {
        return Ok(ClipReport { norm_before, scale: 1.0, norm_after: norm_before });
    }

    let mut scale = bound / norm_before;
    scale_in_place(v, scale);
    let mut norm_after = l2_norm(v);
    let mut rounds = 0;
    while norm_after > bound {
        if rounds == MAX_SHRINK_ROUNDS {
            // Unreachable for normal `c`; zero is always within the bound.
            v.fill(0.0);
            return Ok(ClipReport { norm_before, scale: 0.0, norm_after: 0.0 });
        }
        scale_in_place(v, SHRINK);
        scale *= SHRINK;
        norm_after = l2_norm(v);
        rounds += 1;
    }
    Ok(ClipReport { norm_before, scale, norm_after })
}

fn scale_in_place(v: &mut [f32], s: f64) {
    for x in v.iter_mut() {
        *x = (f64::from(*x) * s) as f32;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::noise::NoiseRng;

    #[test]
    fn norm_accumulates_in_f64() {
        // 1e20^2 overflows f32 but not f64.
        let v = [1e20f32, 1e20, 1e20, 1e20];
        assert!((l2_norm(&v) - 2e20).abs() / 2e20 < 1e-6);
        assert_eq!(l2_norm(&[3.0, 4.0]), 5.0);
        assert_eq!(l2_norm(&[]), 0.0);
    }

    #[test]
    fn within_bound_is_unchanged() {
        let orig = vec![0.3f32, -0.4, 0.0, 1e-30];
        let mut v = orig.clone();
        let r = clip_to_norm(&mut v, 1.0).unwrap();
        assert_eq!(v, orig);
        assert_eq!(r.scale, 1.0);
        // Exactly at the bound is also unchanged.
        let mut v = vec![3.0f32, 4.0];
        let r = clip_to_norm(&mut v, 5.0).unwrap();
        assert_eq!(v, vec![3.0, 4.0]);
        assert_eq!(r.scale, 1.0);
    }

    #[test]
    fn clips_to_bound_and_keeps_direction() {
        let mut v = vec![30.0f32, 40.0];
        let r = clip_to_norm(&mut v, 5.0).unwrap();
        assert_eq!(r.norm_before, 50.0);
        assert!((r.scale - 0.1).abs() < 1e-6);
        assert!(l2_norm(&v) <= 5.0);
        assert!((v[0] - 3.0).abs() < 1e-5 && (v[1] - 4.0).abs() < 1e-5);
    }

    /// Property: over many random vectors of wildly different magnitudes and
    /// lengths, and many bounds, the clipped norm never exceeds C.
    #[test]
    fn clipped_norm_never_exceeds_bound() {
        let mut rng = NoiseRng::from_seed([7; 32]);
        let magnitudes = [1e-30f64, 1e-6, 1e-2, 1.0, 3.0, 1e3, 1e10, 1e30, 3e37];
        let bounds = [1e-20f32, 1e-3, 0.1, 1.0, 1.000_000_1, 2.0, 10.0, 1e6, 1e30];
        let mut clipped = 0usize;
        for trial in 0..400 {
            let dim = 1 + (trial * 37) % 3000;
            let mag = magnitudes[trial % magnitudes.len()];
            let c = bounds[(trial / magnitudes.len()) % bounds.len()];
            let mut v: Vec<f32> = (0..dim).map(|_| (rng.standard_normal() * mag) as f32).collect();
            let before = v.clone();
            let r = clip_to_norm(&mut v, c).unwrap();
            let after = l2_norm(&v);
            assert!(after <= f64::from(c), "norm {after} > C {c} (dim {dim}, mag {mag})");
            assert_eq!(after, r.norm_after);
            if r.scale < 1.0 {
                clipped += 1;
                // Clipping a big vector should land very close to C, not far below.
                assert!(after >= f64::from(c) * (1.0 - 1e-5), "over-shrunk: {after} vs {c}");
            } else {
                assert_eq!(v, before);
            }
        }
        assert!(clipped > 100, "test did not exercise clipping enough ({clipped})");
    }

    /// Adversarial rounding case: many equal coordinates whose rounded scaled
    /// values tend to round up.
    #[test]
    fn rounding_cannot_push_over_bound() {
        for dim in [1usize, 2, 3, 7, 10, 100, 1000, 65_537] {
            for c in [1.0f32, 0.1, 0.3, 1.1, 7.0] {
                let mut v = vec![1.000_000_1f32; dim];
                clip_to_norm(&mut v, c).unwrap();
                assert!(l2_norm(&v) <= f64::from(c));
            }
        }
    }

    #[test]
    fn rejects_bad_input_without_touching_vector() {
        let mut v = vec![1.0f32, 2.0];
        for c in [0.0f32, -1.0, f32::NAN, f32::INFINITY, 1e-45] {
            assert!(matches!(clip_to_norm(&mut v, c), Err(PrivacyError::InvalidParameter { .. })));
        }
        let mut bad = vec![1.0f32, f32::NAN];
        assert_eq!(clip_to_norm(&mut bad, 1.0), Err(PrivacyError::NonFinite { what: "vector to clip" }));
        let mut bad = vec![f32::INFINITY, 1.0];
        assert!(clip_to_norm(&mut bad, 1.0).is_err());
        assert_eq!(bad[0], f32::INFINITY);
        assert_eq!(v, vec![1.0, 2.0]);
    }
}
