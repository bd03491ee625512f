//! # regkern-threads
//!
//! `--threads N` for hosts: a rayon pool of N threads installed as regkern-core's parallel-for
//! ([`regkern_core::parallel`]). Results are bit-identical at every thread count — the core splits
//! only work whose arithmetic does not depend on the split — so a thread count is a speed setting,
//! never part of a model's config.
//!
//! ```
//! regkern_threads::set_threads(2)?; // later gemms may use two threads
//! assert_eq!(regkern_core::parallel::threads(), 2);
//! regkern_threads::set_threads(1)?; // back to the caller's thread alone
//! # Ok::<(), String>(())
//! ```
#![warn(missing_docs)]

use std::collections::HashMap;
use std::sync::{Mutex, PoisonError};

use regkern_core::parallel::{Installed, Parallel, install};

/// Most threads a pool may have.
pub const MAX_THREADS: usize = 256;

/// A rayon pool as regkern-core's parallel-for.
struct Pool {
    pool: rayon::ThreadPool,
    threads: usize,
}

impl Parallel for Pool {
    fn threads(&self) -> usize {
        self.threads
    }

    fn run(&self, tasks: &mut [&mut (dyn FnMut() + Send)]) {
        // The caller runs the first task itself while the pool's threads take the others (the
        // pool has `threads - 1` of them); the scope returns once every task has. Called from one
        // of the pool's own threads (a task that splits again), the same holds without deadlock.
        let Some((first, rest)) = tasks.split_first_mut() else { return };
        self.pool.in_place_scope(|s| {
            for task in rest {
                s.spawn(move |_| task());
            }
            first();
        });
    }
}

/// Pools built so far, by thread count: each is built once and lives for the process.
static POOLS: Mutex<Option<HashMap<usize, &'static Installed>>> = Mutex::new(None);

/// Use `n` threads for regkern's work from now on (1: the caller's thread only). `n` must be in
/// `1..=MAX_THREADS`; a pool that cannot be started is an error, and leaves the setting unchanged.
pub fn set_threads(n: usize) -> Result<(), String> {
    if !(1..=MAX_THREADS).contains(&n) {
        return Err(format!("--threads {n}: must be between 1 and {MAX_THREADS}"));
    }
    install(if n == 1 { None } else { Some(pool(n)?) });
    Ok(())
}

/// The pool of `n` threads, built on first use.
fn pool(n: usize) -> Result<&'static Installed, String> {
    let mut pools = POOLS.lock().unwrap_or_else(PoisonError::into_inner);
    let pools = pools.get_or_insert_with(HashMap::new);
    if let Some(&p) = pools.get(&n) {
        return Ok(p);
    }
    // The caller is one of the n threads (see `Pool::run`).
    let pool = rayon::ThreadPoolBuilder::new()
        .num_threads(n - 1)
        .thread_name(|i| format!("regkern-{i}"))
        // A large product packs ~1.1 MB of its operands on the stack (README, "Stack"); 8 MB of
        // address space per worker leaves room for the rest of any call.
        .stack_size(8 << 20)
        .build()
        .map_err(|e| format!("cannot start {n} threads: {e}"))?;
    let pool: &'static Pool = Box::leak(Box::new(Pool { pool, threads: n }));
    let installed: &'static Installed = Box::leak(Box::new(Installed(pool)));
    pools.insert(n, installed);
    Ok(installed)
}

/// The machine's cores as the OS reports them (1 when it cannot say).
pub fn available() -> usize {
    std::thread::available_parallelism().map_or(1, |n| n.get())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn thread_counts_are_checked_and_reused() {
        assert!(set_threads(0).is_err());
        assert!(set_threads(MAX_THREADS + 1).is_err());
        set_threads(3).unwrap();
        assert_eq!(regkern_core::parallel::threads(), 3);
        set_threads(2).unwrap();
        set_threads(3).unwrap();
        let pools = POOLS.lock().unwrap();
        assert!(pools.as_ref().unwrap().contains_key(&2) && pools.as_ref().unwrap().contains_key(&3));
        drop(pools);
        set_threads(1).unwrap();
        assert_eq!(regkern_core::parallel::threads(), 1);
    }

    #[test]
    fn every_task_runs_once_even_nested() {
        use std::sync::atomic::{AtomicUsize, Ordering};
        // The pool itself, not the process-wide setting the other test changes.
        let par = pool(2).unwrap().0;
        let count = AtomicUsize::new(0);
        let mut inner = || {
            let mut a = || {
                count.fetch_add(1, Ordering::Relaxed);
            };
            let mut b = || {
                count.fetch_add(1, Ordering::Relaxed);
            };
            par.run(&mut [&mut a, &mut b]);
        };
        let mut other = || {
            count.fetch_add(10, Ordering::Relaxed);
        };
        par.run(&mut [&mut inner, &mut other]);
        assert_eq!(count.load(Ordering::Relaxed), 12);
    }
}
