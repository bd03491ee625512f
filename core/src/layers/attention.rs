//! Scaled dot-product attention with grouped key/value heads: MHA (G = H), MQA (G = 1) and
//! GQA (H % G = 0) are one implementation. Query head `h` reads kv group `h / (H/G)` in place —
//! no K/V is ever copied per query head.
//!
//! For each sequence b and head h: `P = softmax(Q_h·K_gᵀ / √D [+ causal mask])`, `out_h = P·V_g`.
//! Shapes (row-major, tokens of a sequence contiguous):
//! q, out (B·T, H·D); k, v (B·T, G·D); att (B, H, T, T) — the probabilities, saved for backward,
//! stored **key-major**: `att[b, h, j, i]` is the weight of key j for query i.
//! The projections around attention live in the model (`attn.{q,k,v,o}_proj`).
//!
//! Why key-major: the scores come from one gemm `Pᵀ = K_g·Q_hᵀ` whose packed operand is only
//! T × D; the softmax then runs down the columns, vectorised across queries without horizontal
//! reductions; and `out_h = P·V_g`, `dQ_h = dS·K_g` read the stored tiles transposed (a `tn`
//! product, whose narrow D-wide result goes straight into the head's columns). Every product is
//! one [`gemm()`] call reading q/k/v/out in place through strides and transpose flags.

use crate::ops::math::exp;
use crate::ops::{Gemm, Kernels, dot, gemm, max, sum, vectorized};

/// Dims of an attention layer.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Attn {
    /// Query heads H.
    pub n_heads: usize,
    /// Key/value heads (groups) G; `n_heads % n_kv_heads == 0`.
    pub n_kv_heads: usize,
    /// Head dimension D = E / H.
    pub head_dim: usize,
    /// Mask keys after the query position.
    pub causal: bool,
    /// The gemm kernels its products run on.
    pub kernels: Kernels,
}

impl Attn {
    /// Width of q and out rows, H·D.
    pub const fn q_dim(&self) -> usize {
        self.n_heads * self.head_dim
    }

    /// Width of k and v rows, G·D.
    pub const fn kv_dim(&self) -> usize {
        self.n_kv_heads * self.head_dim
    }

    /// The kv group query head `h` reads.
    pub const fn group_of(&self, h: usize) -> usize {
        h / (self.n_heads / self.n_kv_heads)
    }

    fn scale(&self) -> f32 {
        1.0 / libm::sqrtf(self.head_dim as f32)
    }

    /// Floats of scratch [`forward`] and [`backward`] need for `tq` queries over `tk` keys: a
    /// Tk × Tq tile (inference probabilities, or dPᵀ) and two rows;
    /// with `recompute` (the probabilities were not saved) a second tile, where [`backward`]
    /// recomputes them. `None` when the size overflows `usize` (planners check this).
    pub const fn checked_scratch_len(&self, tq: usize, tk: usize, recompute: bool) -> Option<usize> {
        let tiles = if recompute { 2 } else { 1 };
        let (Some(tile), Some(rows)) = (tk.checked_mul(tq), tq.checked_mul(2)) else { return None };
        let Some(tiles) = tile.checked_mul(tiles) else { return None };
        tiles.checked_add(rows)
    }

    /// [`checked_scratch_len`](Self::checked_scratch_len) without recomputation, of a planned
    /// (so representable) size.
    pub const fn scratch_len(&self, tq: usize, tk: usize) -> usize {
        self.checked_scratch_len(tq, tk, false).expect("planned attention scratch fits usize")
    }

    /// [`checked_scratch_len`](Self::checked_scratch_len) with recomputation, of a planned size.
    pub const fn backward_scratch_len(&self, tq: usize, tk: usize) -> usize {
        self.checked_scratch_len(tq, tk, true).expect("planned attention scratch fits usize")
    }
}

/// Attention of `batch` sequences: `tq` queries per sequence over `tk` keys (self-attention:
/// `tq == tk`; cross-attention: keys from another sequence). Overwrites `out` and `att`;
/// `scratch` holds at least [`Attn::scratch_len`] floats. `causal` needs `tq == tk`.
///
/// `att` holds `batch·H·Tk·Tq` probabilities, saved for backward (training); pass an empty slice
/// in inference and the probabilities live in scratch, one tile at a time.
#[allow(clippy::too_many_arguments)] // outputs, saved, scratch, three inputs, dims, the batch shape
pub fn forward(
    out: &mut [f32],
    att: &mut [f32],
    scratch: &mut [f32],
    qkv: [&[f32]; 3],
    d: Attn,
    batch: usize,
    (tq, tk): (usize, usize),
) {
    debug_assert!(!d.causal || tq == tk, "a causal mask needs as many keys as queries");
    let saving = !att.is_empty();
    debug_assert!(!saving || att.len() >= batch * d.n_heads * tk * tq);
    let scratch = &mut scratch[..d.scratch_len(tq, tk)];
    #[cfg(not(target_os = "none"))]
    if saving {
        // Training: each sequence's output and probabilities are its own, so sequences can go to
        // several threads, each with its own tile of scratch (from its stack).
        let lens = [batch * tq * d.q_dim(), batch * d.n_heads * tk * tq];
        let need = scratch.len() - tk * tq;
        let flops = 4 * (batch * d.n_heads * tq * tk * d.head_dim) as u64;
        let run = |[out, att]: [&mut [f32]; 2], scratch: &mut [f32], seqs: (usize, usize)| {
            forward_seqs(out, att, scratch, qkv, d, seqs, (tq, tk));
        };
        if by_sequence((batch, flops, need), [&mut *out, &mut *att], lens, &mut *scratch, &run) {
            return;
        }
    }
    forward_seqs(out, att, scratch, qkv, d, (0, batch), (tq, tk));
}

/// [`forward`] of sequences `b0..b1`: `out` and `att` start at sequence b0 (q, k, v are whole).
fn forward_seqs(
    out: &mut [f32],
    att: &mut [f32],
    scratch: &mut [f32],
    qkv: [&[f32]; 3],
    d: Attn,
    (b0, b1): (usize, usize),
    (tq, tk): (usize, usize),
) {
    let [q, k, v] = qkv;
    let (qd, kvd, hd) = (d.q_dim(), d.kv_dim(), d.head_dim);
    let saving = !att.is_empty();
    // Saving, the probabilities go to `att` and no tile is needed (a task's scratch has none).
    let (tile, rows) = scratch.split_at_mut(if saving { 0 } else { tk * tq });
    for b in b0..b1 {
        for h in 0..d.n_heads {
            let g = d.group_of(h);
            let (qo, ko) = (b * tq * qd + h * hd, b * tk * kvd + g * hd);
            let pt =
                if saving { &mut att[((b - b0) * d.n_heads + h) * tk * tq..][..tk * tq] } else { &mut *tile };
            // scoresᵀ (Tk keys, Tq queries) = K_g (Tk, D) · Q_hᵀ
            product(pt, &k[ko..], &q[qo..], Gemm::nt(tk, tq, hd).strides(kvd, qd, tq).on(d.kernels));
            softmax_columns(pt, rows, (tk, tq), d.scale(), d);
            // out_h (Tq, D) = P · V_g, P read from the key-major tile transposed, written into
            // the head's columns of out.
            let o = &mut out[(b - b0) * tq * qd + h * hd..];
            product(o, pt, &v[ko..], Gemm::tn(tq, hd, tk).strides(tq, kvd, qd).on(d.kernels));
        }
    }
}

/// Floats of stack scratch one attention task may take (96 KiB): P6's backward tile and rows.
#[cfg(not(target_os = "none"))]
const TASK_SCRATCH: usize = 24 * 1024;

/// A task's body: its sequences' parts of the outputs, its scratch, its sequences `b0..b1`.
#[cfg(not(target_os = "none"))]
type SeqTask<'r, const N: usize> = dyn Fn([&mut [f32]; N], &mut [f32], (usize, usize)) + Sync + 'r;

/// Run `run` over the batch split by sequence into tasks of the installed parallel-for, when
/// there is one, the work (`flops`) is large enough and a task's `need` floats of scratch fit its
/// stack. Each output `outs[i]` holds `lens[i]` floats for the whole batch, each sequence an
/// equal contiguous part; a task gets its sequences' parts. The first task uses `scratch`, the
/// others a zeroed stack buffer. Returns false, running nothing, when it does not split.
///
/// Bit-identical to one call over the batch: a sequence's heads still run in order on one
/// thread, with the same products and the same softmax.
#[cfg(not(target_os = "none"))]
fn by_sequence<const N: usize>(
    (batch, flops, need): (usize, u64, usize),
    outs: [&mut [f32]; N],
    lens: [usize; N],
    scratch: &mut [f32],
    run: &SeqTask<'_, N>,
) -> bool {
    use crate::parallel::{current, run_tasks, share, tasks_for};
    let Some(par) = current() else { return false };
    let tasks = tasks_for(par, batch, flops);
    if tasks < 2 || need > TASK_SCRATCH || outs.iter().zip(&lens).any(|(o, &l)| o.len() < l) {
        return false;
    }
    let (mut rests, mut first) = (outs, Some(scratch));
    run_tasks(par, tasks, |t| {
        let (b0, b1) = (share(batch, tasks, t), share(batch, tasks, t + 1));
        let mut mine: [&mut [f32]; N] = core::array::from_fn(|_| &mut [][..]);
        for i in 0..N {
            let (m, later) = core::mem::take(&mut rests[i]).split_at_mut((b1 - b0) * (lens[i] / batch));
            (mine[i], rests[i]) = (m, later);
        }
        let mut own = first.take();
        move || {
            let parts: [&mut [f32]; N] = mine.each_mut().map(|m| &mut **m);
            match own.as_deref_mut() {
                Some(s) => run(parts, s, (b0, b1)),
                None => run(parts, &mut [0.0f32; TASK_SCRATCH][..need], (b0, b1)),
            }
        }
    });
    true
}

/// Backward of [`forward`]. Accumulates (`+=`) into `dq`, `dk`, `dv`.
///
/// With the probabilities `att` saved by [`forward`], `scratch` holds at least
/// [`Attn::scratch_len`] floats. With `att` empty, each head's probabilities are recomputed
/// from q and k into a tile of `scratch`, which then holds [`Attn::backward_scratch_len`]
/// floats: the same products and softmax as the forward's, so the same bits, without keeping
/// B·H·Tk·Tq of them between the passes.
#[allow(clippy::too_many_arguments)] // llm.c order: input grads, scratch, dout, saved, inputs, dims
pub fn backward(
    dqkv: [&mut [f32]; 3],
    scratch: &mut [f32],
    dout: &[f32],
    att: &[f32],
    qkv: [&[f32]; 3],
    d: Attn,
    batch: usize,
    (tq, tk): (usize, usize),
) {
    let saved = !att.is_empty();
    let len = if saved { d.scratch_len(tq, tk) } else { d.backward_scratch_len(tq, tk) };
    let scratch = &mut scratch[..len];
    let [dq, dk, dv] = dqkv;
    #[cfg(not(target_os = "none"))]
    if saved {
        // Training: a sequence's gradients (its rows of dq, dk, dv) are its own, and its heads
        // still run in order on one thread, so sequences can go to several threads.
        let lens = [batch * tq * d.q_dim(), batch * tk * d.kv_dim(), batch * tk * d.kv_dim()];
        let flops = 8 * (batch * d.n_heads * tq * tk * d.head_dim) as u64;
        let run = |grads: [&mut [f32]; 3], scratch: &mut [f32], seqs: (usize, usize)| {
            backward_seqs(grads, scratch, dout, att, qkv, d, seqs, (tq, tk));
        };
        if by_sequence((batch, flops, len), [&mut *dq, &mut *dk, &mut *dv], lens, &mut *scratch, &run) {
            return;
        }
    }
    backward_seqs([dq, dk, dv], scratch, dout, att, qkv, d, (0, batch), (tq, tk));
}

/// [`backward`] of sequences `b0..b1`: dq, dk and dv start at sequence b0 (everything else is
/// whole).
#[allow(clippy::too_many_arguments)] // as backward, plus the range
fn backward_seqs(
    dqkv: [&mut [f32]; 3],
    scratch: &mut [f32],
    dout: &[f32],
    att: &[f32],
    qkv: [&[f32]; 3],
    d: Attn,
    (b0, b1): (usize, usize),
    (tq, tk): (usize, usize),
) {
    let [dq, dk, dv] = dqkv;
    let [q, k, v] = qkv;
    let (qd, kvd, hd) = (d.q_dim(), d.kv_dim(), d.head_dim);
    let saved = !att.is_empty();
    let (dpt, rest) = scratch.split_at_mut(tk * tq);
    let (tile, rows) = rest.split_at_mut(if saved { 0 } else { tk * tq });
    for b in b0..b1 {
        for h in 0..d.n_heads {
            let g = d.group_of(h);
            let (qo, ko) = (b * tq * qd + h * hd, b * tk * kvd + g * hd);
            // Offsets into this range's dq, dk, dv.
            let (lqo, lko) = ((b - b0) * tq * qd + h * hd, (b - b0) * tk * kvd + g * hd);
            let pt: &[f32] = if saved {
                &att[(b * d.n_heads + h) * tk * tq..][..tk * tq]
            } else {
                // The forward's probabilities, recomputed as it computed them.
                product(tile, &k[ko..], &q[qo..], Gemm::nt(tk, tq, hd).strides(kvd, qd, tq).on(d.kernels));
                softmax_columns(tile, rows, (tk, tq), d.scale(), d);
                tile
            };
            // dPᵀ (Tk, Tq) = V_g (Tk, D) · dout_hᵀ
            product(dpt, &v[ko..], &dout[qo..], Gemm::nt(tk, tq, hd).strides(kvd, qd, tq).on(d.kernels));
            // dV_g (Tk, D) += Pᵀ · dout_h; every head of the group adds its share.
            product(
                &mut dv[lko..],
                pt,
                &dout[qo..],
                Gemm::nn(tk, hd, tq).strides(tq, qd, kvd).acc().on(d.kernels),
            );
            // dSᵀ = scale · Pᵀ ⊙ (dPᵀ − column sums of Pᵀ ⊙ dPᵀ), in place.
            softmax_columns_backward(dpt, pt, &mut rows[..tq], (tk, tq), d.scale());
            // dQ_h (Tq, D) += dS · K_g (dS read from its key-major tile transposed);
            // dK_g (Tk, D) += dSᵀ · Q_h
            product(
                &mut dq[lqo..],
                dpt,
                &k[ko..],
                Gemm::tn(tq, hd, tk).strides(tq, kvd, qd).acc().on(d.kernels),
            );
            product(
                &mut dk[lko..],
                dpt,
                &q[qo..],
                Gemm::nn(tk, hd, tq).strides(tq, qd, kvd).acc().on(d.kernels),
            );
        }
    }
}

/// One of a head's products: by the small-head vector kernels when they take it (head_dim ≤ 8,
/// `Kernels::Auto`, AVX2), else by [`gemm()`]; the same bits either way.
fn product(c: &mut [f32], a: &[f32], b: &[f32], g: Gemm) {
    if !crate::ops::head_gemm_simd(c, a, b, g) {
        gemm(c, a, b, g);
    }
}

/// One new token attending over `len` cached positions (itself included, so causal by
/// construction): `out` (H·D) from `q` (H·D) and `k`, `v` (len × G·D, the cache's rows).
/// Overwrites `out`; `scores` is scratch of at least `len` floats.
///
/// With `Kernels::Auto` on a CPU with AVX-512 or AVX2 the heads of a group run together in one vector
/// kernel with an online softmax (the same result up to rounding); `Portable` always runs the
/// loop below, the bits a microcontroller computes.
pub fn forward_one(out: &mut [f32], q: &[f32], kv: [&[f32]; 2], scores: &mut [f32], d: Attn, len: usize) {
    if d.kernels == Kernels::Auto && crate::ops::attend_one_simd(out, q, kv, d, len) {
        return;
    }
    let [k, v] = kv;
    let (hd, kvd, scale) = (d.head_dim, d.kv_dim(), d.scale());
    let scores = &mut scores[..len];
    vectorized(
        #[inline(always)]
        || {
            for h in 0..d.n_heads {
                let g = d.group_of(h);
                let qh = &q[h * hd..][..hd];
                for (j, s) in scores.iter_mut().enumerate() {
                    *s = dot(qh, &k[j * kvd + g * hd..][..hd]) * scale;
                }
                let top = max(scores);
                scores.iter_mut().for_each(|s| *s = exp(*s - top));
                let inv = 1.0 / sum(scores);
                let o = &mut out[h * hd..][..hd];
                o.fill(0.0);
                for (j, &s) in scores.iter().enumerate() {
                    let p = s * inv;
                    o.iter_mut().zip(&v[j * kvd + g * hd..][..hd]).for_each(|(o, &x)| *o += p * x);
                }
            }
        },
    )
}

/// Columns of `pt` (Tk keys × Tq queries) ← softmax over keys of `scale ·` column, numerically
/// stable. With `causal` (Tk = Tq), query i sees keys 0..=i; the rest become exactly 0. `rows`
/// is scratch of 2·Tq floats (per-query maximum and sum).
///
/// On [`Kernels::Auto`] with AVX2 and FMA a vector kernel does the same passes in the same
/// order, with fused-multiply-add exponentials (the same function up to rounding);
/// [`Kernels::Portable`] always runs the loops here.
fn softmax_columns(pt: &mut [f32], rows: &mut [f32], (tk, tq): (usize, usize), scale: f32, d: Attn) {
    let causal = d.causal;
    if d.kernels == Kernels::Auto && crate::ops::softmax_columns_simd(pt, (tk, tq), scale, causal) {
        return;
    }
    let (top, total) = rows[..2 * tq].split_at_mut(tq);
    let pt = &mut pt[..tk * tq];
    vectorized(
        #[inline(always)]
        || {
            // Key j is visible to queries j.. (causal) or all of them.
            let first = |j: usize| if causal { j.min(tq) } else { 0 };
            top.fill(f32::NEG_INFINITY);
            for (j, row) in pt.chunks_exact(tq).enumerate() {
                let from = first(j);
                top[from..].iter_mut().zip(&row[from..]).for_each(|(m, &s)| *m = if s > *m { s } else { *m });
            }
            total.fill(0.0);
            for (j, row) in pt.chunks_exact_mut(tq).enumerate() {
                let from = first(j);
                row[..from].fill(0.0);
                let live = row[from..].iter_mut().zip(&top[from..]).zip(&mut total[from..]);
                live.for_each(|((s, &m), z)| {
                    *s = exp((*s - m) * scale);
                    *z += *s;
                });
            }
            total.iter_mut().for_each(|z| *z = 1.0 / *z);
            for row in pt.chunks_exact_mut(tq) {
                row.iter_mut().zip(&*total).for_each(|(s, &inv)| *s *= inv);
            }
        },
    )
}

/// Softmax backward down the columns: `dpt ← scale · pt ⊙ (dpt − Σ_j pt_j·dpt_j)`, in place.
/// Masked entries have p = 0 and come out 0. `dot` is scratch of Tq floats.
fn softmax_columns_backward(
    dpt: &mut [f32],
    pt: &[f32],
    dot: &mut [f32],
    (tk, tq): (usize, usize),
    scale: f32,
) {
    let (dpt, pt) = (&mut dpt[..tk * tq], &pt[..tk * tq]);
    vectorized(
        #[inline(always)]
        || {
            dot.fill(0.0);
            for (dp_row, p_row) in dpt.chunks_exact(tq).zip(pt.chunks_exact(tq)) {
                dot.iter_mut().zip(dp_row).zip(p_row).for_each(|((s, &g), &p)| *s += g * p);
            }
            for (dp_row, p_row) in dpt.chunks_exact_mut(tq).zip(pt.chunks_exact(tq)) {
                dp_row.iter_mut().zip(p_row).zip(&*dot).for_each(|((g, &p), &s)| *g = scale * p * (*g - s));
            }
        },
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testing::{grad_check, lcg_fill, weighted_sum};
    use std::vec;
    use std::vec::Vec;

    const B: usize = 2;
    const T: usize = 5;

    fn dims(h: usize, g: usize, causal: bool) -> Attn {
        Attn { n_heads: h, n_kv_heads: g, head_dim: 3, causal, kernels: Kernels::Auto }
    }

    fn random(len: usize, seed: &mut u32) -> Vec<f32> {
        let mut v = vec![0.0; len];
        lcg_fill(&mut v, seed);
        v
    }

    fn run(q: &[f32], k: &[f32], v: &[f32], d: Attn) -> (Vec<f32>, Vec<f32>) {
        let mut out = vec![0.0; B * T * d.q_dim()];
        let mut att = vec![0.0; B * d.n_heads * T * T];
        let mut scratch = vec![0.0; d.scratch_len(T, T)];
        forward(&mut out, &mut att, &mut scratch, [q, k, v], d, B, (T, T));
        (out, att)
    }

    /// The definition, one query at a time in f64: the oracle of the fast kernel.
    fn naive(q: &[f32], k: &[f32], v: &[f32], d: Attn) -> Vec<f32> {
        let (qd, kvd, hd) = (d.q_dim(), d.kv_dim(), d.head_dim);
        let mut out = vec![0.0; B * T * qd];
        for b in 0..B {
            for h in 0..d.n_heads {
                let g = d.group_of(h);
                for i in 0..T {
                    let keep = if d.causal { i + 1 } else { T };
                    let s: Vec<f64> = (0..keep)
                        .map(|j| {
                            let qi = &q[(b * T + i) * qd + h * hd..][..hd];
                            let kj = &k[(b * T + j) * kvd + g * hd..][..hd];
                            qi.iter().zip(kj).map(|(&a, &c)| f64::from(a) * f64::from(c)).sum::<f64>()
                                / (hd as f64).sqrt()
                        })
                        .collect();
                    let m = s.iter().cloned().fold(f64::NEG_INFINITY, f64::max);
                    let e: Vec<f64> = s.iter().map(|x| (x - m).exp()).collect();
                    let z: f64 = e.iter().sum();
                    for dd in 0..hd {
                        let o: f64 =
                            (0..keep).map(|j| e[j] / z * f64::from(v[(b * T + j) * kvd + g * hd + dd])).sum();
                        out[(b * T + i) * qd + h * hd + dd] = o as f32;
                    }
                }
            }
        }
        out
    }

    #[test]
    fn forward_matches_the_definition() {
        for (h, g, causal) in [(4, 4, false), (4, 1, true), (6, 3, false), (6, 2, true)] {
            let d = dims(h, g, causal);
            let mut seed = 31 + h as u32;
            let (q, k, v) = (
                random(B * T * d.q_dim(), &mut seed),
                random(B * T * d.kv_dim(), &mut seed),
                random(B * T * d.kv_dim(), &mut seed),
            );
            let (got, _) = run(&q, &k, &v, d);
            let want = naive(&q, &k, &v, d);
            let worst = got.iter().zip(&want).map(|(a, b)| (a - b).abs()).fold(0.0f32, f32::max);
            assert!(worst < 1e-6, "H={h} G={g} causal={causal}: off by {worst:e}");
        }
    }

    #[test]
    fn backward_matches_finite_differences_for_every_layout() {
        for (h, g) in [(4, 4), (4, 1), (4, 2), (6, 3)] {
            for causal in [false, true] {
                let d = dims(h, g, causal);
                let mut seed = 3 + h as u32 * 7 + g as u32;
                let (mut q, mut k, mut v) = (
                    random(B * T * d.q_dim(), &mut seed),
                    random(B * T * d.kv_dim(), &mut seed),
                    random(B * T * d.kv_dim(), &mut seed),
                );
                let r = random(B * T * d.q_dim(), &mut seed);
                let (_, att) = run(&q, &k, &v, d);
                let (mut dq, mut dk, mut dv) = (vec![0.0; q.len()], vec![0.0; k.len()], vec![0.0; v.len()]);
                let mut scratch = vec![0.0; d.scratch_len(T, T)];
                backward([&mut dq, &mut dk, &mut dv], &mut scratch, &r, &att, [&q, &k, &v], d, B, (T, T));
                // Recomputing the probabilities instead of reading them gives the same bits.
                let (mut rq, mut rk, mut rv) = (vec![0.0; q.len()], vec![0.0; k.len()], vec![0.0; v.len()]);
                let mut scratch = vec![0.0; d.backward_scratch_len(T, T)];
                backward([&mut rq, &mut rk, &mut rv], &mut scratch, &r, &[], [&q, &k, &v], d, B, (T, T));
                assert!(rq == dq && rk == dk && rv == dv, "H={h} G={g} causal={causal}: recomputed differs");
                let (q0, k0, v0) = (q.clone(), k.clone(), v.clone());
                let loss = |q: &[f32], k: &[f32], v: &[f32]| weighted_sum(&run(q, k, v, d).0, &r);
                let eq = grad_check(&mut q, &dq, |q| loss(q, &k0, &v0));
                let ek = grad_check(&mut k, &dk, |k| loss(&q0, k, &v0));
                let ev = grad_check(&mut v, &dv, |v| loss(&q0, &k0, v));
                assert!(
                    eq < 1e-3 && ek < 1e-3 && ev < 1e-3,
                    "H={h} G={g} causal={causal}: {eq:e} {ek:e} {ev:e}"
                );
            }
        }
    }

    #[test]
    fn rows_are_distributions_and_causal_rows_see_no_future() {
        let d = dims(2, 1, true);
        let mut seed = 9;
        let (q, k, v) =
            (random(B * T * 6, &mut seed), random(B * T * 3, &mut seed), random(B * T * 3, &mut seed));
        let (_, att) = run(&q, &k, &v, d);
        // Key-major tiles: column i of a tile is query i's distribution over keys.
        for tile in att.chunks_exact(T * T) {
            for i in 0..T {
                let col: Vec<f32> = (0..T).map(|j| tile[j * T + i]).collect();
                assert!((col.iter().sum::<f32>() - 1.0).abs() < 1e-6);
                assert!(col[i + 1..].iter().all(|&p| p == 0.0), "query {i} attends to the future");
            }
        }
    }

    /// The vector exponentials of `Kernels::Auto` (where this CPU has them) against the portable
    /// loop, over tile widths that leave every tail length, with and without the causal mask.
    #[test]
    fn auto_softmax_matches_the_portable_loop() {
        let mut seed = 3;
        // Square tiles, causal or not, and cross-attention's rectangular ones.
        let squares = [1, 5, 8, 9, 17, 32, 33].map(|t| (t, t));
        let shapes = squares.iter().flat_map(|&s| [(s, false), (s, true)]);
        for ((tk, tq), causal) in shapes.chain([((5, 17), false), ((33, 9), false), ((1, 12), false)]) {
            let x: Vec<f32> = random(tk * tq, &mut seed).iter().map(|v| 8.0 * v).collect();
            let auto = dims(1, 1, causal);
            let portable = Attn { kernels: Kernels::Portable, ..auto };
            let (mut a, mut p, mut rows) = (x.clone(), x.clone(), vec![0.0; 2 * tq]);
            softmax_columns(&mut a, &mut rows, (tk, tq), 0.6, auto);
            softmax_columns(&mut p, &mut rows, (tk, tq), 0.6, portable);
            for (i, (&u, &w)) in a.iter().zip(&p).enumerate() {
                assert!(
                    (u - w).abs() <= 1e-6 * (1.0 + w.abs()),
                    "{tk}×{tq} causal={causal} [{i}]: {u} vs {w}"
                );
                assert_eq!(u == 0.0, w == 0.0, "masked entries are exactly 0 in both");
            }
        }
    }

    #[test]
    fn softmax_backward_matches_finite_differences() {
        for causal in [false, true] {
            let mut seed = 7;
            let (mut x, r) = (random(T * T, &mut seed), random(T * T, &mut seed));
            let scale = 0.7;
            let run = |x: &[f32]| {
                let (mut p, mut rows) = (x.to_vec(), vec![0.0; 2 * T]);
                softmax_columns(&mut p, &mut rows, (T, T), scale, dims(1, 1, causal));
                p
            };
            let p = run(&x);
            let (mut dp, mut dot) = (r.clone(), vec![0.0; T]);
            softmax_columns_backward(&mut dp, &p, &mut dot, (T, T), scale);
            let err = grad_check(&mut x, &dp, |x| weighted_sum(&run(x), &r));
            assert!(err < 1e-3, "causal={causal}: relative error {err:e}");
        }
    }

    /// Cross-attention: 3 queries of one sequence over 5 keys of another (the encoder's), MHA, MQA
    /// and GQA: forward against the definition, backward against finite differences.
    #[test]
    fn cross_attention_over_a_different_length_matches_definition_and_finite_differences() {
        let (tq, tk) = (3, 5);
        for (h, g) in [(4, 4), (4, 1), (4, 2)] {
            let d = dims(h, g, false);
            let mut seed = 71 + h as u32 + g as u32;
            let (mut q, mut k, mut v) = (
                random(B * tq * d.q_dim(), &mut seed),
                random(B * tk * d.kv_dim(), &mut seed),
                random(B * tk * d.kv_dim(), &mut seed),
            );
            let r = random(B * tq * d.q_dim(), &mut seed);
            let run = |q: &[f32], k: &[f32], v: &[f32]| {
                let (mut out, mut att, mut scratch) = (
                    vec![0.0; B * tq * d.q_dim()],
                    vec![0.0; B * h * tq * tk],
                    vec![0.0; d.scratch_len(tq, tk)],
                );
                forward(&mut out, &mut att, &mut scratch, [q, k, v], d, B, (tq, tk));
                (out, att)
            };
            let (out, att) = run(&q, &k, &v);
            // The definition, in f64.
            let (qd, kvd, hd) = (d.q_dim(), d.kv_dim(), d.head_dim);
            for b in 0..B {
                for hh in 0..h {
                    let gg = d.group_of(hh);
                    for i in 0..tq {
                        let qi = &q[(b * tq + i) * qd + hh * hd..][..hd];
                        let s: Vec<f64> = (0..tk)
                            .map(|j| {
                                let kj = &k[(b * tk + j) * kvd + gg * hd..][..hd];
                                qi.iter().zip(kj).map(|(&a, &c)| f64::from(a) * f64::from(c)).sum::<f64>()
                                    / (hd as f64).sqrt()
                            })
                            .collect();
                        let m = s.iter().cloned().fold(f64::NEG_INFINITY, f64::max);
                        let z: f64 = s.iter().map(|x| (x - m).exp()).sum();
                        for dd in 0..hd {
                            let want: f64 = (0..tk)
                                .map(|j| {
                                    (s[j] - m).exp() / z * f64::from(v[(b * tk + j) * kvd + gg * hd + dd])
                                })
                                .sum();
                            let got = out[(b * tq + i) * qd + hh * hd + dd];
                            assert!((f64::from(got) - want).abs() < 1e-6, "H={h} G={g}: {got} vs {want}");
                        }
                    }
                }
            }
            let (mut dq, mut dk, mut dv) = (vec![0.0; q.len()], vec![0.0; k.len()], vec![0.0; v.len()]);
            let mut scratch = vec![0.0; d.scratch_len(tq, tk)];
            backward([&mut dq, &mut dk, &mut dv], &mut scratch, &r, &att, [&q, &k, &v], d, B, (tq, tk));
            let (q0, k0, v0) = (q.clone(), k.clone(), v.clone());
            let loss = |q: &[f32], k: &[f32], v: &[f32]| weighted_sum(&run(q, k, v).0, &r);
            let eq = grad_check(&mut q, &dq, |q| loss(q, &k0, &v0));
            let ek = grad_check(&mut k, &dk, |k| loss(&q0, k, &v0));
            let ev = grad_check(&mut v, &dv, |v| loss(&q0, &k0, v));
            assert!(eq < 1e-3 && ek < 1e-3 && ev < 1e-3, "H={h} G={g}: {eq:e} {ek:e} {ev:e}");
        }
    }

    #[test]
    fn one_query_over_a_cache_equals_the_last_causal_row() {
        // The last position of causal attention sees every key: forward_one over the same keys
        // and values must give its output.
        for (h, g) in [(4, 2), (3, 1), (2, 2)] {
            let d = dims(h, g, true);
            let mut seed = 61 + h as u32;
            let (q, k, v) = (
                random(B * T * d.q_dim(), &mut seed),
                random(B * T * d.kv_dim(), &mut seed),
                random(B * T * d.kv_dim(), &mut seed),
            );
            let (full, _) = run(&q, &k, &v, d);
            for b in 0..B {
                let rows = |x: &[f32]| x[b * T * d.kv_dim()..(b + 1) * T * d.kv_dim()].to_vec();
                let last_q = &q[(b * T + T - 1) * d.q_dim()..][..d.q_dim()];
                let (mut out, mut scores) = (vec![0.0; d.q_dim()], vec![0.0; T]);
                forward_one(&mut out, last_q, [&rows(&k), &rows(&v)], &mut scores, d, T);
                let want = &full[(b * T + T - 1) * d.q_dim()..][..d.q_dim()];
                let worst = out.iter().zip(want).map(|(a, w)| (a - w).abs()).fold(0.0f32, f32::max);
                assert!(worst < 1e-6, "H={h} G={g}: off by {worst:e}");
            }
        }
    }

    /// The vector kernel `Auto` runs for one query (AVX-512 where the CPU has it) against the
    /// portable loop: every head count per group it specialises (1, 2, 4, 8 and leftovers),
    /// head dims up to 16 and one past (the portable fallback), contexts across a block edge.
    #[test]
    fn one_query_vector_kernel_matches_the_portable_loop() {
        let mut seed = 5;
        // The last two: many heads, in groups of one and of three (a block of two and one of one).
        let shapes =
            [(8, 4, 8), (8, 1, 8), (3, 1, 5), (12, 2, 4), (16, 1, 1), (2, 2, 16), (4, 1, 12), (2, 1, 17)];
        for (h, g, hd) in shapes.into_iter().chain([(20, 20, 4), (18, 6, 8)]) {
            for len in [1, 15, 16, 17, 40, 129] {
                let auto =
                    Attn { n_heads: h, n_kv_heads: g, head_dim: hd, causal: true, kernels: Kernels::Auto };
                let portable = Attn { kernels: Kernels::Portable, ..auto };
                let q = random(h * hd, &mut seed);
                // Large values: the online softmax must rescale when a later block holds the maximum.
                let k: Vec<f32> = random(len * g * hd, &mut seed).iter().map(|x| 4.0 * x).collect();
                let v = random(len * g * hd, &mut seed);
                let (mut want, mut got, mut scores) = (vec![0.0; h * hd], vec![0.0; h * hd], vec![0.0; len]);
                forward_one(&mut want, &q, [&k, &v], &mut scores, portable, len);
                forward_one(&mut got, &q, [&k, &v], &mut scores, auto, len);
                let worst = got.iter().zip(&want).map(|(a, w)| (a - w).abs()).fold(0.0f32, f32::max);
                assert!(worst < 2e-6, "H={h} G={g} D={hd} len={len}: off by {worst:e}");
                // Each head's arithmetic does not depend on which heads run beside it or in
                // which order the groups take the positions: one group alone gives its bits.
                let per = h / g;
                for gi in 0..g {
                    let cols = |x: &[f32]| -> Vec<f32> {
                        x.chunks_exact(g * hd).flat_map(|row| row[gi * hd..][..hd].to_vec()).collect()
                    };
                    let alone = Attn { n_heads: per, n_kv_heads: 1, ..auto };
                    let mut one = vec![0.0; per * hd];
                    let qg = &q[gi * per * hd..][..per * hd];
                    forward_one(&mut one, qg, [&cols(&k), &cols(&v)], &mut scores, alone, len);
                    let bits = |x: &[f32]| x.iter().map(|v| v.to_bits()).collect::<Vec<_>>();
                    assert_eq!(
                        bits(&one),
                        bits(&got[gi * per * hd..][..per * hd]),
                        "H={h} G={g} D={hd} group {gi}"
                    );
                }
            }
        }
    }

    #[test]
    fn mqa_equals_mha_with_repeated_kv() {
        // One kv head shared by 3 query heads equals MHA whose 3 kv heads are copies of it.
        let mut seed = 17;
        let (q, k1, v1) =
            (random(B * T * 9, &mut seed), random(B * T * 3, &mut seed), random(B * T * 3, &mut seed));
        let repeat = |x: &[f32]| -> Vec<f32> { x.chunks_exact(3).flat_map(|r| [r, r, r].concat()).collect() };
        let (k3, v3) = (repeat(&k1), repeat(&v1));
        let (mqa, _) = run(&q, &k1, &v1, dims(3, 1, false));
        let (mha, _) = run(&q, &k3, &v3, dims(3, 3, false));
        assert_eq!(mqa, mha);
    }

    #[test]
    fn inference_without_saving_gives_the_same_output() {
        let d = dims(4, 2, true);
        let mut seed = 5;
        let (q, k, v) =
            (random(B * T * 12, &mut seed), random(B * T * 6, &mut seed), random(B * T * 6, &mut seed));
        let (saved, _) = run(&q, &k, &v, d);
        let mut out = vec![0.0; saved.len()];
        let mut scratch = vec![0.0; d.scratch_len(T, T)];
        forward(&mut out, &mut [], &mut scratch, [&q, &k, &v], d, B, (T, T));
        assert_eq!(out, saved);
    }
}
