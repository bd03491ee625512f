//! Models: plan from a config, then forward, loss, backward over a carved arena.
//!
//! [`Model::plan`] is pure: it validates a [`ModelConfig`], lays out every tensor for a
//! [`Mode`] and returns a `Copy`-free description (dims and slots) with its [`Report`]. A [`Net`]
//! binds a planned model to the caller's arena; it is what callers train and run.

#[cfg(feature = "encdec")]
pub mod encdec;
#[cfg(feature = "transformer")]
mod generate;
#[cfg(feature = "mlp")]
pub mod mlp;
#[cfg(feature = "transformer")]
pub mod transformer;

#[cfg(not(any(feature = "mlp", feature = "transformer")))]
compile_error!("regkern-core needs at least one architecture: enable the `mlp` or `transformer` feature");

use crate::arena::{Buffers, Planner, Region, Report, Slot, carve};
use crate::error::{Error, Result, check_len, ensure, mul};
use crate::layers::mse;
use crate::ops::Kernels;
use crate::optim::Optimizer;
use crate::rng::Xoshiro256;

#[cfg(feature = "encdec")]
pub use encdec::{EncoderDecoder, EncoderDecoderConfig};
#[cfg(feature = "transformer")]
pub use generate::{Context, Decoder, Generate};
#[cfg(feature = "mlp")]
use mlp::Shape;
#[cfg(feature = "mlp")]
pub use mlp::{LinearConfig, MAX_HIDDEN, Mlp, MlpConfig};
#[cfg(feature = "transformer")]
pub use transformer::{AttentionType, Transformer, TransformerConfig};

/// What to build.
#[derive(Clone, Debug, PartialEq)]
pub enum ModelConfig {
    /// Linear regression (`--type linear`).
    #[cfg(feature = "mlp")]
    Linear(LinearConfig),
    /// Multi-layer perceptron (`--type nlinear`).
    #[cfg(feature = "mlp")]
    Mlp(MlpConfig),
    /// Transformer for sequence regression (`--type transformer`).
    #[cfg(feature = "transformer")]
    Transformer(TransformerConfig),
    /// Encoder-decoder transformer for sequence-to-sequence regression
    /// (`--type transformer --encoderdecoder`).
    #[cfg(feature = "encdec")]
    EncoderDecoder(EncoderDecoderConfig),
}

impl ModelConfig {
    /// Longest sequence the model can take: `max_seq_len`, the rows of its positional
    /// embedding (1 for linear and MLP models).
    pub const fn max_seq_len(&self) -> usize {
        match self {
            #[cfg(feature = "mlp")]
            ModelConfig::Linear(_) | ModelConfig::Mlp(_) => 1,
            #[cfg(feature = "transformer")]
            ModelConfig::Transformer(c) => c.max_seq_len,
            #[cfg(feature = "encdec")]
            ModelConfig::EncoderDecoder(c) => c.max_seq_len,
        }
    }

    /// The CLI's `--type` spelling.
    pub const fn type_name(&self) -> &'static str {
        match self {
            #[cfg(feature = "mlp")]
            ModelConfig::Linear(_) => "linear",
            #[cfg(feature = "mlp")]
            ModelConfig::Mlp(_) => "nlinear",
            #[cfg(feature = "transformer")]
            ModelConfig::Transformer(_) => "transformer",
            #[cfg(feature = "encdec")]
            ModelConfig::EncoderDecoder(_) => "transformer",
        }
    }
}

/// What the buffers are for: inference only, or training with a given optimizer.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Mode {
    /// Forward passes only: no gradients, optimizer state or saved activations.
    Inference {
        /// Most samples per call.
        max_batch: usize,
    },
    /// Forward and backward passes and optimizer updates.
    Training {
        /// Most samples per step.
        max_batch: usize,
        /// Sizes the optimizer state (Adam keeps two copies of the parameters, SGD up to one).
        optimizer: Optimizer,
    },
}

/// What a training plan keeps between the forward and the backward pass.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Memory {
    /// Keep everything backward reads: the fastest step.
    #[default]
    Fast,
    /// Keep less, and recompute in backward what is cheap to recompute. A transformer keeps no
    /// attention probabilities (B·H·T·T floats per layer; backward recomputes each head's in a
    /// scratch tile), no norm outputs (recomputed from the kept row statistics; a MoE FFN's input
    /// is kept) and no FFN post-activation (recomputed from the pre-activation). Forward writes
    /// those into buffers it has not filled yet, and backward takes its gradient buffers partly
    /// in activations it has consumed (a dense block's output slot, once the next norm's backward
    /// has read it). The same results, bit for bit, for more arithmetic per step
    /// (10% more instructions on the default experiment). Linear and MLP
    /// models plan the same either way.
    Lean,
}

impl Mode {
    /// Most samples per call.
    pub const fn max_batch(&self) -> usize {
        match *self {
            Mode::Inference { max_batch } | Mode::Training { max_batch, .. } => max_batch,
        }
    }

    /// True for a training plan.
    pub const fn is_training(&self) -> bool {
        matches!(self, Mode::Training { .. })
    }
}

/// How a parameter is initialised (PyTorch's defaults, SPEC §3).
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Init {
    /// U(−bound, bound): `nn.Linear` weights (Kaiming-uniform with a = √5) and biases, bound 1/√fan_in.
    Uniform(f32),
    /// N(0, std²): learned positional embeddings (std 0.02).
    Normal(f32),
    /// A constant: LayerNorm weight 1, bias 0.
    Const(f32),
}

/// Capacity of a parameter name ("encoder.layers.11.ffn.experts.15.fc1.weight" is 43 bytes).
pub const NAME_CAP: usize = 80;

/// A parameter's PyTorch `state_dict` name, built without heap.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ParamName(heapless::String<NAME_CAP>);

impl ParamName {
    /// An empty name.
    pub fn new() -> Self {
        Self::default()
    }

    /// Append a dotted component.
    pub fn push(&mut self, part: &str) -> &mut Self {
        if !self.0.is_empty() {
            self.append(".");
        }
        self.append(part);
        self
    }

    /// Append a numeric component (`layers.3`).
    pub fn index(&mut self, i: usize) -> &mut Self {
        // Decimal digits by hand: `write!` would link core::fmt into every firmware that names
        // its parameters (init, checkpoints). 20 digits hold any usize.
        let (mut buf, mut at, mut v) = ([0u8; 20], 20, i);
        loop {
            at -= 1;
            buf[at] = b'0' + (v % 10) as u8;
            v /= 10;
            if v == 0 {
                break;
            }
        }
        let digits = core::str::from_utf8(&buf[at..]).expect("ASCII digits are UTF-8");
        self.push(digits)
    }

    /// Append the final component (`weight`, `bias`).
    pub fn field(&mut self, part: &str) -> &mut Self {
        self.push(part)
    }

    /// The name.
    pub fn as_str(&self) -> &str {
        &self.0
    }

    fn append(&mut self, s: &str) {
        // Names are built from fixed parts and small indices; NAME_CAP bounds them by design.
        self.0.push_str(s).expect("parameter names fit in NAME_CAP bytes");
    }
}

/// One row of the parameter table: a tensor's name, place and shape.
#[derive(Clone, Debug, PartialEq)]
pub struct ParamInfo {
    /// PyTorch name.
    pub name: ParamName,
    /// Place in the params region (and, identically, in grads and each optimizer-state copy).
    pub slot: Slot,
    dims: [usize; 2],
    rank: usize,
    /// Default initialisation.
    pub init: Init,
}

impl ParamInfo {
    /// A `[rows, cols]` tensor.
    pub(crate) fn matrix(name: ParamName, slot: Slot, rows: usize, cols: usize, init: Init) -> Self {
        debug_assert_eq!(slot.len, rows * cols);
        ParamInfo { name, slot, dims: [rows, cols], rank: 2, init }
    }

    /// A `[len]` tensor.
    pub(crate) fn vector(name: ParamName, slot: Slot, len: usize, init: Init) -> Self {
        debug_assert_eq!(slot.len, len);
        ParamInfo { name, slot, dims: [len, 0], rank: 1, init }
    }

    /// The PyTorch shape.
    pub fn shape(&self) -> &[usize] {
        &self.dims[..self.rank]
    }
}

// No Box without alloc; both variants are a couple of KiB at most (the transformer keeps one
// block's slots whatever its depth), small enough for an embedded stack.
#[allow(clippy::large_enum_variant)]
#[derive(Clone, Debug)]
enum Arch {
    #[cfg(feature = "mlp")]
    Mlp(Mlp),
    #[cfg(feature = "transformer")]
    Transformer(Transformer),
    #[cfg(feature = "encdec")]
    EncDec(EncoderDecoder),
}

impl Arch {
    /// True for an encoder-decoder.
    const fn is_encdec(&self) -> bool {
        match self {
            #[cfg(feature = "encdec")]
            Arch::EncDec(_) => true,
            #[allow(unreachable_patterns)]
            _ => false,
        }
    }
}

/// A planned model: dims, slots and the byte report. Holds no memory.
#[derive(Clone, Debug)]
pub struct Model {
    arch: Arch,
    config: ModelConfig,
    mode: Mode,
    /// Input batch (acts): `max_batch × max_seq × in_dim`.
    inp: Slot,
    /// Target batch (acts, training only): `max_batch × out_len`.
    target: Slot,
    /// Features per token (per sample for linear and MLP models).
    in_dim: usize,
    /// Outputs per sample.
    out_dim: usize,
    /// Longest sequence (1 for linear and MLP models).
    max_seq: usize,
    /// One output per token (autoregressive, encoder-decoder) rather than per sample.
    per_token: bool,
    report: Report,
    kernels: Kernels,
}

impl Model {
    /// Validate `cfg` and lay out every buffer for `mode`, for sequences of up to the config's
    /// `max_seq_len`. Pure: touches no memory.
    pub fn plan(cfg: &ModelConfig, mode: Mode) -> Result<Model> {
        Self::plan_for(cfg, mode, cfg.max_seq_len())
    }

    /// [`Model::plan`] for sequences of at most `seq_len` tokens (source and target of an
    /// encoder-decoder alike): activations, their gradients, scratch and the KV cache are sized
    /// for the longest sequence the run feeds, while `max_seq_len` sizes only the positional
    /// embedding. The default experiment's transformer trains on 32 tokens with a table of 128
    /// positions: planned for 32, its activations take a sixteenth of the attention memory.
    /// `seq_len` must lie in `1..=max_seq_len`; linear and MLP models ignore it.
    pub fn plan_for(cfg: &ModelConfig, mode: Mode, seq_len: usize) -> Result<Model> {
        Self::plan_with(cfg, mode, seq_len, Memory::Fast)
    }

    /// [`Model::plan_for`], keeping what `memory` says between the passes of a training step
    /// ([`Memory::Lean`]: less memory, the same results, more arithmetic).
    pub fn plan_with(cfg: &ModelConfig, mode: Mode, seq_len: usize, memory: Memory) -> Result<Model> {
        let max_batch = mode.max_batch();
        let lean = memory == Memory::Lean;
        ensure(max_batch > 0, "batch_size", "must be at least 1")?;
        let training = mode.is_training();
        let opt_copies = match mode {
            Mode::Training { optimizer, .. } => {
                optimizer.validate()?;
                optimizer.state_copies()
            }
            Mode::Inference { .. } => 0,
        };
        let mut p = Planner::default();
        let (in_dim, out_dim, max_seq, per_token) = match cfg {
            #[cfg(feature = "mlp")]
            ModelConfig::Linear(c) => (c.n_in, c.n_out, 1, false),
            #[cfg(feature = "mlp")]
            ModelConfig::Mlp(c) => (c.n_in, c.n_out, 1, false),
            #[cfg(feature = "transformer")]
            ModelConfig::Transformer(c) => (c.input_dim, c.output_dim, seq_len, c.autoregressive),
            #[cfg(feature = "encdec")]
            ModelConfig::EncoderDecoder(c) => (c.input_dim, c.output_dim, seq_len, true),
        };
        let inp = p.take(Region::Acts, mul(mul(max_batch, max_seq)?, in_dim)?)?;
        let out_len = if per_token { mul(max_seq, out_dim)? } else { out_dim };
        let target = if training { p.take(Region::Acts, mul(max_batch, out_len)?)? } else { Slot::default() };
        let arch = match cfg {
            #[cfg(feature = "mlp")]
            ModelConfig::Linear(c) => {
                Arch::Mlp(Mlp::plan(Shape::linear(c), true, max_batch, training, &mut p)?)
            }
            #[cfg(feature = "mlp")]
            ModelConfig::Mlp(c) => Arch::Mlp(Mlp::plan(Shape::mlp(c), false, max_batch, training, &mut p)?),
            #[cfg(feature = "transformer")]
            ModelConfig::Transformer(c) =>
            {
                #[cfg(feature = "transformer")]
                Arch::Transformer(Transformer::plan(c, (max_batch, max_seq), (training, lean), &mut p)?)
            }
            #[cfg(feature = "encdec")]
            ModelConfig::EncoderDecoder(c) =>
            {
                #[cfg(feature = "encdec")]
                Arch::EncDec(EncoderDecoder::plan(c, (max_batch, max_seq), (training, lean), &mut p)?)
            }
        };
        let report = p.report(training, opt_copies)?;
        Ok(Model {
            arch,
            config: cfg.clone(),
            mode,
            inp,
            target,
            in_dim,
            out_dim,
            max_seq,
            per_token,
            report,
            kernels: Kernels::Auto,
        })
    }

    /// Run every product on `kernels` from now on ([`Kernels::Portable`]: the bits a
    /// microcontroller computes, on any host).
    pub fn set_kernels(&mut self, kernels: Kernels) {
        self.kernels = kernels;
        match &mut self.arch {
            #[cfg(feature = "mlp")]
            Arch::Mlp(m) => m.set_kernels(kernels),
            #[cfg(feature = "transformer")]
            Arch::Transformer(t) => t.set_kernels(kernels),
            #[cfg(feature = "encdec")]
            Arch::EncDec(e) => e.set_kernels(kernels),
        }
    }

    /// The gemm kernels the model's products run on.
    pub fn kernels(&self) -> Kernels {
        self.kernels
    }

    /// Bytes of every region.
    pub fn report(&self) -> &Report {
        &self.report
    }

    /// The config this model was planned from.
    pub fn config(&self) -> &ModelConfig {
        &self.config
    }

    /// The mode this model was planned for.
    pub fn mode(&self) -> Mode {
        self.mode
    }

    /// Floats of one input sample at the longest sequence (linear and MLP: the features).
    pub fn in_len(&self) -> usize {
        self.max_seq * self.in_dim
    }

    /// Floats of one output (= target) sample at the longest sequence.
    pub fn out_len(&self) -> usize {
        if self.per_token { self.max_seq * self.out_dim } else { self.out_dim }
    }

    /// Outputs per token (autoregressive) or per sample.
    pub fn out_dim(&self) -> usize {
        self.out_dim
    }

    /// The KV cache's storage type, when one was planned.
    pub fn kv_cache(&self) -> Option<crate::layers::KvDtype> {
        match &self.config {
            #[cfg(feature = "transformer")]
            ModelConfig::Transformer(t) => t.kv_cache,
            #[cfg(feature = "encdec")]
            ModelConfig::EncoderDecoder(c) => c.kv_cache,
            _ => None,
        }
    }

    /// True when the model predicts at every position (autoregressive, encoder-decoder).
    pub fn per_token(&self) -> bool {
        self.per_token
    }

    /// Features per token (per sample for linear and MLP models).
    pub fn in_dim(&self) -> usize {
        self.in_dim
    }

    /// Longest sequence the plan takes (1 for linear and MLP models): the `seq_len` of
    /// [`Model::plan_for`], or the config's `max_seq_len`.
    pub fn max_seq_len(&self) -> usize {
        self.max_seq
    }

    /// Number of parameter tensors.
    pub fn param_count(&self) -> usize {
        match &self.arch {
            #[cfg(feature = "mlp")]
            Arch::Mlp(m) => m.param_count(self.mlp_shape()),
            #[cfg(feature = "transformer")]
            Arch::Transformer(t) => t.param_count(),
            #[cfg(feature = "encdec")]
            Arch::EncDec(e) => e.param_count(),
        }
    }

    /// The `i`-th row of the parameter table, in PyTorch `state_dict` order.
    pub fn param(&self, i: usize) -> Option<ParamInfo> {
        match &self.arch {
            #[cfg(feature = "mlp")]
            Arch::Mlp(m) => m.param(self.mlp_shape(), i),
            #[cfg(feature = "transformer")]
            Arch::Transformer(t) => t.param(i),
            #[cfg(feature = "encdec")]
            Arch::EncDec(e) => e.param(i),
        }
    }

    /// The parameter table, in PyTorch `state_dict` order.
    pub fn params(&self) -> impl Iterator<Item = ParamInfo> + '_ {
        (0..self.param_count()).filter_map(|i| self.param(i))
    }

    /// Floats of all parameters.
    pub fn param_floats(&self) -> usize {
        match &self.arch {
            #[cfg(feature = "mlp")]
            Arch::Mlp(_) => self.params().map(|p| p.slot.len).sum(),
            #[cfg(feature = "transformer")]
            Arch::Transformer(t) => t.param_floats(),
            #[cfg(feature = "encdec")]
            Arch::EncDec(e) => e.param_floats(),
        }
    }

    fn output(&self) -> Slot {
        match &self.arch {
            #[cfg(feature = "mlp")]
            Arch::Mlp(m) => m.output(self.mlp_shape()),
            #[cfg(feature = "transformer")]
            Arch::Transformer(t) => t.output(),
            #[cfg(feature = "encdec")]
            Arch::EncDec(e) => e.output(),
        }
    }

    fn doutput(&self) -> Slot {
        match &self.arch {
            #[cfg(feature = "mlp")]
            Arch::Mlp(m) => m.doutput(self.mlp_shape()),
            #[cfg(feature = "transformer")]
            Arch::Transformer(t) => t.doutput(),
            #[cfg(feature = "encdec")]
            Arch::EncDec(e) => e.doutput(),
        }
    }

    /// Where backward leaves dL/d(input), for models that compute it.
    fn dinput(&self) -> Option<Slot> {
        match &self.arch {
            #[cfg(feature = "mlp")]
            Arch::Mlp(_) => None,
            #[cfg(feature = "transformer")]
            Arch::Transformer(t) => Some(t.dinput()),
            #[cfg(feature = "encdec")]
            Arch::EncDec(e) => Some(e.dinput()),
        }
    }

    /// The widths of a linear or MLP model, from its config.
    #[cfg(feature = "mlp")]
    fn mlp_shape(&self) -> Shape<'_> {
        match &self.config {
            ModelConfig::Linear(c) => Shape::linear(c),
            ModelConfig::Mlp(c) => Shape::mlp(c),
            #[allow(unreachable_patterns)]
            _ => unreachable!("an Mlp is planned only from a linear or MLP config"),
        }
    }

    /// Forward pass over the `n` samples in the input buffer. An encoder-decoder is
    /// teacher-forced from the target buffer when `teacher` (training and validation) and
    /// decodes greedily otherwise (prediction).
    fn forward(&self, bufs: &mut Buffers<'_>, n: usize, lens: (usize, usize), teacher: bool) {
        match &self.arch {
            #[cfg(feature = "mlp")]
            Arch::Mlp(m) => m.forward(self.mlp_shape(), bufs, self.inp, n),
            #[cfg(feature = "transformer")]
            Arch::Transformer(t) => t.forward(bufs, self.inp, (n, lens.0), None),
            #[cfg(feature = "encdec")]
            Arch::EncDec(e) if teacher => e.forward(bufs, (self.inp, self.target), n, lens),
            #[cfg(feature = "encdec")]
            Arch::EncDec(e) => e.greedy(bufs, self.inp, n, lens, self.kv_cache().is_some()),
        }
    }

    fn backward(&self, bufs: &mut Buffers<'_>, n: usize, lens: (usize, usize)) {
        match &self.arch {
            #[cfg(feature = "mlp")]
            Arch::Mlp(m) => m.backward(self.mlp_shape(), bufs, self.inp, n),
            #[cfg(feature = "transformer")]
            Arch::Transformer(t) => t.backward(bufs, self.inp, (n, lens.0), None),
            #[cfg(feature = "encdec")]
            Arch::EncDec(e) => e.backward(bufs, self.inp, n, lens),
        }
    }
}

/// A planned model bound to its carved arena: what callers train and run.
#[derive(Debug)]
pub struct Net<'a> {
    model: Model,
    bufs: Buffers<'a>,
    /// Tokens per sequence in the calls that follow (1 for linear and MLP models; the source
    /// for an encoder-decoder).
    seq: usize,
    /// Target tokens per sequence of an encoder-decoder (otherwise unused).
    tgt: usize,
}

impl<'a> Net<'a> {
    /// Carve `arena` for `model`. Fails with `ArenaTooSmall` (bytes) if it is too small.
    /// Parameters start at zero; call [`Net::init_params`] or load a checkpoint.
    pub fn new(model: Model, arena: &'a mut [f32]) -> Result<Self> {
        let bufs = carve(arena, model.report())?;
        let seq = model.max_seq;
        Ok(Net { model, bufs, seq, tgt: seq })
    }

    /// Use sequences of `seq` tokens from now on (default: the model's `max_seq_len`).
    pub fn set_seq_len(&mut self, seq: usize) -> Result<()> {
        ensure(seq > 0, "seq_len", "must be at least 1")?;
        ensure(seq <= self.model.max_seq, "seq_len", "is longer than max_seq_len")?;
        self.seq = seq;
        Ok(())
    }

    /// Tokens per sequence of the calls that follow.
    pub fn seq_len(&self) -> usize {
        self.seq
    }

    /// Encoder-decoder models: use targets of `tgt` tokens from now on (default: the model's
    /// `max_seq_len`); [`Net::set_seq_len`] sets the source length.
    pub fn set_target_len(&mut self, tgt: usize) -> Result<()> {
        ensure(self.model.arch.is_encdec(), "target_len", "needs an encoder-decoder model")?;
        ensure(tgt > 0, "target_len", "must be at least 1")?;
        ensure(tgt <= self.model.max_seq, "target_len", "is longer than max_seq_len")?;
        self.tgt = tgt;
        Ok(())
    }

    /// Target tokens per sequence (encoder-decoder models; otherwise the sequence length).
    pub fn target_len(&self) -> usize {
        if self.model.arch.is_encdec() { self.tgt } else { self.seq }
    }

    /// Floats of one input sample at the current sequence length.
    pub fn in_len(&self) -> usize {
        self.seq * self.model.in_dim
    }

    /// Floats of one output (= target) sample at the current sequence (target) length.
    pub fn out_len(&self) -> usize {
        if self.model.per_token { self.target_len() * self.model.out_dim } else { self.model.out_dim }
    }

    /// Run every product on `kernels` from now on; see [`Kernels`]. Results of one choice are
    /// deterministic; the two choices differ in the last bits.
    pub fn set_kernels(&mut self, kernels: Kernels) {
        self.model.set_kernels(kernels);
    }

    /// The planned model.
    pub fn model(&self) -> &Model {
        &self.model
    }

    /// The carved regions (parameters, gradients, optimizer state, …).
    pub fn buffers(&mut self) -> &mut Buffers<'a> {
        &mut self.bufs
    }

    /// The planned model beside its writable regions (both borrowed at once).
    pub fn model_and_buffers(&mut self) -> (&Model, &mut Buffers<'a>) {
        (&self.model, &mut self.bufs)
    }

    /// All parameters, one flat slice laid out by the parameter table.
    pub fn params(&self) -> &[f32] {
        self.bufs.params
    }

    /// All parameters, writable (e.g. to load weights).
    pub fn params_mut(&mut self) -> &mut [f32] {
        self.bufs.params
    }

    /// All gradients (training plans), laid out like the parameters.
    pub fn grads(&self) -> &[f32] {
        self.bufs.grads
    }

    /// Bytes of this model's checkpoint (parameters only; see [`crate::checkpoint`]).
    pub fn checkpoint_len(&self) -> Result<usize> {
        crate::checkpoint::saved_len(&self.model, None)
    }

    /// Write the parameters as a safetensors checkpoint (PyTorch names, the config in the
    /// metadata) into `out`; returns its length.
    pub fn save_checkpoint(&self, out: &mut [u8]) -> Result<usize> {
        crate::checkpoint::save(&self.model, self.bufs.params, None, out)
    }

    /// Load the parameters from a safetensors checkpoint of this model (regkern's, or a
    /// PyTorch `state_dict` saved with `safetensors.torch.save_file`). On error nothing changes.
    pub fn load_checkpoint(&mut self, bytes: &[u8]) -> Result<()> {
        crate::checkpoint::load(bytes, &self.model, self.bufs.params, None).map(|_| ())
    }

    /// PyTorch's default initialisation, drawn from `seed` in `state_dict` order.
    #[inline(never)] // the parameter table's iterator stays in its own frame: a small stack
    pub fn init_params(&mut self, seed: u64) {
        let mut rng = Xoshiro256::seed_from(seed);
        for p in self.model.params() {
            let dst = &mut self.bufs.params[p.slot.range()];
            match p.init {
                Init::Uniform(bound) => rng.fill_uniform(dst, -bound, bound),
                Init::Normal(std) => rng.fill_normal(dst, 0.0, std),
                Init::Const(v) => dst.fill(v),
            }
        }
    }

    fn check_batch(&self, n: usize) -> Result<()> {
        let max = self.model.mode.max_batch();
        ensure(n > 0, "batch", "must hold at least one sample")?;
        if n > max { Err(Error::BatchTooLarge { max, got: n }) } else { Ok(()) }
    }

    /// Number of samples in `x`, checked against the input width and the planned batch.
    fn samples_in(&self, x: &[f32]) -> Result<usize> {
        let n = x.len() / self.in_len();
        check_len("x", x.len(), n * self.in_len())?;
        self.check_batch(n)?;
        Ok(n)
    }

    /// The input buffer for `n` samples, to fill in place (a data loader writes here).
    pub fn input_mut(&mut self, n: usize) -> Result<&mut [f32]> {
        self.check_batch(n)?;
        let len = n * self.in_len();
        Ok(&mut self.bufs.acts[self.model.inp.prefix(len)])
    }

    /// The input and target buffers for `n` samples, to fill in place. Training plans only.
    pub fn batch_mut(&mut self, n: usize) -> Result<(&mut [f32], &mut [f32])> {
        self.check_batch(n)?;
        if !self.model.mode.is_training() {
            return Err(Error::NotTrainable);
        }
        let (xl, yl) = (n * self.in_len(), n * self.out_len());
        let m = &self.model;
        let [x, y] = self
            .bufs
            .acts
            .get_disjoint_mut([m.inp.prefix(xl), m.target.prefix(yl)])
            .expect("planned slots are disjoint");
        Ok((x, y))
    }

    /// Copy a batch (`x`: n × in_len, `y`: n × out_len) into the input and target buffers.
    pub fn set_batch(&mut self, x: &[f32], y: &[f32]) -> Result<usize> {
        let n = self.samples_in(x)?;
        check_len("y", y.len(), n * self.out_len())?;
        let (xb, yb) = self.batch_mut(n)?;
        xb.copy_from_slice(x);
        yb.copy_from_slice(y);
        Ok(n)
    }

    /// Run the model on the `n` samples already in the input buffer; returns their outputs.
    /// An encoder-decoder decodes greedily (with its caches when they were planned).
    pub fn forward_in_place(&mut self, n: usize) -> Result<&[f32]> {
        self.run(n, false)
    }

    fn run(&mut self, n: usize, teacher: bool) -> Result<&[f32]> {
        self.check_batch(n)?;
        let lens = (self.seq, self.target_len());
        self.model.forward(&mut self.bufs, n, lens, teacher);
        let len = n * self.out_len();
        Ok(&self.bufs.acts[self.model.output().prefix(len)])
    }

    /// The outputs of the last forward pass over `n` samples (for an encoder-decoder after
    /// [`Net::loss_and_grads`] or [`Net::eval_loss`]: the teacher-forced predictions).
    pub fn output(&self, n: usize) -> &[f32] {
        let len = n.min(self.model.mode.max_batch()) * self.out_len();
        &self.bufs.acts[self.model.output().prefix(len)]
    }

    /// Predict `out` (n × out_len) for `x` (n × in_len).
    pub fn predict(&mut self, x: &[f32], out: &mut [f32]) -> Result<()> {
        let n = self.samples_in(x)?;
        check_len("out", out.len(), n * self.out_len())?;
        self.input_mut(n)?.copy_from_slice(x);
        out.copy_from_slice(self.forward_in_place(n)?);
        Ok(())
    }

    /// Loss (MSE) on the `n` samples in the batch buffers, without gradients; MoE models'
    /// load-balancing loss is not included (see [`Net::moe_stats`]). Encoder-decoders are
    /// teacher-forced, as in training.
    pub fn eval_loss_in_place(&mut self, n: usize) -> Result<f32> {
        if !self.model.mode.is_training() {
            return Err(Error::NotTrainable);
        }
        self.run(n, true)?;
        let len = n * self.out_len();
        let (m, acts) = (&self.model, &*self.bufs.acts);
        Ok(mse::forward(&acts[m.output().prefix(len)], &acts[m.target.prefix(len)]))
    }

    /// Routing statistics of the last forward pass, summed over blocks: assignments, dropped
    /// assignments and the load-balancing loss. `None` without MoE.
    pub fn moe_stats(&self) -> Option<crate::layers::moe::MoeStats> {
        match &self.model.arch {
            #[cfg(feature = "transformer")]
            Arch::Transformer(t) => t.moe_stats(self.bufs.acts),
            #[cfg(feature = "encdec")]
            Arch::EncDec(e) => e.moe_stats(self.bufs.acts),
            #[cfg(feature = "mlp")]
            Arch::Mlp(_) => None,
        }
    }

    /// Training loss on the `n` samples in the batch buffers — MSE, plus the load-balancing loss
    /// of every MoE layer — and its gradients left in the gradients (overwriting them). The loss
    /// may be non-finite: the caller decides what that means.
    pub fn loss_and_grads_in_place(&mut self, n: usize) -> Result<f32> {
        if !self.model.mode.is_training() {
            return Err(Error::NotTrainable);
        }
        let loss = self.eval_loss_in_place(n)? + self.moe_stats().map_or(0.0, |s| s.aux);
        let len = n * self.out_len();
        let lens = (self.seq, self.target_len());
        let (m, b) = (&self.model, &mut self.bufs);
        crate::parallel::zero(b.grads);
        let dout = &mut b.act_grads[m.doutput().prefix(len)];
        dout.fill(0.0);
        mse::backward(dout, &b.acts[m.output().prefix(len)], &b.acts[m.target.prefix(len)], 1.0);
        m.backward(b, n, lens);
        Ok(loss)
    }

    /// dLoss/d(input) of the last [`Net::loss_and_grads`] over `n` samples, for models that
    /// compute it (transformers); `None` otherwise.
    pub fn input_grad(&self, n: usize) -> Option<&[f32]> {
        let len = n.min(self.model.mode.max_batch()) * self.in_len();
        self.model.dinput().map(|s| &self.bufs.act_grads[s.prefix(len)])
    }

    /// [`Net::set_batch`] then [`Net::loss_and_grads_in_place`].
    pub fn loss_and_grads(&mut self, x: &[f32], y: &[f32]) -> Result<f32> {
        let n = self.set_batch(x, y)?;
        self.loss_and_grads_in_place(n)
    }

    /// [`Net::set_batch`] then [`Net::eval_loss_in_place`].
    pub fn eval_loss(&mut self, x: &[f32], y: &[f32]) -> Result<f32> {
        let n = self.set_batch(x, y)?;
        self.eval_loss_in_place(n)
    }
}

#[cfg(test)]
mod tests {
    use super::ParamName;

    #[test]
    fn parameter_names_spell_indices_in_decimal() {
        for (i, want) in
            [(0usize, "layers.0.w"), (7, "layers.7.w"), (10, "layers.10.w"), (1203, "layers.1203.w")]
        {
            let mut n = ParamName::new();
            n.push("layers").index(i).field("w");
            assert_eq!(n.as_str(), want);
        }
        let mut n = ParamName::new();
        n.index(usize::MAX);
        assert_eq!(n.as_str(), "18446744073709551615");
    }
}
