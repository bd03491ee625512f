//! Linear layer: `out = inp · wᵀ + b` (PyTorch `nn.Linear`).
//!
//! Shapes, row-major: inp (n, n_in), w (n_out, n_in), b (n_out), out (n, n_out).

use crate::ops::{Gemm, Kernels, add_bias, add_col_sums, gemm};

/// Dims of a linear layer. Holds no weights: those live in the arena.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Linear {
    /// Input features.
    pub n_in: usize,
    /// Output features.
    pub n_out: usize,
    /// The gemm kernels its products run on.
    pub kernels: Kernels,
}

impl Linear {
    /// A layer of these dims on the default kernels.
    pub const fn new(n_in: usize, n_out: usize) -> Self {
        Linear { n_in, n_out, kernels: Kernels::Auto }
    }

    /// The same layer on `kernels`.
    pub const fn on(mut self, kernels: Kernels) -> Self {
        self.kernels = kernels;
        self
    }

    /// Floats in the weight matrix.
    pub const fn weight_len(&self) -> usize {
        self.n_in * self.n_out
    }
}

/// out (n, n_out) = inp (n, n_in) · wᵀ + b. Overwrites `out`.
pub fn forward(out: &mut [f32], inp: &[f32], w: &[f32], b: &[f32], d: Linear) {
    let n = inp.len() / d.n_in;
    debug_assert_eq!(n * d.n_in, inp.len());
    debug_assert_eq!(n * d.n_out, out.len());
    gemm(out, inp, w, Gemm::nt(n, d.n_out, d.n_in).on(d.kernels));
    add_bias(out, b);
}

/// Backward of [`forward`]. Accumulates (`+=`) into `dinp`, `dw`, `db`;
/// pass `None` for `dinp` when nothing upstream needs it.
pub fn backward(
    dinp: Option<&mut [f32]>,
    dw: &mut [f32],
    db: &mut [f32],
    dout: &[f32],
    inp: &[f32],
    w: &[f32],
    d: Linear,
) {
    weight_backward(dw, db, dout, inp, d);
    if let Some(dinp) = dinp {
        backward_input(dinp, dout, w, d);
    }
}

/// The parameter half of [`backward`]: accumulates into `dw` and `db`.
#[inline(always)]
fn weight_backward(dw: &mut [f32], db: &mut [f32], dout: &[f32], inp: &[f32], d: Linear) {
    let n = inp.len() / d.n_in;
    debug_assert_eq!(n * d.n_out, dout.len());
    // dw (n_out, n_in) += doutᵀ (n_out, n) · inp (n, n_in)
    gemm(dw, dout, inp, Gemm::tn(d.n_out, d.n_in, n).acc().on(d.kernels));
    add_col_sums(db, dout);
}

/// The input-gradient half of [`backward`]: accumulates (`+=`) `dout · w` into `dinp`.
pub fn backward_input(dinp: &mut [f32], dout: &[f32], w: &[f32], d: Linear) {
    let n = dout.len() / d.n_out;
    debug_assert_eq!(n * d.n_in, dinp.len());
    // dinp (n, n_in) += dout (n, n_out) · w (n_out, n_in)
    gemm(dinp, dout, w, Gemm::nn(n, d.n_in, d.n_out).acc().on(d.kernels));
}

/// [`backward_input`] overwriting `dinp`: what zeroing it first and then accumulating gives (up
/// to the sign of an exact zero), without the zeroing pass or reading it back. With
/// [`backward`]`(None, …)` for the parameters, it is the backward of a layer whose input gradient
/// starts a buffer.
pub fn set_input_grad(dinp: &mut [f32], dout: &[f32], w: &[f32], d: Linear) {
    let n = dout.len() / d.n_out;
    debug_assert_eq!(n * d.n_in, dinp.len());
    gemm(dinp, dout, w, Gemm::nn(n, d.n_in, d.n_out).on(d.kernels));
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testing::{grad_check, lcg_fill, weighted_sum};

    const D: Linear = Linear::new(3, 2);

    #[test]
    fn forward_by_hand() {
        // one row: [1, 2, 3] · [[1, 0, -1], [0.5, 0.5, 0.5]]ᵀ + [0.1, -0.1] = [-1.9, 2.9]
        let mut out = [0.0f32; 2];
        forward(&mut out, &[1.0, 2.0, 3.0], &[1.0, 0.0, -1.0, 0.5, 0.5, 0.5], &[0.1, -0.1], D);
        assert!((out[0] + 1.9).abs() < 1e-6 && (out[1] - 2.9).abs() < 1e-6, "{out:?}");
    }

    #[test]
    fn backward_matches_finite_differences() {
        let (mut x, mut w, mut b, mut r) = ([0.0f32; 12], [0.0f32; 6], [0.0f32; 2], [0.0f32; 8]); // n = 4
        let mut seed = 1;
        for buf in [&mut x[..], &mut w, &mut b, &mut r] {
            lcg_fill(buf, &mut seed);
        }
        let loss = |x: &[f32], w: &[f32], b: &[f32]| {
            let mut out = [0.0f32; 8];
            forward(&mut out, x, w, b, D);
            weighted_sum(&out, &r)
        };
        let (mut dx, mut dw, mut db) = ([0.0f32; 12], [0.0f32; 6], [0.0f32; 2]);
        backward(Some(&mut dx), &mut dw, &mut db, &r, &x, &w, D);
        let (x0, w0, b0) = (x, w, b);
        assert!(grad_check(&mut x, &dx, |x| loss(x, &w0, &b0)) < 1e-3);
        assert!(grad_check(&mut w, &dw, |w| loss(&x0, w, &b0)) < 1e-3);
        assert!(grad_check(&mut b, &db, |b| loss(&x0, &w0, b)) < 1e-3);
    }

    #[test]
    fn backward_accumulates() {
        let (x, w, dout) = ([1.0f32, 2.0, 3.0], [0.5f32; 6], [1.0f32, -1.0]);
        let (mut dx, mut dw, mut db) = ([1.0f32; 3], [1.0f32; 6], [1.0f32; 2]);
        backward(Some(&mut dx), &mut dw, &mut db, &dout, &x, &w, D);
        assert_eq!(db, [2.0, 0.0]);
        assert_eq!(dw, [2.0, 3.0, 4.0, 0.0, -1.0, -2.0]);
        assert_eq!(dx, [1.0, 1.0, 1.0]);
    }

    /// Overwriting the input gradient gives what zeroing it and accumulating gives (the
    /// parameter gradients still accumulate), on both kernel families and past one block of k.
    #[test]
    fn set_input_equals_zeroing_then_accumulating() {
        // Past one block of k: 256 for the vector kernels, 64 for the portable one (all Miri runs).
        let (n_in, n_out, n) = if cfg!(miri) { (5, 70, 3) } else { (37, 300, 13) };
        for kernels in [Kernels::Auto, Kernels::Portable] {
            let d = Linear::new(n_in, n_out).on(kernels);
            let mut seed = 3;
            let (mut x, mut w, mut dout) =
                (vec![0.0; n * n_in], vec![0.0; n_out * n_in], vec![0.0; n * n_out]);
            for buf in [&mut x, &mut w, &mut dout] {
                lcg_fill(buf, &mut seed);
            }
            let (mut dw0, mut db0) = (vec![0.0; n_out * n_in], vec![0.0; n_out]);
            lcg_fill(&mut dw0, &mut seed);
            lcg_fill(&mut db0, &mut seed);
            let (mut dx_acc, mut dw_acc, mut db_acc) = (vec![0.0; n * n_in], dw0.clone(), db0.clone());
            backward(Some(&mut dx_acc), &mut dw_acc, &mut db_acc, &dout, &x, &w, d);
            let (mut dx_set, mut dw_set, mut db_set) = (vec![7.0; n * n_in], dw0.clone(), db0.clone());
            backward(None, &mut dw_set, &mut db_set, &dout, &x, &w, d);
            set_input_grad(&mut dx_set, &dout, &w, d);
            assert_eq!((&dx_set, &dw_set, &db_set), (&dx_acc, &dw_acc, &db_acc), "{kernels:?}");
        }
    }
}
