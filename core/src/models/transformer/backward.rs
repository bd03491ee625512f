//! The backward pass: the forward, mirrored, accumulating parameter gradients.

use super::plan::{BlockActs, BlockParams, CrossActs, CrossParams};
use super::{MemorySlots, Role, Transformer, disjoint};
use crate::arena::{Buffers, Slot};
use crate::layers::{Attn, attention, ffn, layernorm, linear, moe, pool, position};

impl Transformer {
    /// Backward pass: the forward, mirrored. Reads dL/d(output) from `act_grads[doutput]`;
    /// accumulates into `grads`; leaves dL/d(input) in `act_grads[dinput]`. Training plans only.
    ///
    /// `memory`: a decoder's cross-attention adds the gradient of the encoder's output into
    /// `memory.grads`; an encoder (no head) starts from that gradient instead of a head's.
    #[inline(never)] // its frame (block slots, carved slices) is not the caller's: a small stack
    pub(crate) fn backward(
        &self,
        bufs: &mut Buffers<'_>,
        inp: Slot,
        (batch, seq): (usize, usize),
        memory: Option<&MemorySlots>,
    ) {
        debug_assert!(self.training);
        let c = &self.cfg;
        let (e, n, g) = (c.embed_dim, batch * seq, &self.grads());
        let ne = n * e;
        let (w, acts, grads, ag, scratch) =
            (&*bufs.params, &mut *bufs.acts, &mut *bufs.grads, &mut *bufs.act_grads, &mut *bufs.scratch);
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
        let in_acts = self.dh_in_acts();
        for i in (0..c.num_layers).rev() {
            let (bp, a) = self.block(i);
            if in_acts {
                self.block_backward_over_acts(&bp, &a, (w, &mut *acts, grads), ag, scratch, (batch, seq));
            } else {
                self.block_backward(&bp, &a, (w, &*acts, grads), ag, scratch, (batch, seq), memory);
            }
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
        mem: MemorySlots,
    ) {
        let c = &self.cfg;
        let (e, d, g) = (c.embed_dim, Attn { causal: false, ..self.attn() }, &self.grads());
        let (n, src) = (batch * seq, batch * mem.len);
        let (ne, skv) = (n * e, src * d.kv_dim());
        let p = |s: Slot| &w[s.range()];
        let act = |s: Slot, len: usize| &acts[s.prefix(len)];
        let [dres, dao, dq, dk, dv] = disjoint(
            ag,
            [g.dres.prefix(ne), g.dao.prefix(ne), g.dq.prefix(ne), g.dkx.prefix(skv), g.dvx.prefix(skv)],
        );
        let [dw, db] = disjoint(grads, [xp.proj[3][0].range(), xp.proj[3][1].range()]);
        let (wo, lin) = (p(xp.proj[3][0]), self.lin(e, e));
        linear::backward(None, dw, db, dres, act(xa.ao, ne), wo, lin);
        linear::set_input_grad(dao, dres, wo, lin);
        dq.fill(0.0);
        dk.fill(0.0);
        dv.fill(0.0);
        // A lean plan kept no probabilities: attention recomputes them.
        let att = if self.lean { &[] } else { act(xa.att, batch * d.n_heads * mem.len * seq) };
        let qkv = [act(xa.q, ne), act(xa.k, skv), act(xa.v, skv)];
        let work = &mut scratch[self.attn_scratch.range()];
        attention::backward([&mut *dq, &mut *dk, &mut *dv], work, dao, att, qkv, d, batch, (seq, mem.len));
        // q came from the decoder's norm; k and v from the memory, whose gradient accumulates over
        // every decoder block. dh takes dao's place, now consumed.
        let [dres, dq, dk, dv, dh, dmem] = disjoint(
            ag,
            [
                g.dres.prefix(ne),
                g.dq.prefix(ne),
                g.dkx.prefix(skv),
                g.dvx.prefix(skv),
                g.dh.prefix(ne),
                mem.grads.prefix(src * e),
            ],
        );
        let [dw, db] = disjoint(grads, [xp.proj[0][0].range(), xp.proj[0][1].range()]);
        let (wq, lin) = (p(xp.proj[0][0]), self.lin(e, e));
        linear::backward(None, dw, db, dq, act(xa.h, ne), wq, lin);
        linear::set_input_grad(dh, dq, wq, lin);
        let m = act(mem.acts, src * e);
        for (j, dy) in [(1, &*dk), (2, &*dv)] {
            let [dw, db] = disjoint(grads, [xp.proj[j][0].range(), xp.proj[j][1].range()]);
            linear::backward(Some(&mut *dmem), dw, db, dy, m, p(xp.proj[j][0]), self.lin(e, d.kv_dim()));
        }
        let [dln_w, dln_b] = disjoint(grads, [xp.norm[0].range(), xp.norm[1].range()]);
        let stats = [act(xa.stats[0], n), act(xa.stats[1], n)];
        layernorm::backward(dres, dln_w, dln_b, dh, act(a.res_mid, ne), stats[0], stats[1], p(xp.norm[0]));
    }

    /// [`Transformer::block_backward`] for a lean plan's dense block without cross-attention
    /// ([`Transformer::dh_in_acts`]): the block's `res_out` slot, consumed by now, holds
    /// d(attention output) and then each recomputed norm output and its gradient; the work region
    /// holds only the FFN's d(hidden) and q/k/v's gradients. The same arithmetic in the same order
    /// as the kept form: the same bits.
    fn block_backward_over_acts(
        &self,
        bp: &BlockParams,
        a: &BlockActs,
        (w, acts, grads): (&[f32], &mut [f32], &mut [f32]),
        ag: &mut [f32],
        scratch: &mut [f32],
        (batch, seq): (usize, usize),
    ) {
        let c = &self.cfg;
        let (e, d, g) = (c.embed_dim, self.attn(), &self.grads());
        let n = batch * seq;
        let (ne, nkv, nf) = (n * e, n * d.kv_dim(), n * c.ffn_dim);
        let p = |s: Slot| &w[s.range()];
        let dh = a.res_out.prefix(ne);

        // FFN: norm2's output recomputed into dh, which becomes d(norm2 output); dres += norm2's
        // backward.
        let [dres, dhid] = disjoint(ag, [g.dres.prefix(ne), g.dhid.prefix(nf)]);
        let ranges = [
            dh.clone(),
            a.res_mid.prefix(ne),
            a.stats2[0].prefix(n),
            a.stats2[1].prefix(n),
            a.pre.prefix(nf),
        ];
        let [dh_buf, x, mean, rstd, pre] = disjoint(acts, ranges);
        let [dw1, db1, dw2, db2] =
            disjoint(grads, [bp.fc1[0].range(), bp.fc1[1].range(), bp.fc2[0].range(), bp.fc2[1].range()]);
        let weights = [p(bp.fc1[0]), p(bp.fc1[1]), p(bp.fc2[0]), p(bp.fc2[1])];
        layernorm::recompute(dh_buf, x, mean, rstd, p(bp.norm2[0]), p(bp.norm2[1]));
        ffn::backward_recompute(dh_buf, [dw1, db1, dw2, db2], dhid, dres, pre, weights, self.ffn());
        let [dln_w, dln_b] = disjoint(grads, [bp.norm2[0].range(), bp.norm2[1].range()]);
        layernorm::backward(dres, dln_w, dln_b, dh_buf, x, mean, rstd, p(bp.norm2[0]));

        // Attention: o_proj (d(attention output) into dh), attention, q/k/v projections, norm1.
        let [dres, dq, dk, dv] =
            disjoint(ag, [g.dres.prefix(ne), g.dq.prefix(ne), g.dk.prefix(nkv), g.dv.prefix(nkv)]);
        let ranges = [dh.clone(), a.ao.prefix(ne), a.q.prefix(ne), a.k.prefix(nkv), a.v.prefix(nkv)];
        let [dao, ao, q, k, v] = disjoint(acts, ranges);
        let [dw, db] = disjoint(grads, [bp.proj[3][0].range(), bp.proj[3][1].range()]);
        let (wo, lin) = (p(bp.proj[3][0]), self.lin(e, e));
        linear::backward(None, dw, db, dres, ao, wo, lin);
        linear::set_input_grad(dao, dres, wo, lin);
        dq.fill(0.0);
        dk.fill(0.0);
        dv.fill(0.0);
        let work = &mut scratch[self.attn_scratch.range()];
        attention::backward([&mut *dq, &mut *dk, &mut *dv], work, dao, &[], [q, k, v], d, batch, (seq, seq));
        let ranges = [dh, a.res_in.prefix(ne), a.stats1[0].prefix(n), a.stats1[1].prefix(n)];
        let [dh, x, mean, rstd] = disjoint(acts, ranges);
        self.qkv_backward_recomputed(bp, dh, (x, mean, rstd), [&*dq, &*dk, &*dv], (w, grads));
        let [dln_w, dln_b] = disjoint(grads, [bp.norm1[0].range(), bp.norm1[1].range()]);
        layernorm::backward(dres, dln_w, dln_b, dh, x, mean, rstd, p(bp.norm1[0]));
    }

    /// The q/k/v projections' backward in a lean plan: norm1's output is recomputed into `dh`
    /// from the block's input and statistics `(x, mean, rstd)`; the weight gradients are taken
    /// first, then d(norm1 output) overwrites it, accumulated in the order the kept form uses.
    fn qkv_backward_recomputed(
        &self,
        bp: &BlockParams,
        dh: &mut [f32],
        (x, mean, rstd): (&[f32], &[f32], &[f32]),
        [dq, dk, dv]: [&[f32]; 3],
        (w, grads): (&[f32], &mut [f32]),
    ) {
        let (e, kv) = (self.cfg.embed_dim, self.attn().kv_dim());
        let p = |s: Slot| &w[s.range()];
        layernorm::recompute(dh, x, mean, rstd, p(bp.norm1[0]), p(bp.norm1[1]));
        let projections = [(dq, e), (dk, kv), (dv, kv)];
        for (j, &(dy, width)) in projections.iter().enumerate() {
            let [dw, db] = disjoint(grads, [bp.proj[j][0].range(), bp.proj[j][1].range()]);
            linear::backward(None, dw, db, dy, dh, p(bp.proj[j][0]), self.lin(e, width));
        }
        for (j, (dy, width)) in projections.into_iter().enumerate() {
            let (wj, lin) = (p(bp.proj[j][0]), self.lin(e, width));
            if j == 0 {
                linear::set_input_grad(dh, dy, wj, lin)
            } else {
                linear::backward_input(dh, dy, wj, lin)
            }
        }
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
        let (e, n, g) = (c.embed_dim, batch * seq, &self.grads());
        let ne = n * e;
        let (out_rows, pooled_len) = if c.autoregressive { (n, 0) } else { (batch, batch * e) };
        let [dw, db] = disjoint(grads, [self.head[0].range(), self.head[1].range()]);
        let hw = &w[self.head[0].range()];
        if c.autoregressive {
            // The final norm's output: in acts, or where a lean forward left it in the work region.
            let (dout, dhf, hf) = if self.hf.len > 0 {
                let [dout, dhf] = disjoint(ag, [g.dout.prefix(n * c.output_dim), g.dh.prefix(ne)]);
                (dout, dhf, &acts[self.hf.prefix(ne)])
            } else {
                let [dout, dhf, hf] =
                    disjoint(ag, [g.dout.prefix(n * c.output_dim), g.dh.prefix(ne), g.hf.prefix(ne)]);
                (dout, dhf, &*hf)
            };
            dhf.fill(0.0);
            linear::backward(Some(&mut *dhf), dw, db, dout, hf, hw, self.lin(e, c.output_dim));
        } else {
            let [dout, dpooled, dhf] = disjoint(
                ag,
                [g.dout.prefix(out_rows * c.output_dim), g.dpooled.prefix(pooled_len), g.dh.prefix(ne)],
            );
            dhf.fill(0.0);
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
        memory: Option<&MemorySlots>,
    ) {
        let c = &self.cfg;
        let (e, d, g) = (c.embed_dim, self.attn(), &self.grads());
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
            let [dres, dh, dhid] = disjoint(ag, [g.dres.prefix(ne), g.dh.prefix(ne), g.dhid.prefix(nf)]);
            let [dw1, db1, dw2, db2] =
                disjoint(grads, [bp.fc1[0].range(), bp.fc1[1].range(), bp.fc2[0].range(), bp.fc2[1].range()]);
            let weights = [p(bp.fc1[0]), p(bp.fc1[1]), p(bp.fc2[0]), p(bp.fc2[1])];
            if a.h2.len == 0 {
                // Lean: norm2's output, recomputed into dh, and the post-activation into dhid.
                let stats = [act(a.stats2[0], n), act(a.stats2[1], n)];
                let norm = (p(bp.norm2[0]), p(bp.norm2[1]));
                layernorm::recompute(dh, act(a.ffn_in(), ne), stats[0], stats[1], norm.0, norm.1);
                let pre = act(a.pre, nf);
                ffn::backward_recompute(dh, [dw1, db1, dw2, db2], dhid, dres, pre, weights, self.ffn());
            } else {
                dh.fill(0.0);
                let saved = [act(a.h2, ne), act(a.pre, nf), act(a.hid, nf)];
                ffn::backward(dh, [dw1, db1, dw2, db2], dhid, dres, saved, weights, self.ffn());
            }
        }
        let [dres, dh] = disjoint(ag, [g.dres.prefix(ne), g.dh.prefix(ne)]);
        let [dln_w, dln_b] = disjoint(grads, [bp.norm2[0].range(), bp.norm2[1].range()]);
        let (x, stats) = (act(a.ffn_in(), ne), [act(a.stats2[0], n), act(a.stats2[1], n)]);
        layernorm::backward(dres, dln_w, dln_b, dh, x, stats[0], stats[1], p(bp.norm2[0]));

        // Decoder blocks: cross-attention, then its norm; dres becomes d(stream after self-attention).
        if let (Some(xp), Some(xa), Some(&mem)) = (bp.cross, a.cross, memory) {
            self.cross_backward(&xp, a, &xa, (w, acts, grads), ag, scratch, (batch, seq), mem);
        }

        // Attention: o_proj, attention, q/k/v projections, norm1.
        let [dres, dao, dq, dk, dv] = disjoint(
            ag,
            [g.dres.prefix(ne), g.dao.prefix(ne), g.dq.prefix(ne), g.dk.prefix(nkv), g.dv.prefix(nkv)],
        );
        let [dw, db] = disjoint(grads, [bp.proj[3][0].range(), bp.proj[3][1].range()]);
        let (wo, lin) = (p(bp.proj[3][0]), self.lin(e, e));
        linear::backward(None, dw, db, dres, act(a.ao, ne), wo, lin);
        linear::set_input_grad(dao, dres, wo, lin);
        dq.fill(0.0);
        dk.fill(0.0);
        dv.fill(0.0);
        let att = if self.lean { &[] } else { act(a.att, batch * d.n_heads * seq * seq) };
        let qkv = [act(a.q, ne), act(a.k, nkv), act(a.v, nkv)];
        let work = &mut scratch[self.attn_scratch.range()];
        attention::backward([&mut *dq, &mut *dk, &mut *dv], work, dao, att, qkv, d, batch, (seq, seq));
        // dh takes dao's place, now consumed.
        let [dres, dq, dk, dv, dh] = disjoint(
            ag,
            [g.dres.prefix(ne), g.dq.prefix(ne), g.dk.prefix(nkv), g.dv.prefix(nkv), g.dh.prefix(ne)],
        );
        if self.lean {
            let saved = (act(a.res_in, ne), act(a.stats1[0], n), act(a.stats1[1], n));
            self.qkv_backward_recomputed(bp, dh, saved, [&*dq, &*dk, &*dv], (w, grads));
        } else {
            let h1 = act(a.h1, ne);
            let projections = [(&*dq, e), (&*dk, d.kv_dim()), (&*dv, d.kv_dim())];
            for (j, (dy, width)) in projections.into_iter().enumerate() {
                let [dw, db] = disjoint(grads, [bp.proj[j][0].range(), bp.proj[j][1].range()]);
                let (wj, lin) = (p(bp.proj[j][0]), self.lin(e, width));
                linear::backward(None, dw, db, dy, h1, wj, lin);
                if j == 0 {
                    linear::set_input_grad(dh, dy, wj, lin)
                } else {
                    linear::backward_input(dh, dy, wj, lin)
                }
            }
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
