//! Per-example DP-SGD for one linear layer `y = x W + b`
//! (`W`: `d_in × d_out`, row-major).
//!
//! Each example's weight gradient is the outer product `x_i g_iᵀ`, whose
//! Frobenius norm is `‖x_i‖ · ‖g_i‖`, so the joint (weight, bias) norm is
//! `‖g_i‖ · sqrt(‖x_i‖² + 1)` and every example can be clipped without ever
//! materialising its outer product: only the scaled sum is built.

use crate::clip::check_clip;
use crate::error::{PrivacyError, Result};
use crate::noise::{NoiseRng, check_std};

/// Parameters of one DP-SGD step.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct DpSgdParams {
    /// Per-example L2 clip bound `C` on the joint (weight, bias) gradient.
    pub clip: f32,
    /// Noise multiplier σ; the summed gradient gets N(0, (σC)²) per coordinate.
    pub noise_multiplier: f32,
    /// Divisor for the noisy sum. `None` divides by the actual batch size.
    /// With Poisson sampling pass the *expected* batch size `q · N` (as Opacus
    /// does): dividing by the realised size would leak it, and it allows an
    /// empty batch (whose output is then pure noise).
    pub expected_batch_size: Option<usize>,
}

/// A gradient for a linear layer.
#[derive(Debug, Clone, PartialEq)]
pub struct LinearGrad {
    /// `d_in × d_out`, row-major (`weight[i * d_out + o]`).
    pub weight: Vec<f32>,
    /// `d_out`.
    pub bias: Vec<f32>,
    /// How many examples had their gradient scaled down by clipping.
    pub clipped_examples: usize,
}

/// The noisy, clipped, averaged gradient of a linear layer.
///
/// `x` is `batch × d_in` (layer inputs), `g` is `batch × d_out` (gradient of
/// the loss w.r.t. the layer outputs), both row-major. Each example's joint
/// gradient `(x_i g_iᵀ, g_i)` is clipped to `params.clip`, the clipped
/// gradients are summed, N(0, (σC)²) noise is added to each of the
/// `d_in·d_out + d_out` coordinates (weight row-major first, then bias), and the
/// result is divided by the batch size (see [`DpSgdParams::expected_batch_size`]).
///
/// Errors on shape mismatch, NaN/∞ in the inputs, an empty batch without an
/// expected batch size, or invalid `clip` / `noise_multiplier`.
pub fn dp_linear_grad(
    x: &[f32],
    g: &[f32],
    batch: usize,
    d_in: usize,
    d_out: usize,
    params: &DpSgdParams,
    rng: &mut NoiseRng,
) -> Result<LinearGrad> {
    check_clip(params.clip)?;
    let std = f64::from(params.noise_multiplier) * f64::from(params.clip);
    check_std(std).map_err(|_| PrivacyError::InvalidParameter {
        name: "noise multiplier sigma",
        value: f64::from(params.noise_multiplier),
        expected: "positive and finite",
    })?;
    let divisor = match params.expected_batch_size {
        Some(0) => {
            return Err(PrivacyError::InvalidParameter {
                name: "expected batch size",
                value: 0.0,
                expected: "at least 1",
            });
        }
        Some(n) => n,
        None if batch == 0 => {
            return Err(PrivacyError::InvalidParameter {
                name: "batch size",
                value: 0.0,
                expected: "at least 1 (or set expected_batch_size for Poisson sampling)",
            });
        }
        None => batch,
    };

    let (mut w, mut b, clipped_examples) = clipped_sum(x, g, batch, d_in, d_out, params.clip)?;
    for v in w.iter_mut().chain(b.iter_mut()) {
        *v += std * rng.standard_normal();
    }
    let inv = 1.0 / divisor as f64;
    Ok(LinearGrad {
        weight: w.iter().map(|&v| (v * inv) as f32).collect(),
        bias: b.iter().map(|&v| (v * inv) as f32).collect(),
        clipped_examples,
    })
}

/// Multiplier applied on top of `C / norm` when clipping, so that `f64`
/// rounding in the norm cannot leave an example a hair above `C`.
const CLIP_SAFETY: f64 = 1.0 - 1e-12;

/// Sum over examples of the clipped joint gradients, in `f64`, without noise.
/// Returns (weight sum, bias sum, number of examples that were scaled down).
pub(crate) fn clipped_sum(
    x: &[f32],
    g: &[f32],
    batch: usize,
    d_in: usize,
    d_out: usize,
    clip: f32,
) -> Result<(Vec<f64>, Vec<f64>, usize)> {
    let x_len = batch.checked_mul(d_in).ok_or(PrivacyError::ShapeMismatch {
        what: "x (batch × d_in)",
        expected: usize::MAX,
        got: x.len(),
    })?;
    let g_len = batch.checked_mul(d_out).ok_or(PrivacyError::ShapeMismatch {
        what: "g (batch × d_out)",
        expected: usize::MAX,
        got: g.len(),
    })?;
    if x.len() != x_len {
        return Err(PrivacyError::ShapeMismatch { what: "x (batch × d_in)", expected: x_len, got: x.len() });
    }
    if g.len() != g_len {
        return Err(PrivacyError::ShapeMismatch { what: "g (batch × d_out)", expected: g_len, got: g.len() });
    }
    if d_out == 0 {
        return Err(PrivacyError::InvalidParameter { name: "d_out", value: 0.0, expected: "at least 1" });
    }
    let w_len = d_in.checked_mul(d_out).ok_or(PrivacyError::InvalidParameter {
        name: "d_in × d_out",
        value: f64::INFINITY,
        expected: "small enough to allocate",
    })?;
    if x.iter().chain(g).any(|v| !v.is_finite()) {
        return Err(PrivacyError::NonFinite { what: "per-example inputs or output gradients" });
    }

    let c = f64::from(clip);
    let mut w = vec![0.0f64; w_len];
    let mut b = vec![0.0f64; d_out];
    let mut clipped = 0;
    for e in 0..batch {
        let xi = &x[e * d_in..(e + 1) * d_in];
        let gi = &g[e * d_out..(e + 1) * d_out];
        let x_sq: f64 = xi.iter().map(|&v| f64::from(v).powi(2)).sum();
        let g_sq: f64 = gi.iter().map(|&v| f64::from(v).powi(2)).sum();
        // ‖x gᵀ‖_F² + ‖g‖² = ‖x‖²‖g‖² + ‖g‖².
        let norm = (g_sq * (x_sq + 1.0)).sqrt();
        let scale = if norm > c {
            clipped += 1;
            c / norm * CLIP_SAFETY
        } else {
            1.0
        };
        for (o, &gv) in gi.iter().enumerate() {
            let sg = scale * f64::from(gv);
            b[o] += sg;
        }
        for (i, &xv) in xi.iter().enumerate() {
            let row = &mut w[i * d_out..(i + 1) * d_out];
            let sx = scale * f64::from(xv);
            for (wv, &gv) in row.iter_mut().zip(gi) {
                *wv += sx * f64::from(gv);
            }
        }
    }
    Ok((w, b, clipped))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Naive reference: materialise each example's outer product and bias
    /// gradient as one flat vector, measure its norm directly, clip, sum.
    fn naive_clipped_sum(x: &[f32], g: &[f32], batch: usize, d_in: usize, d_out: usize, c: f64) -> (Vec<f64>, usize) {
        let mut sum = vec![0.0f64; d_in * d_out + d_out];
        let mut clipped = 0;
        for e in 0..batch {
            let mut flat = Vec::with_capacity(d_in * d_out + d_out);
            for i in 0..d_in {
                for o in 0..d_out {
                    flat.push(f64::from(x[e * d_in + i]) * f64::from(g[e * d_out + o]));
                }
            }
            for o in 0..d_out {
                flat.push(f64::from(g[e * d_out + o]));
            }
            let norm = flat.iter().map(|v| v * v).sum::<f64>().sqrt();
            let s = if norm > c {
                clipped += 1;
                c / norm
            } else {
                1.0
            };
            for (acc, v) in sum.iter_mut().zip(&flat) {
                *acc += s * v;
            }
        }
        (sum, clipped)
    }

    fn random(rng: &mut NoiseRng, n: usize, scale: f64) -> Vec<f32> {
        (0..n).map(|_| (rng.standard_normal() * scale) as f32).collect()
    }

    fn example_batch() -> (Vec<f32>, Vec<f32>, usize, usize, usize) {
        let mut rng = NoiseRng::from_seed([5; 32]);
        let (batch, d_in, d_out) = (16, 7, 5);
        let mut x = random(&mut rng, batch * d_in, 1.0);
        let mut g = random(&mut rng, batch * d_out, 0.5);
        // A few examples far beyond the bound, one tiny, one zero.
        for v in &mut x[0..d_in] {
            *v *= 100.0;
        }
        for v in &mut g[d_out..2 * d_out] {
            *v *= 50.0;
        }
        for v in &mut g[2 * d_out..3 * d_out] {
            *v *= 1e-4;
        }
        for v in &mut g[3 * d_out..4 * d_out] {
            *v = 0.0;
        }
        (x, g, batch, d_in, d_out)
    }

    #[test]
    fn clipped_sum_matches_materialised_reference() {
        let (x, g, batch, d_in, d_out) = example_batch();
        for c in [0.1f32, 1.0, 3.0, 1e4] {
            let (w, b, n) = clipped_sum(&x, &g, batch, d_in, d_out, c).unwrap();
            let (reference, n_ref) = naive_clipped_sum(&x, &g, batch, d_in, d_out, f64::from(c));
            assert_eq!(n, n_ref, "clip count at C={c}");
            let got: Vec<f64> = w.iter().chain(&b).copied().collect();
            for (a, r) in got.iter().zip(&reference) {
                assert!((a - r).abs() <= 1e-9 * (1.0 + r.abs()), "C={c}: {a} vs {r}");
            }
        }
        // With a huge bound nothing is clipped; with a tiny one everything non-zero is.
        assert_eq!(clipped_sum(&x, &g, batch, d_in, d_out, 1e4).unwrap().2, 0);
        assert_eq!(clipped_sum(&x, &g, batch, d_in, d_out, 1e-6).unwrap().2, batch - 1);
    }

    #[test]
    fn each_clipped_contribution_is_within_bound() {
        // A batch of one: the sum *is* the clipped example.
        let x = [3.0f32, 4.0, 12.0];
        let g = [1e6f32, -2e6];
        let (w, b, n) = clipped_sum(&x, &g, 1, 3, 2, 0.7).unwrap();
        assert_eq!(n, 1);
        let norm = w.iter().chain(&b).map(|v| v * v).sum::<f64>().sqrt();
        let c = f64::from(0.7f32);
        assert!(norm <= c && norm > c * (1.0 - 1e-9), "{norm} vs {c}");
    }

    #[test]
    fn full_step_matches_reference_with_same_noise_stream() {
        let (x, g, batch, d_in, d_out) = example_batch();
        let params = DpSgdParams { clip: 1.0, noise_multiplier: 1.3, expected_batch_size: None };
        let got = dp_linear_grad(&x, &g, batch, d_in, d_out, &params, &mut NoiseRng::from_seed([9; 32])).unwrap();
        let (reference, _) = naive_clipped_sum(&x, &g, batch, d_in, d_out, 1.0);
        let mut rng = NoiseRng::from_seed([9; 32]);
        let expected: Vec<f32> =
            reference.iter().map(|v| ((v + 1.3 * rng.standard_normal()) / batch as f64) as f32).collect();
        let got_flat: Vec<f32> = got.weight.iter().chain(&got.bias).copied().collect();
        assert_eq!(got.weight.len(), d_in * d_out);
        assert_eq!(got.bias.len(), d_out);
        for (a, e) in got_flat.iter().zip(&expected) {
            assert!((a - e).abs() <= 1e-5 * (1.0 + e.abs()), "{a} vs {e}");
        }
    }

    #[test]
    fn noise_std_on_averaged_gradient() {
        // All-zero gradients: output is pure noise of std σC / batch.
        let (batch, d_in, d_out) = (4, 300, 200);
        let x = vec![1.0f32; batch * d_in];
        let g = vec![0.0f32; batch * d_out];
        let params = DpSgdParams { clip: 2.0, noise_multiplier: 0.5, expected_batch_size: None };
        let out = dp_linear_grad(&x, &g, batch, d_in, d_out, &params, &mut NoiseRng::from_seed([2; 32])).unwrap();
        let all: Vec<f64> = out.weight.iter().chain(&out.bias).map(|&v| f64::from(v)).collect();
        let n = all.len() as f64;
        let mean = all.iter().sum::<f64>() / n;
        let std = (all.iter().map(|v| (v - mean).powi(2)).sum::<f64>() / (n - 1.0)).sqrt();
        assert!((std / 0.25 - 1.0).abs() < 0.02, "std {std}, expected 0.25");
        assert!(mean.abs() < 0.004, "mean {mean}");
    }

    #[test]
    fn empty_poisson_batch_is_pure_noise() {
        let params = DpSgdParams { clip: 1.0, noise_multiplier: 1.0, expected_batch_size: Some(8) };
        let out = dp_linear_grad(&[], &[], 0, 3, 2, &params, &mut NoiseRng::from_seed([1; 32])).unwrap();
        assert_eq!(out.weight.len(), 6);
        assert!(out.weight.iter().any(|&v| v != 0.0));
        let no_expected = DpSgdParams { expected_batch_size: None, ..params };
        assert!(dp_linear_grad(&[], &[], 0, 3, 2, &no_expected, &mut NoiseRng::from_seed([1; 32])).is_err());
    }

    #[test]
    fn rejects_bad_shapes_and_values() {
        let mut rng = NoiseRng::from_seed([0; 32]);
        let p = DpSgdParams { clip: 1.0, noise_multiplier: 1.0, expected_batch_size: None };
        let x = [1.0f32; 6];
        let g = [1.0f32; 4];
        assert!(dp_linear_grad(&x, &g, 2, 3, 2, &p, &mut rng).is_ok());
        assert!(matches!(dp_linear_grad(&x[..5], &g, 2, 3, 2, &p, &mut rng), Err(PrivacyError::ShapeMismatch { .. })));
        assert!(matches!(dp_linear_grad(&x, &g[..3], 2, 3, 2, &p, &mut rng), Err(PrivacyError::ShapeMismatch { .. })));
        assert!(dp_linear_grad(&x, &g, usize::MAX, 3, 2, &p, &mut rng).is_err());
        let mut xn = x;
        xn[2] = f32::NAN;
        assert!(matches!(dp_linear_grad(&xn, &g, 2, 3, 2, &p, &mut rng), Err(PrivacyError::NonFinite { .. })));
        for (clip, sigma) in [(0.0, 1.0), (1.0, 0.0), (1.0, -1.0), (f32::NAN, 1.0)] {
            let bad = DpSgdParams { clip, noise_multiplier: sigma, expected_batch_size: None };
            assert!(dp_linear_grad(&x, &g, 2, 3, 2, &bad, &mut rng).is_err());
        }
    }
}
