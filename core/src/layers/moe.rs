//! Mixture-of-Experts FFN with top-k routing, per-expert capacity and a load-balancing loss
//! (SPEC §3.5, followed to the letter). Over the N tokens of one call:
//!
//! 1. `probs = softmax(x · routerᵀ)`; each token picks its k most probable experts (ties go to the
//!    lower index); its gates are those k probabilities renormalised to sum 1.
//! 2. Capacity C (absolute, or `ceil(factor · N · k / E)`): every token's 1st choice in token
//!    order, then every 2nd choice, …; an assignment to an expert that already holds C is dropped
//!    (it contributes 0; the other gates are not renormalised).
//! 3. `out[t] = Σ_kept gate · expert(x[t])`, experts being dense FFNs (`ffn.experts.{e}.fc1/fc2`).
//! 4. `aux = α · E · Σ_e f_e · P_e`: f_e = assignments to e before dropping / (N·k), a constant;
//!    P_e = mean over tokens of `probs[:, e]`, which carries the gradient into the router.
//!
//! Experts run only on their tokens: kept assignments are packed expert by expert into rows (a
//! routing table bounded by capacity, planned for the largest call), each expert runs its two
//! gemms on its block of rows, and gate-weighted outputs are scattered back. Cost follows k·N,
//! not E·N. Token and row indices are stored as exact f32 integers (the plan keeps them below
//! 2^24), so the arena stays plain `f32`.
//!
//! Shapes: inp, out (N, C_model); router (E, C_model); per expert fc1 (F, C_model), fc2 (C_model, F).

use crate::error::{Result, ensure};
use crate::layers::{Activation, Ffn, ffn};
use crate::ops::math::exp;
use crate::ops::{Gemm, Kernels, gemm, max, sum, vectorized};

/// Most assignments a routing table may index (f32 holds every integer below 2^24 exactly).
pub const MAX_ASSIGNMENTS: usize = 1 << 24;

/// How many assignments each expert may take per call.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Capacity {
    /// Exactly this many (`--capacity`).
    Absolute(usize),
    /// `ceil(factor · tokens · k / experts)` for the tokens of each call (`--capacity_factor`).
    Factor(f32),
}

/// Dims and settings of an MoE FFN.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Moe {
    /// Model width.
    pub n_embd: usize,
    /// Hidden width of each expert.
    pub n_hidden: usize,
    /// Experts E.
    pub n_experts: usize,
    /// Experts per token k.
    pub top_k: usize,
    /// Per-expert capacity.
    pub capacity: Capacity,
    /// Weight of the load-balancing loss.
    pub alpha: f32,
    /// Experts' activation (GELU).
    pub act: Activation,
    /// The gemm kernels its products run on.
    pub kernels: Kernels,
}

/// Routing statistics of one call.
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct MoeStats {
    /// Assignments made (tokens · k).
    pub assignments: usize,
    /// Assignments dropped for capacity.
    pub dropped: usize,
    /// The load-balancing loss.
    pub aux: f32,
}

/// Where each expert's four tensors lie: offsets of fc1.weight, fc1.bias, fc2.weight, fc2.bias
/// from the start of expert 0, and the distance between consecutive experts (all in floats).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ExpertLayout {
    /// Offsets of fc1.weight, fc1.bias, fc2.weight, fc2.bias within expert 0.
    pub parts: [usize; 4],
    /// Floats from one expert to the next.
    pub stride: usize,
}

impl Moe {
    /// Check the settings.
    pub fn validate(&self) -> Result<()> {
        ensure(self.n_experts > 0, "num_experts", "must be at least 1")?;
        ensure(self.top_k > 0, "topk", "must be at least 1")?;
        ensure(self.top_k <= self.n_experts, "topk", "must not exceed num_experts")?;
        ensure(self.alpha.is_finite() && self.alpha >= 0.0, "alpha", "must be >= 0")?;
        match self.capacity {
            Capacity::Absolute(c) => ensure(c > 0, "capacity", "must be at least 1"),
            Capacity::Factor(f) => {
                ensure(f.is_finite() && f > 0.0, "capacity_factor", "must be a positive finite number")
            }
        }
    }

    /// Per-expert capacity for a call of `tokens` tokens (never more than `tokens`: a token
    /// picks an expert at most once).
    /// A `const fn`, so that an arena can be sized at compile time ([`crate::sizing`]).
    pub const fn capacity_for(&self, tokens: usize) -> usize {
        let c = match self.capacity {
            Capacity::Absolute(c) => c,
            Capacity::Factor(f) => {
                // In f64, as the reference computes `ceil(factor * N * k / E)` with Python floats.
                let raw = f as f64 * (tokens * self.top_k) as f64 / self.n_experts as f64;
                // ceil(raw) for raw >= 0 (as `libm::ceil`, which is not a const fn).
                let floor = raw as usize;
                if (floor as f64) < raw { floor.saturating_add(1) } else { floor }
            }
        };
        if c < tokens { c } else { tokens }
    }

    /// Most packed rows a call of up to `max_tokens` tokens can keep, or `None` when a product
    /// overflows `usize`.
    pub const fn checked_max_rows(&self, max_tokens: usize) -> Option<usize> {
        // Assignments first: `capacity_for` multiplies the same two.
        let Some(assigned) = max_tokens.checked_mul(self.top_k) else { return None };
        let Some(room) = self.n_experts.checked_mul(self.capacity_for(max_tokens)) else { return None };
        Some(if assigned < room { assigned } else { room })
    }

    /// [`checked_max_rows`](Self::checked_max_rows) of a planned (so representable) size.
    pub const fn max_rows(&self, max_tokens: usize) -> usize {
        self.checked_max_rows(max_tokens).expect("planned MoE rows fit usize")
    }

    fn expert(&self) -> Ffn {
        Ffn { n_embd: self.n_embd, n_hidden: self.n_hidden, act: self.act, kernels: self.kernels }
    }
}

/// The routing table and saved activations of one call, carved from the arena. Lengths are for
/// the largest planned call; a call uses prefixes. `hid` and the gradient buffers may be empty
/// in inference.
#[derive(Debug)]
pub struct Buffers<'a> {
    /// Router probabilities (N, E).
    pub probs: &'a mut [f32],
    /// Each token's chosen experts, best first (N, k), as f32 integers.
    pub choice: &'a mut [f32],
    /// Each choice's gate (N, k).
    pub gate: &'a mut [f32],
    /// Each choice's packed row, or −1 when dropped (N, k).
    pub row: &'a mut [f32],
    /// The token of each packed row (rows).
    pub row_token: &'a mut [f32],
    /// Per expert: assignments before dropping, kept rows, first row (E each).
    pub assigned: &'a mut [f32],
    /// Kept rows per expert (E).
    pub kept: &'a mut [f32],
    /// First packed row of each expert (E).
    pub first: &'a mut [f32],
    /// Gathered inputs, expert hidden pre- and post-activation, expert outputs (rows × width).
    pub xin: &'a mut [f32],
    /// Hidden pre-activation (rows, F).
    pub pre: &'a mut [f32],
    /// Hidden post-activation (rows, F); empty in inference (applied in place).
    pub hid: &'a mut [f32],
    /// Expert outputs before gating (rows, C_model).
    pub yout: &'a mut [f32],
}

impl Buffers<'_> {
    /// A read-only view, as [`backward`] takes it.
    pub fn saved(&self) -> Saved<'_> {
        Saved {
            probs: self.probs,
            choice: self.choice,
            gate: self.gate,
            row: self.row,
            row_token: self.row_token,
            assigned: self.assigned,
            kept: self.kept,
            first: self.first,
            xin: self.xin,
            pre: self.pre,
            hid: self.hid,
            yout: self.yout,
        }
    }
}

/// What [`forward`] saved for [`backward`]: the fields of [`Buffers`], read-only.
#[derive(Clone, Copy, Debug)]
#[allow(missing_docs)] // the fields are those of `Buffers`
pub struct Saved<'a> {
    pub probs: &'a [f32],
    pub choice: &'a [f32],
    pub gate: &'a [f32],
    pub row: &'a [f32],
    pub row_token: &'a [f32],
    pub assigned: &'a [f32],
    pub kept: &'a [f32],
    pub first: &'a [f32],
    pub xin: &'a [f32],
    pub pre: &'a [f32],
    pub hid: &'a [f32],
    pub yout: &'a [f32],
}

impl<'a> Saved<'a> {
    /// The view over twelve slices in [`buffer_lens`] order.
    pub fn from_slices(s: [&'a [f32]; 12]) -> Self {
        let [probs, choice, gate, row, row_token, assigned, kept, first, xin, pre, hid, yout] = s;
        Saved { probs, choice, gate, row, row_token, assigned, kept, first, xin, pre, hid, yout }
    }
}

impl<'a> Buffers<'a> {
    /// The buffers over twelve slices in [`buffer_lens`] order.
    pub fn from_slices(s: [&'a mut [f32]; 12]) -> Self {
        let [probs, choice, gate, row, row_token, assigned, kept, first, xin, pre, hid, yout] = s;
        Buffers { probs, choice, gate, row, row_token, assigned, kept, first, xin, pre, hid, yout }
    }
}

/// The products the buffer lengths are made of: tokens × experts, tokens × k, rows × embd,
/// rows × hidden, and the rows; `None` when one overflows `usize`.
const fn products(d: &Moe, max_tokens: usize) -> Option<[usize; 5]> {
    let n = max_tokens;
    let Some(rows) = d.checked_max_rows(n) else { return None };
    match (
        n.checked_mul(d.n_experts),
        n.checked_mul(d.top_k),
        rows.checked_mul(d.n_embd),
        rows.checked_mul(d.n_hidden),
    ) {
        (Some(ne), Some(nk), Some(re), Some(rh)) => Some([ne, nk, re, rh, rows]),
        _ => None,
    }
}

/// Floats of each field of [`Buffers`] for calls of up to `max_tokens` tokens, in field order
/// (`training` keeps `hid`); `None` when a length overflows `usize` (planners check this).
pub const fn checked_buffer_lens(d: &Moe, max_tokens: usize, training: bool) -> Option<[usize; 12]> {
    let Some([ne, nk, re, rh, rows]) = products(d, max_tokens) else { return None };
    let (e, hid) = (d.n_experts, if training { rh } else { 0 });
    Some([ne, nk, nk, nk, rows, e, e, e, re, rh, hid, re])
}

/// [`checked_buffer_lens`] of a planned (so representable) size.
pub const fn buffer_lens(d: &Moe, max_tokens: usize, training: bool) -> [usize; 12] {
    checked_buffer_lens(d, max_tokens, training).expect("planned MoE buffers fit usize")
}

/// Top-k of one probability row, best first; ties go to the lower index.
#[inline]
fn top_k(probs: &[f32], k: usize, chosen: &mut [usize]) {
    for i in 0..k {
        let mut best: Option<usize> = None;
        for (e, &p) in probs.iter().enumerate() {
            if chosen[..i].contains(&e) {
                continue;
            }
            // Strictly greater: an equal probability later in the row does not displace it.
            if best.is_none_or(|b| p > probs[b]) {
                best = Some(e);
            }
        }
        chosen[i] = best.unwrap_or(0);
    }
}

/// out (N, C) = MoE(inp) over `tokens` tokens. Overwrites `out` and the buffers; returns the
/// call's routing statistics (aux loss included). `w_router` is (E, C); `experts` starts at
/// expert 0's fc1.weight.
pub fn forward(
    out: &mut [f32],
    b: &mut Buffers<'_>,
    inp: &[f32],
    w_router: &[f32],
    experts: (&[f32], ExpertLayout),
    d: Moe,
    tokens: usize,
) -> MoeStats {
    let (n, k, ne, c) = (tokens, d.top_k, d.n_experts, d.n_embd);
    let probs = &mut b.probs[..n * ne];
    // 1. Router probabilities.
    gemm(probs, inp, w_router, Gemm::nt(n, ne, c).on(d.kernels));
    vectorized(
        #[inline(always)]
        || {
            for row in probs.chunks_exact_mut(ne) {
                let top = max(row);
                row.iter_mut().for_each(|p| *p = exp(*p - top));
                let inv = 1.0 / sum(row);
                row.iter_mut().for_each(|p| *p *= inv);
            }
        },
    );
    // 1. Top-k and renormalised gates.
    let mut chosen = [0usize; 64];
    let chosen = &mut chosen[..k.min(64)];
    debug_assert!(k <= 64, "validated: top_k <= num_experts <= 64");
    for t in 0..n {
        let p = &probs[t * ne..][..ne];
        top_k(p, k, chosen);
        let s: f32 = chosen.iter().map(|&e| p[e]).sum();
        for (i, &e) in chosen.iter().enumerate() {
            b.choice[t * k + i] = e as f32;
            b.gate[t * k + i] = p[e] / s;
        }
    }
    // 2. Capacity, in priority order: all 1st choices in token order, then all 2nd choices, ...
    let cap = d.capacity_for(n);
    b.assigned[..ne].fill(0.0);
    b.kept[..ne].fill(0.0);
    for i in 0..k {
        for t in 0..n {
            let e = b.choice[t * k + i] as usize;
            b.assigned[e] += 1.0;
            if (b.kept[e] as usize) < cap {
                b.row[t * k + i] = b.kept[e]; // rank within the expert, made absolute below
                b.kept[e] += 1.0;
            } else {
                b.row[t * k + i] = -1.0;
            }
        }
    }
    let mut next = 0.0f32;
    for e in 0..ne {
        b.first[e] = next;
        next += b.kept[e];
    }
    let mut dropped = 0;
    for (slot, &e) in b.row[..n * k].iter_mut().zip(b.choice.iter()) {
        if *slot < 0.0 {
            dropped += 1;
        } else {
            *slot += b.first[e as usize];
        }
    }
    let rows = next as usize;
    // Gather each kept assignment's input into its expert's block of rows.
    for (a, &r) in b.row[..n * k].iter().enumerate() {
        if r >= 0.0 {
            let (t, r) = (a / k, r as usize);
            b.row_token[r] = t as f32;
            b.xin[r * c..][..c].copy_from_slice(&inp[t * c..][..c]);
        }
    }
    // 3. Each expert on its rows only.
    let (params, layout) = experts;
    let f = d.n_hidden;
    for e in 0..ne {
        let (r0, len) = (b.first[e] as usize, b.kept[e] as usize);
        if len == 0 {
            continue;
        }
        let w = expert_weights(params, layout, &d, e);
        let (xin, yout) = (&b.xin[r0 * c..][..len * c], &mut b.yout[r0 * c..][..len * c]);
        let pre = &mut b.pre[r0 * f..][..len * f];
        let hid = if b.hid.is_empty() { None } else { Some(&mut b.hid[r0 * f..][..len * f]) };
        ffn::forward(yout, pre, hid, xin, w, d.expert());
    }
    // 3. Scatter the gate-weighted outputs back to their tokens.
    out[..n * c].fill(0.0);
    for (a, &r) in b.row[..n * k].iter().enumerate() {
        if r >= 0.0 {
            let (t, g) = (a / k, b.gate[a]);
            let y = &b.yout[r as usize * c..][..c];
            out[t * c..][..c].iter_mut().zip(y).for_each(|(o, &v)| *o += g * v);
        }
    }
    // 4. Load-balancing loss: α·E·Σ f_e·P_e.
    let mut aux = 0.0f64;
    for e in 0..ne {
        let f_e = f64::from(b.assigned[e]) / (n * k) as f64;
        let p_e = (0..n).map(|t| f64::from(probs[t * ne + e])).sum::<f64>() / n as f64;
        aux += f_e * p_e;
    }
    let aux = (f64::from(d.alpha) * ne as f64 * aux) as f32;
    debug_assert_eq!(rows + dropped, n * k);
    MoeStats { assignments: n * k, dropped, aux }
}

/// The four tensors of expert `e` (fc1.weight, fc1.bias, fc2.weight, fc2.bias).
fn expert_weights<'p>(params: &'p [f32], l: ExpertLayout, d: &Moe, e: usize) -> ffn::Weights<'p> {
    let lens = expert_lens(d);
    core::array::from_fn(|i| &params[e * l.stride + l.parts[i]..][..lens[i]])
}

/// Gradients of expert `e`'s four tensors, laid out like the parameters.
fn expert_grads<'g>(grads: &'g mut [f32], l: ExpertLayout, d: &Moe, e: usize) -> [&'g mut [f32]; 4] {
    let lens = expert_lens(d);
    let ranges = core::array::from_fn(|i| {
        let at = e * l.stride + l.parts[i];
        at..at + lens[i]
    });
    grads.get_disjoint_mut(ranges).expect("an expert's tensors are disjoint slots")
}

fn expert_lens(d: &Moe) -> [usize; 4] {
    let (c, f) = (d.n_embd, d.n_hidden);
    [f * c, f, c * f, c]
}

/// Gradient buffers of [`backward`], for the largest planned call.
#[derive(Debug)]
pub struct GradBuffers<'a> {
    /// d(expert outputs), rows × C.
    pub dyout: &'a mut [f32],
    /// d(gathered inputs), rows × C.
    pub dxin: &'a mut [f32],
    /// d(hidden post-activation), then in place d(pre-activation), rows × F.
    pub dhid: &'a mut [f32],
    /// d(gates), N × k.
    pub dgate: &'a mut [f32],
    /// d(probs), then d(router logits), N × E.
    pub dprobs: &'a mut [f32],
}

impl<'a> GradBuffers<'a> {
    /// The buffers over five slices in [`grad_buffer_lens`] order.
    pub fn from_slices(s: [&'a mut [f32]; 5]) -> Self {
        let [dyout, dxin, dhid, dgate, dprobs] = s;
        GradBuffers { dyout, dxin, dhid, dgate, dprobs }
    }
}

/// Floats of each field of [`GradBuffers`] for calls of up to `max_tokens` tokens; `None` when
/// a length overflows `usize`.
pub const fn checked_grad_buffer_lens(d: &Moe, max_tokens: usize) -> Option<[usize; 5]> {
    let Some([ne, nk, re, rh, _]) = products(d, max_tokens) else { return None };
    Some([re, re, rh, nk, ne])
}

/// [`checked_grad_buffer_lens`] of a planned (so representable) size.
pub const fn grad_buffer_lens(d: &Moe, max_tokens: usize) -> [usize; 5] {
    checked_grad_buffer_lens(d, max_tokens).expect("planned MoE gradient buffers fit usize")
}

/// Backward of [`forward`] (training buffers). Accumulates (`+=`) into `dinp`, `dw_router` and
/// the experts' gradients (`dexperts`, laid out like `experts`); overwrites `g`.
#[allow(clippy::too_many_arguments)] // input grad, param grads, scratch, dout, saved, weights, dims
pub fn backward(
    dinp: &mut [f32],
    (dw_router, dexperts): (&mut [f32], &mut [f32]),
    g: GradBuffers<'_>,
    dout: &[f32],
    b: &Saved<'_>,
    inp: &[f32],
    (w_router, experts, layout): (&[f32], &[f32], ExpertLayout),
    d: Moe,
    tokens: usize,
) {
    let (n, k, ne, c, f) = (tokens, d.top_k, d.n_experts, d.n_embd, d.n_hidden);
    // 3. Through the scatter: d(gate) = dout_t · y_row, d(y_row) = gate · dout_t; dropped: 0.
    for a in 0..n * k {
        let (t, r) = (a / k, b.row[a]);
        if r < 0.0 {
            g.dgate[a] = 0.0;
            continue;
        }
        let (dy_t, r) = (&dout[t * c..][..c], r as usize);
        g.dgate[a] = crate::ops::dot(dy_t, &b.yout[r * c..][..c]);
        let gate = b.gate[a];
        g.dyout[r * c..][..c].iter_mut().zip(dy_t).for_each(|(d, &v)| *d = gate * v);
    }
    // 3. Each expert on its rows; then the row gradients back to their tokens.
    let rows: usize = b.kept[..ne].iter().map(|&v| v as usize).sum();
    g.dxin[..rows * c].fill(0.0);
    for e in 0..ne {
        let (r0, len) = (b.first[e] as usize, b.kept[e] as usize);
        if len == 0 {
            continue;
        }
        let saved = [&b.xin[r0 * c..][..len * c], &b.pre[r0 * f..][..len * f], &b.hid[r0 * f..][..len * f]];
        let dhid = &mut g.dhid[r0 * f..][..len * f];
        let dy = &g.dyout[r0 * c..][..len * c];
        let dw = expert_grads(dexperts, layout, &d, e);
        ffn::backward(
            &mut g.dxin[r0 * c..][..len * c],
            dw,
            dhid,
            dy,
            saved,
            expert_weights(experts, layout, &d, e),
            d.expert(),
        );
    }
    for r in 0..rows {
        let t = b.row_token[r] as usize;
        dinp[t * c..][..c].iter_mut().zip(&g.dxin[r * c..][..c]).for_each(|(d, &v)| *d += v);
    }
    // 1. Gates → probabilities: g_i = p_i / S over the k choices, so
    //    dp_j = (dgate_j − Σ_i dgate_i · g_i) / S (dropped choices still count in S).
    let dprobs = &mut g.dprobs[..n * ne];
    dprobs.fill(0.0);
    for t in 0..n {
        let (chosen, gates, dgates) =
            (&b.choice[t * k..][..k], &b.gate[t * k..][..k], &g.dgate[t * k..][..k]);
        let s: f32 = chosen.iter().map(|&e| b.probs[t * ne + e as usize]).sum();
        let gd: f32 = dgates.iter().zip(gates).map(|(dg, gi)| dg * gi).sum();
        for (&e, &dg) in chosen.iter().zip(dgates) {
            dprobs[t * ne + e as usize] += (dg - gd) / s;
        }
    }
    // 4. aux = α·E·Σ f_e·P_e with P_e = mean_t p_te: d aux / d p_te = α·E·f_e / N.
    for e in 0..ne {
        let f_e = f64::from(b.assigned[e]) / (n * k) as f64;
        let coef = (f64::from(d.alpha) * ne as f64 * f_e / n as f64) as f32;
        dprobs[e..].iter_mut().step_by(ne).take(n).for_each(|v| *v += coef);
    }
    // 1. Softmax backward in place: d logits = p ⊙ (dp − p·dp).
    for (dp, p) in dprobs.chunks_exact_mut(ne).zip(b.probs.chunks_exact(ne)) {
        let pd = crate::ops::dot(dp, p);
        dp.iter_mut().zip(p).for_each(|(v, &pi)| *v = pi * (*v - pd));
    }
    // Router: d W_r += d logitsᵀ · inp;  d inp += d logits · W_r.
    gemm(dw_router, dprobs, inp, Gemm::tn(ne, c, n).acc().on(d.kernels));
    gemm(dinp, dprobs, w_router, Gemm::nn(n, c, ne).acc().on(d.kernels));
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testing::{grad_check, lcg_fill, weighted_sum};
    use std::vec;
    use std::vec::Vec;

    const C: usize = 4;
    const F: usize = 6;

    fn moe(n_experts: usize, top_k: usize, capacity: Capacity) -> Moe {
        Moe {
            n_embd: C,
            n_hidden: F,
            n_experts,
            top_k,
            capacity,
            alpha: 0.1,
            act: Activation::Gelu,
            kernels: Kernels::Auto,
        }
    }

    /// Experts packed one after another, tensors in state_dict order, no padding.
    fn layout() -> ExpertLayout {
        ExpertLayout { parts: [0, F * C, F * C + F, 2 * F * C + F], stride: 2 * F * C + F + C }
    }

    struct Owned(Vec<Vec<f32>>);

    impl Owned {
        fn new(d: &Moe, tokens: usize) -> Self {
            Owned(buffer_lens(d, tokens, true).iter().map(|&l| vec![0.0; l]).collect())
        }
        fn bufs(&mut self) -> Buffers<'_> {
            let [probs, choice, gate, row, row_token, assigned, kept, first, xin, pre, hid, yout] =
                &mut self.0[..]
            else {
                unreachable!("twelve buffers")
            };
            Buffers { probs, choice, gate, row, row_token, assigned, kept, first, xin, pre, hid, yout }
        }
    }

    fn random(len: usize, seed: &mut u32) -> Vec<f32> {
        let mut v = vec![0.0; len];
        lcg_fill(&mut v, seed);
        v
    }

    fn run(d: Moe, x: &[f32], router: &[f32], experts: &[f32]) -> (Vec<f32>, MoeStats, Owned) {
        let n = x.len() / C;
        let mut owned = Owned::new(&d, n);
        let mut out = vec![0.0; n * C];
        let stats = forward(&mut out, &mut owned.bufs(), x, router, (experts, layout()), d, n);
        (out, stats, owned)
    }

    #[test]
    fn one_expert_top1_with_room_is_the_dense_ffn() {
        let mut seed = 3;
        let (x, router, experts) =
            (random(5 * C, &mut seed), random(C, &mut seed), random(layout().stride, &mut seed));
        let (out, stats, _) = run(moe(1, 1, Capacity::Absolute(5)), &x, &router, &experts);
        let w = expert_weights(&experts, layout(), &moe(1, 1, Capacity::Absolute(5)), 0);
        let (mut dense, mut pre) = (vec![0.0; 5 * C], vec![0.0; 5 * F]);
        ffn::forward(
            &mut dense,
            &mut pre,
            None,
            &x,
            w,
            Ffn { n_embd: C, n_hidden: F, act: Activation::Gelu, kernels: Kernels::Auto },
        );
        assert_eq!(out, dense, "gate 1 times the expert is the expert");
        assert_eq!((stats.assignments, stats.dropped), (5, 0));
    }

    #[test]
    fn top_all_with_equal_logits_averages_the_experts() {
        let mut seed = 5;
        let (x, experts) = (random(3 * C, &mut seed), random(3 * layout().stride, &mut seed));
        let d = moe(3, 3, Capacity::Factor(1.0));
        let (out, stats, owned) = run(d, &x, &[0.0; 3 * C], &experts);
        assert_eq!(stats.dropped, 0);
        assert_eq!(&owned.0[1][..3], &[0.0, 1.0, 2.0], "equal logits: choices in index order");
        let mut mean = vec![0.0f32; 3 * C];
        for e in 0..3 {
            let (mut y, mut pre) = (vec![0.0; 3 * C], vec![0.0; 3 * F]);
            ffn::forward(&mut y, &mut pre, None, &x, expert_weights(&experts, layout(), &d, e), d.expert());
            mean.iter_mut().zip(&y).for_each(|(m, v)| *m += v / 3.0);
        }
        let worst = out.iter().zip(&mean).map(|(a, b)| (a - b).abs()).fold(0.0f32, f32::max);
        assert!(worst < 1e-6, "off by {worst:e}");
    }

    #[test]
    fn capacity_keeps_first_choices_in_token_order_then_second_choices() {
        // The router sends every token to expert 0 first and expert 1 second (logits 2 > 1 > 0).
        let d = moe(3, 2, Capacity::Absolute(2));
        let x = vec![1.0; 4 * C];
        let mut router = vec![0.0; 3 * C];
        router[..C].fill(0.5); // expert 0: logit 2
        router[C..2 * C].fill(0.25); // expert 1: logit 1
        let (_, stats, owned) = run(d, &x, &router, &vec![0.1; 3 * layout().stride]);
        let row = &owned.0[3];
        // Tokens 0, 1 keep expert 0 (rows 0, 1); tokens 2, 3 are dropped there. Second choices:
        // expert 1 takes tokens 0 and 1 (its first two, in token order), drops 2 and 3.
        assert_eq!(row, &[0.0, 2.0, 1.0, 3.0, -1.0, -1.0, -1.0, -1.0]);
        assert_eq!(stats.dropped, 4);
        assert_eq!(&owned.0[5], &[4.0, 4.0, 0.0], "assignments before dropping");
        // aux = α·E·Σ f_e·P_e with f = (0.5, 0.5, 0) and P = softmax(2, 1, 0) for every token.
        let z = 2f32.exp() + 1f32.exp() + 1.0;
        let want = 0.1 * 3.0 * (0.5 * 2f32.exp() / z + 0.5 * 1f32.exp() / z);
        assert!((stats.aux - want).abs() < 1e-6, "aux {} vs {want}", stats.aux);
    }

    #[test]
    fn ties_go_to_the_lower_index() {
        let mut chosen = [9usize; 2];
        top_k(&[0.2, 0.3, 0.3, 0.2], 2, &mut chosen);
        assert_eq!(chosen, [1, 2]);
        top_k(&[0.25; 4], 2, &mut chosen);
        assert_eq!(chosen, [0, 1]);
    }

    #[test]
    fn capacity_from_the_factor_is_per_call() {
        let d = moe(4, 2, Capacity::Factor(1.25));
        assert_eq!(d.capacity_for(21), 14); // ceil(1.25 · 21 · 2 / 4) = ceil(13.125)
        assert_eq!(d.capacity_for(1024), 640);
        assert_eq!(moe(4, 2, Capacity::Absolute(100)).capacity_for(10), 10, "never more than the tokens");
    }

    #[test]
    fn backward_matches_finite_differences_away_from_ties() {
        for (ne, k, cap) in
            [(4, 2, Capacity::Factor(1.25)), (3, 1, Capacity::Absolute(2)), (4, 3, Capacity::Factor(0.6))]
        {
            let d = moe(ne, k, cap);
            let n = 6;
            let mut seed = 17 + ne as u32 * 3 + k as u32;
            let (mut x, mut router, mut experts) = (
                random(n * C, &mut seed),
                random(ne * C, &mut seed),
                random(ne * layout().stride, &mut seed),
            );
            router.iter_mut().for_each(|v| *v *= 3.0); // well-separated probabilities: no near-ties
            let r = random(n * C, &mut seed);
            let loss = |x: &[f32], router: &[f32], experts: &[f32]| {
                let (out, stats, _) = run(d, x, router, experts);
                weighted_sum(&out, &r) + f64::from(stats.aux)
            };
            let (_, stats, mut owned) = run(d, &x, &router, &experts);
            if matches!(cap, Capacity::Absolute(2)) {
                assert!(stats.dropped > 0, "this case is meant to drop assignments");
            }
            let (mut dx, mut dr, mut de) =
                (vec![0.0; x.len()], vec![0.0; router.len()], vec![0.0; experts.len()]);
            let mut gb: Vec<Vec<f32>> = grad_buffer_lens(&d, n).iter().map(|&l| vec![0.0; l]).collect();
            let [dyout, dxin, dhid, dgate, dprobs] = &mut gb[..] else { unreachable!("five buffers") };
            let g = GradBuffers { dyout, dxin, dhid, dgate, dprobs };
            backward(
                &mut dx,
                (&mut dr, &mut de),
                g,
                &r,
                &owned.bufs().saved(),
                &x,
                (&router, &experts, layout()),
                d,
                n,
            );
            let (x0, r0, e0) = (x.clone(), router.clone(), experts.clone());
            // A smaller step keeps perturbations from reordering the top-k choices.
            let ex = crate::testing::grad_check_eps(&mut x, &dx, 1e-3, |x| loss(x, &r0, &e0));
            let er = crate::testing::grad_check_eps(&mut router, &dr, 1e-3, |w| loss(&x0, w, &e0));
            let ee = grad_check(&mut experts, &de, |w| loss(&x0, &r0, w));
            assert!(
                ex < 1e-3 && er < 1e-3 && ee < 1e-3,
                "E={ne} k={k}: input {ex:e}, router {er:e}, experts {ee:e}"
            );
        }
    }
}
