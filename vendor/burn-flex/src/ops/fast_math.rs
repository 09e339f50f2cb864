//! fedsearch patch (see vendor/README.md): branch-free f32 `erf` and `exp` that the compiler
//! vectorises (AVX-512/AVX2 natively, simd128 in wasm), chunked maps that spread a large
//! elementwise pass over rayon's threads, and an attention softmax row in vector passes. Used by
//! GELU and its backward, the `erf` and `exp` ops and the fused attention, which Burn 0.22.1's
//! flex evaluated with one scalar libm call per element on one thread (a quarter of the frozen
//! encoder's profile, fedsearch's crates/core/PERFORMANCE.md).

use alloc::vec::Vec;

/// erf for f32: Eigen's rational approximation (`generic_fast_erf_float`, the one XLA and TVM
/// use), `x·P(x²)/Q(x²)`, and exactly ±1 beyond |x| = 3.92, where erf rounds to ±1 in f32 (the
/// approximation alone stops at 1 − 1.2e-7 there, which GELU would turn into an error growing
/// with x). Max abs error 4.2e-7 against libm's `erff` on a 1e-4 grid of [-7, 7] (the unit test
/// below; 2.7e-7 on the 0.01 grid of fedsearch-core's test).
#[inline(always)]
pub fn erf_f32(x: f32) -> f32 {
    let saturated = x.abs() > 3.92;
    let sign = 1.0f32.copysign(x);
    let x = x.clamp(-4.0, 4.0);
    let x2 = x * x;
    let mut p = -2.726_142_3e-10_f32;
    p = p * x2 + 2.770_681_4e-8;
    p = p * x2 - 2.101_024e-6;
    p = p * x2 - 5.692_506_4e-5;
    p = p * x2 - 7.349_906_3e-4;
    p = p * x2 - 2.954_599_8e-3;
    p = p * x2 - 1.609_603_3e-2;
    let mut q = -1.456_607_2e-5_f32;
    q = q * x2 - 2.133_740_6e-4;
    q = q * x2 - 1.682_827e-3;
    q = q * x2 - 7.373_329_2e-3;
    q = q * x2 - 1.426_473_9e-2;
    if saturated { sign } else { x * p / q }
}

/// e^x for f32 (Cephes' `expf`): `2^n · e^r` with `n = round(x / ln 2)` and a degree-6
/// polynomial on |r| ≤ ln 2 / 2; relative error ~2 ulp. Below -87.3 the result is exactly 0
/// (a masked attention score of -inf must weigh nothing: a tiny normal there turns into
/// denormals downstream, which cost x86 ~100x per operation), above 88.3 it is e^88.3;
/// NaN stays NaN.
#[inline(always)]
pub fn exp_f32(x: f32) -> f32 {
    const LOG2E: f32 = core::f32::consts::LOG2_E;
    const LN2_HI: f32 = 0.693_359_4;
    const LN2_LO: f32 = -2.121_944_4e-4;
    // Adding and subtracting 1.5·2^23 rounds to the nearest integer without a libm call.
    const ROUND: f32 = 12_582_912.0;
    let underflow = x < -87.3;
    let x = x.clamp(-87.3, 88.3);
    // t = 1.5·2^23 + n exactly, so its low mantissa bits hold n (|n| ≤ 127): the integer comes
    // from the bits, not from a float-to-int cast (which does not vectorise).
    let t = x * LOG2E + ROUND;
    let n = t - ROUND;
    let r = x - n * LN2_HI - n * LN2_LO;
    let mut p = 1.987_569_1e-4_f32;
    p = p * r + 1.398_2e-3;
    p = p * r + 8.333_452e-3;
    p = p * r + 4.166_579_6e-2;
    p = p * r + 1.666_666_5e-1;
    p = p * r + 5.000_000_1e-1;
    let er = p * r * r + r + 1.0;
    let n_bits = t.to_bits().wrapping_sub(ROUND.to_bits());
    let scale = f32::from_bits(n_bits.wrapping_add(127) << 23);
    if underflow { 0.0 } else { er * scale }
}

/// Defines `fn $name($args) $body` and runs its body compiled for the widest vector unit this
/// CPU has: AVX-512, else AVX2 + FMA (chosen at run time), else as compiled (e.g. simd128 in
/// wasm). The body is written once and stamped out per target feature.
macro_rules! vectorised_fn {
    ($(#[$doc:meta])* $vis:vis fn $name:ident($($arg:ident: $ty:ty),* $(,)?) $body:block) => {
        $(#[$doc])*
        #[inline(always)]
        $vis fn $name($($arg: $ty),*) {
            #[cfg(all(feature = "std", target_arch = "x86_64"))]
            {
                #[target_feature(enable = "avx512f")]
                unsafe fn avx512($($arg: $ty),*) $body
                #[target_feature(enable = "avx2,fma")]
                unsafe fn avx2($($arg: $ty),*) $body
                if std::is_x86_feature_detected!("avx512f") {
                    // SAFETY: the CPU has AVX-512F.
                    return unsafe { avx512($($arg),*) };
                }
                if std::is_x86_feature_detected!("avx2") && std::is_x86_feature_detected!("fma") {
                    // SAFETY: the CPU has AVX2 and FMA.
                    return unsafe { avx2($($arg),*) };
                }
            }
            $body
        }
    };
}

vectorised_fn! {
    /// Applies `f` to every element of `data` in place, vectorised.
    fn map_vectorised(data: &mut [f32], f: impl Fn(f32) -> f32) {
        data.iter_mut().for_each(|x| *x = f(*x));
    }
}

vectorised_fn! {
    /// `a[i] = f(a[i], b[i])`, vectorised.
    fn zip_in_place_vectorised(a: &mut [f32], b: &[f32], f: impl Fn(f32, f32) -> f32) {
        for (a, &b) in a.iter_mut().zip(b) {
            *a = f(*a, b);
        }
    }
}

vectorised_fn! {
    /// One row of attention scores, `row = softmax(row · scale + bias)` in place (f32, no mask or
    /// cap): the scaling, the max, the exponentials and the normalisation as whole-row vector
    /// passes instead of one scalar loop carrying a running max and sum (which the compiler
    /// cannot vectorise); trailing zeros (padding) leave the sum bit for bit unchanged.
    pub fn scaled_softmax_row_f32(row: &mut [f32], scale: f32, bias: Option<&[f32]>) {
        const LANES: usize = 16;
        match bias {
            Some(b) => row.iter_mut().zip(b).for_each(|(s, &b)| *s = *s * scale + b),
            None => row.iter_mut().for_each(|s| *s *= scale),
        }
        let mut lanes = [f32::NEG_INFINITY; LANES];
        let mut chunks = row.chunks_exact(LANES);
        for c in &mut chunks {
            for (m, &v) in lanes.iter_mut().zip(c) {
                *m = if v > *m { v } else { *m };
            }
        }
        let max = chunks.remainder().iter().chain(&lanes).fold(f32::NEG_INFINITY, |m, &v| if v > m { v } else { m });
        if max == f32::NEG_INFINITY {
            row.fill(0.0);
            return;
        }
        row.iter_mut().for_each(|s| *s = exp_f32(*s - max));
        // The sum in 16 lanes, element `i` always in lane `i % 16` (the tail too, as if the row
        // were zero-filled to a whole chunk), then the lanes in one fixed order: a padded row's
        // trailing zeros add exact zeros to lanes, so the row is bit for bit what it is unpadded
        // and a text embeds alike in any batch. (Stop 19's lane-wise sum added the tail after
        // the lanes, which regrouped the real terms with the row's length.)
        let mut partial = [0.0f32; LANES];
        let mut chunks = row.chunks_exact(LANES);
        for c in &mut chunks {
            for (p, &v) in partial.iter_mut().zip(c) {
                *p += v;
            }
        }
        for (p, &v) in partial.iter_mut().zip(chunks.remainder()) {
            *p += v;
        }
        let sum: f32 = partial.iter().sum();
        let inv = 1.0 / sum;
        row.iter_mut().for_each(|s| *s *= inv);
    }
}

/// Elements per rayon task in [`map_f32`] / [`zip_map_f32`].
#[cfg(feature = "rayon")]
const CHUNK: usize = 16 * 1024;

/// Maps `data` in place with `f`, spread over rayon's threads when it is large.
pub fn map_f32_in_place(data: &mut [f32], f: impl Fn(f32) -> f32 + Sync + Send) {
    #[cfg(feature = "rayon")]
    if data.len() >= super::PARALLEL_THRESHOLD / 4 {
        use rayon::prelude::*;
        data.par_chunks_mut(CHUNK).for_each(|c| map_vectorised(c, &f));
        return;
    }
    map_vectorised(data, f);
}

/// `f(a[i])` for every element of `a`, into a new vector, spread over rayon's threads when large:
/// one pass over memory (each chunk is copied and mapped while it is in cache).
pub fn map_f32(a: &[f32], f: impl Fn(f32) -> f32 + Sync + Send) -> Vec<f32> {
    let run = |out: &mut [core::mem::MaybeUninit<f32>], src: &[f32]| {
        // SAFETY: `MaybeUninit<f32>` has f32's layout; the chunk is fully written by the copy
        // before it is read as f32.
        let out: &mut [f32] = unsafe {
            core::ptr::copy_nonoverlapping(src.as_ptr(), out.as_mut_ptr().cast::<f32>(), src.len());
            core::slice::from_raw_parts_mut(out.as_mut_ptr().cast::<f32>(), out.len())
        };
        map_vectorised(out, &f);
    };
    let mut out = Vec::with_capacity(a.len());
    let spare = &mut out.spare_capacity_mut()[..a.len()];
    #[cfg(feature = "rayon")]
    if a.len() >= super::PARALLEL_THRESHOLD / 4 {
        use rayon::prelude::*;
        spare.par_chunks_mut(CHUNK).zip(a.par_chunks(CHUNK)).for_each(|(o, s)| run(o, s));
        // SAFETY: every element below `a.len()` was written above.
        unsafe { out.set_len(a.len()) };
        return out;
    }
    spare.chunks_mut(CHUNK_SEQ).zip(a.chunks(CHUNK_SEQ)).for_each(|(o, s)| run(o, s));
    // SAFETY: every element below `a.len()` was written above.
    unsafe { out.set_len(a.len()) };
    out
}

/// Elements per chunk of a one-thread [`map_f32`] (fits in L1 with its source).
const CHUNK_SEQ: usize = 4 * 1024;

/// `f(a[i], b[i])` for two slices of equal length, into a new vector, spread over rayon's threads
/// when large: one pass (each chunk is copied from `a`, then combined with `b` in place while
/// it is in cache; the buffer is never zeroed).
pub fn zip_map_f32(a: &[f32], b: &[f32], f: impl Fn(f32, f32) -> f32 + Sync + Send) -> Vec<f32> {
    assert_eq!(a.len(), b.len());
    let run = |out: &mut [core::mem::MaybeUninit<f32>], a: &[f32], b: &[f32]| {
        // SAFETY: as in `map_f32`: the chunk is fully written by the copy before it is read.
        let out: &mut [f32] = unsafe {
            core::ptr::copy_nonoverlapping(a.as_ptr(), out.as_mut_ptr().cast::<f32>(), a.len());
            core::slice::from_raw_parts_mut(out.as_mut_ptr().cast::<f32>(), out.len())
        };
        zip_in_place_vectorised(out, b, &f);
    };
    let mut out = Vec::with_capacity(a.len());
    let spare = &mut out.spare_capacity_mut()[..a.len()];
    #[cfg(feature = "rayon")]
    if a.len() >= super::PARALLEL_THRESHOLD / 4 {
        use rayon::prelude::*;
        spare.par_chunks_mut(CHUNK).zip(a.par_chunks(CHUNK).zip(b.par_chunks(CHUNK))).for_each(
            |(o, (a, b))| run(o, a, b),
        );
        // SAFETY: every element below `a.len()` was written above.
        unsafe { out.set_len(a.len()) };
        return out;
    }
    spare.chunks_mut(CHUNK_SEQ).zip(a.chunks(CHUNK_SEQ).zip(b.chunks(CHUNK_SEQ))).for_each(|(o, (a, b))| run(o, a, b));
    // SAFETY: every element below `a.len()` was written above.
    unsafe { out.set_len(a.len()) };
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn erf_matches_libm_to_5e_7() {
        let mut worst = 0f32;
        for i in -70_000..=70_000 {
            let x = i as f32 * 1e-4;
            worst = worst.max((erf_f32(x) - libm::erff(x)).abs());
        }
        assert!(worst < 5e-7, "max abs error {worst}");
        assert_eq!(erf_f32(f32::INFINITY), 1.0);
        assert_eq!(erf_f32(f32::NEG_INFINITY), -1.0);
        assert!(erf_f32(f32::NAN).is_nan());
    }

    #[test]
    fn exp_matches_std_to_3_ulp() {
        let mut worst = 0f32;
        for i in -87_000..=88_000 {
            let x = i as f32 * 1e-3 + 1.3e-4;
            let (got, want) = (exp_f32(x), x.exp());
            worst = worst.max(((got - want) / want).abs());
        }
        assert!(worst < 3.0 * f32::EPSILON, "max relative error {worst}");
        assert_eq!(exp_f32(0.0), 1.0);
        assert_eq!(exp_f32(f32::NEG_INFINITY), 0.0);
        assert_eq!(exp_f32(-1e9), 0.0);
        assert!(exp_f32(f32::NAN).is_nan());
    }

    #[test]
    fn softmax_rows_match_the_scalar_loop() {
        for len in [1usize, 7, 16, 37, 100] {
            let raw: Vec<f32> = (0..len).map(|i| ((i * 37 % 11) as f32 - 5.0) * 0.7).collect();
            let bias: Vec<f32> = (0..len).map(|i| if i % 5 == 4 { -10_000.0 } else { 0.1 }).collect();
            let mut row = raw.clone();
            scaled_softmax_row_f32(&mut row, 0.125, Some(&bias));
            let z: Vec<f64> = raw.iter().zip(&bias).map(|(&s, &b)| (s * 0.125 + b) as f64).collect();
            let m = z.iter().cloned().fold(f64::NEG_INFINITY, f64::max);
            let total: f64 = z.iter().map(|v| (v - m).exp()).sum();
            for (got, v) in row.iter().zip(&z) {
                assert!((*got as f64 - (v - m).exp() / total).abs() < 1e-6, "{row:?}");
            }
        }
        let mut masked = [f32::NEG_INFINITY; 3];
        scaled_softmax_row_f32(&mut masked, 1.0, None);
        assert_eq!(masked, [0.0; 3]);
    }

    #[test]
    fn padding_a_row_leaves_its_real_entries_bit_for_bit() {
        // A text's attention row alone and padded (masked keys weigh exactly 0) must give the
        // same bits, or a text's embedding would depend on its batch.
        for len in [1usize, 5, 15, 16, 17, 37, 100, 129] {
            let raw: Vec<f32> = (0..len).map(|i| ((i * 53 % 17) as f32 - 8.0) * 0.9).collect();
            let mut alone = raw.clone();
            scaled_softmax_row_f32(&mut alone, 0.125, Some(&vec![0.0; len]));
            for pad in [1usize, 3, 16, 40] {
                let mut padded = raw.clone();
                padded.extend(std::iter::repeat_n(0.3, pad));
                let mut bias = vec![0.0; len];
                bias.extend(std::iter::repeat_n(-10_000.0, pad));
                scaled_softmax_row_f32(&mut padded, 0.125, Some(&bias));
                assert!(padded[len..].iter().all(|&p| p == 0.0), "masked keys weigh 0");
                let same = padded[..len].iter().zip(&alone).all(|(a, b)| a.to_bits() == b.to_bits());
                assert!(same, "len {len} + {pad} padding changed the row");
            }
        }
    }

    #[test]
    fn chunked_maps_cover_every_element() {
        // One thread and several; lengths off the chunk sizes.
        for n in [0, 5, 4_097, 300_001] {
            let a: Vec<f32> = (0..n).map(|i| i as f32).collect();
            let mut b = a.clone();
            map_f32_in_place(&mut b, |x| x + 1.0);
            assert!(b.iter().enumerate().all(|(i, &v)| v == i as f32 + 1.0));
            let c = zip_map_f32(&a, &b, |x, y| 2.0 * y - x);
            assert_eq!(c.len(), n);
            assert!(c.iter().enumerate().all(|(i, &v)| v == i as f32 + 2.0), "n = {n}");
            let d = map_f32(&a, |x| 2.0 * x);
            assert_eq!(d.len(), n);
            assert!(d.iter().enumerate().all(|(i, &v)| v == 2.0 * i as f32), "n = {n}");
        }
    }
}
