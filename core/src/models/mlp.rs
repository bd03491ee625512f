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

impl MlpConfig {
    /// An MLP of `n_in` features, hidden layers of the widths in `latent_dims` (at most
    /// [`MAX_HIDDEN`]), and `n_out` outputs: the same config as the struct literal, without the
    /// caller depending on `heapless` for the widths.
    ///
    /// ```
    /// use regkern_core::{Activation, MlpConfig};
    /// let cfg = MlpConfig::new(8, &[32, 16], 1, Activation::Relu)?;
    /// assert_eq!(cfg.latent_dims.as_slice(), &[32, 16]);
    /// assert!(MlpConfig::new(8, &[4; 17], 1, Activation::Relu).is_err());
    /// # Ok::<(), regkern_core::Error>(())
    /// ```
    pub fn new(n_in: usize, latent_dims: &[usize], n_out: usize, act: Activation) -> crate::Result<Self> {
        let latent_dims = Vec::from_slice(latent_dims)
            .map_err(|_| crate::Error::BadConfig { field: "latent_dims", reason: "has too many layers" })?;
        Ok(MlpConfig { n_in, latent_dims, n_out, act })
    }
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

/// An MLP's widths, borrowed from its config (a linear regression is an MLP without hidden
/// layers).
#[derive(Clone, Copy, Debug)]
pub(crate) struct Shape<'c> {
    n_in: usize,
    hidden: &'c [usize],
    n_out: usize,
    act: Activation,
}

impl<'c> Shape<'c> {
    /// The shape of a linear regression.
    pub(crate) fn linear(c: &LinearConfig) -> Self {
        Shape { n_in: c.n_in, hidden: &[], n_out: c.n_out, act: Activation::default() }
    }

    /// The shape of an MLP.
    pub(crate) fn mlp(c: &'c MlpConfig) -> Self {
        Shape { n_in: c.n_in, hidden: &c.latent_dims, n_out: c.n_out, act: c.act }
    }

    /// Number of layers (hidden ones and the output layer).
    fn len(&self) -> usize {
        self.hidden.len() + 1
    }

    /// Output width of layer `i`.
    fn width(&self, i: usize) -> usize {
        self.hidden.get(i).copied().unwrap_or(self.n_out)
    }
}

/// A planned MLP: where its layers start, no memory.
///
/// It keeps neither the widths (the model's config has them: every method takes its `Shape`)
/// nor the layers' slots, only the planner as it stood before the first layer: `Mlp::layer`
/// replays the planning of the layers up to the one asked for (a few additions each). So the
/// planned `Model` of an MLP is small to move across a microcontroller's stack, however deep.
#[derive(Clone, Debug)]
pub struct Mlp {
    /// Names `linear.*` (linear regression) rather than `layers.{i}.*`.
    linear_names: bool,
    max_batch: usize,
    training: bool,
    kernels: crate::ops::Kernels,
    /// The planner before the first layer took its slots.
    start: Planner,
    /// Inference: the two ping-pong activation buffers.
    pingpong: [Slot; 2],
}

impl Mlp {
    /// Check the shape and lay out every tensor for `max_batch` samples.
    pub(crate) fn plan(
        s: Shape<'_>,
        linear_names: bool,
        max_batch: usize,
        training: bool,
        p: &mut Planner,
    ) -> Result<Self> {
        ensure(s.n_in > 0, "n_in", "must be at least 1")?;
        ensure(s.n_out > 0, "n_out", "must be at least 1")?;
        ensure(s.hidden.iter().all(|&d| d > 0), "latent_dims", "must all be at least 1")?;
        ensure(s.hidden.len() <= MAX_HIDDEN, "latent_dims", "has too many layers")?;
        let widest = (0..s.len()).map(|i| s.width(i)).max().unwrap_or(s.n_out);
        // Inference: two ping-pong buffers, allocated once.
        let pingpong = if training {
            [Slot::default(); 2]
        } else {
            [p.take(Region::Acts, mul(max_batch, widest)?)?, p.take(Region::Acts, mul(max_batch, widest)?)?]
        };
        let mlp = Mlp {
            linear_names,
            max_batch,
            training,
            kernels: crate::ops::Kernels::Auto,
            start: *p,
            pingpong,
        };
        let mut n_in = s.n_in;
        for i in 0..s.len() {
            n_in = mlp.take_layer(s, p, i, n_in)?.dims.n_out;
        }
        Ok(mlp)
    }

    /// Take layer `i`'s slots (its input has `n_in` features) from `p`: the one place the
    /// layout of a layer is decided, run by [`Mlp::plan`] and replayed by [`Mlp::layer`].
    fn take_layer(&self, s: Shape<'_>, p: &mut Planner, i: usize, n_in: usize) -> Result<Layer> {
        let n_out = s.width(i);
        let dims = Linear::new(n_in, n_out).on(self.kernels);
        let w = p.take(Region::Params, mul(n_in, n_out)?)?;
        let b = p.take(Region::Params, n_out)?;
        let hidden = i + 1 < s.len();
        let rows = mul(self.max_batch, n_out)?;
        Ok(if self.training {
            let pre = p.take(Region::Acts, rows)?;
            let post = if hidden { p.take(Region::Acts, rows)? } else { pre };
            let dpre = p.take(Region::ActGrads, rows)?;
            let dpost = if hidden { p.take(Region::ActGrads, rows)? } else { dpre };
            Layer { dims, w, b, pre, post, dpre, dpost }
        } else {
            let buf = self.pingpong[i % 2];
            Layer { dims, w, b, pre: buf, post: buf, dpre: Slot::default(), dpost: Slot::default() }
        })
    }

    /// Layer `i` as [`Mlp::plan`] laid it out: the planning of layers `0..=i` replayed from the
    /// same state, so it cannot fail where planning succeeded.
    fn layer(&self, s: Shape<'_>, i: usize) -> Layer {
        let (mut p, mut n_in) = (self.start, s.n_in);
        let mut layer = None;
        for j in 0..=i {
            // (No `Result::expect`: formatting the error would link core::fmt into firmware.)
            let Ok(l) = self.take_layer(s, &mut p, j, n_in) else {
                unreachable!("planned once from the same state")
            };
            n_in = l.dims.n_out;
            layer = Some(l);
        }
        layer.expect("i is below the number of layers")
    }

    /// Run every product on `kernels` from now on.
    pub(crate) fn set_kernels(&mut self, kernels: crate::ops::Kernels) {
        self.kernels = kernels;
    }

    /// Where the output of a forward pass lies (acts), `max_batch × n_out` floats.
    pub(crate) fn output(&self, s: Shape<'_>) -> Slot {
        self.layer(s, s.len() - 1).pre
    }

    /// Where backward reads dL/d(output) (act_grads).
    pub(crate) fn doutput(&self, s: Shape<'_>) -> Slot {
        self.layer(s, s.len() - 1).dpre
    }

    /// Number of parameter tensors.
    pub(crate) fn param_count(&self, s: Shape<'_>) -> usize {
        2 * s.len()
    }

    /// The `i`-th parameter tensor, in PyTorch `state_dict` order.
    pub(crate) fn param(&self, s: Shape<'_>, i: usize) -> Option<ParamInfo> {
        if i >= self.param_count(s) {
            return None;
        }
        let layer = self.layer(s, i / 2);
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
    pub(crate) fn forward(&self, s: Shape<'_>, bufs: &mut Buffers<'_>, inp: Slot, n: usize) {
        let (params, acts) = (&*bufs.params, &mut *bufs.acts);
        let hidden = s.len() - 1;
        let mut src = inp;
        for i in 0..s.len() {
            let l = self.layer(s, i);
            let [x, h] = acts
                .get_disjoint_mut([src.prefix(n * l.dims.n_in), l.pre.prefix(n * l.dims.n_out)])
                .expect("planned slots are disjoint");
            linear::forward(h, x, &params[l.w.range()], &params[l.b.range()], l.dims);
            if i < hidden {
                if l.post == l.pre {
                    activation::forward_inplace(h, s.act);
                } else {
                    let len = n * l.dims.n_out;
                    let [h, a] = acts
                        .get_disjoint_mut([l.pre.prefix(len), l.post.prefix(len)])
                        .expect("planned slots are disjoint");
                    activation::forward(a, h, s.act);
                }
            }
            src = l.post;
        }
    }

    /// Backward pass: the forward's calls, mirrored. Reads dL/dy from `act_grads[doutput]`;
    /// accumulates into `grads`; overwrites the hidden act_grads. Needs a training plan.
    pub(crate) fn backward(&self, s: Shape<'_>, bufs: &mut Buffers<'_>, inp: Slot, n: usize) {
        let (params, acts, grads, act_grads) =
            (&*bufs.params, &*bufs.acts, &mut *bufs.grads, &mut *bufs.act_grads);
        for i in (0..s.len()).rev() {
            let l = self.layer(s, i);
            let [dw, db] =
                grads.get_disjoint_mut([l.w.range(), l.b.range()]).expect("planned slots are disjoint");
            let w = &params[l.w.range()];
            let dh_range = l.dpre.prefix(n * l.dims.n_out);
            if i == 0 {
                let x = &acts[inp.prefix(n * l.dims.n_in)];
                linear::backward(None, dw, db, &act_grads[dh_range], x, w, l.dims);
                continue;
            }
            let prev = self.layer(s, i - 1);
            let len = n * l.dims.n_in;
            let [dh, da_prev, dh_prev] = act_grads
                .get_disjoint_mut([dh_range, prev.dpost.prefix(len), prev.dpre.prefix(len)])
                .expect("planned slots are disjoint");
            let a_prev = &acts[prev.post.prefix(len)];
            da_prev.fill(0.0);
            linear::backward(Some(da_prev), dw, db, dh, a_prev, w, l.dims);
            dh_prev.fill(0.0);
            activation::backward(dh_prev, da_prev, &acts[prev.pre.prefix(len)], a_prev, s.act);
        }
    }
}
