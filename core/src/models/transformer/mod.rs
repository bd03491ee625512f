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
//! hidden pre- and post-activation; gradients of activations use one buffer per kind, reused
//! layer after layer. Inference keeps one residual stream and one set of per-layer buffers
//! shared by every layer, and one T×T attention tile.

use crate::arena::{Buffers, Planner, Region, Slot};
use crate::error::{Result, ensure, mul};
use crate::layers::moe::{self, Capacity, ExpertLayout, MAX_ASSIGNMENTS, Moe};
use crate::layers::{
    Activation, Attn, Ffn, KvDtype, Linear, attention, ffn, layernorm, linear, pool, position,
};

/// Largest `top_k` (the MoE layer selects into a fixed buffer of this many).
const MAX_TOP_K: usize = 64;
use crate::models::{Init, ParamInfo, ParamName};
use crate::ops::{Kernels, vectorized};

mod decode;

pub(crate) use decode::Decode;

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

    fn attn(&self) -> Attn {
        Attn {
            n_heads: self.num_heads,
            n_kv_heads: self.kv_heads(),
            head_dim: self.embed_dim / self.num_heads,
            causal: self.autoregressive,
            kernels: Kernels::Auto,
        }
    }

    /// The MoE layer's dims, when the FFNs are mixtures of experts.
    fn moe_layer(&self) -> Option<Moe> {
        self.moe.map(|m| Moe {
            n_embd: self.embed_dim,
            n_hidden: self.ffn_dim,
            n_experts: m.num_experts,
            top_k: m.top_k,
            capacity: m.capacity,
            alpha: m.alpha,
            act: self.ffn_act,
            kernels: Kernels::Auto,
        })
    }

    fn ffn(&self) -> Ffn {
        Ffn { n_embd: self.embed_dim, n_hidden: self.ffn_dim, act: self.ffn_act, kernels: Kernels::Auto }
    }
}

/// Parameters of one block, in `state_dict` order.
#[derive(Clone, Copy, Debug, Default)]
struct BlockParams {
    norm1: [Slot; 2],
    /// q, k, v, o projections: weight and bias each.
    proj: [[Slot; 2]; 4],
    norm2: [Slot; 2],
    /// Dense FFN (unused with MoE).
    fc1: [Slot; 2],
    fc2: [Slot; 2],
    /// The MoE FFN, when configured.
    moe: Option<MoeParams>,
    /// Decoder blocks: cross-attention's norm (`norm2`) and q/k/v/o projections.
    cross: Option<CrossParams>,
}

/// Cross-attention parameters of a decoder block.
#[derive(Clone, Copy, Debug, Default)]
struct CrossParams {
    norm: [Slot; 2],
    proj: [[Slot; 2]; 4],
}

/// Where an MoE FFN's tensors lie: the router, and expert 0's four tensors (fc1.weight,
/// fc1.bias, fc2.weight, fc2.bias); expert e's are `stride` floats further per expert.
#[derive(Clone, Copy, Debug, Default)]
struct MoeParams {
    router: Slot,
    expert0: [Slot; 4],
    stride: usize,
}

impl MoeParams {
    fn layout(&self) -> ExpertLayout {
        ExpertLayout { parts: self.expert0.map(|s| s.offset - self.expert0[0].offset), stride: self.stride }
    }
}

/// Activations of one block (training: one set per layer; inference: one set shared).
#[derive(Clone, Copy, Debug, Default)]
struct BlockActs {
    /// Residual stream entering the block, (N, E).
    res_in: Slot,
    /// After the attention residual, (N, E); equals `res_in` in inference.
    res_mid: Slot,
    /// Leaving the block, (N, E); equals `res_in` in inference.
    res_out: Slot,
    /// norm1 output, (N, E), with its row statistics.
    h1: Slot,
    stats1: [Slot; 2],
    q: Slot,
    k: Slot,
    v: Slot,
    /// Attention probabilities (B, H, T, T); unused in inference (a tile of scratch serves).
    att: Slot,
    /// Attention output before o_proj, (N, E).
    ao: Slot,
    h2: Slot,
    stats2: [Slot; 2],
    /// FFN pre- and post-activation, (N, F); `hid` unused in inference (in place).
    pre: Slot,
    hid: Slot,
    /// Output of o_proj / fc2 before the residual add (inference only).
    tmp: Slot,
    /// MoE routing table and expert activations (`moe::buffer_lens` order), and the call's
    /// statistics: assignments, dropped, aux loss.
    moe: [Slot; 12],
    moe_stats: Slot,
    /// Decoder blocks: cross-attention's activations.
    cross: Option<CrossActs>,
}

/// Cross-attention activations of a decoder block: the stream after it, its norm's output and
/// statistics, q (from the decoder), k and v (from the memory), probabilities (Tsrc × T tiles),
/// and its output before o_proj.
#[derive(Clone, Copy, Debug, Default)]
struct CrossActs {
    res: Slot,
    h: Slot,
    stats: [Slot; 2],
    q: Slot,
    k: Slot,
    v: Slot,
    att: Slot,
    ao: Slot,
}

impl BlockActs {
    /// The stream the FFN sub-layer reads: after cross-attention in decoder blocks.
    fn ffn_in(&self) -> Slot {
        self.cross.map_or(self.res_mid, |x| x.res)
    }

    /// Lay out one block's activations: every buffer per layer in training, one shared set with a
    /// `tmp` for the residual adds in inference. `(n, ne, nkv, nf)` are the token count and the
    /// widths times tokens; `att_len` the probabilities of one layer.
    fn plan(
        p: &mut Planner,
        training: bool,
        res_in: Slot,
        sizes: (usize, usize, usize, usize),
        att_len: usize,
        moe: Option<Moe>,
        cross: Option<(usize, usize)>,
    ) -> Result<Self> {
        let (n, ne, nkv, nf) = sizes;
        // With MoE the experts' hidden layers live in the routing buffers, not in pre/hid.
        let nf = if moe.is_some() { 0 } else { nf };
        let mut acts = |len: usize| p.take(Region::Acts, len);
        let mut a = if training {
            BlockActs {
                res_in,
                res_mid: acts(ne)?,
                res_out: acts(ne)?,
                h1: acts(ne)?,
                stats1: [acts(n)?, acts(n)?],
                q: acts(ne)?,
                k: acts(nkv)?,
                v: acts(nkv)?,
                att: acts(att_len)?,
                ao: acts(ne)?,
                h2: acts(ne)?,
                stats2: [acts(n)?, acts(n)?],
                pre: acts(nf)?,
                hid: acts(nf)?,
                tmp: Slot::default(),
                moe: [Slot::default(); 12],
                moe_stats: Slot::default(),
                cross: None,
            }
        } else {
            let h = acts(ne)?;
            let stats = [acts(n)?, acts(n)?];
            BlockActs {
                res_in,
                res_mid: res_in,
                res_out: res_in,
                h1: h,
                stats1: stats,
                q: acts(ne)?,
                k: acts(nkv)?,
                v: acts(nkv)?,
                att: Slot::default(),
                ao: acts(ne)?,
                h2: h,
                stats2: stats,
                pre: acts(nf)?,
                hid: Slot::default(),
                tmp: acts(ne)?,
                moe: [Slot::default(); 12],
                moe_stats: Slot::default(),
                cross: None,
            }
        };
        if let Some(d) = moe {
            for (slot, len) in a.moe.iter_mut().zip(moe::buffer_lens(&d, n, training)) {
                *slot = acts(len)?;
            }
            a.moe_stats = acts(3)?;
        }
        // Decoder blocks: (memory tokens × kv width, probabilities of one layer).
        if let Some((src_kv, cross_att)) = cross {
            a.cross = Some(if training {
                CrossActs {
                    res: acts(ne)?,
                    h: acts(ne)?,
                    stats: [acts(n)?, acts(n)?],
                    q: acts(ne)?,
                    k: acts(src_kv)?,
                    v: acts(src_kv)?,
                    att: acts(cross_att)?,
                    ao: acts(ne)?,
                }
            } else {
                // Inference shares the self-attention's buffers; only k and v differ in length.
                CrossActs {
                    res: a.res_in,
                    h: a.h1,
                    stats: a.stats1,
                    q: a.q,
                    k: acts(src_kv)?,
                    v: acts(src_kv)?,
                    att: Slot::default(),
                    ao: a.ao,
                }
            });
        }
        Ok(a)
    }

    /// Block `i`'s activations, given block 0's and the stride; the stream entering block i > 0 is
    /// the one leaving block i − 1.
    fn of_block(&self, i: usize, stride: usize) -> Self {
        let at = |s: Slot| s.shifted(i * stride);
        let res_in = if i == 0 { self.res_in } else { self.res_out.shifted((i - 1) * stride) };
        BlockActs {
            res_in,
            res_mid: at(self.res_mid),
            res_out: at(self.res_out),
            h1: at(self.h1),
            stats1: self.stats1.map(at),
            q: at(self.q),
            k: at(self.k),
            v: at(self.v),
            att: at(self.att),
            ao: at(self.ao),
            h2: at(self.h2),
            stats2: self.stats2.map(at),
            pre: at(self.pre),
            hid: at(self.hid),
            tmp: at(self.tmp),
            moe: self.moe.map(at),
            moe_stats: at(self.moe_stats),
            cross: self.cross.map(|x| CrossActs {
                res: at(x.res),
                h: at(x.h),
                stats: x.stats.map(at),
                q: at(x.q),
                k: at(x.k),
                v: at(x.v),
                att: at(x.att),
                ao: at(x.ao),
            }),
        }
    }
}

/// Gradient buffers, one per kind, reused by every layer in backward.
#[derive(Clone, Copy, Debug, Default)]
struct Grads {
    dres: Slot,
    dh: Slot,
    dao: Slot,
    dq: Slot,
    dk: Slot,
    dv: Slot,
    dhid: Slot,
    dpre: Slot,
    dpooled: Slot,
    dout: Slot,
    dinp: Slot,
    /// MoE gradient buffers (`moe::grad_buffer_lens` order).
    dmoe: [Slot; 6],
    /// Decoder: gradients of cross-attention's k and v (memory tokens × kv width).
    dkx: Slot,
    dvx: Slot,
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
pub(crate) struct Memory {
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
    input_proj: [Slot; 2],
    pos_embed: Slot,
    /// Block 0's slots; block i's are these shifted by i strides.
    block0: (BlockParams, BlockActs),
    /// Floats between consecutive blocks in params and in acts (0 in inference: shared buffers).
    strides: (usize, usize),
    final_norm: [Slot; 2],
    head: [Slot; 2],
    /// Final norm output (N, E) and its statistics.
    hf: Slot,
    statsf: [Slot; 2],
    pooled: Slot,
    out: Slot,
    g: Grads,
    /// Attention's working memory (scratch): a T×T tile and a D×T transposed product.
    attn_scratch: Slot,
    /// Buffers of incremental decoding, when the config asks for a KV cache.
    decode: Option<decode::Decode>,
    /// The gemm kernels every product runs on.
    kernels: Kernels,
}

impl BlockParams {
    fn plan(c: &TransformerConfig, cross: bool, p: &mut Planner) -> Result<Self> {
        let (e, kv, f) = (c.embed_dim, c.attn().kv_dim(), c.ffn_dim);
        // A weight (rows × cols) and its bias (rows).
        let pair = |p: &mut Planner, rows: usize, cols: usize| -> Result<[Slot; 2]> {
            Ok([p.take(Region::Params, mul(rows, cols)?)?, p.take(Region::Params, rows)?])
        };
        let norm1 = pair(p, e, 1)?;
        let proj = [pair(p, e, e)?, pair(p, kv, e)?, pair(p, kv, e)?, pair(p, e, e)?];
        let cross = if cross {
            let norm = pair(p, e, 1)?;
            Some(CrossParams {
                norm,
                proj: [pair(p, e, e)?, pair(p, kv, e)?, pair(p, kv, e)?, pair(p, e, e)?],
            })
        } else {
            None
        };
        let norm2 = pair(p, e, 1)?;
        let (fc1, fc2, moe) = match c.moe {
            None => (pair(p, f, e)?, pair(p, e, f)?, None),
            Some(m) => {
                let router = p.take(Region::Params, mul(m.num_experts, e)?)?;
                let mut expert0 = [Slot::default(); 4];
                let mut stride = 0;
                for ex in 0..m.num_experts {
                    let [w1, b1] = pair(p, f, e)?;
                    let [w2, b2] = pair(p, e, f)?;
                    if ex == 0 {
                        expert0 = [w1, b1, w2, b2];
                    } else if ex == 1 {
                        stride = w1.offset - expert0[0].offset;
                    }
                    // Experts are laid out identically, one stride apart.
                    debug_assert_eq!(b2.offset, expert0[3].offset + ex * stride);
                }
                ([Slot::default(); 2], [Slot::default(); 2], Some(MoeParams { router, expert0, stride }))
            }
        };
        Ok(BlockParams { norm1, proj, norm2, fc1, fc2, moe, cross })
    }

    fn shifted(&self, by: usize) -> Self {
        let pair = |x: [Slot; 2]| x.map(|s| s.shifted(by));
        BlockParams {
            norm1: pair(self.norm1),
            proj: self.proj.map(pair),
            norm2: pair(self.norm2),
            fc1: pair(self.fc1),
            fc2: pair(self.fc2),
            moe: self.moe.map(|m| MoeParams {
                router: m.router.shifted(by),
                expert0: m.expert0.map(|s| s.shifted(by)),
                stride: m.stride,
            }),
            cross: self.cross.map(|c| CrossParams { norm: pair(c.norm), proj: c.proj.map(pair) }),
        }
    }
}

impl Transformer {
    /// Check the config and lay out every tensor of a plain transformer for `max_batch` sequences
    /// of at most `seq` tokens (`seq ≤ max_seq_len`, which sizes only `pos_embed`).
    pub(crate) fn plan(
        cfg: &TransformerConfig,
        (max_batch, seq): (usize, usize),
        training: bool,
        p: &mut Planner,
    ) -> Result<Self> {
        Self::plan_role(cfg, Role::Plain, (max_batch, seq), training, p)
    }

    /// [`Transformer::plan`] for a stack of a given role (encoder-decoder halves).
    pub(crate) fn plan_role(
        cfg: &TransformerConfig,
        role: Role,
        (max_batch, t): (usize, usize),
        training: bool,
        p: &mut Planner,
    ) -> Result<Self> {
        cfg.validate()?;
        ensure(t > 0, "seq_len", "must be at least 1")?;
        ensure(t <= cfg.max_seq_len, "seq_len", "must not exceed max_seq_len")?;
        let (e, f, d) = (cfg.embed_dim, cfg.ffn_dim, cfg.attn());
        let n = mul(max_batch, t)?; // tokens
        if let Some(m) = cfg.moe {
            // Routing tables index assignments with exact f32 integers.
            ensure(mul(n, m.top_k)? <= MAX_ASSIGNMENTS, "moe", "routes more than 2^24 assignments per call")?;
        }
        let ne = mul(n, e)?;
        let nkv = mul(n, d.kv_dim())?;
        let nf = mul(n, f)?;
        let tt = mul(t, t)?;
        let max_src = match role {
            Role::Decoder { max_src } => Some(max_src),
            Role::Plain | Role::Encoder => None,
        };
        // Decoder blocks: (memory tokens × kv width, cross-attention probabilities of one layer).
        let cross = match max_src {
            Some(s) => {
                Some((mul(mul(max_batch, s)?, d.kv_dim())?, mul(mul(max_batch, d.n_heads)?, mul(s, t)?)?))
            }
            None => None,
        };
        let input_proj = [p.take(Region::Params, mul(e, cfg.input_dim)?)?, p.take(Region::Params, e)?];
        let pos_embed = p.take(Region::Params, mul(cfg.max_seq_len, e)?)?;
        let res_in = p.take(Region::Acts, ne)?;
        let mut block0: Option<(BlockParams, BlockActs)> = None;
        let mut strides = (0, 0);
        for i in 0..cfg.num_layers {
            let params = BlockParams::plan(cfg, max_src.is_some(), p)?;
            // Inference shares one set of activation buffers between all blocks.
            let a = match block0 {
                Some((_, a0)) if !training => a0,
                _ => BlockActs::plan(
                    p,
                    training,
                    res_in,
                    (n, ne, nkv, nf),
                    mul(mul(max_batch, d.n_heads)?, tt)?,
                    cfg.moe_layer(),
                    cross,
                )?,
            };
            match block0 {
                None => block0 = Some((params, a)),
                Some((p0, a0)) => {
                    if i == 1 {
                        // 0 for shared inference buffers.
                        strides = (
                            params.norm1[0].offset - p0.norm1[0].offset,
                            a.res_mid.offset - a0.res_mid.offset,
                        );
                    }
                    // Every block is laid out like block 0, one stride further per block.
                    debug_assert_eq!(params.norm2[1].offset, p0.norm2[1].offset + i * strides.0);
                    debug_assert_eq!(a.h2.offset, a0.h2.offset + i * strides.1);
                }
            }
        }
        let block0 = block0.expect("validate() requires num_layers >= 1");
        let final_norm = [p.take(Region::Params, e)?, p.take(Region::Params, e)?];
        let has_head = role != Role::Encoder;
        let head = if has_head {
            [p.take(Region::Params, mul(cfg.output_dim, e)?)?, p.take(Region::Params, cfg.output_dim)?]
        } else {
            [Slot::default(); 2]
        };
        let hf = p.take(Region::Acts, ne)?;
        let statsf = [p.take(Region::Acts, n)?, p.take(Region::Acts, n)?];
        // Regression pools each sequence to one row for the head; autoregressive heads every token.
        let out_rows = if !has_head {
            0
        } else if cfg.autoregressive {
            n
        } else {
            max_batch
        };
        let pooled = if cfg.autoregressive || !has_head {
            Slot::default()
        } else {
            p.take(Region::Acts, mul(max_batch, e)?)?
        };
        let out = p.take(Region::Acts, mul(out_rows, cfg.output_dim)?)?;
        let g = if training {
            let mut ag = |len: usize| p.take(Region::ActGrads, len);
            Grads {
                dres: ag(ne)?,
                dh: ag(ne)?,
                dao: ag(ne)?,
                dq: ag(ne)?,
                dk: ag(nkv)?,
                dv: ag(nkv)?,
                dhid: ag(if cfg.moe.is_some() { 0 } else { nf })?,
                dpre: ag(if cfg.moe.is_some() { 0 } else { nf })?,
                dpooled: if cfg.autoregressive || !has_head {
                    Slot::default()
                } else {
                    ag(mul(max_batch, e)?)?
                },
                dout: ag(mul(out_rows, cfg.output_dim)?)?,
                dinp: ag(mul(n, cfg.input_dim)?)?,
                dmoe: match cfg.moe_layer() {
                    Some(m) => {
                        let mut slots = [Slot::default(); 6];
                        for (slot, len) in slots.iter_mut().zip(moe::grad_buffer_lens(&m, n)) {
                            *slot = ag(len)?;
                        }
                        slots
                    }
                    None => [Slot::default(); 6],
                },
                dkx: ag(cross.map_or(0, |c| c.0))?,
                dvx: ag(cross.map_or(0, |c| c.0))?,
            }
        } else {
            Grads::default()
        };
        // The layer says how much scratch it needs; t·t and e·t were checked above, which bounds
        // scratch_len = (t + head_dim + 2)·t.
        let attn_scratch =
            p.take(Region::Scratch, d.scratch_len(t, t).max(d.scratch_len(t, max_src.unwrap_or(0))))?;
        let decode = match cfg.kv_cache {
            Some(dtype) => Some(decode::Decode::plan(cfg, dtype, (max_batch, t), max_src, p)?),
            None => None,
        };
        Ok(Transformer {
            role,
            attn_scratch,
            decode,
            cfg: *cfg,
            training,
            input_proj,
            pos_embed,
            block0,
            strides,
            final_norm,
            head,
            hf,
            statsf,
            pooled,
            out,
            g,
            kernels: Kernels::Auto,
        })
    }

    /// Routing statistics of the last forward pass, summed over the blocks (MoE models).
    pub(crate) fn moe_stats(&self, acts: &[f32]) -> Option<moe::MoeStats> {
        self.cfg.moe?;
        let mut total = moe::MoeStats::default();
        for i in 0..self.cfg.num_layers {
            let s = &acts[self.block(i).1.moe_stats.range()];
            total.assignments += s[0] as usize;
            total.dropped += s[1] as usize;
            total.aux += s[2];
        }
        Some(total)
    }

    /// The final norm's output (acts): an encoder's memory.
    pub(crate) fn memory_slot(&self) -> Slot {
        self.hf
    }

    /// Block `i`'s parameter and activation slots.
    fn block(&self, i: usize) -> (BlockParams, BlockActs) {
        let (p0, a0) = &self.block0;
        (p0.shifted(i * self.strides.0), a0.of_block(i, self.strides.1))
    }

    /// Where the output of a forward pass lies (acts): (B, output_dim).
    pub(crate) fn output(&self) -> Slot {
        self.out
    }

    /// Where backward reads dL/d(output) (act_grads).
    pub(crate) fn doutput(&self) -> Slot {
        self.g.dout
    }

    /// Where backward leaves dL/d(input) (act_grads): (B, T, input_dim).
    pub(crate) fn dinput(&self) -> Slot {
        self.g.dinp
    }

    /// Number of parameter tensors.
    pub(crate) fn param_count(&self) -> usize {
        let head = if self.role == Role::Encoder { 0 } else { 2 };
        3 + self.block_tensors() * self.cfg.num_layers + 2 + head
    }

    /// Parameter tensors of one block: norms and attention (12; 22 with cross-attention), then
    /// the FFN's (4, or the router and 4 per expert).
    fn block_tensors(&self) -> usize {
        let attn = if self.is_decoder() { 22 } else { 12 };
        attn + self.cfg.moe.map_or(4, |m| 1 + 4 * m.num_experts)
    }

    fn is_decoder(&self) -> bool {
        matches!(self.role, Role::Decoder { .. })
    }

    /// Name prefix of this stack's tensors (`encoder.`, `decoder.`); the head is never prefixed.
    fn prefixed(&self, name: &mut ParamName) {
        match self.role {
            Role::Plain => {}
            Role::Encoder => {
                name.push("encoder");
            }
            Role::Decoder { .. } => {
                name.push("decoder");
            }
        }
    }

    /// The `i`-th parameter tensor, in PyTorch `state_dict` order.
    pub(crate) fn param(&self, i: usize) -> Option<ParamInfo> {
        let c = &self.cfg;
        let e = c.embed_dim;
        let uniform = |fan_in: usize| Init::Uniform(1.0 / libm::sqrtf(fan_in as f32));
        let mut name = ParamName::new();
        let (bt, layers) = (self.block_tensors(), c.num_layers);
        let n_blocks = bt * layers;
        if i < 3 {
            self.prefixed(&mut name);
            return Some(match i {
                0 => ParamInfo::matrix(
                    name.push("input_proj").field("weight").clone(),
                    self.input_proj[0],
                    e,
                    c.input_dim,
                    uniform(c.input_dim),
                ),
                1 => ParamInfo::vector(
                    name.push("input_proj").field("bias").clone(),
                    self.input_proj[1],
                    e,
                    uniform(c.input_dim),
                ),
                _ => ParamInfo::matrix(
                    name.push("pos_embed").field("weight").clone(),
                    self.pos_embed,
                    c.max_seq_len,
                    e,
                    Init::Normal(0.02),
                ),
            });
        }
        if i < 3 + n_blocks {
            let (layer, j) = ((i - 3) / bt, (i - 3) % bt);
            self.prefixed(&mut name);
            name.push("layers").index(layer);
            return Some(self.block_param(&self.block(layer).0, j, name));
        }
        let rest = i - 3 - n_blocks;
        match (rest, self.role) {
            (0 | 1, _) => {
                self.prefixed(&mut name);
                let field = ["weight", "bias"][rest];
                let init = Init::Const(if rest == 0 { 1.0 } else { 0.0 });
                Some(ParamInfo::vector(
                    name.push("final_norm").field(field).clone(),
                    self.final_norm[rest],
                    e,
                    init,
                ))
            }
            (2, Role::Plain | Role::Decoder { .. }) => Some(ParamInfo::matrix(
                name.push("head").field("weight").clone(),
                self.head[0],
                c.output_dim,
                e,
                uniform(e),
            )),
            (3, Role::Plain | Role::Decoder { .. }) => Some(ParamInfo::vector(
                name.push("head").field("bias").clone(),
                self.head[1],
                c.output_dim,
                uniform(e),
            )),
            _ => None,
        }
    }

    /// Tensor `j` of a block (in `state_dict` order) under `name` (`…layers.{i}`).
    ///
    /// Encoder and plain blocks: `norm1`, `attn.{q,k,v,o}_proj`, `norm2`, `ffn`. Decoder blocks:
    /// `norm1`, `self_attn.*`, `norm2` (before cross-attention), `cross_attn.*`, `norm3`, `ffn`.
    fn block_param(&self, bp: &BlockParams, j: usize, mut name: ParamName) -> ParamInfo {
        let c = &self.cfg;
        let (e, kv, f) = (c.embed_dim, c.attn().kv_dim(), c.ffn_dim);
        let uniform = |fan_in: usize| Init::Uniform(1.0 / libm::sqrtf(fan_in as f32));
        let proj_dims = [(e, e), (kv, e), (kv, e), (e, e)];
        let proj_names = ["q_proj", "k_proj", "v_proj", "o_proj"];
        // (path, [weight, bias] slots, rows, cols; cols 0 for a norm) of every pair before the FFN.
        let mut pairs: heapless::Vec<(&str, &str, [Slot; 2], usize, usize), 11> = heapless::Vec::new();
        let self_attn = if self.is_decoder() { "self_attn" } else { "attn" };
        let mut add =
            |group: &'static str, part: &'static str, slots: [Slot; 2], rows: usize, cols: usize| {
                // 11 pairs at most: two norms and four projections per attention, three norms.
                pairs.push((group, part, slots, rows, cols)).expect("at most 11 pairs before the FFN");
            };
        add("norm1", "", bp.norm1, e, 0);
        for (k, (rows, cols)) in proj_dims.iter().enumerate() {
            add(self_attn, proj_names[k], bp.proj[k], *rows, *cols);
        }
        if let Some(x) = bp.cross {
            add("norm2", "", x.norm, e, 0);
            for (k, (rows, cols)) in proj_dims.iter().enumerate() {
                add("cross_attn", proj_names[k], x.proj[k], *rows, *cols);
            }
            add("norm3", "", bp.norm2, e, 0);
        } else {
            add("norm2", "", bp.norm2, e, 0);
        }
        let field = ["weight", "bias"];
        if let Some(&(group, part, slots, rows, cols)) = pairs.get(j / 2) {
            name.push(group);
            if !part.is_empty() {
                name.push(part);
            }
            let (name, slot) = (name.field(field[j % 2]).clone(), slots[j % 2]);
            return match (cols, j % 2) {
                (0, 0) => ParamInfo::vector(name, slot, rows, Init::Const(1.0)),
                (0, _) => ParamInfo::vector(name, slot, rows, Init::Const(0.0)),
                (_, 0) => ParamInfo::matrix(name, slot, rows, cols, uniform(cols)),
                _ => ParamInfo::vector(name, slot, rows, uniform(cols)),
            };
        }
        // The FFN: dense fc1/fc2, or the router then each expert's fc1/fc2.
        let k = j - 2 * pairs.len();
        name.push("ffn");
        let (slot, fc) = match bp.moe {
            None => ([bp.fc1, bp.fc2][k / 2][k % 2], k),
            Some(m) if k == 0 => {
                let n_exp = c.moe.map_or(0, |x| x.num_experts);
                return ParamInfo::matrix(
                    name.push("router").field("weight").clone(),
                    m.router,
                    n_exp,
                    e,
                    uniform(e),
                );
            }
            Some(m) => {
                let (expert, part) = ((k - 1) / 4, (k - 1) % 4);
                name.push("experts").index(expert);
                (m.expert0[part].shifted(expert * m.stride), part)
            }
        };
        let name = name.push(["fc1", "fc1", "fc2", "fc2"][fc]).field(field[fc % 2]).clone();
        let (rows, cols) = if fc < 2 { (f, e) } else { (e, f) };
        if fc % 2 == 0 {
            ParamInfo::matrix(name, slot, rows, cols, uniform(cols))
        } else {
            ParamInfo::vector(name, slot, rows, uniform(cols))
        }
    }

    /// Forward pass over `batch` sequences of `seq` tokens read from `acts[inp]`; leaves in acts
    /// everything backward reads.
    ///
    /// `memory`: the encoder's output, which a decoder's cross-attention reads.
    pub(crate) fn forward(
        &self,
        bufs: &mut Buffers<'_>,
        inp: Slot,
        (batch, seq): (usize, usize),
        memory: Option<Memory>,
    ) {
        let c = &self.cfg;
        let (e, n) = (c.embed_dim, batch * seq);
        let ne = n * e;
        let (w, acts, scratch) = (&*bufs.params, &mut *bufs.acts, &mut *bufs.scratch);
        let [x, res] = disjoint(acts, [inp.prefix(n * c.input_dim), self.block0.1.res_in.prefix(ne)]);
        linear::forward(
            res,
            x,
            &w[self.input_proj[0].range()],
            &w[self.input_proj[1].range()],
            self.lin(c.input_dim, e),
        );
        position::forward_inplace(res, &w[self.pos_embed.range()], e, seq);
        for i in 0..c.num_layers {
            let (bp, a) = self.block(i);
            self.block_forward(&bp, &a, w, acts, scratch, (batch, seq), memory);
        }
        let last = self.block(c.num_layers - 1).1.res_out;
        let out_rows = match self.role {
            Role::Encoder => 0,
            _ if c.autoregressive => n,
            _ => batch,
        };
        let [res, hf, mean, rstd, out] = disjoint(
            acts,
            [
                last.prefix(ne),
                self.hf.prefix(ne),
                self.statsf[0].prefix(n),
                self.statsf[1].prefix(n),
                self.out.prefix(out_rows * c.output_dim),
            ],
        );
        let (nw, nb) = (&w[self.final_norm[0].range()], &w[self.final_norm[1].range()]);
        layernorm::forward(hf, mean, rstd, res, nw, nb);
        let (hw, hb) = (&w[self.head[0].range()], &w[self.head[1].range()]);
        if self.role == Role::Encoder {
            // The final norm's output is the memory; no head.
        } else if c.autoregressive {
            linear::forward(out, hf, hw, hb, self.lin(e, c.output_dim));
        } else {
            let [hf, pooled] = disjoint(acts, [self.hf.prefix(ne), self.pooled.prefix(batch * e)]);
            pool::forward(pooled, hf, e, seq);
            let [pooled, out] =
                disjoint(acts, [self.pooled.prefix(batch * e), self.out.prefix(batch * c.output_dim)]);
            linear::forward(out, pooled, hw, hb, self.lin(e, c.output_dim));
        }
    }

    /// One block: `x += o_proj(attn(norm1(x)))`, then `x += ffn(norm2(x))`.
    #[allow(clippy::too_many_arguments)] // the block, the carved regions, the shape, the memory
    fn block_forward(
        &self,
        bp: &BlockParams,
        a: &BlockActs,
        w: &[f32],
        acts: &mut [f32],
        scratch: &mut [f32],
        (batch, seq): (usize, usize),
        memory: Option<Memory>,
    ) {
        let c = &self.cfg;
        let (e, d) = (c.embed_dim, self.attn());
        let n = batch * seq;
        let (ne, nkv, nf) = (n * e, n * d.kv_dim(), n * c.ffn_dim);
        let p = |s: Slot| &w[s.range()];
        let [res, h, mean, rstd] = disjoint(
            acts,
            [a.res_in.prefix(ne), a.h1.prefix(ne), a.stats1[0].prefix(n), a.stats1[1].prefix(n)],
        );
        layernorm::forward(h, mean, rstd, res, p(bp.norm1[0]), p(bp.norm1[1]));
        let [h, q, k, v] =
            disjoint(acts, [a.h1.prefix(ne), a.q.prefix(ne), a.k.prefix(nkv), a.v.prefix(nkv)]);
        linear::forward(q, h, p(bp.proj[0][0]), p(bp.proj[0][1]), self.lin(e, e));
        linear::forward(k, h, p(bp.proj[1][0]), p(bp.proj[1][1]), self.lin(e, d.kv_dim()));
        linear::forward(v, h, p(bp.proj[2][0]), p(bp.proj[2][1]), self.lin(e, d.kv_dim()));
        if self.training {
            let att_len = batch * d.n_heads * seq * seq;
            let [q, k, v, ao, att] = disjoint(
                acts,
                [a.q.prefix(ne), a.k.prefix(nkv), a.v.prefix(nkv), a.ao.prefix(ne), a.att.prefix(att_len)],
            );
            attention::forward(
                ao,
                att,
                &mut scratch[self.attn_scratch.range()],
                [q, k, v],
                d,
                batch,
                (seq, seq),
            );
        } else {
            let [q, k, v, ao] =
                disjoint(acts, [a.q.prefix(ne), a.k.prefix(nkv), a.v.prefix(nkv), a.ao.prefix(ne)]);
            attention::forward(
                ao,
                &mut [],
                &mut scratch[self.attn_scratch.range()],
                [q, k, v],
                d,
                batch,
                (seq, seq),
            );
        }
        // Training writes o_proj into res_mid and adds res_in; inference adds tmp into the stream.
        let (y, sum, other) =
            if self.training { (a.res_mid, a.res_mid, a.res_in) } else { (a.tmp, a.res_in, a.tmp) };
        let [ao, y] = disjoint(acts, [a.ao.prefix(ne), y.prefix(ne)]);
        linear::forward(y, ao, p(bp.proj[3][0]), p(bp.proj[3][1]), self.lin(e, e));
        add_into(acts, sum.prefix(ne), other.prefix(ne));

        // Decoder blocks: x += o_proj(cross_attn(norm2(x), memory)).
        if let (Some(xp), Some(xa), Some(mem)) = (bp.cross, a.cross, memory) {
            self.cross_forward(&xp, a, &xa, w, acts, scratch, (batch, seq), mem);
        }

        let ffn_in = a.ffn_in();
        let [res, h, mean, rstd] = disjoint(
            acts,
            [ffn_in.prefix(ne), a.h2.prefix(ne), a.stats2[0].prefix(n), a.stats2[1].prefix(n)],
        );
        layernorm::forward(h, mean, rstd, res, p(bp.norm2[0]), p(bp.norm2[1]));
        let weights = [p(bp.fc1[0]), p(bp.fc1[1]), p(bp.fc2[0]), p(bp.fc2[1])];
        let (y, sum, other) =
            if self.training { (a.res_out, a.res_out, ffn_in) } else { (a.tmp, a.res_in, a.tmp) };
        if let (Some(d), Some(mp)) = (self.moe_layer(), bp.moe) {
            moe_forward(d, &mp, (a.h2.prefix(ne), y.prefix(ne)), (&a.moe, a.moe_stats), w, acts, n);
        } else if self.training {
            let [h, pre, hid, y] =
                disjoint(acts, [a.h2.prefix(ne), a.pre.prefix(nf), a.hid.prefix(nf), y.prefix(ne)]);
            ffn::forward(y, pre, Some(hid), h, weights, self.ffn());
        } else {
            let [h, pre, y] = disjoint(acts, [a.h2.prefix(ne), a.pre.prefix(nf), y.prefix(ne)]);
            ffn::forward(y, pre, None, h, weights, self.ffn());
        }
        add_into(acts, sum.prefix(ne), other.prefix(ne));
    }

    /// A decoder block's cross-attention sub-layer: queries from `norm2(x)`, keys and values
    /// projected from the memory (the encoder's output, `mem.len` tokens per sequence).
    #[allow(clippy::too_many_arguments)] // the sub-layer, the carved regions, the shape, the memory
    fn cross_forward(
        &self,
        xp: &CrossParams,
        a: &BlockActs,
        xa: &CrossActs,
        w: &[f32],
        acts: &mut [f32],
        scratch: &mut [f32],
        (batch, seq): (usize, usize),
        mem: Memory,
    ) {
        let c = &self.cfg;
        let (e, d) = (c.embed_dim, Attn { causal: false, ..self.attn() });
        let (n, src) = (batch * seq, batch * mem.len);
        let (ne, skv) = (n * e, src * d.kv_dim());
        let p = |s: Slot| &w[s.range()];
        let [res, h, mean, rstd] = disjoint(
            acts,
            [a.res_mid.prefix(ne), xa.h.prefix(ne), xa.stats[0].prefix(n), xa.stats[1].prefix(n)],
        );
        layernorm::forward(h, mean, rstd, res, p(xp.norm[0]), p(xp.norm[1]));
        let [h, q, m, k, v] = disjoint(
            acts,
            [xa.h.prefix(ne), xa.q.prefix(ne), mem.acts.prefix(src * e), xa.k.prefix(skv), xa.v.prefix(skv)],
        );
        linear::forward(q, h, p(xp.proj[0][0]), p(xp.proj[0][1]), self.lin(e, e));
        linear::forward(k, m, p(xp.proj[1][0]), p(xp.proj[1][1]), self.lin(e, d.kv_dim()));
        linear::forward(v, m, p(xp.proj[2][0]), p(xp.proj[2][1]), self.lin(e, d.kv_dim()));
        let work = &mut scratch[self.attn_scratch.range()];
        if self.training {
            let att_len = batch * d.n_heads * mem.len * seq;
            let [q, k, v, ao, att] = disjoint(
                acts,
                [
                    xa.q.prefix(ne),
                    xa.k.prefix(skv),
                    xa.v.prefix(skv),
                    xa.ao.prefix(ne),
                    xa.att.prefix(att_len),
                ],
            );
            attention::forward(ao, att, work, [q, k, v], d, batch, (seq, mem.len));
        } else {
            let [q, k, v, ao] =
                disjoint(acts, [xa.q.prefix(ne), xa.k.prefix(skv), xa.v.prefix(skv), xa.ao.prefix(ne)]);
            attention::forward(ao, &mut [], work, [q, k, v], d, batch, (seq, mem.len));
        }
        // Training writes o_proj into the cross stream and adds the self-attention stream;
        // inference adds tmp into the one stream.
        let (y, sum, other) =
            if self.training { (xa.res, xa.res, a.res_mid) } else { (a.tmp, a.res_in, a.tmp) };
        let [ao, y] = disjoint(acts, [xa.ao.prefix(ne), y.prefix(ne)]);
        linear::forward(y, ao, p(xp.proj[3][0]), p(xp.proj[3][1]), self.lin(e, e));
        add_into(acts, sum.prefix(ne), other.prefix(ne));
    }

    /// Backward pass: the forward, mirrored. Reads dL/d(output) from `act_grads[doutput]`;
    /// accumulates into `grads`; leaves dL/d(input) in `act_grads[dinput]`. Training plans only.
    ///
    /// `memory`: a decoder's cross-attention adds the gradient of the encoder's output into
    /// `memory.grads`; an encoder (no head) starts from that gradient instead of a head's.
    pub(crate) fn backward(
        &self,
        bufs: &mut Buffers<'_>,
        inp: Slot,
        (batch, seq): (usize, usize),
        memory: Option<Memory>,
    ) {
        debug_assert!(self.training);
        let c = &self.cfg;
        let (e, n, g) = (c.embed_dim, batch * seq, &self.g);
        let ne = n * e;
        let (w, acts, grads, ag, scratch) =
            (&*bufs.params, &*bufs.acts, &mut *bufs.grads, &mut *bufs.act_grads, &mut *bufs.scratch);
        // head (and mean-pool): dhf ← d(final norm's output); an encoder's comes from its decoder.
        let dhf_slot = match (self.role, memory) {
            (Role::Encoder, Some(mem)) => mem.grads,
            _ => {
                self.head_backward(w, acts, grads, ag, (batch, seq));
                g.dh
            }
        };
        let [dhf, dres] = disjoint(ag, [dhf_slot.prefix(ne), g.dres.prefix(ne)]);
        dres.fill(0.0);
        let last = self.block(c.num_layers - 1).1.res_out;
        let [dw, db] = disjoint(grads, [self.final_norm[0].range(), self.final_norm[1].range()]);
        let stats = [&acts[self.statsf[0].prefix(n)], &acts[self.statsf[1].prefix(n)]];
        let x = &acts[last.prefix(ne)];
        layernorm::backward(dres, dw, db, dhf, x, stats[0], stats[1], &w[self.final_norm[0].range()]);
        for i in (0..c.num_layers).rev() {
            let (bp, a) = self.block(i);
            self.block_backward(&bp, &a, (w, acts, grads), ag, scratch, (batch, seq), memory);
        }
        // positions and input projection
        let [dres, dinp] = disjoint(ag, [g.dres.prefix(ne), g.dinp.prefix(n * c.input_dim)]);
        position::backward(&mut grads[self.pos_embed.range()], dres, e, seq);
        let [dw, db] = disjoint(grads, [self.input_proj[0].range(), self.input_proj[1].range()]);
        dinp.fill(0.0);
        let x = &acts[inp.prefix(n * c.input_dim)];
        linear::backward(
            Some(dinp),
            dw,
            db,
            dres,
            x,
            &w[self.input_proj[0].range()],
            self.lin(c.input_dim, e),
        );
    }

    /// Backward of [`Transformer::cross_forward`]. On entry `act_grads[dres]` holds d(stream after
    /// cross-attention); on exit d(stream after self-attention). Adds d(memory) into `mem.grads`.
    #[allow(clippy::too_many_arguments)] // the sub-layer, the carved regions, the shape, the memory
    fn cross_backward(
        &self,
        xp: &CrossParams,
        a: &BlockActs,
        xa: &CrossActs,
        (w, acts, grads): (&[f32], &[f32], &mut [f32]),
        ag: &mut [f32],
        scratch: &mut [f32],
        (batch, seq): (usize, usize),
        mem: Memory,
    ) {
        let c = &self.cfg;
        let (e, d, g) = (c.embed_dim, Attn { causal: false, ..self.attn() }, &self.g);
        let (n, src) = (batch * seq, batch * mem.len);
        let (ne, skv) = (n * e, src * d.kv_dim());
        let p = |s: Slot| &w[s.range()];
        let act = |s: Slot, len: usize| &acts[s.prefix(len)];
        let [dres, dao, dq, dk, dv, dh, dmem] = disjoint(
            ag,
            [
                g.dres.prefix(ne),
                g.dao.prefix(ne),
                g.dq.prefix(ne),
                g.dkx.prefix(skv),
                g.dvx.prefix(skv),
                g.dh.prefix(ne),
                mem.grads.prefix(src * e),
            ],
        );
        let [dw, db] = disjoint(grads, [xp.proj[3][0].range(), xp.proj[3][1].range()]);
        dao.fill(0.0);
        linear::backward(Some(&mut *dao), dw, db, dres, act(xa.ao, ne), p(xp.proj[3][0]), self.lin(e, e));
        dq.fill(0.0);
        dk.fill(0.0);
        dv.fill(0.0);
        let att = act(xa.att, batch * d.n_heads * mem.len * seq);
        let qkv = [act(xa.q, ne), act(xa.k, skv), act(xa.v, skv)];
        let work = &mut scratch[self.attn_scratch.range()];
        attention::backward([&mut *dq, &mut *dk, &mut *dv], work, dao, att, qkv, d, batch, (seq, mem.len));
        // q came from the decoder's norm; k and v from the memory, whose gradient accumulates over
        // every decoder block.
        dh.fill(0.0);
        let [dw, db] = disjoint(grads, [xp.proj[0][0].range(), xp.proj[0][1].range()]);
        linear::backward(Some(&mut *dh), dw, db, dq, act(xa.h, ne), p(xp.proj[0][0]), self.lin(e, e));
        let m = act(mem.acts, src * e);
        for (j, dy) in [(1, &*dk), (2, &*dv)] {
            let [dw, db] = disjoint(grads, [xp.proj[j][0].range(), xp.proj[j][1].range()]);
            linear::backward(Some(&mut *dmem), dw, db, dy, m, p(xp.proj[j][0]), self.lin(e, d.kv_dim()));
        }
        let [dln_w, dln_b] = disjoint(grads, [xp.norm[0].range(), xp.norm[1].range()]);
        let stats = [act(xa.stats[0], n), act(xa.stats[1], n)];
        layernorm::backward(dres, dln_w, dln_b, dh, act(a.res_mid, ne), stats[0], stats[1], p(xp.norm[0]));
    }

    /// The head's backward (and the mean-pool's): leaves d(final norm's output) in `dh`.
    fn head_backward(
        &self,
        w: &[f32],
        acts: &[f32],
        grads: &mut [f32],
        ag: &mut [f32],
        (batch, seq): (usize, usize),
    ) {
        let c = &self.cfg;
        let (e, n, g) = (c.embed_dim, batch * seq, &self.g);
        let ne = n * e;
        let (out_rows, pooled_len) = if c.autoregressive { (n, 0) } else { (batch, batch * e) };
        let [dout, dpooled, dhf] = disjoint(
            ag,
            [g.dout.prefix(out_rows * c.output_dim), g.dpooled.prefix(pooled_len), g.dh.prefix(ne)],
        );
        let [dw, db] = disjoint(grads, [self.head[0].range(), self.head[1].range()]);
        let hw = &w[self.head[0].range()];
        dhf.fill(0.0);
        if c.autoregressive {
            linear::backward(
                Some(&mut *dhf),
                dw,
                db,
                dout,
                &acts[self.hf.prefix(ne)],
                hw,
                self.lin(e, c.output_dim),
            );
        } else {
            dpooled.fill(0.0);
            let pooled = &acts[self.pooled.prefix(batch * e)];
            linear::backward(Some(&mut *dpooled), dw, db, dout, pooled, hw, self.lin(e, c.output_dim));
            pool::backward(dhf, dpooled, e, seq);
        }
    }

    /// One block's backward. On entry `act_grads[dres]` holds d(res_out); on exit d(res_in).
    #[allow(clippy::too_many_arguments)] // the block, the carved regions, the shape, the memory
    fn block_backward(
        &self,
        bp: &BlockParams,
        a: &BlockActs,
        (w, acts, grads): (&[f32], &[f32], &mut [f32]),
        ag: &mut [f32],
        scratch: &mut [f32],
        (batch, seq): (usize, usize),
        memory: Option<Memory>,
    ) {
        let c = &self.cfg;
        let (e, d, g) = (c.embed_dim, self.attn(), &self.g);
        let n = batch * seq;
        let (ne, nkv, nf) = (n * e, n * d.kv_dim(), n * c.ffn_dim);
        let p = |s: Slot| &w[s.range()];
        let act = |s: Slot, len: usize| &acts[s.prefix(len)];
        // FFN: dh ← d(norm2 out); dres += norm2 backward (the residual passes dres through).
        if let (Some(d), Some(mp)) = (self.moe_layer(), bp.moe) {
            let [dres, dh, dm @ ..] = disjoint(
                ag,
                [
                    g.dres.prefix(ne),
                    g.dh.prefix(ne),
                    g.dmoe[0].range(),
                    g.dmoe[1].range(),
                    g.dmoe[2].range(),
                    g.dmoe[3].range(),
                    g.dmoe[4].range(),
                    g.dmoe[5].range(),
                ],
            );
            dh.fill(0.0);
            let experts = mp.expert0[0].offset..mp.expert0[0].offset + d.n_experts * mp.stride;
            let [dwr, dexperts] = disjoint(grads, [mp.router.range(), experts.clone()]);
            let saved = moe::Saved::from_slices(a.moe.map(|s| &acts[s.range()]));
            let weights = (p(mp.router), &w[experts], mp.layout());
            moe::backward(
                dh,
                (dwr, dexperts),
                moe::GradBuffers::from_slices(dm),
                dres,
                &saved,
                act(a.h2, ne),
                weights,
                d,
                n,
            );
        } else {
            let [dres, dh, dhid, dpre] =
                disjoint(ag, [g.dres.prefix(ne), g.dh.prefix(ne), g.dhid.prefix(nf), g.dpre.prefix(nf)]);
            let [dw1, db1, dw2, db2] =
                disjoint(grads, [bp.fc1[0].range(), bp.fc1[1].range(), bp.fc2[0].range(), bp.fc2[1].range()]);
            dh.fill(0.0);
            let weights = [p(bp.fc1[0]), p(bp.fc1[1]), p(bp.fc2[0]), p(bp.fc2[1])];
            let saved = [act(a.h2, ne), act(a.pre, nf), act(a.hid, nf)];
            ffn::backward(dh, [dw1, db1, dw2, db2], dhid, dpre, dres, saved, weights, self.ffn());
        }
        let [dres, dh] = disjoint(ag, [g.dres.prefix(ne), g.dh.prefix(ne)]);
        let [dln_w, dln_b] = disjoint(grads, [bp.norm2[0].range(), bp.norm2[1].range()]);
        let (x, stats) = (act(a.ffn_in(), ne), [act(a.stats2[0], n), act(a.stats2[1], n)]);
        layernorm::backward(dres, dln_w, dln_b, dh, x, stats[0], stats[1], p(bp.norm2[0]));

        // Decoder blocks: cross-attention, then its norm; dres becomes d(stream after self-attention).
        if let (Some(xp), Some(xa), Some(mem)) = (bp.cross, a.cross, memory) {
            self.cross_backward(&xp, a, &xa, (w, acts, grads), ag, scratch, (batch, seq), mem);
        }

        // Attention: o_proj, attention, q/k/v projections, norm1.
        let [dres, dao, dq, dk, dv, dh] = disjoint(
            ag,
            [
                g.dres.prefix(ne),
                g.dao.prefix(ne),
                g.dq.prefix(ne),
                g.dk.prefix(nkv),
                g.dv.prefix(nkv),
                g.dh.prefix(ne),
            ],
        );
        let [dw, db] = disjoint(grads, [bp.proj[3][0].range(), bp.proj[3][1].range()]);
        dao.fill(0.0);
        linear::backward(Some(dao), dw, db, dres, act(a.ao, ne), p(bp.proj[3][0]), self.lin(e, e));
        dq.fill(0.0);
        dk.fill(0.0);
        dv.fill(0.0);
        let att = act(a.att, batch * d.n_heads * seq * seq);
        let qkv = [act(a.q, ne), act(a.k, nkv), act(a.v, nkv)];
        let work = &mut scratch[self.attn_scratch.range()];
        attention::backward([&mut *dq, &mut *dk, &mut *dv], work, dao, att, qkv, d, batch, (seq, seq));
        dh.fill(0.0);
        let h1 = act(a.h1, ne);
        for (j, (dy, width)) in [(&*dq, e), (&*dk, d.kv_dim()), (&*dv, d.kv_dim())].into_iter().enumerate() {
            let [dw, db] = disjoint(grads, [bp.proj[j][0].range(), bp.proj[j][1].range()]);
            linear::backward(Some(&mut *dh), dw, db, dy, h1, p(bp.proj[j][0]), self.lin(e, width));
        }
        let [dln_w, dln_b] = disjoint(grads, [bp.norm1[0].range(), bp.norm1[1].range()]);
        layernorm::backward(
            dres,
            dln_w,
            dln_b,
            dh,
            act(a.res_in, ne),
            act(a.stats1[0], n),
            act(a.stats1[1], n),
            p(bp.norm1[0]),
        );
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

/// The MoE FFN of one block over `n` tokens: reads `inp`, writes `out` (both acts ranges), fills
/// the routing buffers and writes the call's statistics (assignments, dropped, aux).
fn moe_forward(
    d: Moe,
    mp: &MoeParams,
    (inp, out): (core::ops::Range<usize>, core::ops::Range<usize>),
    (bufs, stats): (&[Slot; 12], Slot),
    w: &[f32],
    acts: &mut [f32],
    n: usize,
) {
    let ranges = [inp, out, stats.range()];
    let all: [core::ops::Range<usize>; 15] =
        core::array::from_fn(|i| if i < 3 { ranges[i].clone() } else { bufs[i - 3].range() });
    let [x, y, st, rest @ ..] = disjoint(acts, all);
    let mut b = moe::Buffers::from_slices(rest);
    let experts = (&w[mp.expert0[0].offset..], mp.layout());
    let s = moe::forward(y, &mut b, x, &w[mp.router.range()], experts, d, n);
    st.copy_from_slice(&[s.assignments as f32, s.dropped as f32, s.aux]);
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
