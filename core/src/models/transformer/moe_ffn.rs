//! The Mixture-of-Experts glue: where a block's MoE FFN tensors lie, its forward call over the
//! routing buffers, and the routing statistics of a forward pass.

use super::{Transformer, disjoint};
use crate::arena::Slot;
use crate::layers::moe::{self, ExpertLayout, Moe};

/// Where an MoE FFN's tensors lie: the router, and expert 0's four tensors (fc1.weight,
/// fc1.bias, fc2.weight, fc2.bias); expert e's are `stride` floats further per expert.
#[derive(Clone, Copy, Debug, Default)]
pub(super) struct MoeParams {
    pub(super) router: Slot,
    pub(super) expert0: [Slot; 4],
    pub(super) stride: usize,
}

impl MoeParams {
    pub(super) fn layout(&self) -> ExpertLayout {
        ExpertLayout { parts: self.expert0.map(|s| s.offset - self.expert0[0].offset), stride: self.stride }
    }
}

impl Transformer {
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
}

/// The MoE FFN of one block over `n` tokens: reads `inp`, writes `out` (both acts ranges), fills
/// the routing buffers and writes the call's statistics (assignments, dropped, aux).
pub(super) fn moe_forward(
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
