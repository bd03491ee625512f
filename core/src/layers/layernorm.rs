//! Layer normalisation over the last dimension (PyTorch `nn.LayerNorm(c, eps=1e-5)`).
//!
//! `out = (inp − μ)/√(σ² + ε) · w + b` per row, σ² the biased variance.
//! Shapes: inp, out (n, c); w, b (c); mean, rstd (n) saved for backward.
//!
//! reference: llm.c `layernorm_forward` / `layernorm_backward`.

use crate::ops::{dot, dot3, sqrt, sum, sum_sq_dev, vectorized};

/// PyTorch's default epsilon.
pub const EPS: f32 = 1e-5;

/// out = LayerNorm(inp); saves each row's mean and 1/σ. Overwrites `out`, `mean`, `rstd`.
pub fn forward(out: &mut [f32], mean: &mut [f32], rstd: &mut [f32], inp: &[f32], w: &[f32], b: &[f32]) {
    let c = w.len();
    debug_assert!(inp.len() == out.len() && inp.len() == mean.len() * c && mean.len() == rstd.len());
    vectorized(
        #[inline(always)]
        || {
            for (((x, y), m), r) in inp.chunks_exact(c).zip(out.chunks_exact_mut(c)).zip(mean).zip(rstd) {
                let (mu, rs) = stats(x);
                for (((y, &x), &w), &b) in y.iter_mut().zip(x).zip(w).zip(b) {
                    *y = (x - mu) * rs * w + b;
                }
                (*m, *r) = (mu, rs);
            }
        },
    )
}

/// [`forward`]'s output again, from its input and the statistics it saved: the same bits (a
/// lean training plan keeps no norm outputs and recomputes them in backward). Overwrites `out`.
pub fn recompute(out: &mut [f32], inp: &[f32], mean: &[f32], rstd: &[f32], w: &[f32], b: &[f32]) {
    let c = w.len();
    debug_assert!(inp.len() == out.len() && inp.len() == mean.len() * c && mean.len() == rstd.len());
    vectorized(
        #[inline(always)]
        || {
            for (((x, y), &mu), &rs) in inp.chunks_exact(c).zip(out.chunks_exact_mut(c)).zip(mean).zip(rstd) {
                for (((y, &x), &w), &b) in y.iter_mut().zip(x).zip(w).zip(b) {
                    *y = (x - mu) * rs * w + b;
                }
            }
        },
    )
}

/// Mean and 1/√(var + ε) of one row, two-pass (the mean first) for accuracy.
#[inline(always)]
fn stats(x: &[f32]) -> (f32, f32) {
    let n = x.len() as f32;
    let mu = sum(x) / n;
    let var = sum_sq_dev(x, mu) / n;
    (mu, 1.0 / sqrt(var + EPS))
}

/// Backward of [`forward`]. Accumulates (`+=`) into `dinp`, `dw`, `db`.
#[allow(clippy::too_many_arguments)] // llm.c's signature: input grad, param grads, dout, saved stats, weight
pub fn backward(
    dinp: &mut [f32],
    dw: &mut [f32],
    db: &mut [f32],
    dout: &[f32],
    inp: &[f32],
    mean: &[f32],
    rstd: &[f32],
    w: &[f32],
) {
    let c = w.len();
    debug_assert!(dinp.len() == inp.len() && dout.len() == inp.len() && mean.len() * c == inp.len());
    vectorized(
        #[inline(always)]
        || {
            let rows = inp.chunks_exact(c).zip(dout.chunks_exact(c)).zip(dinp.chunks_exact_mut(c));
            for (((x, dy), dx), (&mu, &rs)) in rows.zip(mean.iter().zip(rstd)) {
                // dnorm = dy·w; the input gradient needs its mean and its mean against norm, i.e.
                // Σ dy·w·(x − μ)·rs = rs·(Σ dy·w·x − μ·Σ dy·w).
                let (dnorm_sum, dnorm_x) = (dot(dy, w), dot3(dy, w, x));
                let dnorm_mean = dnorm_sum / c as f32;
                let dnorm_norm_mean = rs * (dnorm_x - mu * dnorm_sum) / c as f32;
                for i in 0..c {
                    let norm = (x[i] - mu) * rs;
                    let dnorm = dy[i] * w[i];
                    db[i] += dy[i];
                    dw[i] += norm * dy[i];
                    dx[i] += rs * (dnorm - dnorm_mean - norm * dnorm_norm_mean);
                }
            }
        },
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testing::{grad_check, lcg_fill, weighted_sum};

    #[test]
    fn forward_by_hand() {
        // [1, 2, 3]: mean 2, var 2/3 → normalised [-1.2247, 0, 1.2247]
        let (mut out, mut m, mut r) = ([0.0f32; 3], [0.0f32], [0.0f32]);
        forward(&mut out, &mut m, &mut r, &[1.0, 2.0, 3.0], &[1.0, 2.0, 1.0], &[0.0, 0.5, 0.0]);
        let s = 1.0 / (2.0f32 / 3.0 + EPS).sqrt();
        assert!(
            (out[0] + s).abs() < 1e-6 && (out[1] - 0.5).abs() < 1e-6 && (out[2] - s).abs() < 1e-6,
            "{out:?}"
        );
        assert_eq!(m[0], 2.0);
    }

    #[test]
    fn backward_matches_finite_differences() {
        const N: usize = 3;
        const C: usize = 10;
        let (mut x, mut w, mut b, mut r) = ([0.0f32; N * C], [0.0f32; C], [0.0f32; C], [0.0f32; N * C]);
        let mut seed = 21;
        for buf in [&mut x[..], &mut w, &mut b, &mut r] {
            lcg_fill(buf, &mut seed);
        }
        let loss = |x: &[f32], w: &[f32], b: &[f32]| {
            let (mut out, mut m, mut s) = ([0.0f32; N * C], [0.0f32; N], [0.0f32; N]);
            forward(&mut out, &mut m, &mut s, x, w, b);
            weighted_sum(&out, &r)
        };
        let (mut out, mut m, mut s) = ([0.0f32; N * C], [0.0f32; N], [0.0f32; N]);
        forward(&mut out, &mut m, &mut s, &x, &w, &b);
        let (mut dx, mut dw, mut db) = ([0.0f32; N * C], [0.0f32; C], [0.0f32; C]);
        backward(&mut dx, &mut dw, &mut db, &r, &x, &m, &s, &w);
        let (x0, w0, b0) = (x, w, b);
        // LayerNorm is scale-invariant: a smaller step keeps the curvature term down.
        assert!(crate::testing::grad_check_eps(&mut x, &dx, 1e-3, |x| loss(x, &w0, &b0)) < 1e-3);
        assert!(grad_check(&mut w, &dw, |w| loss(&x0, w, &b0)) < 1e-3);
        assert!(grad_check(&mut b, &db, |b| loss(&x0, &w0, b)) < 1e-3);
    }
}
