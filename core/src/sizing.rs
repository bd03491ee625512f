//! Arena sizes at compile time: `const fn`s giving the floats [`Model::plan_for`] reports, so that
//! a firmware sizes a `static` arena from its config and a too-small arena cannot be built.
//!
//! ```
//! use regkern_core::{Mode, Optimizer, sizing};
//!
//! const MODE: Mode = Mode::Training { max_batch: 16, optimizer: Optimizer::adam(1e-3) };
//! const ARENA_FLOATS: usize = sizing::mlp_floats(8, &[16, 8], 1, MODE);
//! static mut ARENA: [f32; ARENA_FLOATS] = [0.0; ARENA_FLOATS];
//! # let cfg = regkern_core::ModelConfig::Mlp(regkern_core::MlpConfig {
//! #     n_in: 8, latent_dims: heapless::Vec::from_slice(&[16, 8]).unwrap(), n_out: 1,
//! #     act: regkern_core::Activation::Relu });
//! # let model = regkern_core::Model::plan(&cfg, MODE).unwrap();
//! # assert_eq!(model.report().total_floats(), ARENA_FLOATS);
//! ```
//!
//! The run-time plan stays the reference: these functions add up the same slots, padded the
//! same way, and a test checks them against it for every architecture and mode
//! (`tests/arena.rs`). They do not validate the config: for one [`Model::plan_for`] refuses, the
//! number means nothing. A size that overflows `usize` panics, which in a `const` is a build
//! error.
//!
//! [`Model::plan_for`]: crate::Model::plan_for

use crate::arena::ALIGN_FLOATS;
use crate::models::Mode;

/// Region sums of a plan under construction (the [`crate::arena::Planner`] of a `const fn`).
#[derive(Clone, Copy)]
struct Sizes {
    params: usize,
    acts: usize,
    act_grads: usize,
    scratch: usize,
    kv_cache: usize,
}

/// `a · b`, or a panic (a build error in a `const`).
const fn mul(a: usize, b: usize) -> usize {
    match a.checked_mul(b) {
        Some(v) => v,
        None => panic!("the arena's size overflows usize"),
    }
}

/// `a + b`, or a panic.
const fn add(a: usize, b: usize) -> usize {
    match a.checked_add(b) {
        Some(v) => v,
        None => panic!("the arena's size overflows usize"),
    }
}

/// A slot of `len` floats as the bump layout takes it: padded to [`ALIGN_FLOATS`].
const fn slot(len: usize) -> usize {
    match len.checked_next_multiple_of(ALIGN_FLOATS) {
        Some(v) => v,
        None => panic!("the arena's size overflows usize"),
    }
}

/// The larger of `a` and `b`.
const fn max(a: usize, b: usize) -> usize {
    if a > b { a } else { b }
}

/// A weight (`rows × cols`) and its bias (`rows`).
const fn pair(rows: usize, cols: usize) -> usize {
    add(slot(mul(rows, cols)), slot(rows))
}

/// The sum of the slots of `lens`.
const fn slots(lens: &[usize]) -> usize {
    let (mut sum, mut i) = (0, 0);
    while i < lens.len() {
        sum = add(sum, slot(lens[i]));
        i += 1;
    }
    sum
}

impl Sizes {
    const NONE: Sizes = Sizes { params: 0, acts: 0, act_grads: 0, scratch: 0, kv_cache: 0 };

    /// Floats of the whole arena: grads mirror params in training, and each optimizer-state copy.
    const fn total(self, mode: Mode) -> usize {
        let mirrors = match mode {
            Mode::Training { optimizer, .. } => 1 + optimizer.state_copies(),
            Mode::Inference { .. } => 0,
        };
        let params = mul(self.params, 1 + mirrors);
        add(add(add(params, self.acts), add(self.act_grads, self.scratch)), self.kv_cache)
    }
}

/// Arena floats of a linear regression (`--type linear`): [`mlp_floats`] without hidden layers.
pub const fn linear_floats(n_in: usize, n_out: usize, mode: Mode) -> usize {
    mlp_floats(n_in, &[], n_out, mode)
}

/// Arena floats of an MLP `n_in → latent_dims… → n_out` planned for `mode`.
pub const fn mlp_floats(n_in: usize, latent_dims: &[usize], n_out: usize, mode: Mode) -> usize {
    let (b, training) = (mode.max_batch(), mode.is_training());
    let mut s = Sizes::NONE;
    s.acts = slot(mul(b, n_in));
    if training {
        s.acts = add(s.acts, slot(mul(b, n_out)));
    } else {
        // Two ping-pong buffers as wide as the widest layer.
        let mut widest = n_out;
        let mut i = 0;
        while i < latent_dims.len() {
            if latent_dims[i] > widest {
                widest = latent_dims[i];
            }
            i += 1;
        }
        s.acts = add(s.acts, mul(2, slot(mul(b, widest))));
    }
    let (mut i, mut width_in) = (0, n_in);
    while i <= latent_dims.len() {
        let hidden = i < latent_dims.len();
        let width = if hidden { latent_dims[i] } else { n_out };
        s.params = add(s.params, pair(width, width_in));
        if training {
            // pre (and post, for a hidden layer) and their gradients.
            let kept = if hidden { 2 } else { 1 };
            s.acts = add(s.acts, mul(kept, slot(mul(b, width))));
            s.act_grads = add(s.act_grads, mul(kept, slot(mul(b, width))));
        }
        width_in = width;
        i += 1;
    }
    s.total(mode)
}

#[cfg(feature = "transformer")]
pub use transformer::{transformer_floats, transformer_param_floats};

#[cfg(feature = "encdec")]
pub use transformer::encoder_decoder_floats;

#[cfg(feature = "transformer")]
mod transformer {
    use super::{Sizes, add, max, mul, pair, slot, slots};
    use crate::layers::KvDtype;
    use crate::layers::moe;
    use crate::models::{Memory, Mode, TransformerConfig};

    /// What a stack is (the planner's `Role`): its own head, an encoder, or a decoder over
    /// memories of up to the given length.
    #[derive(Clone, Copy)]
    enum Role {
        Plain,
        #[cfg(feature = "encdec")]
        Encoder,
        #[cfg(feature = "encdec")]
        Decoder(usize),
    }

    /// Arena floats of a transformer planned for `mode`, sequences of up to `seq_len` tokens and
    /// `memory` (as [`crate::Model::plan_with`]; `seq_len` is usually the config's `max_seq_len`).
    pub const fn transformer_floats(
        cfg: &TransformerConfig,
        mode: Mode,
        seq_len: usize,
        memory: Memory,
    ) -> usize {
        let b = mode.max_batch();
        let mut s = Sizes::NONE;
        // The model's input and target batches.
        s.acts = slot(mul(mul(b, seq_len), cfg.input_dim));
        if mode.is_training() {
            let out_len = if cfg.autoregressive { mul(seq_len, cfg.output_dim) } else { cfg.output_dim };
            s.acts = add(s.acts, slot(mul(b, out_len)));
        }
        stack(&mut s, cfg, Role::Plain, b, seq_len, keep(mode, memory));
        s.total(mode)
    }

    /// Floats of a transformer's params region (what a plan of any mode reports for
    /// [`crate::Region::Params`]).
    pub const fn transformer_param_floats(cfg: &TransformerConfig) -> usize {
        let mut s = Sizes::NONE;
        stack(&mut s, cfg, Role::Plain, 1, 1, (false, false));
        s.params
    }

    /// Arena floats of an encoder-decoder planned for `mode`, sources and targets of up to
    /// `seq_len` tokens, and `memory`.
    #[cfg(feature = "encdec")]
    pub const fn encoder_decoder_floats(
        cfg: &crate::models::EncoderDecoderConfig,
        mode: Mode,
        seq_len: usize,
        memory: Memory,
    ) -> usize {
        let (b, t, training) = (mode.max_batch(), seq_len, mode.is_training());
        let mut s = Sizes::NONE;
        s.acts = slot(mul(mul(b, t), cfg.input_dim));
        if training {
            s.acts = add(s.acts, slot(mul(b, mul(t, cfg.output_dim))));
        }
        stack(&mut s, &cfg.encoder(), Role::Encoder, b, t, keep(mode, memory));
        stack(&mut s, &cfg.decoder(), Role::Decoder(t), b, t, keep(mode, memory));
        // The decoder's input; d(memory) in training.
        s.acts = add(s.acts, slot(mul(mul(b, t), cfg.output_dim)));
        if training {
            s.act_grads = add(s.act_grads, slot(mul(mul(b, t), cfg.embed_dim)));
        }
        s.total(mode)
    }

    /// A training plan, and a lean one.
    const fn keep(mode: Mode, memory: Memory) -> (bool, bool) {
        (mode.is_training(), mode.is_training() && matches!(memory, Memory::Lean))
    }

    /// Add one stack of blocks (`Transformer::plan_role`) for `b` sequences of `t` tokens.
    const fn stack(
        s: &mut Sizes,
        cfg: &TransformerConfig,
        role: Role,
        b: usize,
        t: usize,
        keep: (bool, bool),
    ) {
        let (training, lean) = keep;
        let (e, f, d) = (cfg.embed_dim, cfg.ffn_dim, cfg.attn());
        let kv = d.kv_dim();
        let n = mul(b, t);
        let (ne, nkv) = (mul(n, e), mul(n, kv));
        let moe = cfg.moe_layer();
        // With MoE the experts' hidden layers live in the routing buffers.
        let nf = if moe.is_some() { 0 } else { mul(n, f) };
        let max_src = match role {
            #[cfg(feature = "encdec")]
            Role::Decoder(src) => Some(src),
            _ => None,
        };
        let has_head = match role {
            #[cfg(feature = "encdec")]
            Role::Encoder => false,
            _ => true,
        };
        // input_proj, pos_embed; the stream entering block 0.
        s.params = add(s.params, add(pair(e, cfg.input_dim), slot(mul(cfg.max_seq_len, e))));
        s.acts = add(s.acts, slot(ne));

        // One block's parameters.
        let attn_params = add(add(pair(e, e), pair(kv, e)), add(pair(kv, e), pair(e, e)));
        let mut block = add(mul(2, pair(e, 1)), attn_params);
        if max_src.is_some() {
            block = add(block, add(pair(e, 1), attn_params));
        }
        block = add(
            block,
            match cfg.moe {
                None => add(pair(f, e), pair(e, f)),
                Some(m) => add(slot(mul(m.num_experts, e)), mul(m.num_experts, add(pair(f, e), pair(e, f)))),
            },
        );
        s.params = add(s.params, mul(cfg.num_layers, block));

        // One block's activations: one set per layer in training, one shared set in inference.
        // A lean plan keeps no attention probabilities: backward recomputes them in scratch.
        let att_len = if lean { 0 } else { mul(mul(b, d.n_heads), mul(t, t)) };
        let mut acts = if training {
            // res_mid, res_out, q, ao, h1, h2; k, v; the probabilities; two norms' statistics;
            // the FFN's pre- and post-activation. A lean plan keeps neither norm output nor the
            // post-activation, except a MoE FFN's input, h2.
            let norms = if !lean {
                2
            } else if moe.is_some() {
                1
            } else {
                0
            };
            add(
                add(mul(4 + norms, slot(ne)), mul(2, slot(nkv))),
                add(add(slot(att_len), mul(4, slot(n))), mul(if lean { 1 } else { 2 }, slot(nf))),
            )
        } else {
            // h, q, ao, tmp; k, v; one norm's statistics; the FFN's pre-activation.
            add(add(mul(4, slot(ne)), mul(2, slot(nkv))), add(mul(2, slot(n)), slot(nf)))
        };
        if let Some(m) = moe {
            acts = add(acts, add(slots(&moe::buffer_lens(&m, n, training)), slot(3)));
        }
        if let Some(src) = max_src {
            let src_kv = mul(mul(b, src), kv);
            acts = add(acts, mul(2, slot(src_kv)));
            if training {
                // res, h, q, ao; two statistics; the probabilities.
                let cross_att = if lean { 0 } else { mul(mul(b, d.n_heads), mul(src, t)) };
                acts = add(acts, add(add(mul(4, slot(ne)), mul(2, slot(n))), slot(cross_att)));
            }
        }
        s.acts = add(s.acts, if training { mul(cfg.num_layers, acts) } else { acts });

        // final_norm and head; its output and statistics, pooled rows, the output.
        s.params = add(s.params, mul(2, slot(e)));
        if has_head {
            s.params = add(s.params, pair(cfg.output_dim, e));
        }
        let out_rows = if !has_head {
            0
        } else if cfg.autoregressive {
            n
        } else {
            b
        };
        let pooled = if cfg.autoregressive || !has_head { 0 } else { slot(mul(b, e)) };
        // The final norm's output lies in the work region of a lean plan with a head.
        let hf_in_work = lean && has_head;
        s.acts = add(
            s.acts,
            add(
                add(if hf_in_work { 0 } else { slot(ne) }, mul(2, slot(n))),
                add(pooled, slot(mul(out_rows, cfg.output_dim))),
            ),
        );
        if training {
            // dres; then one work region for the longest sub-layer's set: the head's (dh, dout,
            // dpooled, a lean autoregressive plan's hf), an FFN's (dh, dhid, MoE's), an
            // attention's (dao = dh, dq, dk, dv, and a decoder's cross k and v) or the input
            // projection's (dinp). A lean plan's dense blocks without cross-attention take dh and
            // dao in their res_out slot instead (`Transformer::dh_in_acts`).
            let hf = if hf_in_work && cfg.autoregressive { slot(ne) } else { 0 };
            let head_set = add(add(slot(ne), hf), add(slot(mul(out_rows, cfg.output_dim)), pooled));
            let dh = if lean && moe.is_none() && max_src.is_none() { 0 } else { slot(ne) };
            let mut ffn_set = add(dh, slot(nf));
            if let Some(m) = moe {
                ffn_set = add(ffn_set, slots(&moe::grad_buffer_lens(&m, n)));
            }
            let cross_kv = match max_src {
                Some(src) => mul(mul(b, src), kv),
                None => 0,
            };
            let attn_set = add(add(add(dh, slot(ne)), mul(2, slot(nkv))), mul(2, slot(cross_kv)));
            let work = max(max(head_set, ffn_set), max(attn_set, slot(mul(n, cfg.input_dim))));
            s.act_grads = add(s.act_grads, add(slot(ne), work));
        }
        let src = match max_src {
            Some(src) => src,
            None => 0,
        };
        let (self_scratch, cross_scratch) = if lean {
            (d.backward_scratch_len(t, t), d.backward_scratch_len(t, src))
        } else {
            (d.scratch_len(t, t), d.scratch_len(t, src))
        };
        s.scratch =
            add(s.scratch, slot(if self_scratch > cross_scratch { self_scratch } else { cross_scratch }));
        if let Some(dtype) = cfg.kv_cache {
            decode(s, cfg, dtype, b, t, max_src);
        }
    }

    /// Add the buffers of incremental decoding (`Decode::plan`).
    const fn decode(
        s: &mut Sizes,
        cfg: &TransformerConfig,
        dtype: KvDtype,
        b: usize,
        t: usize,
        max_src: Option<usize>,
    ) {
        let (e, kv, f) = (cfg.embed_dim, cfg.attn().kv_dim(), cfg.ffn_dim);
        let row_words = match dtype {
            KvDtype::F32 => kv,
            KvDtype::F16 | KvDtype::Bf16 => kv.div_ceil(2),
        };
        s.kv_cache = add(s.kv_cache, slot(mul(mul(mul(2, cfg.num_layers), mul(b, t)), row_words)));
        // tok, pred; x, h, q, ao, tmp; two statistics; k, v; pre (each for b rows).
        let acts = add(
            add(slot(mul(b, cfg.input_dim)), slot(mul(b, cfg.output_dim))),
            add(
                add(mul(5, slot(mul(b, e))), mul(2, slot(b))),
                add(mul(2, slot(mul(b, kv))), slot(mul(b, f))),
            ),
        );
        s.acts = add(s.acts, acts);
        let src = match max_src {
            Some(src) => src,
            None => 0,
        };
        let widened = if matches!(dtype, KvDtype::F32) { 0 } else { mul(t, kv) };
        s.scratch = add(s.scratch, add(slot(if t > src { t } else { src }), mul(2, slot(widened))));
        if let Some(m) = cfg.moe_layer() {
            // Capacity applies per call: one token of each sequence.
            s.acts = add(s.acts, add(slots(&moe::buffer_lens(&m, b, false)), slot(3)));
        }
        s.acts = add(s.acts, slot(mul(mul(mul(2, cfg.num_layers), b), mul(src, kv))));
    }
}
