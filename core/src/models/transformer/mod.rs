//! Pre-norm transformer for sequence regression (SPEC §3.3–3.5).
//!
//! ```text
//! x (B, T, in) → input_proj → + pos_embed[0..T] → L × block → final_norm → mean over T → head → (B, out)
//! block: x = x + o_proj(attn(q_proj, k_proj, v_proj of norm1(x)));  x = x + ffn(norm2(x))
//! ```
//! Names follow SPEC: `input_proj`, `pos_embed.weight`, `layers.{i}.{norm1, attn.{q,k,v,o}_proj,
//! norm2, ffn.fc1, ffn.fc2}`, `final_norm`, `head`. Attention is MHA, MQA or GQA by the number of
//! kv heads G.
//!
//! Memory. Training keeps, per layer, the residual stream entering it, both norms' outputs and
//! statistics, q/k/v, the attention probabilities (B·H·T·T), the attention output, the FFN's
//! hidden pre- and post-activation; the gradients of activations share one work region, reused
//! sub-layer after sub-layer and layer after layer. A lean plan ([`crate::Memory::Lean`]) keeps
//! no probabilities, norm outputs (but a MoE FFN's input) or post-activations: backward recomputes
//! them, the same bits, and a dense block without cross-attention takes d(norm output) and
//! d(attention output) in its own `res_out` slot, which backward has consumed by then. Inference
//! keeps one residual stream and one set of per-layer buffers shared by every layer, and one T×T
//! attention tile.

use crate::arena::Slot;
use crate::error::{Result, ensure};
use crate::layers::moe::{Capacity, Moe};
use crate::layers::{Activation, Attn, Ffn, KvDtype, Linear};
use crate::ops::{Kernels, vectorized};

mod backward;
mod decode;
mod forward;
mod moe_ffn;
mod params;
mod plan;

use crate::arena::Planner;
pub(crate) use decode::Decode;

/// Largest `top_k` (the MoE layer selects into a fixed buffer of this many).
const MAX_TOP_K: usize = 64;

/// How query heads share key/value heads (`--attention_type`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum AttentionType {
    /// Multi-head: one kv head per query head (G = H; `num_groups` ignored).
    Mha,
    /// Multi-query: one kv head for all (G = 1; `num_groups` ignored).
    Mqa,
    /// Grouped-query: G = `num_groups` kv heads, H % G = 0.
    #[default]
    Gqa,
}

impl AttentionType {
    /// The CLI spelling.
    pub const fn name(self) -> &'static str {
        match self {
            AttentionType::Mha => "mha",
            AttentionType::Mqa => "mqa",
            AttentionType::Gqa => "gqa",
        }
    }

    /// Parse the CLI spelling.
    pub fn from_name(s: &str) -> Option<Self> {
        [AttentionType::Mha, AttentionType::Mqa, AttentionType::Gqa].into_iter().find(|a| a.name() == s)
    }
}

/// User hyperparameters of a transformer (`--type transformer`). Defaults: the seed's
/// `TransformerModelConfig` example (SPEC §3.3).
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct TransformerConfig {
    /// Features per input token.
    pub input_dim: usize,
    /// Outputs per sequence.
    pub output_dim: usize,
    /// Model width E (`--embed_dim`).
    pub embed_dim: usize,
    /// FFN hidden width F (`--ffn_dim`).
    pub ffn_dim: usize,
    /// Blocks (`--num_layers`).
    pub num_layers: usize,
    /// Query heads H (`--num_heads`).
    pub num_heads: usize,
    /// Key/value groups for GQA (`--num_groups`).
    pub num_groups: usize,
    /// MHA, MQA or GQA (`--attention_type`).
    pub attention: AttentionType,
    /// Rows of `pos_embed`: the longest sequence the model takes (`--max_seq_len`).
    pub max_seq_len: usize,
    /// FFN activation (GELU in the seed).
    pub ffn_act: Activation,
    /// Next-value prediction (`--autoregressive`): causal attention and the head applied at every
    /// position, `(B, T, in) → (B, T, output_dim)`, instead of mean-pooling to `(B, output_dim)`.
    pub autoregressive: bool,
    /// Plan a KV cache of this type for incremental generation (autoregressive models only).
    pub kv_cache: Option<KvDtype>,
    /// Mixture-of-Experts FFNs in every block instead of dense ones (`--moe`).
    pub moe: Option<MoeConfig>,
}

/// Mixture-of-Experts settings (`--moe`, SPEC §3.5; defaults 8 experts, top-2, capacity factor
/// 1.25, alpha 0.01).
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct MoeConfig {
    /// Experts per block (`--num_experts`).
    pub num_experts: usize,
    /// Experts per token (`--topk`).
    pub top_k: usize,
    /// Per-expert capacity per forward call (`--capacity` or `--capacity_factor`).
    pub capacity: Capacity,
    /// Weight of the load-balancing loss (`--alpha`).
    pub alpha: f32,
}

impl Default for MoeConfig {
    fn default() -> Self {
        MoeConfig { num_experts: 8, top_k: 2, capacity: Capacity::Factor(1.25), alpha: 0.01 }
    }
}

impl Default for TransformerConfig {
    fn default() -> Self {
        TransformerConfig {
            input_dim: 1,
            output_dim: 1,
            embed_dim: 64,
            ffn_dim: 128,
            num_layers: 2,
            num_heads: 8,
            num_groups: 4,
            attention: AttentionType::Gqa,
            max_seq_len: 128,
            ffn_act: Activation::Gelu,
            autoregressive: false,
            kv_cache: None,
            moe: None,
        }
    }
}

impl TransformerConfig {
    /// Key/value heads G implied by the attention type.
    pub const fn kv_heads(&self) -> usize {
        match self.attention {
            AttentionType::Mha => self.num_heads,
            AttentionType::Mqa => 1,
            AttentionType::Gqa => self.num_groups,
        }
    }

    /// Check every field; the messages name the CLI flag.
    pub fn validate(&self) -> Result<()> {
        ensure(self.input_dim > 0, "input_dim", "must be at least 1")?;
        ensure(self.output_dim > 0, "output_dim", "must be at least 1")?;
        ensure(self.embed_dim > 0, "embed_dim", "must be at least 1")?;
        ensure(self.ffn_dim > 0, "ffn_dim", "must be at least 1")?;
        ensure(self.num_layers > 0, "num_layers", "must be at least 1")?;
        ensure(self.num_heads > 0, "num_heads", "must be at least 1")?;
        ensure(self.max_seq_len > 0, "max_seq_len", "must be at least 1")?;
        ensure(self.embed_dim.is_multiple_of(self.num_heads), "num_heads", "must divide embed_dim")?;
        let g = self.kv_heads();
        ensure(g > 0, "num_groups", "must be at least 1")?;
        ensure(g <= self.num_heads, "num_groups", "must not exceed num_heads")?;
        ensure(self.num_heads.is_multiple_of(g), "num_groups", "must divide num_heads")?;
        ensure(self.kv_cache.is_none() || self.autoregressive, "kv_cache", "needs an autoregressive model")?;
        ensure(
            cfg!(feature = "kv-cache") || self.kv_cache.is_none(),
            "kv_cache",
            "needs regkern-core's `kv-cache` feature",
        )?;
        ensure(cfg!(feature = "moe") || self.moe.is_none(), "moe", "needs regkern-core's `moe` feature")?;
        if let Some(m) = self.moe_layer() {
            m.validate()?;
            ensure(m.top_k <= MAX_TOP_K, "topk", "must be at most 64")?;
        }
        Ok(())
    }

    pub(crate) const fn attn(&self) -> Attn {
        Attn {
            n_heads: self.num_heads,
            n_kv_heads: self.kv_heads(),
            head_dim: self.embed_dim / self.num_heads,
            causal: self.autoregressive,
            kernels: Kernels::Auto,
        }
    }

    /// The MoE layer's dims, when the FFNs are mixtures of experts.
    pub(crate) const fn moe_layer(&self) -> Option<Moe> {
        match self.moe {
            Some(m) => Some(Moe {
                n_embd: self.embed_dim,
                n_hidden: self.ffn_dim,
                n_experts: m.num_experts,
                top_k: m.top_k,
                capacity: m.capacity,
                alpha: m.alpha,
                act: self.ffn_act,
                kernels: Kernels::Auto,
            }),
            None => None,
        }
    }

    fn ffn(&self) -> Ffn {
        Ffn { n_embd: self.embed_dim, n_hidden: self.ffn_dim, act: self.ffn_act, kernels: Kernels::Auto }
    }
}

/// What a stack of blocks is: a transformer with its own head, or one half of an
/// encoder-decoder.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Role {
    /// A transformer with a head: pooled (regression) or at every token (autoregressive).
    Plain,
    /// An encoder (`encoder.*`): no head; its final norm's output is the decoder's memory.
    Encoder,
    /// A decoder (`decoder.*`, then `head`): causal self-attention, cross-attention over up to
    /// `max_src` memory positions, the head at every token.
    Decoder {
        /// Longest memory (source sequence).
        max_src: usize,
    },
}

/// The encoder's output as a decoder reads it: memory (acts), its gradient (act_grads, training),
/// and its length.
#[derive(Clone, Copy, Debug)]
pub(crate) struct MemorySlots {
    pub(crate) acts: Slot,
    pub(crate) grads: Slot,
    pub(crate) len: usize,
}

/// A planned transformer: dims and slots, no memory.
///
/// Every block is laid out like the first, a fixed stride further on, so only block 0's slots
/// are kept: the planned model stays small (about 1 KiB) however many layers it has, which
/// matters where it lives on a microcontroller's stack.
#[derive(Clone, Debug)]
pub struct Transformer {
    cfg: TransformerConfig,
    role: Role,
    training: bool,
    /// A lean training plan: backward recomputes the attention probabilities, the norms' outputs
    /// and the FFN's post-activation; none are kept.
    lean: bool,
    /// Sequences and tokens per sequence planned for.
    dims: (usize, usize),
    input_proj: [Slot; 2],
    pos_embed: Slot,
    /// The stream entering block 0.
    res_in: Slot,
    /// The planner before block 0 took its slots: [`Transformer::block`] replays block 0's
    /// planning from it (block i's slots are block 0's shifted by i strides). The same for the
    /// gradient buffers and the decoding buffers: replaying a few dozen bump allocations costs
    /// nothing beside a forward pass, and keeps the planned model small (a few hundred bytes,
    /// moved across a microcontroller's stack as it is planned, carved and trained).
    at_blocks: Planner,
    at_grads: Planner,
    at_decode: Planner,
    /// Floats between consecutive blocks in params and in acts (0 in inference: shared buffers).
    strides: (usize, usize),
    final_norm: [Slot; 2],
    head: [Slot; 2],
    /// Final norm output (N, E) and its statistics.
    hf: Slot,
    statsf: [Slot; 2],
    pooled: Slot,
    out: Slot,
    /// Attention's working memory (scratch): a T×T tile and a D×T transposed product.
    attn_scratch: Slot,
    /// The gemm kernels every product runs on.
    kernels: Kernels,
}

impl Transformer {
    /// The final norm's output (acts): an encoder's memory.
    pub(crate) fn memory_slot(&self) -> Slot {
        self.hf
    }

    /// Where the output of a forward pass lies (acts): (B, output_dim).
    pub(crate) fn output(&self) -> Slot {
        self.out
    }

    /// Where backward reads dL/d(output) (act_grads).
    pub(crate) fn doutput(&self) -> Slot {
        self.grads().dout
    }

    /// Where backward leaves dL/d(input) (act_grads): (B, T, input_dim).
    pub(crate) fn dinput(&self) -> Slot {
        self.grads().dinp
    }
}

/// Dims of a linear map.
impl Transformer {
    /// A linear map of this model, on its kernels.
    const fn lin(&self, n_in: usize, n_out: usize) -> Linear {
        Linear::new(n_in, n_out).on(self.kernels)
    }

    /// The attention dims, on this model's kernels.
    fn attn(&self) -> Attn {
        Attn { kernels: self.kernels, ..self.cfg.attn() }
    }

    /// The MoE layer's dims, on this model's kernels (always `None` without the `moe` feature,
    /// so that no MoE code is reachable, and so linked).
    fn moe_layer(&self) -> Option<Moe> {
        if cfg!(feature = "moe") {
            self.cfg.moe_layer().map(|m| Moe { kernels: self.kernels, ..m })
        } else {
            None
        }
    }

    /// The dense FFN's dims, on this model's kernels.
    fn ffn(&self) -> Ffn {
        Ffn { kernels: self.kernels, ..self.cfg.ffn() }
    }

    /// Run every product on `kernels` from now on.
    pub(crate) fn set_kernels(&mut self, kernels: Kernels) {
        self.kernels = kernels;
    }
}

/// `buf[dst] += buf[src]` for two disjoint ranges.
fn add_into(buf: &mut [f32], dst: core::ops::Range<usize>, src: core::ops::Range<usize>) {
    let [dst, src] = disjoint(buf, [dst, src]);
    vectorized(
        #[inline(always)]
        || dst.iter_mut().zip(&*src).for_each(|(d, &s)| *d += s),
    );
}

/// Disjoint mutable views of planned ranges (a planner invariant).
fn disjoint<const K: usize>(buf: &mut [f32], ranges: [core::ops::Range<usize>; K]) -> [&mut [f32]; K] {
    buf.get_disjoint_mut(ranges).expect("planned slots are disjoint")
}
