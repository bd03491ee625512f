//! Multi-layer perceptron (and linear regression, its zero-hidden-layer case).
//!
//! `y = L_n(act(L_{n-1}(… act(L_0(x)))))`: activation between hidden layers, none after the
//! last. Shapes: x (batch, n_in) → y (batch, n_out). PyTorch names `layers.{i}.weight/bias`
//! (SPEC §3.2), or `linear.weight/bias` for linear regression (SPEC §3.1).
//!
//! Memory. Training keeps every layer's pre-activation `h_i` and hidden post-activation `a_i`
//! (acts) and their gradients (act_grads). Inference keeps nothing: layers ping-pong between two
//! buffers as wide as the widest layer and apply the activation in place.

use heapless::Vec;

use crate::arena::{Buffers, Planner, Region, Slot};
use crate::error::{Result, ensure, mul};
use crate::layers::{Activation, Linear, activation, linear};
use crate::models::{Init, ParamInfo, ParamName};

/// Most hidden layers an MLP may have.
pub const MAX_HIDDEN: usize = 16;

/// User hyperparameters of an MLP (`--type nlinear`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct MlpConfig {
    /// Input features.
    pub n_in: usize,
    /// Widths of the hidden layers, in order (`--latent_dims "128,64,32"`).
    pub latent_dims: Vec<usize, MAX_HIDDEN>,
    /// Output features.
    pub n_out: usize,
    /// Activation between hidden layers (`--custom_act`).
    pub act: Activation,
}

/// User hyperparameters of a linear regression (`--type linear`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct LinearConfig {
    /// Input features.
    pub n_in: usize,
    /// Output features.
    pub n_out: usize,
}

/// One planned layer: dims, parameter slots, activation slots.
#[derive(Clone, Copy, Debug)]
struct Layer {
    dims: Linear,
    w: Slot,
    b: Slot,
    /// Output of the linear map (acts).
    pre: Slot,
    /// Output of the activation (acts); equals `pre` in inference, unused for the last layer.
    post: Slot,
    /// Gradient of `pre` (act_grads); training only.
    dpre: Slot,
    /// Gradient of `post` (act_grads); training hidden layers only.
    dpost: Slot,
}

/// A planned MLP: dims and slots, no memory.
#[derive(Clone, Debug)]
pub struct Mlp {
    layers: Vec<Layer, { MAX_HIDDEN + 1 }>,
    act: Activation,
    /// Names `linear.*` (linear regression) rather than `layers.{i}.*`.
    linear_names: bool,
}

impl Mlp {
    /// Check the config and lay out every tensor for `max_batch` samples.
    pub(crate) fn plan(
        cfg: &MlpConfig,
        linear_names: bool,
        max_batch: usize,
        training: bool,
        p: &mut Planner,
    ) -> Result<Self> {
        ensure(cfg.n_in > 0, "n_in", "must be at least 1")?;
        ensure(cfg.n_out > 0, "n_out", "must be at least 1")?;
        ensure(cfg.latent_dims.iter().all(|&d| d > 0), "latent_dims", "must all be at least 1")?;
        let widths = cfg.latent_dims.iter().copied().chain(core::iter::once(cfg.n_out));
        let widest = widths.clone().max().unwrap_or(cfg.n_out);
        // Inference: two ping-pong buffers, allocated once.
        let pingpong = if training {
            [Slot::default(); 2]
        } else {
            [p.take(Region::Acts, mul(max_batch, widest)?)?, p.take(Region::Acts, mul(max_batch, widest)?)?]
        };
        let mut layers = Vec::new();
        let mut n_in = cfg.n_in;
        for (i, n_out) in widths.enumerate() {
            let dims = Linear::new(n_in, n_out);
            let w = p.take(Region::Params, mul(n_in, n_out)?)?;
            let b = p.take(Region::Params, n_out)?;
            let hidden = i < cfg.latent_dims.len();
            let rows = mul(max_batch, n_out)?;
            let layer = if training {
                let pre = p.take(Region::Acts, rows)?;
                let post = if hidden { p.take(Region::Acts, rows)? } else { pre };
                let dpre = p.take(Region::ActGrads, rows)?;
                let dpost = if hidden { p.take(Region::ActGrads, rows)? } else { dpre };
                Layer { dims, w, b, pre, post, dpre, dpost }
            } else {
                let buf = pingpong[i % 2];
                Layer { dims, w, b, pre: buf, post: buf, dpre: Slot::default(), dpost: Slot::default() }
            };
            // Capacity is MAX_HIDDEN + 1 and latent_dims holds at most MAX_HIDDEN.
            layers.push(layer).expect("latent_dims is bounded by MAX_HIDDEN");
            n_in = n_out;
        }
        Ok(Mlp { layers, act: cfg.act, linear_names })
    }

    /// Run every product on `kernels` from now on.
    pub(crate) fn set_kernels(&mut self, kernels: crate::ops::Kernels) {
        self.layers.iter_mut().for_each(|l| l.dims.kernels = kernels);
    }

    /// Where the output of a forward pass lies (acts), `max_batch × n_out` floats.
    pub(crate) fn output(&self) -> Slot {
        self.last().pre
    }

    /// Where backward reads dL/d(output) (act_grads).
    pub(crate) fn doutput(&self) -> Slot {
        self.last().dpre
    }

    fn last(&self) -> &Layer {
        self.layers.last().expect("an MLP has an output layer")
    }

    /// Number of parameter tensors.
    pub(crate) fn param_count(&self) -> usize {
        2 * self.layers.len()
    }

    /// The `i`-th parameter tensor, in PyTorch `state_dict` order.
    pub(crate) fn param(&self, i: usize) -> Option<ParamInfo> {
        let layer = self.layers.get(i / 2)?;
        let is_weight = i.is_multiple_of(2);
        let mut name = ParamName::new();
        let field = if is_weight { "weight" } else { "bias" };
        if self.linear_names {
            name.push("linear").field(field);
        } else {
            name.push("layers").index(i / 2).field(field);
        }
        let bound = 1.0 / libm::sqrtf(layer.dims.n_in as f32);
        Some(if is_weight {
            ParamInfo::matrix(name, layer.w, layer.dims.n_out, layer.dims.n_in, Init::Uniform(bound))
        } else {
            ParamInfo::vector(name, layer.b, layer.dims.n_out, Init::Uniform(bound))
        })
    }

    /// Forward pass over `n` samples read from `acts[inp]`; leaves everything backward reads.
    pub(crate) fn forward(&self, bufs: &mut Buffers<'_>, inp: Slot, n: usize) {
        let (params, acts) = (&*bufs.params, &mut *bufs.acts);
        let hidden = self.layers.len() - 1;
        for (i, l) in self.layers.iter().enumerate() {
            let src = if i == 0 { inp } else { self.layers[i - 1].post };
            let [x, h] = acts
                .get_disjoint_mut([src.prefix(n * l.dims.n_in), l.pre.prefix(n * l.dims.n_out)])
                .expect("planned slots are disjoint");
            linear::forward(h, x, &params[l.w.range()], &params[l.b.range()], l.dims);
            if i < hidden {
                if l.post == l.pre {
                    activation::forward_inplace(h, self.act);
                } else {
                    let len = n * l.dims.n_out;
                    let [h, a] = acts
                        .get_disjoint_mut([l.pre.prefix(len), l.post.prefix(len)])
                        .expect("planned slots are disjoint");
                    activation::forward(a, h, self.act);
                }
            }
        }
    }

    /// Backward pass: the forward's calls, mirrored. Reads dL/dy from `act_grads[doutput]`;
    /// accumulates into `grads`; overwrites the hidden act_grads. Needs a training plan.
    pub(crate) fn backward(&self, bufs: &mut Buffers<'_>, inp: Slot, n: usize) {
        let (params, acts, grads, act_grads) =
            (&*bufs.params, &*bufs.acts, &mut *bufs.grads, &mut *bufs.act_grads);
        for i in (0..self.layers.len()).rev() {
            let l = &self.layers[i];
            let [dw, db] =
                grads.get_disjoint_mut([l.w.range(), l.b.range()]).expect("planned slots are disjoint");
            let w = &params[l.w.range()];
            let dh_range = l.dpre.prefix(n * l.dims.n_out);
            if i == 0 {
                let x = &acts[inp.prefix(n * l.dims.n_in)];
                linear::backward(None, dw, db, &act_grads[dh_range], x, w, l.dims);
                continue;
            }
            let prev = &self.layers[i - 1];
            let len = n * l.dims.n_in;
            let [dh, da_prev, dh_prev] = act_grads
                .get_disjoint_mut([dh_range, prev.dpost.prefix(len), prev.dpre.prefix(len)])
                .expect("planned slots are disjoint");
            let a_prev = &acts[prev.post.prefix(len)];
            da_prev.fill(0.0);
            linear::backward(Some(da_prev), dw, db, dh, a_prev, w, l.dims);
            dh_prev.fill(0.0);
            activation::backward(dh_prev, da_prev, &acts[prev.pre.prefix(len)], a_prev, self.act);
        }
    }
}
