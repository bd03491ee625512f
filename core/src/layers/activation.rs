//! Elementwise activations: ReLU, tanh and GELU (exact erf form, PyTorch `nn.GELU()`).
//!
//! ReLU(x) = max(x, 0); tanh(x); GELU(x) = x · Φ(x) = ½x(1 + erf(x/√2)).
//! Shapes: inp, out, dinp, dout all (len) and equal.
//!
//! GELU evaluates Φ with [`normal_cdf`] (relative error < 5e-7·(1 + x²/2), vectorisable) rather
//! than libm's `erff`, which is 8× slower per call and never vectorises; the tests check it
//! against the erf form. It is the exact GELU, not PyTorch's `approximate='tanh'` variant.

use crate::ops::math::{normal_cdf, normal_pdf};
use crate::ops::{GeluPass, Kernels, gelu_simd, vectorized};

/// An activation function between layers.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Activation {
    /// max(x, 0)
    #[default]
    Relu,
    /// tanh(x)
    Tanh,
    /// x·Φ(x), exact (erf), not the tanh approximation.
    Gelu,
}

impl Activation {
    /// The CLI spelling (`--custom_act`).
    pub const fn name(self) -> &'static str {
        match self {
            Activation::Relu => "relu",
            Activation::Tanh => "tanh",
            Activation::Gelu => "gelu",
        }
    }

    /// Parse the CLI spelling.
    pub fn from_name(s: &str) -> Option<Self> {
        [Activation::Relu, Activation::Tanh, Activation::Gelu].into_iter().find(|a| a.name() == s)
    }

    /// The activation of one value.
    #[inline(always)]
    pub fn apply(self, x: f32) -> f32 {
        match self {
            // NaN propagates, as in PyTorch (`f32::max` would turn it into 0).
            Activation::Relu => relu(x),
            Activation::Tanh => libm::tanhf(x),
            Activation::Gelu => x * normal_cdf(x),
        }
    }

    /// d(activation)/dx at `x`, given `y` = the activation of `x`.
    #[inline(always)]
    pub fn derivative(self, x: f32, y: f32) -> f32 {
        match self {
            Activation::Relu => {
                if x > 0.0 {
                    1.0
                } else {
                    0.0
                }
            }
            Activation::Tanh => 1.0 - y * y,
            // Φ(x) + x·φ(x)
            Activation::Gelu => normal_cdf(x) + x * normal_pdf(x),
        }
    }
}

#[inline(always)]
fn relu(x: f32) -> f32 {
    if x < 0.0 { 0.0 } else { x }
}

/// out = act(inp). Overwrites `out`.
pub fn forward(out: &mut [f32], inp: &[f32], act: Activation) {
    debug_assert_eq!(out.len(), inp.len());
    // One monomorphic loop per activation, so each vectorises on its own.
    vectorized(
        #[inline(always)]
        || match act {
            Activation::Relu => out.iter_mut().zip(inp).for_each(|(y, &x)| *y = relu(x)),
            Activation::Tanh => out.iter_mut().zip(inp).for_each(|(y, &x)| *y = libm::tanhf(x)),
            Activation::Gelu => out.iter_mut().zip(inp).for_each(|(y, &x)| *y = x * normal_cdf(x)),
        },
    )
}

/// x = act(x), in place (inference: nothing is kept for backward).
pub fn forward_inplace(x: &mut [f32], act: Activation) {
    vectorized(
        #[inline(always)]
        || match act {
            Activation::Relu => x.iter_mut().for_each(|v| *v = relu(*v)),
            Activation::Tanh => x.iter_mut().for_each(|v| *v = libm::tanhf(*v)),
            Activation::Gelu => x.iter_mut().for_each(|v| *v *= normal_cdf(*v)),
        },
    )
}

/// [`forward`] on `kernels`: with [`Kernels::Auto`] on a CPU with AVX2 and FMA, GELU runs a
/// fused-multiply-add vector kernel (the same function up to rounding); otherwise, and with
/// [`Kernels::Portable`], the loop of [`forward`] (the bits a microcontroller computes). A large
/// pass splits into contiguous chunks on the installed parallel-for (see [`split`]).
pub(crate) fn forward_on(out: &mut [f32], inp: &[f32], act: Activation, kernels: Kernels) {
    split(out, [inp, &[]], &|out, [inp, _]| {
        if !(fused_gelu(act, kernels) && gelu_simd(GeluPass::Forward { out: &mut *out, inp })) {
            forward(out, inp, act);
        }
    });
}

/// [`forward_inplace`] on `kernels` (see [`forward_on`]).
pub(crate) fn forward_inplace_on(x: &mut [f32], act: Activation, kernels: Kernels) {
    split(x, [&[], &[]], &|x, _| {
        if !(fused_gelu(act, kernels) && gelu_simd(GeluPass::InPlace { x: &mut *x })) {
            forward_inplace(x, act);
        }
    });
}

/// [`backward_inplace`] on `kernels` (see [`forward_on`]). `out` must be what [`forward_on`]
/// wrote from `inp` on the same `kernels`: the vector GELU takes Φ(inp) as `out / inp` from it
/// rather than evaluating Φ again.
pub(crate) fn backward_inplace_on(
    d: &mut [f32],
    inp: &[f32],
    out: &[f32],
    act: Activation,
    kernels: Kernels,
) {
    split(d, [inp, out], &|d, [inp, out]| {
        if !(fused_gelu(act, kernels) && gelu_simd(GeluPass::ScaleGrad { d: &mut *d, inp, out })) {
            backward_inplace(d, inp, out, act);
        }
    });
}

/// [`backward_inplace_recompute`] on `kernels` (see [`forward_on`]): the vector GELU
/// recomputes the forward output and then runs [`backward_inplace_on`]'s arithmetic, so the
/// bits are the same.
pub(crate) fn backward_inplace_recompute_on(d: &mut [f32], inp: &[f32], act: Activation, kernels: Kernels) {
    split(d, [inp, &[]], &|d, [inp, _]| {
        if !(fused_gelu(act, kernels) && gelu_simd(GeluPass::ScaleGradRecompute { d: &mut *d, inp })) {
            backward_inplace_recompute(d, inp, act);
        }
    });
}

/// Work of one element of an activation pass in gemm FLOPs (what the parallel-for's task size is
/// measured in): a GELU element costs about as long as 256 of a gemm's.
#[cfg(not(target_os = "none"))]
const ELEMENT_COST: u64 = 256;

/// Elements per unit of a split pass.
#[cfg(not(target_os = "none"))]
const SPLIT_UNIT: usize = 64;

/// An elementwise pass over a chunk of the output and the same chunk of (up to) two inputs.
type Pass<'p> = dyn Fn(&mut [f32], [&[f32]; 2]) + Sync + 'p;

/// Run `pass` over `x` and the inputs of the same length (an empty one stays empty), split into
/// contiguous chunks on the installed parallel-for when the pass is large enough, else in one
/// call. Each element is computed by the same code from the same values in any chunk, so the
/// bits do not depend on the thread count.
fn split(x: &mut [f32], ins: [&[f32]; 2], pass: &Pass<'_>) {
    #[cfg(not(target_os = "none"))]
    if let Some(par) = crate::parallel::current() {
        use crate::parallel::{run_tasks, take_chunk, tasks_for};
        let n = x.len();
        let units = n / SPLIT_UNIT;
        let tasks = tasks_for(par, units, (n as u64).saturating_mul(ELEMENT_COST));
        if tasks >= 2 {
            let (mut rest, mut rest_ins) = (x, ins);
            run_tasks(par, tasks, |t| {
                let mine = take_chunk(&mut rest, (units, tasks, t), SPLIT_UNIT);
                let len = mine.len();
                let my_ins = rest_ins.map(|i| if i.is_empty() { i } else { &i[..len] });
                rest_ins = rest_ins.map(|i| if i.is_empty() { i } else { &i[len..] });
                move || pass(mine, my_ins)
            });
            return;
        }
    }
    pass(x, ins);
}

fn fused_gelu(act: Activation, kernels: Kernels) -> bool {
    act == Activation::Gelu && kernels == Kernels::Auto
}

/// Backward of [`forward`]. Accumulates (`+=`) `dout · act'(inp)` into `dinp`.
pub fn backward(dinp: &mut [f32], dout: &[f32], inp: &[f32], out: &[f32], act: Activation) {
    debug_assert!(dinp.len() == dout.len() && dout.len() == inp.len() && inp.len() == out.len());
    vectorized(
        #[inline(always)]
        || match act {
            Activation::Relu => backward_with(dinp, dout, inp, out, |x, y| Activation::Relu.derivative(x, y)),
            Activation::Tanh => backward_with(dinp, dout, inp, out, |x, y| Activation::Tanh.derivative(x, y)),
            Activation::Gelu => backward_with(dinp, dout, inp, out, |x, y| Activation::Gelu.derivative(x, y)),
        },
    )
}

/// `d ← d · f'(inp)` in place: a gradient with respect to the output becomes one with respect
/// to the input, in the same buffer (an FFN's d(hidden) becomes its d(pre-activation)).
pub fn backward_inplace(d: &mut [f32], inp: &[f32], out: &[f32], act: Activation) {
    debug_assert!(d.len() == inp.len() && inp.len() == out.len());
    vectorized(
        #[inline(always)]
        || match act {
            Activation::Relu => scale_with(d, inp, out, |x, y| Activation::Relu.derivative(x, y)),
            Activation::Tanh => scale_with(d, inp, out, |x, y| Activation::Tanh.derivative(x, y)),
            Activation::Gelu => scale_with(d, inp, out, |x, y| Activation::Gelu.derivative(x, y)),
        },
    )
}

/// [`backward_inplace`] without the activation's output: where the derivative needs it (tanh),
/// it is recomputed from `inp`, the same bits as [`forward`] wrote.
pub fn backward_inplace_recompute(d: &mut [f32], inp: &[f32], act: Activation) {
    debug_assert_eq!(d.len(), inp.len());
    vectorized(
        #[inline(always)]
        || match act {
            Activation::Relu => scale_with(d, inp, inp, |x, y| Activation::Relu.derivative(x, y)),
            Activation::Tanh => {
                scale_with(d, inp, inp, |x, _| Activation::Tanh.derivative(x, libm::tanhf(x)))
            }
            Activation::Gelu => scale_with(d, inp, inp, |x, y| Activation::Gelu.derivative(x, y)),
        },
    )
}

/// `d ·= f(inp, out)`, monomorphised per activation.
#[inline(always)]
fn scale_with(d: &mut [f32], inp: &[f32], out: &[f32], f: impl Fn(f32, f32) -> f32) {
    for ((g, &x), &y) in d.iter_mut().zip(inp).zip(out) {
        *g *= f(x, y);
    }
}

/// `dinp += dout · f(inp, out)`, monomorphised per activation so each loop vectorises.
#[inline(always)]
fn backward_with(dinp: &mut [f32], dout: &[f32], inp: &[f32], out: &[f32], f: impl Fn(f32, f32) -> f32) {
    for (((dx, &dy), &x), &y) in dinp.iter_mut().zip(dout).zip(inp).zip(out) {
        *dx += dy * f(x, y);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testing::{grad_check, lcg_fill, weighted_sum};

    #[test]
    fn values_by_hand() {
        assert_eq!(Activation::Relu.apply(-2.0), 0.0);
        assert_eq!(Activation::Relu.apply(1.5), 1.5);
        assert!(Activation::Relu.apply(f32::NAN).is_nan(), "NaN must propagate");
        assert!((Activation::Tanh.apply(0.5) - 0.462_117_16).abs() < 1e-6);
        // PyTorch: torch.nn.functional.gelu(torch.tensor([1.0, -0.5])) = [0.8413447, -0.1542687]
        assert!((Activation::Gelu.apply(1.0) - 0.841_344_7).abs() < 1e-6);
        assert!((Activation::Gelu.apply(-0.5) + 0.154_268_7).abs() < 1e-6);
    }

    #[test]
    fn gelu_matches_the_erf_form() {
        // The erf form in f64 (libm) is the oracle: 0.5·x·(1 + erf(x/√2)).
        let mut worst = 0.0f64;
        for i in -6000..=6000 {
            let x = i as f32 * 1e-3;
            let want =
                0.5 * f64::from(x) * (1.0 + libm::erf(f64::from(x) * core::f64::consts::FRAC_1_SQRT_2));
            let got = f64::from(Activation::Gelu.apply(x));
            worst = worst.max((got - want).abs() / want.abs().max(1e-3));
        }
        assert!(worst < 2e-6, "GELU differs from the erf form by {worst:e} (relative)");
    }

    /// The vector GELU of `Kernels::Auto` (where this CPU has one) against the erf form and the
    /// portable loops: values, derivatives (from the saved output or recomputed), every tail length,
    /// NaN, the far tails, inputs near zero (where Φ = GELU/x cannot be used).
    #[test]
    #[cfg_attr(miri, ignore)] // Miri runs no vector kernel, and 20,000 erf references take it minutes
    fn auto_gelu_matches_the_erf_form_and_the_portable_loops() {
        let xs: Vec<f32> = (-12_000..=8_000)
            .map(|i| i as f32 * 1e-3)
            .chain([f32::NAN, -30.0, 30.0, 1e-25, -1e-25, 1e-12, -1e-12, 1e-40])
            .collect();
        for n in [xs.len(), 1, 7, 9, 17] {
            let x = &xs[xs.len() - n..];
            let (mut auto, mut port) = (vec![0.0f32; n], vec![0.0f32; n]);
            forward_on(&mut auto, x, Activation::Gelu, Kernels::Auto);
            forward(&mut port, x, Activation::Gelu);
            let mut inplace = x.to_vec();
            forward_inplace_on(&mut inplace, Activation::Gelu, Kernels::Auto);
            assert_eq!(
                inplace.iter().map(|v| v.to_bits()).collect::<Vec<_>>(),
                auto.iter().map(|v| v.to_bits()).collect::<Vec<_>>()
            );
            let (mut d_auto, mut d_port) = (vec![1.5f32; n], vec![1.5f32; n]);
            backward_inplace_on(&mut d_auto, x, &auto, Activation::Gelu, Kernels::Auto);
            backward_inplace(&mut d_port, x, &port, Activation::Gelu);
            let mut d_re = vec![1.5f32; n];
            backward_inplace_recompute_on(&mut d_re, x, Activation::Gelu, Kernels::Auto);
            assert_eq!(
                d_re.iter().map(|v| v.to_bits()).collect::<Vec<_>>(),
                d_auto.iter().map(|v| v.to_bits()).collect::<Vec<_>>()
            );
            for (i, &v) in x.iter().enumerate() {
                if v.is_nan() {
                    assert!(auto[i].is_nan() && d_auto[i].is_nan(), "NaN must propagate");
                    continue;
                }
                let want =
                    0.5 * f64::from(v) * (1.0 + libm::erf(f64::from(v) * core::f64::consts::FRAC_1_SQRT_2));
                let err = (f64::from(auto[i]) - want).abs() / want.abs().max(1e-3);
                assert!(
                    err < 2e-6 || (want.abs() < 1e-30 && auto[i].abs() < 1e-30),
                    "GELU({v}) = {}, want {want}",
                    auto[i]
                );
                let tol = 1e-6 * (1.0 + d_port[i].abs());
                assert!((d_auto[i] - d_port[i]).abs() <= tol, "GELU'({v}): {} vs {}", d_auto[i], d_port[i]);
            }
        }
    }

    #[test]
    fn backward_matches_finite_differences() {
        for act in [Activation::Relu, Activation::Tanh, Activation::Gelu] {
            let (mut x, mut r) = ([0.0f32; 24], [0.0f32; 24]);
            let mut seed = 7;
            lcg_fill(&mut x, &mut seed);
            lcg_fill(&mut r, &mut seed);
            // Keep ReLU inputs away from its kink at 0, farther than the finite-difference step.
            x.iter_mut().filter(|v| v.abs() < 0.05).for_each(|v| *v += 0.1);
            let mut out = [0.0f32; 24];
            forward(&mut out, &x, act);
            let mut dx = [0.0f32; 24];
            backward(&mut dx, &r, &x, &out, act);
            let err = grad_check(&mut x, &dx, |x| {
                let mut o = [0.0f32; 24];
                forward(&mut o, x, act);
                weighted_sum(&o, &r)
            });
            assert!(err < 1e-3, "{act:?}: relative error {err}");
        }
    }

    #[test]
    fn inplace_equals_out_of_place() {
        let mut x = [0.0f32; 9];
        lcg_fill(&mut x, &mut 3);
        for act in [Activation::Relu, Activation::Tanh, Activation::Gelu] {
            let mut out = [0.0f32; 9];
            forward(&mut out, &x, act);
            let mut y = x;
            forward_inplace(&mut y, act);
            assert_eq!(out, y);
        }
    }
}
