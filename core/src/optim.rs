//! Optimizers: SGD (momentum, Nesterov, weight decay), Adam and RMSprop, with PyTorch's update
//! formulas and defaults. Each is one loop over flat slices: parameters, gradients and state
//! copies share the parameter layout (llm.c), so no per-layer code exists here.
//!
//! The arithmetic follows PyTorch's single-tensor CPU path operation by operation
//! (`torch/optim/{sgd,adam,rmsprop}.py`, `_single_tensor_*`), so one step agrees with PyTorch
//! to rounding. Weight decay is L2 (added to the gradient), as in those optimizers.

use crate::error::{Result, ensure};
use crate::ops::{sqrt, vectorized};

/// Stochastic gradient descent. PyTorch defaults: momentum 0, dampening 0, no weight decay.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Sgd {
    /// Learning rate.
    pub lr: f32,
    /// Momentum factor (0 disables the momentum buffer).
    pub momentum: f32,
    /// Dampening of the momentum update.
    pub dampening: f32,
    /// L2 penalty.
    pub weight_decay: f32,
    /// Nesterov momentum.
    pub nesterov: bool,
}

/// Adam. PyTorch defaults: betas (0.9, 0.999), eps 1e-8, no weight decay.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Adam {
    /// Learning rate.
    pub lr: f32,
    /// Decay of the first-moment estimate.
    pub beta1: f32,
    /// Decay of the second-moment estimate.
    pub beta2: f32,
    /// Added to the denominator.
    pub eps: f32,
    /// L2 penalty.
    pub weight_decay: f32,
}

/// RMSprop. PyTorch defaults: alpha 0.99, eps 1e-8, no momentum, not centered.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct RmsProp {
    /// Learning rate.
    pub lr: f32,
    /// Smoothing constant of the squared-gradient average.
    pub alpha: f32,
    /// Added to the denominator.
    pub eps: f32,
    /// L2 penalty.
    pub weight_decay: f32,
    /// Momentum factor (0 disables the buffer).
    pub momentum: f32,
    /// Normalise by the centered second moment (an estimate of the variance).
    pub centered: bool,
}

/// An optimizer and its hyperparameters.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Optimizer {
    /// SGD.
    Sgd(Sgd),
    /// Adam.
    Adam(Adam),
    /// RMSprop.
    RmsProp(RmsProp),
}

impl Optimizer {
    /// SGD with PyTorch's defaults.
    pub const fn sgd(lr: f32) -> Self {
        Optimizer::Sgd(Sgd { lr, momentum: 0.0, dampening: 0.0, weight_decay: 0.0, nesterov: false })
    }

    /// Adam with PyTorch's defaults.
    pub const fn adam(lr: f32) -> Self {
        Optimizer::Adam(Adam { lr, beta1: 0.9, beta2: 0.999, eps: 1e-8, weight_decay: 0.0 })
    }

    /// RMSprop with PyTorch's defaults.
    pub const fn rmsprop(lr: f32) -> Self {
        Optimizer::RmsProp(RmsProp {
            lr,
            alpha: 0.99,
            eps: 1e-8,
            weight_decay: 0.0,
            momentum: 0.0,
            centered: false,
        })
    }

    /// PyTorch defaults for the CLI's `--optimizer` spelling (`adam`, `sgd`, `rmsprop`).
    pub fn from_name(name: &str, lr: f32) -> Option<Self> {
        match name {
            "adam" => Some(Self::adam(lr)),
            "sgd" => Some(Self::sgd(lr)),
            "rmsprop" => Some(Self::rmsprop(lr)),
            _ => None,
        }
    }

    /// The same optimizer with L2 weight decay `wd`.
    pub const fn with_weight_decay(mut self, wd: f32) -> Self {
        match &mut self {
            Optimizer::Sgd(o) => o.weight_decay = wd,
            Optimizer::Adam(o) => o.weight_decay = wd,
            Optimizer::RmsProp(o) => o.weight_decay = wd,
        }
        self
    }

    /// The same optimizer with momentum `m`; `None` for Adam, which has no momentum buffer.
    pub const fn with_momentum(mut self, m: f32) -> Option<Self> {
        match &mut self {
            Optimizer::Sgd(o) => o.momentum = m,
            Optimizer::RmsProp(o) => o.momentum = m,
            Optimizer::Adam(_) => return None,
        }
        Some(self)
    }

    /// The CLI spelling.
    pub const fn name(&self) -> &'static str {
        match self {
            Optimizer::Sgd(_) => "sgd",
            Optimizer::Adam(_) => "adam",
            Optimizer::RmsProp(_) => "rmsprop",
        }
    }

    /// The base learning rate.
    pub const fn lr(&self) -> f32 {
        match self {
            Optimizer::Sgd(o) => o.lr,
            Optimizer::Adam(o) => o.lr,
            Optimizer::RmsProp(o) => o.lr,
        }
    }

    /// Copies of the parameter layout the optimizer keeps as state.
    pub const fn state_copies(&self) -> usize {
        match self {
            Optimizer::Sgd(o) => (o.momentum != 0.0) as usize,
            Optimizer::Adam(_) => 2,
            Optimizer::RmsProp(o) => 1 + (o.momentum != 0.0) as usize + o.centered as usize,
        }
    }

    /// PyTorch's name of state copy `k` (`0..state_copies()`), as in `optimizer.state_dict()`:
    /// Adam `exp_avg`, `exp_avg_sq`; SGD `momentum_buffer`; RMSprop `square_avg`, then
    /// `momentum_buffer` (with momentum), then `grad_avg` (centered).
    pub const fn state_name(&self, k: usize) -> &'static str {
        match (self, k) {
            (Optimizer::Adam(_), 0) => "exp_avg",
            (Optimizer::Adam(_), _) => "exp_avg_sq",
            (Optimizer::Sgd(_), _) => "momentum_buffer",
            (Optimizer::RmsProp(_), 0) => "square_avg",
            (Optimizer::RmsProp(o), 1) if o.momentum != 0.0 => "momentum_buffer",
            (Optimizer::RmsProp(_), _) => "grad_avg",
        }
    }

    /// Reject hyperparameters PyTorch would reject (`Invalid learning rate`, …).
    pub fn validate(&self) -> Result<()> {
        let nonneg = |v: f32| v.is_finite() && v >= 0.0;
        let lr = self.lr();
        ensure(lr.is_finite() && lr > 0.0, "lr", "must be a positive finite number")?;
        match *self {
            Optimizer::Sgd(o) => {
                ensure(nonneg(o.momentum), "momentum", "must be >= 0")?;
                ensure(nonneg(o.dampening), "dampening", "must be >= 0")?;
                ensure(nonneg(o.weight_decay), "weight_decay", "must be >= 0")?;
                ensure(
                    !o.nesterov || (o.momentum > 0.0 && o.dampening == 0.0),
                    "nesterov",
                    "needs momentum > 0 and dampening 0",
                )
            }
            Optimizer::Adam(o) => {
                ensure((0.0..1.0).contains(&o.beta1), "beta1", "must be in [0, 1)")?;
                ensure((0.0..1.0).contains(&o.beta2), "beta2", "must be in [0, 1)")?;
                ensure(nonneg(o.eps), "eps", "must be >= 0")?;
                ensure(nonneg(o.weight_decay), "weight_decay", "must be >= 0")
            }
            Optimizer::RmsProp(o) => {
                ensure(nonneg(o.alpha), "alpha", "must be >= 0")?;
                ensure(nonneg(o.eps), "eps", "must be >= 0")?;
                ensure(nonneg(o.momentum), "momentum", "must be >= 0")?;
                ensure(nonneg(o.weight_decay), "weight_decay", "must be >= 0")
            }
        }
    }

    /// Apply update number `t` (1-based) with learning rate `lr` to `params`.
    /// `state` holds `state_copies()` consecutive copies of the parameter layout, zero at t = 1.
    ///
    /// With a parallel-for installed ([`crate::parallel`]) a large update splits into contiguous
    /// ranges of parameters, each updated from its own gradients and state: the same arithmetic
    /// per element, so the same bits at any thread count.
    pub fn step(&self, params: &mut [f32], grads: &[f32], state: &mut [f32], lr: f32, t: u64) {
        let n = params.len();
        debug_assert_eq!(grads.len(), n);
        debug_assert!(state.len() >= n * self.state_copies());
        // The state's copies, each n floats; those this optimizer does not keep stay empty.
        let mut copies: [&mut [f32]; 3] = [&mut [], &mut [], &mut []];
        let mut rest = &mut state[..n * self.state_copies()];
        for copy in copies.iter_mut().take(self.state_copies()) {
            (*copy, rest) = core::mem::take(&mut rest).split_at_mut(n);
        }
        #[cfg(not(target_os = "none"))]
        if let Some(par) = crate::parallel::current() {
            use crate::parallel::{run_tasks, take_chunk, tasks_for};
            let units = n / STEP_UNIT;
            let tasks = tasks_for(par, units, (n as u64).saturating_mul(STEP_COST));
            if tasks >= 2 {
                let (mut params, mut grads) = (params, grads);
                run_tasks(par, tasks, |k| {
                    let p = take_chunk(&mut params, (units, tasks, k), STEP_UNIT);
                    let len = p.len();
                    let (g, later) = grads.split_at(len);
                    grads = later;
                    let mut s: [&mut [f32]; 3] = [&mut [], &mut [], &mut []];
                    for (mine, copy) in s.iter_mut().zip(copies.iter_mut()) {
                        if !copy.is_empty() {
                            (*mine, *copy) = core::mem::take(copy).split_at_mut(len);
                        }
                    }
                    move || self.step_range(p, g, s.each_mut().map(|c| &mut **c), lr, t)
                });
                return;
            }
        }
        self.step_range(params, grads, copies, lr, t);
    }

    /// [`step`](Self::step) of a range of parameters, its gradients and its part of each state
    /// copy.
    fn step_range(&self, params: &mut [f32], grads: &[f32], copies: [&mut [f32]; 3], lr: f32, t: u64) {
        let [s0, s1, s2] = copies;
        vectorized(
            #[inline(always)]
            || match *self {
                Optimizer::Sgd(o) => sgd_step(&o, params, grads, s0, lr, t),
                Optimizer::Adam(o) => adam_step(&o, params, grads, s0, s1, lr, t),
                Optimizer::RmsProp(o) => rmsprop_step(&o, params, grads, [s0, s1, s2], lr),
            },
        )
    }
}

/// Parameters per unit of a split update.
#[cfg(not(target_os = "none"))]
const STEP_UNIT: usize = 1024;

/// Work of one parameter's update in gemm FLOPs (the parallel-for's measure of a task): a square
/// root and a division, about as long as 128 of a gemm's.
#[cfg(not(target_os = "none"))]
const STEP_COST: u64 = 128;

/// `torch.lerp(start, end, w)` as PyTorch computes it on CPU.
#[inline(always)]
fn lerp(start: f32, end: f32, w: f32) -> f32 {
    if w.abs() < 0.5 { start + w * (end - start) } else { end - (end - start) * (1.0 - w) }
}

#[inline(always)]
fn sgd_step(o: &Sgd, params: &mut [f32], grads: &[f32], buf: &mut [f32], lr: f32, t: u64) {
    let neg_lr = -lr;
    if o.momentum == 0.0 {
        for (p, &g) in params.iter_mut().zip(grads) {
            let d = g + o.weight_decay * *p;
            *p += neg_lr * d;
        }
        return;
    }
    let keep = 1.0 - o.dampening;
    for ((p, &g), b) in params.iter_mut().zip(grads).zip(buf.iter_mut()) {
        let d = g + o.weight_decay * *p;
        // The first step clones the gradient into the buffer (no dampening), as PyTorch does.
        *b = if t <= 1 { d } else { *b * o.momentum + keep * d };
        let d = if o.nesterov { d + o.momentum * *b } else { *b };
        *p += neg_lr * d;
    }
}

#[inline(always)]
fn adam_step(o: &Adam, params: &mut [f32], grads: &[f32], m: &mut [f32], v: &mut [f32], lr: f32, t: u64) {
    // Bias corrections are Python floats (f64) in PyTorch, rounded to f32 where they meet tensors.
    let t = t.max(1) as i32;
    let bc1 = 1.0 - libm::pow(f64::from(o.beta1), f64::from(t));
    let bc2 = 1.0 - libm::pow(f64::from(o.beta2), f64::from(t));
    let neg_step_size = (-(f64::from(lr) / bc1)) as f32;
    let bc2_sqrt = libm::sqrt(bc2) as f32;
    let (w1, w2) = (1.0 - o.beta1, 1.0 - o.beta2);
    for (((p, &g), m), v) in params.iter_mut().zip(grads).zip(m.iter_mut()).zip(v.iter_mut()) {
        let g = if o.weight_decay != 0.0 { g + o.weight_decay * *p } else { g };
        *m = lerp(*m, g, w1);
        *v = *v * o.beta2 + w2 * g * g;
        let denom = sqrt(*v) / bc2_sqrt + o.eps;
        *p += neg_step_size * *m / denom;
    }
}

#[inline(always)]
fn rmsprop_step(o: &RmsProp, params: &mut [f32], grads: &[f32], copies: [&mut [f32]; 3], lr: f32) {
    let n = params.len();
    // The copies in `state_name`'s order: square_avg, then momentum_buffer, then grad_avg.
    let [sq, c1, c2] = copies;
    let sq = &mut sq[..n];
    let (mut buf, mut grad_avg) = match (o.momentum != 0.0, o.centered) {
        (true, true) => (Some(&mut c1[..n]), Some(&mut c2[..n])),
        (true, false) => (Some(&mut c1[..n]), None),
        (false, true) => (None, Some(&mut c1[..n])),
        (false, false) => (None, None),
    };
    let w = 1.0 - o.alpha;
    for i in 0..n {
        let p = params[i];
        let g = if o.weight_decay != 0.0 { grads[i] + o.weight_decay * p } else { grads[i] };
        sq[i] = sq[i] * o.alpha + w * g * g;
        let avg = match grad_avg.as_deref_mut() {
            Some(ga) => {
                ga[i] = lerp(ga[i], g, w);
                sqrt(sq[i] + -ga[i] * ga[i])
            }
            None => sqrt(sq[i]),
        } + o.eps;
        params[i] = match buf.as_deref_mut() {
            Some(b) => {
                b[i] = b[i] * o.momentum + g / avg;
                p + -lr * b[i]
            }
            None => p + -lr * g / avg,
        };
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Minimise f(p) = Σ (p_i − c_i)² with each optimizer; every one must get close.
    #[test]
    fn every_optimizer_minimises_a_quadratic() {
        let target = [1.0f32, -2.0, 0.5];
        let sgd_m = Optimizer::Sgd(Sgd {
            lr: 0.05,
            momentum: 0.9,
            dampening: 0.0,
            weight_decay: 0.0,
            nesterov: true,
        });
        let rms_c = Optimizer::RmsProp(RmsProp {
            lr: 0.01,
            alpha: 0.99,
            eps: 1e-8,
            weight_decay: 0.01,
            momentum: 0.5,
            centered: true,
        });
        for opt in [Optimizer::sgd(0.1), sgd_m, Optimizer::adam(0.05), Optimizer::rmsprop(0.01), rms_c] {
            opt.validate().unwrap();
            let mut p = [0.0f32; 3];
            let mut state = [0.0f32; 9];
            for t in 1..=2000 {
                let g: [f32; 3] = core::array::from_fn(|i| 2.0 * (p[i] - target[i]));
                opt.step(&mut p, &g, &mut state, opt.lr(), t);
            }
            for (a, b) in p.iter().zip(&target) {
                assert!((a - b).abs() < 0.02, "{opt:?}: {p:?}");
            }
        }
    }

    #[test]
    fn adam_first_step_moves_by_lr_times_sign() {
        // m̂ = g, v̂ = g², so the first update is lr · g / (|g| + eps) ≈ lr · sign(g).
        let mut p = [1.0f32, 1.0];
        let mut state = [0.0f32; 4];
        Optimizer::adam(0.1).step(&mut p, &[3.0, -0.5], &mut state, 0.1, 1);
        assert!((p[0] - 0.9).abs() < 1e-6 && (p[1] - 1.1).abs() < 1e-6, "{p:?}");
    }

    #[test]
    fn bad_hyperparameters_are_rejected() {
        assert!(Optimizer::adam(0.0).validate().is_err());
        assert!(Optimizer::sgd(f32::NAN).validate().is_err());
        let mut a = Optimizer::adam(0.1);
        if let Optimizer::Adam(o) = &mut a {
            o.beta1 = 1.0;
        }
        assert!(a.validate().is_err());
    }

    #[test]
    fn state_copies_follow_the_options() {
        assert_eq!(Optimizer::sgd(0.1).state_copies(), 0);
        assert_eq!(Optimizer::adam(0.1).state_copies(), 2);
        assert_eq!(Optimizer::rmsprop(0.1).state_copies(), 1);
    }
}
