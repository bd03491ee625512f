//! Loops without gradients, shared by the layers: gemm, dot products, reductions.
//!
//! Kernels here know nothing of layers. The SIMD paths live in `simd` (the only `unsafe` in
//! the crate) and are reached through [`gemm()`](gemm::gemm).

pub mod gemm;
pub mod math;
mod simd;

pub use gemm::{Gemm, Kernel, Kernels, gemm, gemm_naive, gemm_with};

/// One query attending over `len` positions with the CPU's widest vector unit, when it has one
/// for this shape (AVX-512 or AVX2, head_dim ≤ 16): see `layers::attention::forward_one`. Returns false,
/// computing nothing, otherwise.
pub(crate) fn attend_one_simd(
    out: &mut [f32],
    q: &[f32],
    kv: [&[f32]; 2],
    d: crate::layers::Attn,
    len: usize,
) -> bool {
    let shape = simd::AttendShape {
        heads: d.n_heads,
        groups: d.n_kv_heads,
        head_dim: d.head_dim,
        len,
        scale: 1.0 / libm::sqrtf(d.head_dim as f32),
    };
    simd::attend_one(out, q, kv, shape)
}

/// Fused-multiply-add vector kernels of [`Kernels::Auto`] for elementwise passes (AVX2 and FMA;
/// each returns false, doing nothing, on a CPU without them): GELU and its derivative
/// ([`math::normal_cdf`]'s and [`math::normal_pdf`]'s formulas), and attention's column softmax
/// (its exponentials [`math::exp`]'s). The last bits can differ from the portable loops'.
pub(crate) use simd::{GeluPass, gelu as gelu_simd, softmax_columns as softmax_columns_simd};

/// One attention head's product at head_dim ≤ 8 (`K·Qᵀ`-like with B transposed and k ≤ 8, or
/// `P·V`-like with n ≤ 8 and B in place) run by AVX2 kernels directly, skipping a gemm call's
/// dispatch and packing, which cost more than such a product's arithmetic. The bits equal
/// [`gemm()`]'s; returns false, doing nothing, for other products or CPUs.
pub(crate) fn head_gemm_simd(c: &mut [f32], a: &[f32], b: &[f32], g: Gemm) -> bool {
    g.kernels == Kernels::Auto && simd::head_gemm(c, a, b, g)
}

/// Correctly rounded square root, vectorisable (unlike libm's, which is opaque inline assembly).
#[inline(always)]
pub fn sqrt(x: f32) -> f32 {
    simd::sqrt(x)
}

/// Run `f` compiled for the widest vector unit this CPU has (AVX2 on x86_64 when present).
///
/// Only code that inlines into `f` benefits: pass an `#[inline(always)]` closure, and make the
/// helpers it calls `#[inline(always)]` too. Elementwise kernels give bit-identical results either way: without
/// fast-math the compiler neither fuses nor reassociates, so only the vector width changes.
#[inline(always)]
pub(crate) fn vectorized<R>(f: impl FnOnce() -> R) -> R {
    simd::vectorized(f)
}

/// Lanes of the reductions below: eight independent partial results, combined in a fixed order,
/// let the compiler vectorise without reassociating (results do not depend on the vector width).
const LANES: usize = 8;

#[inline(always)]
fn combine(acc: [f32; LANES]) -> f32 {
    ((acc[0] + acc[4]) + (acc[1] + acc[5])) + ((acc[2] + acc[6]) + (acc[3] + acc[7]))
}

/// Dot product of two equal-length slices.
#[inline(always)]
pub fn dot(a: &[f32], b: &[f32]) -> f32 {
    debug_assert_eq!(a.len(), b.len());
    let mut acc = [0.0f32; LANES];
    let (ac, bc) = (a.chunks_exact(LANES), b.chunks_exact(LANES));
    let tail: f32 = ac.remainder().iter().zip(bc.remainder()).map(|(x, y)| x * y).sum();
    for (x, y) in ac.zip(bc) {
        for i in 0..LANES {
            acc[i] += x[i] * y[i];
        }
    }
    combine(acc) + tail
}

/// Σ a·b·c over three equal-length slices.
#[inline(always)]
pub fn dot3(a: &[f32], b: &[f32], c: &[f32]) -> f32 {
    debug_assert!(a.len() == b.len() && b.len() == c.len());
    let mut acc = [0.0f32; LANES];
    let (ac, bc, cc) = (a.chunks_exact(LANES), b.chunks_exact(LANES), c.chunks_exact(LANES));
    let tail: f32 =
        ac.remainder().iter().zip(bc.remainder()).zip(cc.remainder()).map(|((x, y), z)| x * y * z).sum();
    for ((x, y), z) in ac.zip(bc).zip(cc) {
        for i in 0..LANES {
            acc[i] += x[i] * y[i] * z[i];
        }
    }
    combine(acc) + tail
}

/// Sum of a slice.
#[inline(always)]
pub fn sum(x: &[f32]) -> f32 {
    let mut acc = [0.0f32; LANES];
    let chunks = x.chunks_exact(LANES);
    let tail: f32 = chunks.remainder().iter().sum();
    for c in chunks {
        for i in 0..LANES {
            acc[i] += c[i];
        }
    }
    combine(acc) + tail
}

/// Σ (x − c)², the centred sum of squares.
#[inline(always)]
pub fn sum_sq_dev(x: &[f32], c: f32) -> f32 {
    let mut acc = [0.0f32; LANES];
    let chunks = x.chunks_exact(LANES);
    let tail: f32 = chunks.remainder().iter().map(|&v| (v - c) * (v - c)).sum();
    for ch in chunks {
        for i in 0..LANES {
            acc[i] += (ch[i] - c) * (ch[i] - c);
        }
    }
    combine(acc) + tail
}

/// Largest element (−∞ for an empty slice). NaN-propagation is not guaranteed.
#[inline(always)]
pub fn max(x: &[f32]) -> f32 {
    let mut acc = [f32::NEG_INFINITY; LANES];
    let chunks = x.chunks_exact(LANES);
    let tail = chunks.remainder().iter().fold(f32::NEG_INFINITY, |m, &v| if v > m { v } else { m });
    for c in chunks {
        for i in 0..LANES {
            acc[i] = if c[i] > acc[i] { c[i] } else { acc[i] };
        }
    }
    acc.iter().fold(tail, |m, &v| if v > m { v } else { m })
}

/// Sum of squares, accumulated in f64 (used for gradient norms, where many small terms meet).
pub fn sum_sq_f64(x: &[f32]) -> f64 {
    x.iter().map(|&v| f64::from(v) * f64::from(v)).sum()
}

/// `x *= s`.
pub fn scale(x: &mut [f32], s: f32) {
    x.iter_mut().for_each(|v| *v *= s);
}

/// Add `bias` (len n) to every row of `out` (rows of n).
pub fn add_bias(out: &mut [f32], bias: &[f32]) {
    for row in out.chunks_exact_mut(bias.len()) {
        row.iter_mut().zip(bias).for_each(|(y, &b)| *y += b);
    }
}

/// Accumulate the column sums of `x` (rows of `out.len()`) into `out` (a bias gradient).
pub fn add_col_sums(out: &mut [f32], x: &[f32]) {
    for row in x.chunks_exact(out.len()) {
        out.iter_mut().zip(row).for_each(|(s, &v)| *s += v);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dot_matches_a_plain_sum() {
        let a: [f32; 11] = core::array::from_fn(|i| i as f32);
        let b: [f32; 11] = core::array::from_fn(|i| 1.0 - i as f32 * 0.5);
        let want: f32 = a.iter().zip(&b).map(|(x, y)| x * y).sum();
        assert!((dot(&a, &b) - want).abs() < 1e-4);
    }

    #[test]
    fn sqrt_is_correctly_rounded() {
        for x in [0.0f32, 1e-30, 0.5, 2.0, 3.0, 1e30, f32::MAX] {
            assert_eq!(sqrt(x), libm::sqrtf(x), "{x}");
        }
        assert!(sqrt(-1.0).is_nan());
    }

    #[test]
    fn reductions_match_plain_loops() {
        let x: [f32; 21] = core::array::from_fn(|i| (i as f32 * 0.37).sin());
        assert!((sum(&x) - x.iter().sum::<f32>()).abs() < 1e-5);
        assert_eq!(max(&x), x.iter().fold(f32::NEG_INFINITY, |m, &v| m.max(v)));
        let c = 0.25;
        let want: f32 = x.iter().map(|v| (v - c) * (v - c)).sum();
        assert!((sum_sq_dev(&x, c) - want).abs() < 1e-5);
        assert_eq!(max(&[]), f32::NEG_INFINITY);
    }

    #[test]
    fn bias_helpers() {
        let mut out = [1.0f32, 2.0, 3.0, 4.0];
        add_bias(&mut out, &[10.0, 20.0]);
        assert_eq!(out, [11.0, 22.0, 13.0, 24.0]);
        let mut db = [0.5f32, 0.5];
        add_col_sums(&mut db, &out);
        assert_eq!(db, [24.5, 46.5]);
    }
}
