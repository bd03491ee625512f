//! Threads without `std`: the host lends regkern-core a parallel-for, and the big gemms use it.
//!
//! regkern-core spawns nothing. A host that has threads implements [`Parallel`] (the
//! `regkern-threads` crate does, over a rayon pool) and [`install`]s it; from then on a gemm
//! large enough to pay for the hand-off splits its rows of C into a few tasks. Each element of C
//! is still computed by the same kernel, from the same operands, in the same order — splitting
//! rows changes which thread computes it, not how — so results are **bit-identical** to one
//! thread whatever the thread count. With nothing installed (the default) every call runs on
//! the caller's thread, as before; on bare-metal targets (`target_os = "none"`) gemm never asks,
//! so firmware links no splitting code.
//!
//! The registration is process-wide, like the CPU-feature detection: a thread count changes
//! speed, never bits, so two models in one process may share it.
#![allow(unsafe_code)] // one dereference of a pointer that only ever holds a `&'static`

use core::sync::atomic::{AtomicPtr, Ordering};

/// A parallel-for: run every task once, on any threads, and return when all have finished.
///
/// Tasks may themselves call [`Parallel::run`] (a gemm inside a task): an implementation must then
/// run them without deadlock, e.g. inline. Calls may come from several threads at once.
pub trait Parallel: Sync {
    /// How many threads `run` uses at most (1: everything runs inline).
    fn threads(&self) -> usize;
    /// Run each task exactly once; return after the last has returned.
    fn run(&self, tasks: &mut [&mut (dyn FnMut() + Send)]);
}

/// A [`Parallel`] implementation, as [`install`] holds it (a thin pointer to a `&'static`).
pub struct Installed(pub &'static dyn Parallel);

static INSTALLED: AtomicPtr<Installed> = AtomicPtr::new(core::ptr::null_mut());

/// Make `p` the parallel-for of every later gemm in the process (`None`: run on the caller's
/// thread). The results do not change, only how many threads compute them.
pub fn install(p: Option<&'static Installed>) {
    let ptr = p.map_or(core::ptr::null_mut(), |p| core::ptr::from_ref(p).cast_mut());
    INSTALLED.store(ptr, Ordering::Release);
}

/// The installed parallel-for, if any, when it has more than one thread.
pub fn current() -> Option<&'static dyn Parallel> {
    let ptr = INSTALLED.load(Ordering::Acquire);
    if ptr.is_null() {
        return None;
    }
    // SAFETY: INSTALLED holds null or a pointer made from a `&'static Installed` by `install`;
    // such a reference is valid and immutable for the rest of the program.
    let installed: &'static Installed = unsafe { &*ptr };
    (installed.0.threads() > 1).then_some(installed.0)
}

/// Least work per task (FLOPs): ~80 µs on one core. Handing a task to a sleeping pool thread
/// costs 15–80 µs (rayon, measured on the 2-vCPU dev VM), so smaller pieces run faster on one.
#[cfg(not(target_os = "none"))]
pub(crate) const MIN_TASK_FLOPS: u64 = 1 << 24;

/// Most tasks one call splits into.
#[cfg(not(target_os = "none"))]
pub(crate) const MAX_TASKS: usize = 8;

/// Tasks worth making of `units` independent pieces of `flops` work in all: at most one per
/// thread, per unit and per [`MIN_TASK_FLOPS`] (fewer than 2: run it on the caller's thread).
#[cfg(not(target_os = "none"))]
pub(crate) fn tasks_for(par: &dyn Parallel, units: usize, flops: u64) -> usize {
    let by_work = usize::try_from(flops / MIN_TASK_FLOPS).unwrap_or(usize::MAX);
    par.threads().min(units).min(by_work).min(MAX_TASKS)
}

/// Where `units` pieces split into `tasks` runs: run `t` starts at `start(t)`, the runs differ by
/// at most one piece, and the first ones are the longer.
#[cfg(not(target_os = "none"))]
pub(crate) fn share(units: usize, tasks: usize, t: usize) -> usize {
    t * (units / tasks) + t.min(units % tasks)
}

/// Task `t`'s chunk of a slice split into contiguous runs of `unit`-element units (`units` of
/// them, shared out as [`share`] does, the last task also taking the elements past the last
/// whole unit): taken off the front of `rest`, which the tasks consume in order.
#[cfg(not(target_os = "none"))]
pub(crate) fn take_chunk<'s>(
    rest: &mut &'s mut [f32],
    (units, tasks, t): (usize, usize, usize),
    unit: usize,
) -> &'s mut [f32] {
    let len = if t + 1 == tasks {
        rest.len()
    } else {
        (share(units, tasks, t + 1) - share(units, tasks, t)) * unit
    };
    let (mine, later) = core::mem::take(rest).split_at_mut(len);
    *rest = later;
    mine
}

/// Make `tasks` (at most [`MAX_TASKS`]) jobs with `make(t)` and run them all on `par`.
#[cfg(not(target_os = "none"))]
pub(crate) fn run_tasks<F: FnMut() + Send>(par: &dyn Parallel, tasks: usize, make: impl FnMut(usize) -> F) {
    let mut jobs: heapless::Vec<F, MAX_TASKS> = (0..tasks.min(MAX_TASKS)).map(make).collect();
    let mut refs: heapless::Vec<&mut (dyn FnMut() + Send), MAX_TASKS> =
        jobs.iter_mut().map(|j| j as &mut (dyn FnMut() + Send)).collect();
    par.run(&mut refs);
}

/// `x.fill(0.0)`, split into contiguous ranges over the installed parallel-for when large
/// (a big model's gradients, zeroed every step).
pub(crate) fn zero(x: &mut [f32]) {
    #[cfg(not(target_os = "none"))]
    if let Some(par) = current() {
        /// Floats per unit of a split, and the work of zeroing one in gemm FLOPs.
        const UNIT: usize = 16 * 1024;
        const COST: u64 = 16;
        let units = x.len() / UNIT;
        let tasks = tasks_for(par, units, (x.len() as u64).saturating_mul(COST));
        if tasks >= 2 {
            let mut rest = x;
            run_tasks(par, tasks, |t| {
                let mine = take_chunk(&mut rest, (units, tasks, t), UNIT);
                move || mine.fill(0.0)
            });
            return;
        }
    }
    x.fill(0.0);
}

/// Threads the installed parallel-for has (1 when none is installed).
pub fn threads() -> usize {
    current().map_or(1, |p| p.threads())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A parallel-for that runs tasks inline, counting them (what matters here is the contract).
    struct Inline(core::sync::atomic::AtomicUsize);

    impl Parallel for Inline {
        fn threads(&self) -> usize {
            2
        }
        fn run(&self, tasks: &mut [&mut (dyn FnMut() + Send)]) {
            self.0.fetch_add(tasks.len(), Ordering::Relaxed);
            tasks.iter_mut().for_each(|t| t());
        }
    }

    #[test]
    fn a_split_gemm_equals_the_unsplit_one_bit_for_bit() {
        use crate::ops::{Gemm, gemm};
        use crate::testing::lcg_fill;
        static INLINE: Inline = Inline(core::sync::atomic::AtomicUsize::new(0));
        static REG: Installed = Installed(&INLINE);
        let (m, n, k) = (203, 300, 300); // 36.5 MFLOP: two tasks of at least MIN_TASK_FLOPS
        let mut seed = 3;
        let (mut a, mut b) = (std::vec![0.0f32; m * k], std::vec![0.0f32; k * n]);
        lcg_fill(&mut a, &mut seed);
        lcg_fill(&mut b, &mut seed);
        for g in [Gemm::nn(m, n, k), Gemm::nt(m, n, k), Gemm::tn(m, n, k), Gemm::nn(m, n, k).acc()] {
            let mut want = std::vec![0.5f32; m * n];
            let mut got = want.clone();
            crate::ops::gemm::gemm_serial(&mut want, &a, &b, g);
            install(Some(&REG));
            let before = INLINE.0.load(Ordering::Relaxed);
            gemm(&mut got, &a, &b, g);
            let split = INLINE.0.load(Ordering::Relaxed) - before;
            install(None);
            assert!(split >= 2, "{g:?} was not split");
            assert!(want.iter().zip(&got).all(|(w, v)| w.to_bits() == v.to_bits()), "{g:?}");
        }
    }
}
