//! Incremental decoding with a KV cache: one new position per sequence, attending over the cache.
//!
//! A step embeds the new value at position `pos`, and in every block computes q/k/v for that
//! token only, stores its k and v in the cache at `pos`, and attends with `q` over positions
//! `0..=pos` — O(context) work per token instead of re-running the prefix. Buffers are one row
//! per sequence (planned for `max_batch`), and the cache is sized for `max_seq_len` positions.

use super::moe_ffn::moe_forward;
use super::{MemorySlots, Transformer, add_into, disjoint};
use crate::arena::{Buffers, Planner, Region, Slot};
use crate::error::{Error, Result, mul};
use crate::layers::{KvCache, KvDtype, attention, ffn, layernorm, linear};

/// Planned buffers of a decoding step.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Decode {
    pub(crate) cache: KvCache,
    /// Each sequence's input at the step's position (n × input_dim), and its prediction
    /// (n × output_dim) (acts).
    tok: Slot,
    pred: Slot,
    dims: (usize, usize),
    /// Residual stream, norm output and its statistics, q, k, v, attention output, a residual
    /// branch, the FFN hidden layer: one row per sequence (acts).
    x: Slot,
    h: Slot,
    stats: [Slot; 2],
    q: Slot,
    k: Slot,
    v: Slot,
    ao: Slot,
    tmp: Slot,
    pre: Slot,
    /// Scores of one query over the cache, and f32 copies of half-precision rows (scratch).
    scores: Slot,
    rows: [Slot; 2],
    /// MoE routing buffers for one token per sequence, and the call's statistics (acts).
    moe: [Slot; 12],
    moe_stats: Slot,
    /// Decoders: every block's cross-attention keys and values of the memory, computed once per
    /// sequence (acts, f32): `[layer][k|v][sequence][source position][G·D]`.
    cross_kv: Slot,
    /// Longest memory (source sequence) the cross buffers hold.
    max_src: usize,
}

impl Decode {
    pub(crate) fn plan(
        cfg: &super::TransformerConfig,
        dtype: KvDtype,
        (max_batch, t): (usize, usize),
        max_src: Option<usize>,
        p: &mut Planner,
    ) -> Result<Self> {
        let (e, kv, f) = (cfg.embed_dim, cfg.attn().kv_dim(), cfg.ffn_dim);
        let cache = KvCache { dtype, n_layers: cfg.num_layers, n_seq: max_batch, max_pos: t, kv_dim: kv };
        let region = p.take(Region::KvCache, cache.words().ok_or(Error::SizeOverflow)?)?;
        debug_assert_eq!(region.offset, 0, "the cache is the only tenant of its region");
        let mut acts = |w: usize| p.take(Region::Acts, mul(max_batch, w)?);
        let (tok, pred) = (acts(cfg.input_dim)?, acts(cfg.output_dim)?);
        let (x, h, stats) = (acts(e)?, acts(e)?, [acts(1)?, acts(1)?]);
        let (q, k, v, ao, tmp, pre) = (acts(e)?, acts(kv)?, acts(kv)?, acts(e)?, acts(e)?, acts(f)?);
        // f32 caches are read in place; half-precision rows are widened into scratch.
        let widened = if dtype == KvDtype::F32 { 0 } else { mul(t, kv)? };
        let scores = p.take(Region::Scratch, t.max(max_src.unwrap_or(0)))?;
        let rows = [p.take(Region::Scratch, widened)?, p.take(Region::Scratch, widened)?];
        let dims = (cfg.input_dim, cfg.output_dim);
        let (mut moe, mut moe_stats) = ([Slot::default(); 12], Slot::default());
        if let Some(d) = cfg.moe_layer() {
            // Capacity applies per call: here, one token of each sequence.
            let lens =
                crate::layers::moe::checked_buffer_lens(&d, max_batch, false).ok_or(Error::SizeOverflow)?;
            for (slot, len) in moe.iter_mut().zip(lens) {
                *slot = p.take(Region::Acts, len)?;
            }
            moe_stats = p.take(Region::Acts, 3)?;
        }
        let cross_len = match max_src {
            Some(src) => mul(mul(mul(2 * cfg.num_layers, max_batch)?, src)?, kv)?,
            None => 0,
        };
        let cross_kv = p.take(Region::Acts, cross_len)?;
        let max_src = max_src.unwrap_or(0);
        Ok(Decode {
            cross_kv,
            max_src,
            cache,
            tok,
            pred,
            dims,
            x,
            h,
            stats,
            q,
            k,
            v,
            ao,
            tmp,
            pre,
            scores,
            rows,
            moe,
            moe_stats,
        })
    }

    /// Where the next step's inputs go: n × input_dim.
    pub(crate) fn token_mut<'b>(&self, bufs: &'b mut Buffers<'_>, n: usize) -> &'b mut [f32] {
        &mut bufs.acts[self.tok.prefix(n * self.dims.0)]
    }

    /// Feed each sequence's last prediction back as its next input (decoders: output_dim =
    /// input_dim).
    pub(crate) fn feed_back(&self, bufs: &mut Buffers<'_>, n: usize) {
        let [tok, pred] =
            disjoint(bufs.acts, [self.tok.prefix(n * self.dims.0), self.pred.prefix(n * self.dims.1)]);
        tok.copy_from_slice(pred);
    }

    /// Copy the last step's predictions into rows `[b, step]` of an n × steps × output_dim slot.
    pub(crate) fn store_prediction(
        &self,
        bufs: &mut Buffers<'_>,
        n: usize,
        dst: Slot,
        (steps, step): (usize, usize),
    ) {
        let od = self.dims.1;
        let [pred, out] = disjoint(bufs.acts, [self.pred.prefix(n * od), dst.prefix(n * steps * od)]);
        for (b, y) in pred.chunks_exact(od).enumerate() {
            out[(b * steps + step) * od..][..od].copy_from_slice(y);
        }
    }

    /// Rows of the cross-attention keys (`kv` 0) or values (1) of `layer` for `n` sequences of
    /// `src` memory positions, sequence-major.
    fn cross_rows(&self, layer: usize, kv: usize, n: usize, src: usize) -> core::ops::Range<usize> {
        let kvd = self.cache.kv_dim;
        let block = self.cache.n_seq * self.max_src * kvd;
        let start = self.cross_kv.offset + (2 * layer + kv) * block;
        start..start + n * src * kvd
    }

    /// Copy the last step's predictions into `out[b, step]` of n × steps × output_dim.
    pub(crate) fn copy_prediction(
        &self,
        bufs: &Buffers<'_>,
        n: usize,
        out: &mut [f32],
        (steps, step): (usize, usize),
    ) {
        let od = self.dims.1;
        for (b, y) in bufs.acts[self.pred.prefix(n * od)].chunks_exact(od).enumerate() {
            out[(b * steps + step) * od..][..od].copy_from_slice(y);
        }
    }
}

impl Transformer {
    /// The decoding buffers, when a KV cache was planned.
    pub(crate) fn decoder(&self) -> Option<Decode> {
        // Without the `kv-cache` feature no cache is ever planned, and no cached path is linked.
        if cfg!(feature = "kv-cache") { self.decode_plan() } else { None }
    }

    /// Decoders: compute every block's cross-attention keys and values of the memory once, for
    /// the decoding steps that follow.
    pub(crate) fn prepare_cross(&self, dec: &Decode, bufs: &mut Buffers<'_>, n: usize, mem: MemorySlots) {
        let (e, kvd) = (self.cfg.embed_dim, self.cfg.attn().kv_dim());
        let (w, acts) = (&*bufs.params, &mut *bufs.acts);
        for layer in 0..self.cfg.num_layers {
            let Some(xp) = self.block(layer).0.cross else { return };
            for kv in [0, 1] {
                let [m, dst] =
                    disjoint(acts, [mem.acts.prefix(n * mem.len * e), dec.cross_rows(layer, kv, n, mem.len)]);
                let [wt, bias] = xp.proj[1 + kv];
                linear::forward(dst, m, &w[wt.range()], &w[bias.range()], self.lin(e, kvd));
            }
        }
    }

    /// Decode position `pos` of `n` sequences: reads each sequence's input at `pos` from the
    /// token slot, writes each prediction to the prediction slot and the position's keys and
    /// values into the cache. Positions `0..pos` must already be in the cache; decoders also
    /// attend over the `src` memory positions prepared by [`Transformer::prepare_cross`].
    pub(crate) fn decode_step(
        &self,
        dec: &Decode,
        bufs: &mut Buffers<'_>,
        n: usize,
        pos: usize,
        src: Option<usize>,
    ) {
        let c = &self.cfg;
        let (e, d) = (c.embed_dim, self.attn());
        let (kvd, ne) = (d.kv_dim(), n * e);
        let (w, acts, scratch, cache) =
            (&*bufs.params, &mut *bufs.acts, &mut *bufs.scratch, &mut *bufs.kv_cache);
        let p = |s: Slot| &w[s.range()];
        let [tok, x] = disjoint(acts, [dec.tok.prefix(n * c.input_dim), dec.x.prefix(ne)]);
        linear::forward(x, tok, p(self.input_proj[0]), p(self.input_proj[1]), self.lin(c.input_dim, e));
        let pos_row = &p(self.pos_embed)[pos * e..][..e];
        x.chunks_exact_mut(e).for_each(|r| r.iter_mut().zip(pos_row).for_each(|(v, &q)| *v += q));
        for layer in 0..c.num_layers {
            let (bp, _) = self.block(layer);
            let [x, h, mean, rstd] = disjoint(
                acts,
                [dec.x.prefix(ne), dec.h.prefix(ne), dec.stats[0].prefix(n), dec.stats[1].prefix(n)],
            );
            layernorm::forward(h, mean, rstd, x, p(bp.norm1[0]), p(bp.norm1[1]));
            let [h, q, k, v] = disjoint(
                acts,
                [dec.h.prefix(ne), dec.q.prefix(ne), dec.k.prefix(n * kvd), dec.v.prefix(n * kvd)],
            );
            linear::forward(q, h, p(bp.proj[0][0]), p(bp.proj[0][1]), self.lin(e, e));
            linear::forward(k, h, p(bp.proj[1][0]), p(bp.proj[1][1]), self.lin(e, kvd));
            linear::forward(v, h, p(bp.proj[2][0]), p(bp.proj[2][1]), self.lin(e, kvd));
            for b in 0..n {
                dec.cache.store(cache, (0, layer, b, pos), &k[b * kvd..][..kvd]);
                dec.cache.store(cache, (1, layer, b, pos), &v[b * kvd..][..kvd]);
            }
            let [q, ao] = disjoint(acts, [dec.q.prefix(ne), dec.ao.prefix(ne)]);
            let [scores, krow, vrow] =
                disjoint(scratch, [dec.scores.range(), dec.rows[0].range(), dec.rows[1].range()]);
            for b in 0..n {
                let keys = dec.cache.rows(cache, (0, layer, b), pos + 1, krow);
                let values = dec.cache.rows(cache, (1, layer, b), pos + 1, vrow);
                attention::forward_one(
                    &mut ao[b * e..][..e],
                    &q[b * e..][..e],
                    [keys, values],
                    scores,
                    d,
                    pos + 1,
                );
            }
            let [ao, tmp] = disjoint(acts, [dec.ao.prefix(ne), dec.tmp.prefix(ne)]);
            linear::forward(tmp, ao, p(bp.proj[3][0]), p(bp.proj[3][1]), self.lin(e, e));
            add_into(acts, dec.x.prefix(ne), dec.tmp.prefix(ne));
            if let (Some(xp), Some(src)) = (bp.cross, src) {
                // x += o_proj(cross_attn(norm2(x), memory)), over the prepared keys and values.
                let [x, h, mean, rstd] = disjoint(
                    acts,
                    [dec.x.prefix(ne), dec.h.prefix(ne), dec.stats[0].prefix(n), dec.stats[1].prefix(n)],
                );
                layernorm::forward(h, mean, rstd, x, p(xp.norm[0]), p(xp.norm[1]));
                let [h, q] = disjoint(acts, [dec.h.prefix(ne), dec.q.prefix(ne)]);
                linear::forward(q, h, p(xp.proj[0][0]), p(xp.proj[0][1]), self.lin(e, e));
                let scores = &mut scratch[dec.scores.range()];
                let dx = crate::layers::Attn { causal: false, ..d };
                for b in 0..n {
                    let (kr, vr) = (dec.cross_rows(layer, 0, n, src), dec.cross_rows(layer, 1, n, src));
                    let rows =
                        |r: core::ops::Range<usize>| r.start + b * src * kvd..r.start + (b + 1) * src * kvd;
                    let [q, ao, keys, values] =
                        disjoint(acts, [dec.q.prefix(ne), dec.ao.prefix(ne), rows(kr), rows(vr)]);
                    attention::forward_one(
                        &mut ao[b * e..][..e],
                        &q[b * e..][..e],
                        [keys, values],
                        scores,
                        dx,
                        src,
                    );
                }
                let [ao, tmp] = disjoint(acts, [dec.ao.prefix(ne), dec.tmp.prefix(ne)]);
                linear::forward(tmp, ao, p(xp.proj[3][0]), p(xp.proj[3][1]), self.lin(e, e));
                add_into(acts, dec.x.prefix(ne), dec.tmp.prefix(ne));
            }
            let [x, h, mean, rstd] = disjoint(
                acts,
                [dec.x.prefix(ne), dec.h.prefix(ne), dec.stats[0].prefix(n), dec.stats[1].prefix(n)],
            );
            layernorm::forward(h, mean, rstd, x, p(bp.norm2[0]), p(bp.norm2[1]));
            if let (Some(d), Some(mp)) = (self.moe_layer(), bp.moe) {
                let io = (dec.h.prefix(ne), dec.tmp.prefix(ne));
                moe_forward(d, &mp, io, (&dec.moe, dec.moe_stats), w, acts, n);
            } else {
                let [h, pre, tmp] =
                    disjoint(acts, [dec.h.prefix(ne), dec.pre.prefix(n * c.ffn_dim), dec.tmp.prefix(ne)]);
                let weights = [p(bp.fc1[0]), p(bp.fc1[1]), p(bp.fc2[0]), p(bp.fc2[1])];
                ffn::forward(tmp, pre, None, h, weights, self.ffn());
            }
            add_into(acts, dec.x.prefix(ne), dec.tmp.prefix(ne));
        }
        let [x, h, mean, rstd] = disjoint(
            acts,
            [dec.x.prefix(ne), dec.h.prefix(ne), dec.stats[0].prefix(n), dec.stats[1].prefix(n)],
        );
        layernorm::forward(h, mean, rstd, x, p(self.final_norm[0]), p(self.final_norm[1]));
        let [h, pred] = disjoint(acts, [dec.h.prefix(ne), dec.pred.prefix(n * c.output_dim)]);
        linear::forward(pred, h, p(self.head[0]), p(self.head[1]), self.lin(e, c.output_dim));
    }
}
