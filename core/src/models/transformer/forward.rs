//! The forward pass: input projection and positions, the blocks (self-attention,
//! cross-attention in decoders, dense or MoE FFN), the final norm and the head.

use super::moe_ffn::moe_forward;
use super::plan::{BlockActs, BlockParams, CrossActs, CrossParams, Grads};
use super::{MemorySlots, Role, Transformer, add_into, disjoint};
use crate::arena::{Buffers, Slot};
use crate::layers::{Attn, attention, ffn, layernorm, linear, pool, position};

impl Transformer {
    /// Forward pass over `batch` sequences of `seq` tokens read from `acts[inp]`; leaves in acts
    /// everything backward reads.
    ///
    /// `memory`: the encoder's output, which a decoder's cross-attention reads.
    #[inline(never)] // its frame (block slots, carved slices) is not the caller's: a small stack
    pub(crate) fn forward(
        &self,
        bufs: &mut Buffers<'_>,
        inp: Slot,
        (batch, seq): (usize, usize),
        memory: Option<&MemorySlots>,
    ) {
        let c = &self.cfg;
        let (e, n) = (c.embed_dim, batch * seq);
        let ne = n * e;
        let (w, acts, scratch) = (&*bufs.params, &mut *bufs.acts, &mut *bufs.scratch);
        // A lean plan writes the norms' outputs into the slots their sub-layer's output will take
        // (res_mid, res_out) and the FFN's post-activation and the final norm's output into the
        // work region, which is free until backward; backward recomputes what it needs of them.
        let (ag, g) = (&mut *bufs.act_grads, if self.lean { self.grads() } else { Grads::default() });
        let [x, res] = disjoint(acts, [inp.prefix(n * c.input_dim), self.res_in.prefix(ne)]);
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
            self.block_forward(&bp, &a, w, (acts, ag, &g), scratch, (batch, seq), memory);
        }
        let last = self.block(c.num_layers - 1).1.res_out;
        let out_rows = match self.role {
            Role::Encoder => 0,
            _ if c.autoregressive => n,
            _ => batch,
        };
        let (nw, nb) = (&w[self.final_norm[0].range()], &w[self.final_norm[1].range()]);
        // The final norm's output: kept in acts (an encoder's memory; every plan but a lean one),
        // or written into the work region, where a regression head, which reads it only here,
        // may take backward's dh.
        let kept = self.hf.len > 0;
        let hf_work = if c.autoregressive { g.hf } else { g.dh };
        let stats = [self.statsf[0].prefix(n), self.statsf[1].prefix(n)];
        if kept {
            let [res, hf, mean, rstd] =
                disjoint(acts, [last.prefix(ne), self.hf.prefix(ne), stats[0].clone(), stats[1].clone()]);
            layernorm::forward(hf, mean, rstd, res, nw, nb);
        } else {
            let [res, mean, rstd] = disjoint(acts, [last.prefix(ne), stats[0].clone(), stats[1].clone()]);
            layernorm::forward(&mut ag[hf_work.prefix(ne)], mean, rstd, res, nw, nb);
        }
        if self.role == Role::Encoder {
            return; // The final norm's output is the memory; no head.
        }
        let (hw, hb) = (&w[self.head[0].range()], &w[self.head[1].range()]);
        let (lin, out) = (self.lin(e, c.output_dim), self.out.prefix(out_rows * c.output_dim));
        // The head reads `hf` (autoregressive) or its mean over each sequence (`pooled`).
        let y = if c.autoregressive { out.clone() } else { self.pooled.prefix(batch * e) };
        let (hf, y): (&[f32], &mut [f32]) = if kept {
            let [hf, y] = disjoint(acts, [self.hf.prefix(ne), y]);
            (hf, y)
        } else {
            (&ag[hf_work.prefix(ne)], &mut acts[y])
        };
        if c.autoregressive {
            linear::forward(y, hf, hw, hb, lin);
        } else {
            pool::forward(y, hf, e, seq);
            let [pooled, out] = disjoint(acts, [self.pooled.prefix(batch * e), out]);
            linear::forward(out, pooled, hw, hb, lin);
        }
    }

    /// One block: `x += o_proj(attn(norm1(x)))`, then `x += ffn(norm2(x))`.
    #[allow(clippy::too_many_arguments)] // the block, the carved regions, the shape, the memory
    fn block_forward(
        &self,
        bp: &BlockParams,
        a: &BlockActs,
        w: &[f32],
        (acts, ag, g): (&mut [f32], &mut [f32], &Grads),
        scratch: &mut [f32],
        (batch, seq): (usize, usize),
        memory: Option<&MemorySlots>,
    ) {
        let c = &self.cfg;
        let (e, d) = (c.embed_dim, self.attn());
        let n = batch * seq;
        let (ne, nkv, nf) = (n * e, n * d.kv_dim(), n * c.ffn_dim);
        let p = |s: Slot| &w[s.range()];
        // norm1's output: kept in acts, or (lean) in res_mid, which o_proj writes once it is dead.
        let h1 = if self.lean { a.res_mid } else { a.h1 };
        let [res, h, mean, rstd, q, k, v] = disjoint(
            acts,
            [
                a.res_in.prefix(ne),
                h1.prefix(ne),
                a.stats1[0].prefix(n),
                a.stats1[1].prefix(n),
                a.q.prefix(ne),
                a.k.prefix(nkv),
                a.v.prefix(nkv),
            ],
        );
        layernorm::forward(h, mean, rstd, res, p(bp.norm1[0]), p(bp.norm1[1]));
        linear::forward(q, h, p(bp.proj[0][0]), p(bp.proj[0][1]), self.lin(e, e));
        linear::forward(k, h, p(bp.proj[1][0]), p(bp.proj[1][1]), self.lin(e, d.kv_dim()));
        linear::forward(v, h, p(bp.proj[2][0]), p(bp.proj[2][1]), self.lin(e, d.kv_dim()));
        if self.training && !self.lean {
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
        if let (Some(xp), Some(xa), Some(&mem)) = (bp.cross, a.cross, memory) {
            self.cross_forward(&xp, a, &xa, w, acts, scratch, (batch, seq), mem);
        }

        let ffn_in = a.ffn_in();
        let stats = [a.stats2[0].prefix(n), a.stats2[1].prefix(n)];
        let (nw, nb) = (p(bp.norm2[0]), p(bp.norm2[1]));
        let weights = [p(bp.fc1[0]), p(bp.fc1[1]), p(bp.fc2[0]), p(bp.fc2[1])];
        let (y, sum, other) =
            if self.training { (a.res_out, a.res_out, ffn_in) } else { (a.tmp, a.res_in, a.tmp) };
        if a.h2.len == 0 {
            // A lean plan's dense FFN: norm2's output in res_out, which the FFN's output then
            // overwrites; the post-activation in the work region.
            let ranges =
                [ffn_in.prefix(ne), stats[0].clone(), stats[1].clone(), a.pre.prefix(nf), y.prefix(ne)];
            let [res, mean, rstd, pre, h] = disjoint(acts, ranges);
            layernorm::forward(h, mean, rstd, res, nw, nb);
            ffn::forward_over_input(h, pre, &mut ag[g.dhid.prefix(nf)], weights, self.ffn());
            add_into(acts, sum.prefix(ne), other.prefix(ne));
            return;
        }
        let [res, h, mean, rstd] =
            disjoint(acts, [ffn_in.prefix(ne), a.h2.prefix(ne), stats[0].clone(), stats[1].clone()]);
        layernorm::forward(h, mean, rstd, res, nw, nb);
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
        mem: MemorySlots,
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
        if self.training && !self.lean {
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
}
