//! The arena: plan, then carve. The only place memory is handed out.
//!
//! A model's `plan` is pure: it lays every tensor out with a bump [`Layout`] per [`Region`] and
//! returns [`Slot`]s (offsets, not pointers) and a [`Report`] of the bytes of each region. At
//! init, [`carve`] splits the caller's `&mut [f32]` by that report. Because the same report
//! drives both, the bytes planned are the bytes used, by construction.
//!
//! Regions, in arena order:
//! `params | grads | opt_state | acts | act_grads | scratch | kv_cache`.
//! Gradients and each copy of the optimizer state mirror the params layout exactly (llm.c style),
//! so a parameter's slot indexes all of them. An inference plan gives the training regions 0 bytes.

use core::ops::Range;

use crate::error::{Error, Result};

/// Slots start on multiples of this many floats (64 bytes: one cache line, one AVX-512 vector).
pub const ALIGN_FLOATS: usize = 16;

/// Bytes per arena element.
pub const FLOAT_BYTES: usize = core::mem::size_of::<f32>();

/// The classes of memory a plan reports separately.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Region {
    /// Trainable parameters, one flat slice.
    Params,
    /// Gradients, mirroring `Params`.
    Grads,
    /// Optimizer state: `k` copies of the params layout (Adam: m and v).
    OptState,
    /// Activations: inputs and outputs of each op, kept for backward when training.
    Acts,
    /// Gradients of the activations that backward needs.
    ActGrads,
    /// Per-call working memory (no state survives a call).
    Scratch,
    /// Key/value cache for incremental decoding.
    KvCache,
}

impl Region {
    /// Every region, in arena order.
    pub const ALL: [Region; 7] = [
        Region::Params,
        Region::Grads,
        Region::OptState,
        Region::Acts,
        Region::ActGrads,
        Region::Scratch,
        Region::KvCache,
    ];

    /// The region's name as reports print it.
    pub const fn name(self) -> &'static str {
        match self {
            Region::Params => "params",
            Region::Grads => "grads",
            Region::OptState => "opt_state",
            Region::Acts => "acts",
            Region::ActGrads => "act_grads",
            Region::Scratch => "scratch",
            Region::KvCache => "kv_cache",
        }
    }

    const fn index(self) -> usize {
        self as usize
    }
}

/// A tensor's place inside its region: an offset and a length, in floats.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Slot {
    /// Offset from the start of the region, in floats (a multiple of [`ALIGN_FLOATS`]).
    pub offset: usize,
    /// Length in floats.
    pub len: usize,
}

impl Slot {
    /// The whole slot as an index range.
    pub const fn range(self) -> Range<usize> {
        self.offset..self.offset + self.len
    }

    /// The same slot `by` floats further on (layers laid out identically differ by a stride).
    pub const fn shifted(self, by: usize) -> Slot {
        Slot { offset: self.offset + by, len: self.len }
    }

    /// The first `len` floats of the slot (a batch smaller than planned uses a prefix).
    pub fn prefix(self, len: usize) -> Range<usize> {
        debug_assert!(len <= self.len, "prefix {len} of a slot of {}", self.len);
        self.offset..self.offset + len
    }
}

/// A bump allocator over one region. Hands out aligned slots; touches no memory.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Layout {
    len: usize,
}

impl Layout {
    /// Reserve `len` floats at the next aligned offset.
    pub fn take(&mut self, len: usize) -> Result<Slot> {
        let offset = self.len;
        let padded = len.checked_next_multiple_of(ALIGN_FLOATS).ok_or(Error::SizeOverflow)?;
        self.len = offset.checked_add(padded).ok_or(Error::SizeOverflow)?;
        Ok(Slot { offset, len })
    }

    /// Floats used so far (always a multiple of [`ALIGN_FLOATS`]).
    pub const fn len(&self) -> usize {
        self.len
    }

    /// True when nothing has been taken.
    pub const fn is_empty(&self) -> bool {
        self.len == 0
    }
}

/// One bump [`Layout`] per region: what a model's `plan` fills.
#[derive(Clone, Copy, Debug, Default)]
pub struct Planner {
    layouts: [Layout; 7],
}

impl Planner {
    /// Reserve `len` floats in `region`.
    pub fn take(&mut self, region: Region, len: usize) -> Result<Slot> {
        self.layouts[region.index()].take(len)
    }

    /// Floats used so far in `region`.
    pub fn len(&self, region: Region) -> usize {
        self.layouts[region.index()].len()
    }

    /// Take, `times` more times over, what every region took since `since` (an earlier copy of
    /// this planner): how a plan lays out n identical blocks in O(1), by planning one and
    /// repeating its stride. Lengths are always aligned, so the repeats are exact.
    pub fn repeat(&mut self, since: &Planner, times: usize) -> Result<()> {
        for (l, s) in self.layouts.iter_mut().zip(&since.layouts) {
            let stride = l.len.checked_sub(s.len).ok_or(Error::SizeOverflow)?;
            let more = stride.checked_mul(times).ok_or(Error::SizeOverflow)?;
            l.len = l.len.checked_add(more).ok_or(Error::SizeOverflow)?;
        }
        Ok(())
    }

    /// The report of this plan: params are mirrored into grads (when `training`) and into
    /// `opt_copies` copies of optimizer state.
    pub fn report(&self, training: bool, opt_copies: usize) -> Result<Report> {
        let mut floats = [0usize; 7];
        for r in Region::ALL {
            floats[r.index()] = self.len(r);
        }
        let params = floats[Region::Params.index()];
        debug_assert_eq!(floats[Region::Grads.index()], 0, "grads mirror params; never take() them");
        debug_assert_eq!(floats[Region::OptState.index()], 0, "opt state mirrors params");
        floats[Region::Grads.index()] = if training { params } else { 0 };
        floats[Region::OptState.index()] =
            if training { params.checked_mul(opt_copies).ok_or(Error::SizeOverflow)? } else { 0 };
        let report = Report { floats };
        report.total_bytes()?; // every region and the sum must be expressible in bytes
        Ok(report)
    }
}

/// Exact size of every region of a plan.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Report {
    floats: [usize; 7],
}

impl Report {
    /// Floats in `region`.
    pub const fn floats(&self, region: Region) -> usize {
        self.floats[region.index()]
    }

    /// Bytes in `region`.
    pub const fn bytes(&self, region: Region) -> usize {
        self.floats[region.index()] * FLOAT_BYTES
    }

    /// Floats in the whole arena.
    pub fn total_floats(&self) -> usize {
        self.floats.iter().sum()
    }

    /// Bytes in the whole arena, or `Err(SizeOverflow)` if they do not fit in `usize`.
    pub fn total_bytes(&self) -> Result<usize> {
        let floats = self.floats.iter().try_fold(0usize, |acc, &f| acc.checked_add(f));
        floats.and_then(|f| f.checked_mul(FLOAT_BYTES)).ok_or(Error::SizeOverflow)
    }
}

/// The carved arena: one slice per region, each exactly as long as the report says.
#[derive(Debug)]
pub struct Buffers<'a> {
    /// Trainable parameters.
    pub params: &'a mut [f32],
    /// Gradients, same layout as `params`.
    pub grads: &'a mut [f32],
    /// Optimizer state: consecutive copies of the params layout.
    pub opt_state: &'a mut [f32],
    /// Activations.
    pub acts: &'a mut [f32],
    /// Activation gradients.
    pub act_grads: &'a mut [f32],
    /// Scratch.
    pub scratch: &'a mut [f32],
    /// KV cache.
    pub kv_cache: &'a mut [f32],
}

/// Split `arena` into the regions of `report`. Uses exactly `report.total_floats()` floats from the
/// start of `arena` and zeroes them; too small is `ArenaTooSmall { needed, got }` in bytes.
pub fn carve<'a>(arena: &'a mut [f32], report: &Report) -> Result<Buffers<'a>> {
    let needed = report.total_bytes()?;
    let got = arena.len().saturating_mul(FLOAT_BYTES);
    if got < needed {
        return Err(Error::ArenaTooSmall { needed, got });
    }
    let (used, _) = arena.split_at_mut(report.total_floats());
    used.fill(0.0);
    let (params, rest) = used.split_at_mut(report.floats(Region::Params));
    let (grads, rest) = rest.split_at_mut(report.floats(Region::Grads));
    let (opt_state, rest) = rest.split_at_mut(report.floats(Region::OptState));
    let (acts, rest) = rest.split_at_mut(report.floats(Region::Acts));
    let (act_grads, rest) = rest.split_at_mut(report.floats(Region::ActGrads));
    let (scratch, kv_cache) = rest.split_at_mut(report.floats(Region::Scratch));
    debug_assert_eq!(kv_cache.len(), report.floats(Region::KvCache));
    Ok(Buffers { params, grads, opt_state, acts, act_grads, scratch, kv_cache })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn slots_are_aligned_and_disjoint() {
        let mut l = Layout::default();
        let a = l.take(3).unwrap();
        let b = l.take(16).unwrap();
        let c = l.take(0).unwrap();
        let d = l.take(17).unwrap();
        assert_eq!((a.offset, b.offset, c.offset, d.offset), (0, 16, 32, 32));
        assert_eq!(l.len(), 64);
        assert!(a.range().end <= b.offset && b.range().end <= d.offset);
    }

    #[test]
    fn repeat_takes_the_same_as_taking_again() {
        let (mut a, mut b) = (Planner::default(), Planner::default());
        for p in [&mut a, &mut b] {
            p.take(Region::Params, 5).unwrap();
        }
        let since = a;
        a.take(Region::Params, 17).unwrap();
        a.take(Region::Acts, 3).unwrap();
        a.repeat(&since, 2).unwrap();
        for _ in 0..3 {
            b.take(Region::Params, 17).unwrap();
            b.take(Region::Acts, 3).unwrap();
        }
        assert_eq!(
            (a.len(Region::Params), a.len(Region::Acts)),
            (b.len(Region::Params), b.len(Region::Acts))
        );
        assert_eq!(a.repeat(&since, usize::MAX), Err(Error::SizeOverflow));
    }

    #[test]
    fn huge_takes_overflow_instead_of_wrapping() {
        let mut l = Layout::default();
        l.take(16).unwrap();
        assert_eq!(l.take(usize::MAX - 3), Err(Error::SizeOverflow));
    }

    #[test]
    fn carve_uses_exactly_the_report() {
        let mut p = Planner::default();
        p.take(Region::Params, 10).unwrap();
        p.take(Region::Acts, 20).unwrap();
        p.take(Region::Scratch, 1).unwrap();
        let r = p.report(true, 2).unwrap();
        assert_eq!(r.floats(Region::Params), 16);
        assert_eq!(r.floats(Region::Grads), 16);
        assert_eq!(r.floats(Region::OptState), 32);
        assert_eq!(r.total_floats(), 16 + 16 + 32 + 32 + 16);
        let mut arena = [1.0f32; 200];
        let b = carve(&mut arena, &r).unwrap();
        assert_eq!((b.params.len(), b.grads.len(), b.opt_state.len()), (16, 16, 32));
        assert_eq!((b.acts.len(), b.act_grads.len(), b.scratch.len(), b.kv_cache.len()), (32, 0, 16, 0));
        assert!(b.params.iter().all(|&v| v == 0.0), "carve zeroes what it hands out");
    }

    #[test]
    fn one_float_short_says_how_many_bytes() {
        let mut p = Planner::default();
        p.take(Region::Params, 5).unwrap();
        let r = p.report(false, 0).unwrap();
        let mut arena = [0.0f32; 15];
        assert_eq!(carve(&mut arena, &r).unwrap_err(), Error::ArenaTooSmall { needed: 64, got: 60 });
    }

    #[test]
    fn inference_report_has_no_training_regions() {
        let mut p = Planner::default();
        p.take(Region::Params, 40).unwrap();
        let r = p.report(false, 2).unwrap();
        assert_eq!((r.bytes(Region::Grads), r.bytes(Region::OptState)), (0, 0));
    }
}
