//! Planning: where every tensor lies. Block 0's parameter and activation slots, the gradient
//! buffers, the model's own tensors; every other block is block 0 shifted by a stride.

use super::moe_ffn::MoeParams;
use super::{Role, Transformer, TransformerConfig, decode};
use crate::arena::{Layout, Planner, Region, Slot};
use crate::error::{Error, Result, ensure, mul};
use crate::layers::moe::{self, MAX_ASSIGNMENTS, Moe};
use crate::ops::Kernels;

/// Parameters of one block, in `state_dict` order.
#[derive(Clone, Copy, Debug, Default)]
pub(super) struct BlockParams {
    pub(super) norm1: [Slot; 2],
    /// q, k, v, o projections: weight and bias each.
    pub(super) proj: [[Slot; 2]; 4],
    pub(super) norm2: [Slot; 2],
    /// Dense FFN (unused with MoE).
    pub(super) fc1: [Slot; 2],
    pub(super) fc2: [Slot; 2],
    /// The MoE FFN, when configured.
    pub(super) moe: Option<MoeParams>,
    /// Decoder blocks: cross-attention's norm (`norm2`) and q/k/v/o projections.
    pub(super) cross: Option<CrossParams>,
}

/// Cross-attention parameters of a decoder block.
#[derive(Clone, Copy, Debug, Default)]
pub(super) struct CrossParams {
    pub(super) norm: [Slot; 2],
    pub(super) proj: [[Slot; 2]; 4],
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
                // Experts 0 and 1 give the stride; the others repeat it (O(1) in num_experts).
                // A single expert still has a stride (its own size, aligned): expert 1 is then
                // planned on a scratch copy and dropped.
                let mut before1 = *p;
                for ex in 0..2 {
                    let mut scratch = *p;
                    let q = if ex < m.num_experts {
                        before1 = *p;
                        &mut *p
                    } else {
                        &mut scratch
                    };
                    let [w1, b1] = pair(q, f, e)?;
                    let [w2, b2] = pair(q, e, f)?;
                    if ex == 0 {
                        expert0 = [w1, b1, w2, b2];
                    } else if ex == 1 {
                        stride = w1.offset - expert0[0].offset;
                    }
                    // Experts are laid out identically, one stride apart.
                    debug_assert_eq!(b2.offset, expert0[3].offset + ex * stride);
                }
                if m.num_experts > 2 {
                    p.repeat(&before1, m.num_experts - 2)?;
                }
                ([Slot::default(); 2], [Slot::default(); 2], Some(MoeParams { router, expert0, stride }))
            }
        };
        Ok(BlockParams { norm1, proj, norm2, fc1, fc2, moe, cross })
    }

    /// Move every slot `by` floats on, in place (block i's are block 0's moved i strides).
    fn shift(&mut self, by: usize) {
        let pairs = self.norm1.iter_mut().chain(&mut self.norm2).chain(&mut self.fc1).chain(&mut self.fc2);
        pairs.chain(self.proj.iter_mut().flatten()).for_each(|s| s.offset += by);
        if let Some(m) = &mut self.moe {
            m.router.offset += by;
            m.expert0.iter_mut().for_each(|s| s.offset += by);
        }
        if let Some(c) = &mut self.cross {
            c.norm.iter_mut().chain(c.proj.iter_mut().flatten()).for_each(|s| s.offset += by);
        }
    }
}

/// Activations of one block (training: one set per layer; inference: one set shared).
#[derive(Clone, Copy, Debug, Default)]
pub(super) struct BlockActs {
    /// Residual stream entering the block, (N, E).
    pub(super) res_in: Slot,
    /// After the attention residual, (N, E); equals `res_in` in inference.
    pub(super) res_mid: Slot,
    /// Leaving the block, (N, E); equals `res_in` in inference.
    pub(super) res_out: Slot,
    /// norm1 output, (N, E), with its row statistics. A lean training plan keeps no norm
    /// outputs (h1, h2 of a dense FFN, the final norm's): forward writes them into the work region
    /// ([`Grads::dh`], [`Grads::hf`]) and backward recomputes them from the statistics.
    pub(super) h1: Slot,
    pub(super) stats1: [Slot; 2],
    pub(super) q: Slot,
    pub(super) k: Slot,
    pub(super) v: Slot,
    /// Attention probabilities (B, H, T, T); unused in inference and in lean training plans (a
    /// tile of scratch serves, and backward recomputes them).
    pub(super) att: Slot,
    /// Attention output before o_proj, (N, E).
    pub(super) ao: Slot,
    pub(super) h2: Slot,
    pub(super) stats2: [Slot; 2],
    /// FFN pre- and post-activation, (N, F); `hid` unused in inference (in place) and in lean
    /// training plans (forward writes it into [`Grads::dhid`]; backward recomputes it).
    pub(super) pre: Slot,
    pub(super) hid: Slot,
    /// Output of o_proj / fc2 before the residual add (inference only).
    pub(super) tmp: Slot,
    /// MoE routing table and expert activations (`moe::buffer_lens` order), and the call's
    /// statistics: assignments, dropped, aux loss.
    pub(super) moe: [Slot; 12],
    pub(super) moe_stats: Slot,
    /// Decoder blocks: cross-attention's activations.
    pub(super) cross: Option<CrossActs>,
}

/// Cross-attention activations of a decoder block: the stream after it, its norm's output and
/// statistics, q (from the decoder), k and v (from the memory), probabilities (Tsrc × T tiles),
/// and its output before o_proj.
#[derive(Clone, Copy, Debug, Default)]
pub(super) struct CrossActs {
    pub(super) res: Slot,
    pub(super) h: Slot,
    pub(super) stats: [Slot; 2],
    pub(super) q: Slot,
    pub(super) k: Slot,
    pub(super) v: Slot,
    pub(super) att: Slot,
    pub(super) ao: Slot,
}

impl BlockActs {
    /// The stream the FFN sub-layer reads: after cross-attention in decoder blocks.
    pub(super) fn ffn_in(&self) -> Slot {
        self.cross.map_or(self.res_mid, |x| x.res)
    }

    /// Lay out one block's activations: every buffer per layer in training, one shared set with a
    /// `tmp` for the residual adds in inference. `(n, ne, nkv, nf)` are the token count and the
    /// widths times tokens; `att_len` the probabilities of one layer; `lean` a lean training plan.
    fn plan(
        p: &mut Planner,
        (training, lean): (bool, bool),
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
        // What a lean plan recomputes in backward; MoE's backward reads its input, h2.
        let kept = |len: usize| if lean { 0 } else { len };
        let h2 = if moe.is_some() { ne } else { kept(ne) };
        let mut a = if training {
            BlockActs {
                res_in,
                res_mid: acts(ne)?,
                res_out: acts(ne)?,
                h1: acts(kept(ne))?,
                stats1: [acts(n)?, acts(n)?],
                q: acts(ne)?,
                k: acts(nkv)?,
                v: acts(nkv)?,
                att: acts(att_len)?,
                ao: acts(ne)?,
                h2: acts(h2)?,
                stats2: [acts(n)?, acts(n)?],
                pre: acts(nf)?,
                hid: acts(kept(nf))?,
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
            let lens = moe::checked_buffer_lens(&d, n, training).ok_or(Error::SizeOverflow)?;
            for (slot, len) in a.moe.iter_mut().zip(lens) {
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

    /// Block 0's activations become block `i`'s, in place: every slot moves `i` strides on,
    /// except the stream entering the block, which for i > 0 is the one leaving block i − 1.
    fn move_to_block(&mut self, i: usize, stride: usize) {
        if i == 0 {
            return;
        }
        let by = i * stride;
        self.res_in = self.res_out.shifted(by - stride);
        let singles = [
            &mut self.res_mid,
            &mut self.res_out,
            &mut self.h1,
            &mut self.q,
            &mut self.k,
            &mut self.v,
            &mut self.att,
            &mut self.ao,
            &mut self.h2,
            &mut self.pre,
            &mut self.hid,
            &mut self.tmp,
            &mut self.moe_stats,
        ];
        let many = self.stats1.iter_mut().chain(&mut self.stats2).chain(&mut self.moe);
        singles.into_iter().chain(many).for_each(|s| s.offset += by);
        if let Some(x) = &mut self.cross {
            let singles = [&mut x.res, &mut x.h, &mut x.q, &mut x.k, &mut x.v, &mut x.att, &mut x.ao];
            singles.into_iter().chain(&mut x.stats).for_each(|s| s.offset += by);
        }
    }
}

/// Gradient buffers, reused by every layer in backward.
///
/// Only `dres` (d(residual stream)) lives through the whole backward pass. The others serve one
/// sub-layer at a time — the head, an FFN, an attention, the input projection — so they share
/// one work region, each sub-layer's set laid out from its start: `dh` (d(a norm's output)) first
/// in every set, where the attention's set keeps `dao`, which is dead by the time `dh` is written.
#[derive(Clone, Copy, Debug, Default)]
pub(super) struct Grads {
    pub(super) dres: Slot,
    pub(super) dh: Slot,
    /// Equals `dh`.
    pub(super) dao: Slot,
    pub(super) dq: Slot,
    pub(super) dk: Slot,
    pub(super) dv: Slot,
    /// d(FFN hidden), then in place d(its pre-activation).
    pub(super) dhid: Slot,
    pub(super) dpooled: Slot,
    pub(super) dout: Slot,
    /// Lean plans: the final norm's output, written by forward, read by an autoregressive head's
    /// backward (the head's set is the first to use the work region).
    pub(super) hf: Slot,
    pub(super) dinp: Slot,
    /// MoE gradient buffers (`moe::grad_buffer_lens` order).
    pub(super) dmoe: [Slot; 5],
    /// Decoder: gradients of cross-attention's k and v (memory tokens × kv width).
    pub(super) dkx: Slot,
    pub(super) dvx: Slot,
}

impl Grads {
    /// Lay out the gradient buffers: `dres`, then the work region as long as the longest
    /// sub-layer's set. `(n, ne, nkv, nf)` as for [`BlockActs::plan`]; `head` the lengths of
    /// `dout`, `dpooled` and (lean) `hf`; `skv` the memory's k/v length (decoders, else 0).
    /// `dh_in_acts`: a lean plan's dense blocks without cross-attention take d(norm output) and
    /// `dao` in the block's `res_out` slot instead (see [`Transformer::dh_in_acts`]).
    #[allow(clippy::too_many_arguments)] // the planner, the sizes, and where dh lies
    fn plan(
        p: &mut Planner,
        (n, ne, nkv, nf): (usize, usize, usize, usize),
        head: (usize, usize, usize),
        input: usize,
        moe: Option<Moe>,
        skv: usize,
        dh_in_acts: bool,
    ) -> Result<Self> {
        let mut g = Grads { dres: p.take(Region::ActGrads, ne)?, ..Grads::default() };
        let mut sets = [Layout::default(); 4];
        let [head_set, ffn, attn, inp] = &mut sets;
        (g.dh, g.dout, g.dpooled) = (head_set.take(ne)?, head_set.take(head.0)?, head_set.take(head.1)?);
        g.hf = head_set.take(head.2)?;
        let sub_ne = if dh_in_acts { 0 } else { ne };
        ffn.take(sub_ne)?; // dh
        g.dhid = ffn.take(nf)?;
        if let Some(m) = moe {
            let lens = moe::checked_grad_buffer_lens(&m, n).ok_or(Error::SizeOverflow)?;
            for (slot, len) in g.dmoe.iter_mut().zip(lens) {
                *slot = ffn.take(len)?;
            }
        }
        g.dao = attn.take(sub_ne)?; // and dh, once dao is consumed
        (g.dq, g.dk, g.dv) = (attn.take(ne)?, attn.take(nkv)?, attn.take(nkv)?);
        (g.dkx, g.dvx) = (attn.take(skv)?, attn.take(skv)?);
        g.dinp = inp.take(input)?;
        let longest = sets.iter().map(|l| l.len()).max().unwrap_or(0);
        let work = p.take(Region::ActGrads, longest)?;
        let at = |s: Slot| s.shifted(work.offset);
        Ok(Grads {
            dres: g.dres,
            dh: at(g.dh),
            dao: at(g.dao),
            dq: at(g.dq),
            dk: at(g.dk),
            dv: at(g.dv),
            dhid: at(g.dhid),
            dpooled: at(g.dpooled),
            dout: at(g.dout),
            hf: at(g.hf),
            dinp: at(g.dinp),
            dmoe: g.dmoe.map(at),
            dkx: at(g.dkx),
            dvx: at(g.dvx),
        })
    }
}

/// What [`Transformer::plan_role`] derives from the config to size a block's buffers: tokens
/// and tokens times the widths `(n, ne, nkv, nf)`, one layer's attention probabilities, a
/// decoder's memory k/v and cross-attention probabilities, and its longest memory.
struct Sizes {
    tokens: (usize, usize, usize, usize),
    att_len: usize,
    cross: Option<(usize, usize)>,
    max_src: Option<usize>,
}

impl Transformer {
    /// Check the config and lay out every tensor of a plain transformer for `max_batch` sequences
    /// of at most `seq` tokens (`seq ≤ max_seq_len`, which sizes only `pos_embed`).
    pub(crate) fn plan(
        cfg: &TransformerConfig,
        (max_batch, seq): (usize, usize),
        keep: (bool, bool),
        p: &mut Planner,
    ) -> Result<Self> {
        Self::plan_role(cfg, Role::Plain, (max_batch, seq), keep, p)
    }

    /// [`Transformer::plan`] for a stack of a given role (encoder-decoder halves). `(training,
    /// lean)`: a training plan, and whether it recomputes the attention probabilities in backward
    /// ([`crate::Memory::Lean`]) rather than keeping them.
    pub(crate) fn plan_role(
        cfg: &TransformerConfig,
        role: Role,
        (max_batch, t): (usize, usize),
        (training, lean): (bool, bool),
        p: &mut Planner,
    ) -> Result<Self> {
        let lean = training && lean;
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
                let probs = mul(mul(max_batch, d.n_heads)?, mul(s, t)?)?;
                Some((mul(mul(max_batch, s)?, d.kv_dim())?, if lean { 0 } else { probs }))
            }
            None => None,
        };
        let input_proj = [p.take(Region::Params, mul(e, cfg.input_dim)?)?, p.take(Region::Params, e)?];
        let pos_embed = p.take(Region::Params, mul(cfg.max_seq_len, e)?)?;
        let res_in = p.take(Region::Acts, ne)?;
        let at_blocks = *p;
        let mut block0: Option<(BlockParams, BlockActs)> = None;
        let mut strides = (0, 0);
        // Blocks 0 and 1 give the strides; the others repeat block 1 (O(1) in num_layers).
        let mut before1 = *p;
        for i in 0..cfg.num_layers.min(2) {
            before1 = *p;
            let params = BlockParams::plan(cfg, max_src.is_some(), p)?;
            // Inference shares one set of activation buffers between all blocks.
            let a = match block0 {
                Some((_, a0)) if !training => a0,
                _ => BlockActs::plan(
                    p,
                    (training, lean),
                    res_in,
                    (n, ne, nkv, nf),
                    if lean { 0 } else { mul(mul(max_batch, d.n_heads)?, tt)? },
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
        ensure(block0.is_some(), "num_layers", "must be at least 1")?;
        if cfg.num_layers > 2 {
            p.repeat(&before1, cfg.num_layers - 2)?;
        }
        let final_norm = [p.take(Region::Params, e)?, p.take(Region::Params, e)?];
        let has_head = role != Role::Encoder;
        let head = if has_head {
            [p.take(Region::Params, mul(cfg.output_dim, e)?)?, p.take(Region::Params, cfg.output_dim)?]
        } else {
            [Slot::default(); 2]
        };
        // A lean plan's final norm writes into the work region (Grads::hf), except an encoder's:
        // its output is the memory the decoder reads.
        let keep_hf = !lean || !has_head;
        let hf = p.take(Region::Acts, if keep_hf { ne } else { 0 })?;
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
        let at_grads = *p;
        if training {
            let pooled_len = if cfg.autoregressive || !has_head { 0 } else { mul(max_batch, e)? };
            // A lean regression head's final norm writes into dh; an autoregressive one needs both.
            let hf = if keep_hf || !cfg.autoregressive { 0 } else { ne };
            let head = (mul(out_rows, cfg.output_dim)?, pooled_len, hf);
            let skv = cross.map_or(0, |c| c.0);
            let nf = if cfg.moe.is_some() { 0 } else { nf };
            let dh_in_acts = Transformer::dh_in_acts_for(cfg, lean, max_src.is_some());
            Grads::plan(p, (n, ne, nkv, nf), head, mul(n, cfg.input_dim)?, cfg.moe_layer(), skv, dh_in_acts)?;
        }
        // The layer says how much scratch it needs (lean: a second tile, where backward recomputes
        // the probabilities), for self-attention (t keys) and cross-attention (src keys); checked
        // here, since src · t is not bounded by anything planned above.
        let src = max_src.unwrap_or(0);
        let tile = |tk| d.checked_scratch_len(t, tk, lean).ok_or(Error::SizeOverflow);
        let scratch = tile(t)?.max(tile(src)?);
        let attn_scratch = p.take(Region::Scratch, scratch)?;
        let at_decode = *p;
        if let Some(dtype) = cfg.kv_cache {
            decode::Decode::plan(cfg, dtype, (max_batch, t), max_src, p)?;
        }
        Ok(Transformer {
            role,
            attn_scratch,
            cfg: *cfg,
            training,
            lean,
            dims: (max_batch, t),
            input_proj,
            pos_embed,
            res_in,
            at_blocks,
            at_grads,
            at_decode,
            strides,
            final_norm,
            head,
            hf,
            statsf,
            pooled,
            out,
            kernels: Kernels::Auto,
        })
    }

    /// The sizes planning derived from the config (it checked every product).
    fn sizes(&self) -> Sizes {
        let (c, (b, t), d) = (&self.cfg, self.dims, self.cfg.attn());
        let n = b * t;
        let max_src = match self.role {
            Role::Decoder { max_src } => Some(max_src),
            Role::Plain | Role::Encoder => None,
        };
        let probs = |tk: usize| if self.lean { 0 } else { b * d.n_heads * tk * t };
        let cross = max_src.map(|s| (b * s * d.kv_dim(), probs(s)));
        Sizes {
            tokens: (n, n * c.embed_dim, n * d.kv_dim(), n * c.ffn_dim),
            att_len: probs(t),
            cross,
            max_src,
        }
    }

    /// Block `i`'s parameter and activation slots: block 0's, replayed from the planner as it
    /// stood before them, shifted by `i` strides.
    #[inline(always)]
    pub(super) fn block(&self, i: usize) -> (BlockParams, BlockActs) {
        let s = self.sizes();
        let mut p = self.at_blocks;
        // (No `Result::expect`: formatting the error would link core::fmt into firmware.)
        let Ok(mut bp) = BlockParams::plan(&self.cfg, s.max_src.is_some(), &mut p) else {
            unreachable!("planned once from the same state")
        };
        let moe = self.cfg.moe_layer();
        let kind = (self.training, self.lean);
        let Ok(mut a) = BlockActs::plan(&mut p, kind, self.res_in, s.tokens, s.att_len, moe, s.cross) else {
            unreachable!("planned once from the same state")
        };
        bp.shift(i * self.strides.0);
        a.move_to_block(i, self.strides.1);
        (bp, a)
    }

    /// The gradient buffers (training plans; empty slots otherwise), replayed.
    pub(super) fn grads(&self) -> Grads {
        if !self.training {
            return Grads::default();
        }
        let (c, (b, _)) = (&self.cfg, self.dims);
        let Sizes { tokens: (n, ne, nkv, nf), cross, .. } = self.sizes();
        let has_head = self.role != Role::Encoder;
        let out_rows = if !has_head {
            0
        } else if c.autoregressive {
            n
        } else {
            b
        };
        let pooled_len = if c.autoregressive || !has_head { 0 } else { b * c.embed_dim };
        let nf = if c.moe.is_some() { 0 } else { nf };
        let hf = if self.lean && has_head && c.autoregressive { n * c.embed_dim } else { 0 };
        let head = (out_rows * c.output_dim, pooled_len, hf);
        let skv = cross.map_or(0, |x| x.0);
        let mut p = self.at_grads;
        let (moe, dh_in_acts) = (c.moe_layer(), self.dh_in_acts());
        let planned = Grads::plan(&mut p, (n, ne, nkv, nf), head, n * c.input_dim, moe, skv, dh_in_acts);
        let Ok(g) = planned else { unreachable!("planned once from the same state") };
        g
    }

    /// Whether backward takes d(norm output) and d(attention output) in each block's `res_out`
    /// slot, which the backward pass has consumed by then (the final norm's or the next block's
    /// norm1 read it): lean plans of dense blocks without cross-attention. (MoE's backward and
    /// cross-attention's keep them in the work region.)
    pub(super) fn dh_in_acts(&self) -> bool {
        Self::dh_in_acts_for(&self.cfg, self.lean, matches!(self.role, Role::Decoder { .. }))
    }

    fn dh_in_acts_for(cfg: &TransformerConfig, lean: bool, cross: bool) -> bool {
        lean && cfg.moe_layer().is_none() && !cross
    }

    /// The decoding buffers, when a KV cache was planned, replayed.
    pub(super) fn decode_plan(&self) -> Option<decode::Decode> {
        let dtype = self.cfg.kv_cache?;
        let mut p = self.at_decode;
        let Ok(d) = decode::Decode::plan(&self.cfg, dtype, self.dims, self.sizes().max_src, &mut p) else {
            unreachable!("planned once from the same state")
        };
        Some(d)
    }
}
