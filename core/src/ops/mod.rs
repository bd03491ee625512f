//! Loops without gradients, shared by the layers: gemm, dot products, reductions.
//!
//! Kernels here know nothing of layers. The SIMD paths live in `simd` (the only `unsafe` in
//! the crate) and are reached through [`gemm()`](gemm::gemm).

pub mod gemm;
mod simd;

pub use gemm::{Gemm, Kernel, gemm, gemm_naive, gemm_with};

/// Dot product of two equal-length slices.
#[inline]
pub fn dot(a: &[f32], b: &[f32]) -> f32 {
    debug_assert_eq!(a.len(), b.len());
    // Eight independent partial sums let the compiler vectorise without reassociating.
    let mut acc = [0.0f32; 8];
    let (ac, bc) = (a.chunks_exact(8), b.chunks_exact(8));
    let tail: f32 = ac.remainder().iter().zip(bc.remainder()).map(|(x, y)| x * y).sum();
    for (x, y) in ac.zip(bc) {
        for i in 0..8 {
            acc[i] += x[i] * y[i];
        }
    }
    acc.iter().sum::<f32>() + tail
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
    fn bias_helpers() {
        let mut out = [1.0f32, 2.0, 3.0, 4.0];
        add_bias(&mut out, &[10.0, 20.0]);
        assert_eq!(out, [11.0, 22.0, 13.0, 24.0]);
        let mut db = [0.5f32, 0.5];
        add_col_sums(&mut db, &out);
        assert_eq!(db, [24.5, 46.5]);
    }
}
