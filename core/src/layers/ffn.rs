//! Dense feed-forward network: `out = fc2(act(fc1(inp)))` (`ffn.fc1`, `ffn.fc2`).
//!
//! Shapes: inp, out (n, c); fc1.w (f, c), fc1.b (f); fc2.w (c, f), fc2.b (c);
//! pre = fc1(inp) and hid = act(pre), both (n, f), saved for backward.

use crate::layers::{Activation, Linear, activation, linear};
use crate::ops::Kernels;

/// Dims of a dense FFN.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Ffn {
    /// Model width C (E).
    pub n_embd: usize,
    /// Hidden width F.
    pub n_hidden: usize,
    /// Activation between the two linear maps (GELU by default).
    pub act: Activation,
    /// The gemm kernels its products run on.
    pub kernels: Kernels,
}

impl Ffn {
    /// The first linear map, C → F.
    pub const fn fc1(&self) -> Linear {
        Linear::new(self.n_embd, self.n_hidden).on(self.kernels)
    }

    /// The second linear map, F → C.
    pub const fn fc2(&self) -> Linear {
        Linear::new(self.n_hidden, self.n_embd).on(self.kernels)
    }
}

/// The four parameter tensors, in `state_dict` order: fc1.weight, fc1.bias, fc2.weight, fc2.bias.
pub type Weights<'a> = [&'a [f32]; 4];

/// out = fc2(act(fc1(inp))). Overwrites `out`, `pre`, `hid`. In inference `hid` may be `None`:
/// the activation is then applied to `pre` in place.
pub fn forward(
    out: &mut [f32],
    pre: &mut [f32],
    hid: Option<&mut [f32]>,
    inp: &[f32],
    w: Weights<'_>,
    d: Ffn,
) {
    let [w1, b1, w2, b2] = w;
    linear::forward(pre, inp, w1, b1, d.fc1());
    match hid {
        Some(hid) => {
            activation::forward_on(hid, pre, d.act, d.kernels);
            linear::forward(out, hid, w2, b2, d.fc2());
        }
        None => {
            activation::forward_inplace_on(pre, d.act, d.kernels);
            linear::forward(out, pre, w2, b2, d.fc2());
        }
    }
}

/// Backward of [`forward`]. Accumulates (`+=`) into `dinp` and the four parameter gradients
/// `dw` (same order as [`Weights`]); `dhid` (n, f) is overwritten as scratch: d(hidden), then
/// in place d(pre-activation).
#[allow(clippy::too_many_arguments)] // input grad, param grads, two scratch grads, dout, saved, weights
pub fn backward(
    dinp: &mut [f32],
    dw: [&mut [f32]; 4],
    dhid: &mut [f32],
    dout: &[f32],
    saved: [&[f32]; 3],
    w: Weights<'_>,
    d: Ffn,
) {
    let [inp, pre, hid] = saved;
    let [dw1, db1, dw2, db2] = dw;
    linear::backward(None, dw2, db2, dout, hid, w[2], d.fc2());
    linear::set_input_grad(dhid, dout, w[2], d.fc2());
    activation::backward_inplace_on(dhid, pre, hid, d.act, d.kernels);
    linear::backward(Some(dinp), dw1, db1, dhid, inp, w[0], d.fc1());
}

/// [`forward`] with the output over the input: `io` holds the input on entry and the output on
/// exit (a lean training plan computes norm2's output into the slot the FFN's output will take).
/// The same bits as [`forward`].
pub fn forward_over_input(io: &mut [f32], pre: &mut [f32], hid: &mut [f32], w: Weights<'_>, d: Ffn) {
    let [w1, b1, w2, b2] = w;
    linear::forward(pre, io, w1, b1, d.fc1());
    activation::forward_on(hid, pre, d.act, d.kernels);
    linear::forward(io, hid, w2, b2, d.fc2());
}

/// [`backward`] for a lean training plan, which keeps neither the FFN's input (a norm's output)
/// nor its post-activation. `inp` holds the recomputed input on entry and, overwritten, d(input)
/// on exit; `work` (N, hidden) holds the recomputed post-activation, then d(hidden), then
/// d(pre-activation). The same arithmetic in the same order as [`backward`]: the same bits.
#[allow(clippy::too_many_arguments)] // input and its grad, param grads, work, dout, pre, weights
pub fn backward_recompute(
    inp: &mut [f32],
    dw: [&mut [f32]; 4],
    work: &mut [f32],
    dout: &[f32],
    pre: &[f32],
    w: Weights<'_>,
    d: Ffn,
) {
    let [dw1, db1, dw2, db2] = dw;
    activation::forward_on(work, pre, d.act, d.kernels);
    linear::backward(None, dw2, db2, dout, work, w[2], d.fc2());
    linear::set_input_grad(work, dout, w[2], d.fc2());
    activation::backward_inplace_recompute_on(work, pre, d.act, d.kernels);
    linear::backward(None, dw1, db1, work, inp, w[0], d.fc1());
    linear::set_input_grad(inp, work, w[0], d.fc1());
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testing::{grad_check, lcg_fill, weighted_sum};
    use std::vec;
    use std::vec::Vec;

    #[test]
    fn backward_matches_finite_differences() {
        let d = Ffn { n_embd: 4, n_hidden: 6, act: Activation::Gelu, kernels: Kernels::Auto };
        let n = 3;
        let mut seed = 41;
        let mut rand = |len: usize| {
            let mut v = vec![0.0f32; len];
            lcg_fill(&mut v, &mut seed);
            v
        };
        let (mut x, r) = (rand(n * 4), rand(n * 4));
        let mut params: Vec<Vec<f32>> = vec![rand(24), rand(6), rand(24), rand(4)];
        let run = |x: &[f32], p: &[Vec<f32>]| {
            let (mut out, mut pre, mut hid) = (vec![0.0; n * 4], vec![0.0; n * 6], vec![0.0; n * 6]);
            forward(&mut out, &mut pre, Some(&mut hid), x, [&p[0], &p[1], &p[2], &p[3]], d);
            (out, pre, hid)
        };
        let (out, pre, hid) = run(&x, &params);
        // Inference (activation in place) computes the same output.
        let (mut out2, mut pre2) = (vec![0.0; n * 4], vec![0.0; n * 6]);
        forward(&mut out2, &mut pre2, None, &x, [&params[0], &params[1], &params[2], &params[3]], d);
        assert_eq!(out, out2);

        let mut dx = vec![0.0; n * 4];
        let mut dparams: Vec<Vec<f32>> = params.iter().map(|p| vec![0.0; p.len()]).collect();
        let mut dhid = vec![0.0; n * 6];
        {
            let [a, b, c, e] = &mut dparams[..] else { unreachable!() };
            let w = [&params[0][..], &params[1], &params[2], &params[3]];
            backward(&mut dx, [a, b, c, e], &mut dhid, &r, [&x, &pre, &hid], w, d);
        }
        let p0 = params.clone();
        assert!(grad_check(&mut x, &dx, |x| weighted_sum(&run(x, &p0).0, &r)) < 1e-3);
        let x0 = x.clone();
        for i in 0..4 {
            let mut p = params.clone();
            let err = grad_check(&mut params[i], &dparams[i], |v| {
                p[i].copy_from_slice(v);
                weighted_sum(&run(&x0, &p).0, &r)
            });
            assert!(err < 1e-3, "param {i}: {err:e}");
        }
    }

    #[test]
    fn recomputing_backward_gives_the_same_bits() {
        for act in [Activation::Relu, Activation::Tanh, Activation::Gelu] {
            let d = Ffn { n_embd: 5, n_hidden: 7, act, kernels: Kernels::Auto };
            let n = 4;
            let mut seed = 7;
            let mut rand = |len: usize| {
                let mut v = vec![0.0f32; len];
                lcg_fill(&mut v, &mut seed);
                v
            };
            let (x, dout) = (rand(n * 5), rand(n * 5));
            let params: Vec<Vec<f32>> = vec![rand(35), rand(7), rand(35), rand(5)];
            let w = [&params[0][..], &params[1], &params[2], &params[3]];
            let (mut out, mut pre, mut hid) = (vec![0.0; n * 5], vec![0.0; n * 7], vec![0.0; n * 7]);
            forward(&mut out, &mut pre, Some(&mut hid), &x, w, d);
            let grads = |kept: bool| {
                let mut dp: Vec<Vec<f32>> = params.iter().map(|p| vec![0.5; p.len()]).collect();
                let [a, b, c, e] = &mut dp[..] else { unreachable!() };
                let (mut work, mut dx) = (vec![0.0; n * 7], vec![0.0; n * 5]);
                if kept {
                    backward(&mut dx, [a, b, c, e], &mut work, &dout, [&x, &pre, &hid], w, d);
                } else {
                    dx.copy_from_slice(&x);
                    backward_recompute(&mut dx, [a, b, c, e], &mut work, &dout, &pre, w, d);
                }
                dp.push(dx);
                dp.iter().flatten().map(|v| v.to_bits()).collect::<Vec<u32>>()
            };
            assert_eq!(grads(true), grads(false), "{act:?}");
        }
    }
}
