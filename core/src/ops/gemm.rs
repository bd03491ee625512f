//! General matrix multiply: `C (m×n) (+)= op(A) (m×k) · op(B) (k×n)`, row-major, f32.
//!
//! The three layouts a backward pass needs are one routine with transpose flags:
//! `nn` (A·B), `nt` (A·Bᵀ: a linear layer's forward, `inp · Wᵀ`) and `tn` (Aᵀ·B: a weight
//! gradient, `doutᵀ · inp`). No transpose is ever materialised in the caller's memory.
//!
//! The SIMD kernels block as BLIS/GotoBLAS do: B is packed, a block of `KC` rows by `NC` columns
//! at a time, into `NR`-wide column panels held on the (host's) stack, and a register-blocked
//! micro-kernel computes `MR × NR` tiles of C, broadcasting elements of A read in place. The
//! portable kernel, which microcontrollers run, packs nothing: it reads both operands in place
//! (see `gemm_portable`). No kernel takes scratch from the arena. The micro-kernel is chosen once
//! per process from the CPU (see [`Kernel`]); the portable one is also the oracle the SIMD ones
//! are tested against, with [`gemm_naive`].

use core::sync::atomic::{AtomicU8, Ordering};

#[cfg(not(target_os = "none"))]
use crate::parallel::Parallel;

/// Shape, strides and flags of one gemm call. Build it with [`Gemm::nn`], [`Gemm::nt`] or
/// [`Gemm::tn`] (contiguous operands), then [`Gemm::acc`] / [`Gemm::strides`] as needed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Gemm {
    /// Rows of C and of op(A).
    pub m: usize,
    /// Columns of C and of op(B).
    pub n: usize,
    /// The contracted dimension.
    pub k: usize,
    /// Row stride of A as stored (A is `m×k`, or `k×m` when `trans_a`).
    pub lda: usize,
    /// Row stride of B as stored (B is `k×n`, or `n×k` when `trans_b`).
    pub ldb: usize,
    /// Row stride of C.
    pub ldc: usize,
    /// A is stored `k×m` and used transposed.
    pub trans_a: bool,
    /// B is stored `n×k` and used transposed.
    pub trans_b: bool,
    /// Add to C (`+=`) instead of overwriting it.
    pub accumulate: bool,
    /// Which kernels may run this product.
    pub kernels: Kernels,
}

/// Which gemm kernels a model's layers use. A model carries its choice in the dims it hands its
/// layers (never a global a layer reads), so two models in one process may choose differently.
///
/// What differs between the paths: gemm, and on `Auto` the passes that have a fused-multiply-add
/// vector kernel (GELU and its derivative, attention's column softmax, one query's
/// attention over a KV cache). Every other elementwise kernel and reduction gives the same bits at
/// every vector width. With `Portable`, a host computes exactly what a microcontroller running the
/// same code computes, bit for bit.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Kernels {
    /// The fastest kernel this CPU has for each product's shape (results differ from `Portable`
    /// in the last bits: the SIMD kernels fuse multiply-adds and block differently).
    #[default]
    Auto,
    /// The portable kernel on every target: the bits a microcontroller computes.
    Portable,
}

impl Kernels {
    /// The name the CLI and reports use (`auto`, `portable`).
    pub const fn name(self) -> &'static str {
        match self {
            Kernels::Auto => "auto",
            Kernels::Portable => "portable",
        }
    }

    /// Parse [`Kernels::name`].
    pub fn from_name(s: &str) -> Option<Self> {
        [Kernels::Auto, Kernels::Portable].into_iter().find(|k| k.name() == s)
    }
}

impl Gemm {
    /// `C = A·B` with A `m×k`, B `k×n`, contiguous.
    pub const fn nn(m: usize, n: usize, k: usize) -> Self {
        Gemm {
            m,
            n,
            k,
            lda: k,
            ldb: n,
            ldc: n,
            trans_a: false,
            trans_b: false,
            accumulate: false,
            kernels: Kernels::Auto,
        }
    }

    /// `C = A·Bᵀ` with A `m×k`, B stored `n×k`, contiguous.
    pub const fn nt(m: usize, n: usize, k: usize) -> Self {
        Gemm {
            m,
            n,
            k,
            lda: k,
            ldb: k,
            ldc: n,
            trans_a: false,
            trans_b: true,
            accumulate: false,
            kernels: Kernels::Auto,
        }
    }

    /// `C = Aᵀ·B` with A stored `k×m`, B `k×n`, contiguous.
    pub const fn tn(m: usize, n: usize, k: usize) -> Self {
        Gemm {
            m,
            n,
            k,
            lda: m,
            ldb: n,
            ldc: n,
            trans_a: true,
            trans_b: false,
            accumulate: false,
            kernels: Kernels::Auto,
        }
    }

    /// Run on the given kernels.
    pub const fn on(mut self, kernels: Kernels) -> Self {
        self.kernels = kernels;
        self
    }

    /// Accumulate into C instead of overwriting it.
    pub const fn acc(mut self) -> Self {
        self.accumulate = true;
        self
    }

    /// Use explicit row strides (e.g. one head's columns inside a wider row).
    pub const fn strides(mut self, lda: usize, ldb: usize, ldc: usize) -> Self {
        self.lda = lda;
        self.ldb = ldb;
        self.ldc = ldc;
        self
    }

    /// Element (i, p) of op(A) as an index into A.
    #[inline(always)]
    fn a_index(&self, i: usize, p: usize) -> usize {
        if self.trans_a { p * self.lda + i } else { i * self.lda + p }
    }

    /// Element (p, j) of op(B) as an index into B.
    #[inline(always)]
    fn b_index(&self, p: usize, j: usize) -> usize {
        if self.trans_b { j * self.ldb + p } else { p * self.ldb + j }
    }

    /// Elements of A, B and C this call reads or writes at most (0 for an empty operand).
    fn extents(&self) -> (usize, usize, usize) {
        let span = |rows: usize, cols: usize, ld: usize| {
            if rows == 0 || cols == 0 { 0 } else { (rows - 1) * ld + cols }
        };
        let a = if self.trans_a { span(self.k, self.m, self.lda) } else { span(self.m, self.k, self.lda) };
        let b = if self.trans_b { span(self.n, self.k, self.ldb) } else { span(self.k, self.n, self.ldb) };
        (a, b, span(self.m, self.n, self.ldc))
    }

    /// Panics unless the slices hold every element the call touches and strides are consistent.
    /// Shapes come from a plan, so this is an internal invariant; the SIMD kernels rely on it.
    pub(crate) fn assert_fits(&self, c: usize, a: usize, b: usize) {
        let (na, nb, nc) = self.extents();
        let a_cols = if self.trans_a { self.m } else { self.k };
        let b_cols = if self.trans_b { self.k } else { self.n };
        assert!(
            na <= a && nb <= b && nc <= c && self.lda >= a_cols && self.ldb >= b_cols && self.ldc >= self.n,
            "gemm operands too short for {self:?}: a {a}/{na}, b {b}/{nb}, c {c}/{nc}"
        );
    }
}

/// Which micro-kernel runs the inner loops.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kernel {
    /// Plain Rust (auto-vectorised where the target allows). Every target.
    Portable,
    /// AVX2 + FMA, 6×16 tiles. x86_64 CPUs that have them.
    Avx2,
    /// AVX-512F, 8×32 tiles. x86_64 CPUs that have it.
    Avx512,
}

impl Kernel {
    /// Every kernel, best last.
    pub const ALL: [Kernel; 3] = [Kernel::Portable, Kernel::Avx2, Kernel::Avx512];

    /// True when this CPU can run the kernel.
    pub fn is_supported(self) -> bool {
        match self {
            Kernel::Portable => true,
            Kernel::Avx2 => super::simd::has_avx2_fma(),
            Kernel::Avx512 => super::simd::has_avx512f(),
        }
    }

    /// Name as benchmarks print it.
    pub const fn name(self) -> &'static str {
        match self {
            Kernel::Portable => "portable",
            Kernel::Avx2 => "avx2+fma",
            Kernel::Avx512 => "avx512f",
        }
    }
}

static BEST: AtomicU8 = AtomicU8::new(0);

/// The fastest kernel this CPU supports (detected once, then cached).
pub fn best_kernel() -> Kernel {
    match BEST.load(Ordering::Relaxed) {
        1 => Kernel::Portable,
        2 => Kernel::Avx2,
        3 => Kernel::Avx512,
        _ => {
            let k = Kernel::ALL.into_iter().rev().find(|k| k.is_supported()).unwrap_or(Kernel::Portable);
            BEST.store(k as u8 + 1, Ordering::Relaxed);
            k
        }
    }
}

/// The FMA throughput probe benchmarks divide by their time: `iterations` steps of independent
/// multiply-add chains, as many as the kernel's vector unit keeps in flight (16 × 16 lanes for
/// AVX-512, 12 × 8 for AVX2). Returns the floating-point operations done (a multiply-add is two)
/// and a checksum to print or discard; `None` for `Portable` or a kernel this CPU cannot run.
pub fn fma_probe(kernel: Kernel, iterations: usize, multiplier: f32) -> Option<(u64, f32)> {
    super::simd::fma_chains(kernel, iterations, multiplier)
}

/// `C (+)= op(A)·op(B)` with the best kernel for this CPU and shape: narrow products (n ≤ 16,
/// e.g. one attention head) use the 16-wide AVX2 tile rather than waste most of a 32-wide one.
/// `g.kernels` may ask for the portable kernel instead.
///
/// With a parallel-for installed ([`crate::parallel`]) a large product splits its rows of C into
/// a few tasks; the bits do not change (see [`split_rows`]).
pub fn gemm(c: &mut [f32], a: &[f32], b: &[f32], g: Gemm) {
    let kernel = kernel_for(&g);
    // Bare-metal targets have no threads: their firmware links no splitting code at all.
    #[cfg(not(target_os = "none"))]
    if let Some(par) = crate::parallel::current() {
        return split_rows(par, kernel, c, a, b, g);
    }
    gemm_with(kernel, c, a, b, g);
}

/// [`gemm`] on the caller's thread only.
pub fn gemm_serial(c: &mut [f32], a: &[f32], b: &[f32], g: Gemm) {
    gemm_with(kernel_for(&g), c, a, b, g);
}

fn kernel_for(g: &Gemm) -> Kernel {
    match (g.kernels, best_kernel()) {
        (Kernels::Portable, _) => Kernel::Portable,
        (Kernels::Auto, Kernel::Avx512) if g.n <= 16 => Kernel::Avx2,
        (Kernels::Auto, k) => k,
    }
}

/// Rows of C per unit of a split: a multiple of every kernel's tile height keeps tiles whole.
#[cfg(not(target_os = "none"))]
const SPLIT_ROWS: usize = 24;

/// `gemm_with(kernel, …)` with the rows of C split into tasks run by `par`, when the product is
/// large enough to pay for it.
///
/// Bit-identical to one call: every task runs the same kernel (chosen from `n`, which a split
/// keeps) over whole rows, each at least [`SPLIT_ROWS`] long, so no task takes the one-row path;
/// and every kernel computes an element of C from its row of op(A) and column of op(B) alone, in
/// an order fixed by `k` (blocks of k, in order) — never by the row's position or the block of
/// rows it was in.
#[cfg(not(target_os = "none"))]
fn split_rows(par: &dyn Parallel, kernel: Kernel, c: &mut [f32], a: &[f32], b: &[f32], g: Gemm) {
    g.assert_fits(c.len(), a.len(), b.len());
    let flops = 2 * (g.m as u64) * (g.n as u64) * (g.k as u64);
    let units = g.m / SPLIT_ROWS;
    let tasks = crate::parallel::tasks_for(par, units, flops);
    if tasks < 2 {
        return gemm_with(kernel, c, a, b, g);
    }
    let (mut rest, mut row) = (c, 0);
    crate::parallel::run_tasks(par, tasks, |t| {
        // Units shared out evenly; the last task also takes the rows past the last whole unit.
        let rows = if t + 1 == tasks {
            g.m - row
        } else {
            (units / tasks + usize::from(t < units % tasks)) * SPLIT_ROWS
        };
        let (mine, later) = if t + 1 == tasks {
            (core::mem::take(&mut rest), &mut [][..])
        } else {
            core::mem::take(&mut rest).split_at_mut(rows * g.ldc)
        };
        rest = later;
        let a_sub = &a[if g.trans_a { row } else { row * g.lda }..];
        let sub = Gemm { m: rows, ..g };
        row += rows;
        move || gemm_with(kernel, mine, a_sub, b, sub)
    });
}

/// `C (+)= op(A)·op(B)` with a given kernel (an unsupported one falls back to `Portable`).
/// Overwrites C, or accumulates when `g.accumulate`.
pub fn gemm_with(kernel: Kernel, c: &mut [f32], a: &[f32], b: &[f32], g: Gemm) {
    g.assert_fits(c.len(), a.len(), b.len());
    if g.m == 0 || g.n == 0 {
        return;
    }
    if g.k == 0 {
        if !g.accumulate {
            c.chunks_mut(g.ldc).take(g.m).for_each(|row| row[..g.n].fill(0.0));
        }
        return;
    }
    if g.m == 1 {
        // One row (decoding one token): packing B would cost as much as the product itself.
        return match kernel {
            Kernel::Avx512 if kernel.is_supported() => super::simd::gemv_avx512(c, a, b, g),
            Kernel::Avx2 if kernel.is_supported() => super::simd::gemv_avx2(c, a, b, g),
            _ => gemv(c, a, b, g),
        };
    }
    match kernel {
        Kernel::Avx512 if kernel.is_supported() => super::simd::gemm_avx512(c, a, b, g),
        Kernel::Avx2 if kernel.is_supported() => super::simd::gemm_avx2(c, a, b, g),
        _ => gemm_portable(c, a, b, g),
    }
}

/// `C (1×n) (+)= op(A) (1×k) · op(B)`: dot products against B's rows when B is stored
/// transposed (a linear layer's `x·Wᵀ`), else row-by-row updates; B is read in place.
pub(crate) fn gemv(c: &mut [f32], a: &[f32], b: &[f32], g: Gemm) {
    let row = &mut c[..g.n];
    super::vectorized(
        #[inline(always)]
        || {
            let a_at = |p: usize| a[g.a_index(0, p)];
            if g.trans_b {
                for (j, y) in row.iter_mut().enumerate() {
                    let b_row = &b[j * g.ldb..][..g.k];
                    let s = if g.trans_a {
                        b_row.iter().enumerate().map(|(p, &w)| a_at(p) * w).sum::<f32>()
                    } else {
                        super::dot(&a[..g.k], b_row)
                    };
                    *y = if g.accumulate { *y + s } else { s };
                }
            } else {
                if !g.accumulate {
                    row.fill(0.0);
                }
                for p in 0..g.k {
                    let x = a_at(p);
                    row.iter_mut().zip(&b[p * g.ldb..][..g.n]).for_each(|(y, &w)| *y += x * w);
                }
            }
        },
    )
}

/// The reference: a triple loop in f32, accumulating in the order p = 0..k.
pub fn gemm_naive(c: &mut [f32], a: &[f32], b: &[f32], g: Gemm) {
    g.assert_fits(c.len(), a.len(), b.len());
    for i in 0..g.m {
        for j in 0..g.n {
            let mut s = 0.0f32;
            for p in 0..g.k {
                s += a[g.a_index(i, p)] * b[g.b_index(p, j)];
            }
            let cij = &mut c[i * g.ldc + j];
            *cij = if g.accumulate { *cij + s } else { s };
        }
    }
}

// The SIMD kernels' blocking (x86_64 only: elsewhere only the portable kernel exists).
#[cfg(target_arch = "x86_64")]
/// What the blocked driver hands a micro-kernel: one `MR × NR` tile of C over `kc` steps.
pub(crate) struct Tile<'t, const MR: usize> {
    /// Index in A of element (row r of the tile, first k of the block); rows past `mr` repeat the
    /// last valid row so the kernel never reads outside A.
    pub a_rows: [usize; MR],
    /// Distance in A between consecutive k (1, or `lda` for a transposed A).
    pub a_step: usize,
    /// The packed B panel: `kc` rows of `NR` floats, zero-padded past `nr`.
    pub b_panel: &'t [f32],
    /// Index in C of the tile's top-left element.
    pub c_at: usize,
    /// Row stride of C.
    pub ldc: usize,
    /// Depth of this block.
    pub kc: usize,
    /// Valid rows (≤ MR) and columns (≤ NR) of the tile.
    pub mr: usize,
    /// Valid columns of the tile.
    pub nr: usize,
    /// Overwrite C (first k block of a non-accumulating call) rather than add to it.
    pub overwrite: bool,
}

#[cfg(target_arch = "x86_64")]
/// Rows of C per block (the block of A reused from L2 across B panels).
pub(crate) const MC: usize = 72;

/// The blocked loops shared by every kernel. `KC` rows by `NC` columns of op(B) are packed per
/// pass into `pack` (`KC * NC` floats); `micro` computes one tile. With `PACK_A`, each
/// `MC × KC` block of op(A) is packed too, into `apack` (see [`pack_a`]), so that a tile reads its rows of A
/// from L1 in order rather than `lda` apart: worth it when a block of A meets many panels of B
/// (a wide `NC`). Packing moves values and never changes the arithmetic: every element of C is
/// the same sum, in the same order (blocks of `KC`), whatever `NC`, `MC` and packing are.
/// Inlined into each kernel's entry point so that the entry point's target features apply to
/// the packing loops too.
#[cfg(target_arch = "x86_64")]
#[inline(always)]
pub(crate) fn drive<
    const MR: usize,
    const NR: usize,
    const KC: usize,
    const NC: usize,
    const PACK_A: bool,
>(
    c: &mut [f32],
    a: &[f32],
    b: &[f32],
    g: Gemm,
    (pack, apack): (&mut [f32], &mut [f32]),
    mut micro: impl FnMut(&mut [f32], &[f32], &Tile<'_, MR>),
) {
    debug_assert!(NC.is_multiple_of(NR));
    debug_assert!(pack.len() >= pack_len::<NR, KC, NC>(&g), "pack buffer too small for {g:?}");
    let pack_a_too = PACK_A;
    debug_assert!(
        !pack_a_too || apack.len() >= MC.div_ceil(MR) * MR * KC.min(g.k),
        "A pack buffer too small"
    );
    let a_step = if g.trans_a { g.lda } else { 1 };
    for jc in (0..g.n).step_by(NC) {
        let nc = NC.min(g.n - jc);
        let panels = nc.div_ceil(NR);
        for pc in (0..g.k).step_by(KC) {
            let kc = KC.min(g.k - pc);
            pack_b::<NR>(&mut pack[..panels * kc * NR], b, &g, pc, kc, jc, nc);
            for ic in (0..g.m).step_by(MC) {
                let mc = MC.min(g.m - ic);
                if pack_a_too {
                    pack_a::<MR>(&mut apack[..mc.div_ceil(MR) * MR * kc], a, &g, (ic, mc), (pc, kc));
                }
                for q in 0..panels {
                    let j0 = jc + q * NR;
                    let b_panel = &pack[q * kc * NR..(q + 1) * kc * NR];
                    for ir in (ic..ic + mc).step_by(MR) {
                        let mr = MR.min(ic + mc - ir);
                        let (a_src, a_rows, step): (&[f32], _, _) = if pack_a_too {
                            let base = (ir - ic) * kc; // micro-panel (ir − ic) / MR, MR·kc floats
                            (&*apack, core::array::from_fn(|r| base + r), MR)
                        } else {
                            (a, core::array::from_fn(|r| g.a_index(ir + r.min(mr - 1), pc)), a_step)
                        };
                        let tile = Tile {
                            a_rows,
                            a_step: step,
                            b_panel,
                            c_at: ir * g.ldc + j0,
                            ldc: g.ldc,
                            kc,
                            mr,
                            nr: NR.min(g.n - j0),
                            overwrite: !g.accumulate && pc == 0,
                        };
                        micro(c, a_src, &tile);
                    }
                }
            }
        }
    }
}

/// Floats of packing buffer [`drive`] uses for `g`: one `KC × NC` block, or less for small
/// problems (a kernel sizes its stack buffer by this, so that small gemms do not pay for zeroing
/// a large one).
#[cfg(target_arch = "x86_64")]
#[inline(always)]
pub(crate) const fn pack_len<const NR: usize, const KC: usize, const NC: usize>(g: &Gemm) -> usize {
    let kc = if g.k < KC { g.k } else { KC };
    let nc = if g.n < NC { g.n } else { NC };
    kc * nc.div_ceil(NR) * NR
}

/// Whether a product is large enough for the wide blocking (B packed 512 columns at a time, A
/// packed too): its packing buffers (~650 KB of stack) are then cheap beside the arithmetic.
#[cfg(target_arch = "x86_64")]
#[inline(always)]
pub(crate) const fn is_large(g: &Gemm) -> bool {
    g.m >= 256 && g.n >= 512 && g.k >= 256
}

/// Pack op(A)[ic..ic+mc, pc..pc+kc] into `MR`-row micro-panels, each `kc × MR` (element (r, p)
/// at `p·MR + r`); rows past the last valid one repeat it, as [`Tile::a_rows`] does unpacked.
#[cfg(target_arch = "x86_64")]
#[inline(always)]
fn pack_a<const MR: usize>(
    apack: &mut [f32],
    a: &[f32],
    g: &Gemm,
    (ic, mc): (usize, usize),
    (pc, kc): (usize, usize),
) {
    for (t, panel) in apack.chunks_exact_mut(kc * MR).enumerate() {
        let i0 = ic + t * MR;
        let mr = MR.min(ic + mc - i0);
        if g.trans_a {
            // A stored k×m: the tile's rows at one k are adjacent.
            for (p, dst) in panel.chunks_exact_mut(MR).enumerate() {
                let src = &a[(pc + p) * g.lda + i0..][..mr];
                for (r, d) in dst.iter_mut().enumerate() {
                    *d = src[r.min(mr - 1)];
                }
            }
        } else {
            // A stored m×k: read MR rows side by side, write each k's MR values together.
            let rows: [&[f32]; MR] = core::array::from_fn(|r| &a[(i0 + r.min(mr - 1)) * g.lda + pc..][..kc]);
            for (p, dst) in panel.chunks_exact_mut(MR).enumerate() {
                for (d, row) in dst.iter_mut().zip(&rows) {
                    *d = row[p];
                }
            }
        }
    }
}

#[cfg(target_arch = "x86_64")]
/// Pack op(B)[pc..pc+kc, jc..jc+nc] into `NR`-wide panels, each `kc × NR`, zero-padding columns.
#[inline(always)]
fn pack_b<const NR: usize>(
    pack: &mut [f32],
    b: &[f32],
    g: &Gemm,
    pc: usize,
    kc: usize,
    jc: usize,
    nc: usize,
) {
    for (q, panel) in pack.chunks_exact_mut(kc * NR).enumerate() {
        let j0 = jc + q * NR;
        let nr = NR.min(jc + nc - j0);
        if g.trans_b {
            // B stored n×k: column j of op(B) is a contiguous run of row j of B. Whole groups of
            // eight columns go through 8 × 8 blocks (read as eight row runs, written transposed:
            // fixed-size moves the compiler turns into shuffles); the rest one column at a time.
            let whole = nr / 8 * 8;
            for jb in (0..whole).step_by(8) {
                let rows: [&[f32]; 8] = core::array::from_fn(|r| &b[(j0 + jb + r) * g.ldb + pc..][..kc]);
                let deep = kc / 8 * 8;
                // With AVX2 the 8 × 8 blocks are transposed in registers (the loop below compiles
                // to scalar moves).
                let start = (j0 + jb) * g.ldb + pc;
                let done = super::simd::transpose_rows8(panel, (NR, jb), b, (start, g.ldb), deep);
                for pb in (0..if done { 0 } else { deep }).step_by(8) {
                    let mut blk = [[0.0f32; 8]; 8];
                    for (dst, row) in blk.iter_mut().zip(&rows) {
                        dst.copy_from_slice(&row[pb..pb + 8]);
                    }
                    for (q, dst) in panel[pb * NR..(pb + 8) * NR].chunks_exact_mut(NR).enumerate() {
                        let dst = &mut dst[jb..jb + 8];
                        for r in 0..8 {
                            dst[r] = blk[r][q];
                        }
                    }
                }
                for p in deep..kc {
                    for r in 0..8 {
                        panel[p * NR + jb + r] = rows[r][p];
                    }
                }
            }
            for j in whole..NR {
                if j < nr {
                    let row = &b[(j0 + j) * g.ldb + pc..][..kc];
                    for (p, &v) in row.iter().enumerate() {
                        panel[p * NR + j] = v;
                    }
                } else {
                    (0..kc).for_each(|p| panel[p * NR + j] = 0.0);
                }
            }
        } else if nr == NR {
            // Fixed-length copies compile to vector moves, not a libc call per row.
            for (p, dst) in panel.chunks_exact_mut(NR).enumerate() {
                let src = &b[(pc + p) * g.ldb + j0..][..NR];
                dst.iter_mut().zip(src).for_each(|(d, &s)| *d = s);
            }
        } else {
            for (p, dst) in panel.chunks_exact_mut(NR).enumerate() {
                let src = &b[(pc + p) * g.ldb + j0..][..nr];
                for (j, d) in dst.iter_mut().enumerate() {
                    *d = if j < nr { src[j] } else { 0.0 };
                }
            }
        }
    }
}

#[cfg(target_arch = "x86_64")]
/// Store an accumulated tile into C: overwrite or add, valid rows/columns only.
#[inline(always)]
pub(crate) fn store_tile<const MR: usize, const NR: usize>(
    c: &mut [f32],
    acc: &[[f32; NR]; MR],
    t: &Tile<'_, MR>,
) {
    for (r, acc_row) in acc.iter().enumerate().take(t.mr) {
        let row = &mut c[t.c_at + r * t.ldc..][..t.nr];
        if t.overwrite {
            row.copy_from_slice(&acc_row[..t.nr]);
        } else {
            row.iter_mut().zip(acc_row).for_each(|(y, &v)| *y += v);
        }
    }
}

const PORTABLE_MR: usize = 4;
const PORTABLE_NR: usize = 8;
/// Depth of one block: each `MR × NR` tile of C is summed over 64 values of k in registers, then
/// stored (overwriting, for the first block) or added to C.
const PORTABLE_KC: usize = 64;

/// The portable kernel: `MR × NR` register tiles, rank-1 updates over blocks of `KC` values of
/// k, both operands read in place. It packs nothing — no buffer on the stack or in the arena —
/// because the targets it serves have no cache to pack for: a microcontroller's stack is a few
/// KiB and its SRAM answers every load in one cycle. The SIMD kernels pack; each element's
/// arithmetic (the products summed in k order within a block, blocks added in order) is the same
/// whichever loop runs first.
///
/// Products at most 4 columns wide (an attention head's `P·V` at head_dim 4) take 8 × 4 tiles
/// instead, so that no half of each tile computes columns past n.
pub(crate) fn gemm_portable(c: &mut [f32], a: &[f32], b: &[f32], g: Gemm) {
    if g.n <= PORTABLE_MR {
        gemm_portable_tiles::<PORTABLE_NR, PORTABLE_MR>(c, a, b, g)
    } else {
        gemm_portable_tiles::<PORTABLE_MR, PORTABLE_NR>(c, a, b, g)
    }
}

/// [`gemm_portable`] with `MR × NR` register tiles.
fn gemm_portable_tiles<const MR: usize, const NR: usize>(c: &mut [f32], a: &[f32], b: &[f32], g: Gemm) {
    for j0 in (0..g.n).step_by(NR) {
        let nr = NR.min(g.n - j0);
        for pc in (0..g.k).step_by(PORTABLE_KC) {
            let kc = PORTABLE_KC.min(g.k - pc);
            let overwrite = !g.accumulate && pc == 0;
            // B stored n×k: the tile's columns of op(B) are rows of B, each a run over k. Past the
            // edge (j ≥ nr) the last one repeats: those sums are computed, never stored.
            let b_cols: [&[f32]; NR] = core::array::from_fn(|j| {
                if g.trans_b { &b[(j0 + j.min(nr - 1)) * g.ldb + pc..][..kc] } else { &[] }
            });
            for i0 in (0..g.m).step_by(MR) {
                let mr = MR.min(g.m - i0);
                // A stored m×k: the tile's rows, each a run over k (the last repeats past mr).
                let a_rows: [&[f32]; MR] = core::array::from_fn(|r| {
                    if g.trans_a { &[] } else { &a[(i0 + r.min(mr - 1)) * g.lda + pc..][..kc] }
                });
                let mut acc = [[0.0f32; NR]; MR];
                for q in 0..kc {
                    let bv: [f32; NR] = if g.trans_b {
                        core::array::from_fn(|j| b_cols[j][q])
                    } else {
                        let row = &b[(pc + q) * g.ldb + j0..][..nr];
                        core::array::from_fn(|j| if j < nr { row[j] } else { 0.0 })
                    };
                    let av: [f32; MR] = if g.trans_a {
                        let col = &a[(pc + q) * g.lda + i0..][..mr];
                        core::array::from_fn(|r| col[r.min(mr - 1)])
                    } else {
                        core::array::from_fn(|r| a_rows[r][q])
                    };
                    for (acc_row, &x) in acc.iter_mut().zip(&av) {
                        acc_row.iter_mut().zip(&bv).for_each(|(s, &bj)| *s += x * bj);
                    }
                }
                for (r, acc_row) in acc.iter().enumerate().take(mr) {
                    let row = &mut c[(i0 + r) * g.ldc + j0..][..nr];
                    if overwrite {
                        row.copy_from_slice(&acc_row[..nr]);
                    } else {
                        row.iter_mut().zip(acc_row).for_each(|(y, &v)| *y += v);
                    }
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testing::lcg_fill;

    /// Every layout, awkward sizes (tile edges, k past one block), accumulate or not, with and
    /// without padded strides, for every kernel this CPU has, against the naive loop.
    #[test]
    fn every_kernel_matches_the_naive_loop() {
        let shapes = [
            (1, 1, 1),
            (1, 70, 37),
            (1, 130, 16),
            (1, 5, 100),
            (3, 5, 7),
            (6, 16, 8),
            (7, 17, 9),
            (13, 33, 300),
            (64, 40, 64),
            (75, 70, 513),
            (37, 8, 300),     // exactly 8 wide: B read in place (AVX2), two blocks of k
            (259, 530, 300),  // the wide blocking (is_large), A packed in both layouts
            (257, 1030, 260), // its 1024-wide block of B (AVX2), and a block past it
        ];
        let mut seed = 11;
        for kernel in Kernel::ALL.into_iter().filter(|k| k.is_supported()) {
            for &(m, n, k) in &shapes {
                for (ta, tb) in [(false, false), (false, true), (true, false), (true, true)] {
                    for accumulate in [false, true] {
                        let pad = 3; // padded leading dimensions
                        let (ra, ca) = if ta { (k, m) } else { (m, k) };
                        let (rb, cb) = if tb { (n, k) } else { (k, n) };
                        let mut a = std::vec![0.0; ra * (ca + pad)];
                        let mut b = std::vec![0.0; rb * (cb + pad)];
                        let mut c0 = std::vec![0.0; m * (n + pad)];
                        lcg_fill(&mut a, &mut seed);
                        lcg_fill(&mut b, &mut seed);
                        lcg_fill(&mut c0, &mut seed);
                        let g = Gemm {
                            m,
                            n,
                            k,
                            lda: ca + pad,
                            ldb: cb + pad,
                            ldc: n + pad,
                            trans_a: ta,
                            trans_b: tb,
                            accumulate,
                            kernels: Kernels::Auto,
                        };
                        let (mut want, mut got) = (c0.clone(), c0.clone());
                        gemm_naive(&mut want, &a, &b, g);
                        gemm_with(kernel, &mut got, &a, &b, g);
                        for (i, (w, v)) in want.iter().zip(&got).enumerate() {
                            let tol = 1e-5 * (k as f32).sqrt() * (1.0 + w.abs());
                            assert!((w - v).abs() <= tol, "{kernel:?} {g:?}: c[{i}] = {v}, want {w}");
                        }
                    }
                }
            }
        }
    }

    /// The small-head kernels attention calls directly compute gemm's bits, for every head_dim
    /// up to 8, tails of rows and columns, k past one block, accumulating or not, padded strides.
    #[test]
    #[cfg_attr(miri, ignore)] // no vector kernels under Miri
    fn head_kernels_give_the_gemm_bits() {
        if !Kernel::Avx2.is_supported() {
            return;
        }
        let mut seed = 5;
        let mut check = |g: Gemm, expect_taken: bool| {
            let (na, nb, nc) = g.extents();
            let (mut a, mut b, mut c0) = (std::vec![0.0; na], std::vec![0.0; nb], std::vec![0.0; nc]);
            lcg_fill(&mut a, &mut seed);
            lcg_fill(&mut b, &mut seed);
            lcg_fill(&mut c0, &mut seed);
            let (mut want, mut got) = (c0.clone(), c0.clone());
            gemm(&mut want, &a, &b, g);
            assert_eq!(crate::ops::head_gemm_simd(&mut got, &a, &b, g), expect_taken, "{g:?}");
            if expect_taken {
                let same = want.iter().zip(&got).all(|(w, v)| w.to_bits() == v.to_bits());
                assert!(same, "{g:?}: {got:?} != {want:?}");
            }
        };
        for hd in 1..=8 {
            for (tk, tq) in [(2, 2), (5, 7), (32, 32), (13, 17), (9, 8)] {
                // Scoresᵀ: K (tk × hd, inside rows of width 3·hd) · Q (tq × hd, rows of 2·hd + 1)ᵀ.
                check(Gemm::nt(tk, tq, hd).strides(3 * hd, 2 * hd + 1, tq + 2), true);
            }
            for (m, k) in [(2, 1), (7, 5), (8, 32), (33, 300), (9, 257)] {
                for accumulate in [false, true] {
                    let (nn, tn) = (Gemm::nn(m, hd, k).strides(k + 1, 3 * hd, 2 * hd), Gemm::tn(m, hd, k));
                    for g in [nn, tn.strides(m + 2, hd + 1, hd)] {
                        check(if accumulate { g.acc() } else { g }, true);
                    }
                }
            }
        }
        // Not theirs: one row, wider than 8, deep scores, accumulating scores, portable kernels.
        check(Gemm::nn(1, 8, 4), false);
        check(Gemm::nn(4, 9, 4), false);
        check(Gemm::nt(4, 4, 9), false);
        check(Gemm::nt(4, 4, 8).acc(), false);
        check(Gemm::nn(4, 8, 4).on(Kernels::Portable), false);
    }

    #[test]
    fn k_zero_clears_or_keeps_c() {
        let mut c = [5.0f32; 6];
        gemm(&mut c, &[], &[], Gemm::nn(2, 3, 0).acc());
        assert_eq!(c, [5.0; 6]);
        gemm(&mut c, &[], &[], Gemm::nn(2, 3, 0));
        assert_eq!(c, [0.0; 6]);
    }

    #[test]
    fn hand_computed_product() {
        // [1 2; 3 4] · [5 6; 7 8] = [19 22; 43 50]
        let (a, b) = ([1.0, 2.0, 3.0, 4.0], [5.0, 6.0, 7.0, 8.0]);
        let mut c = [0.0f32; 4];
        gemm(&mut c, &a, &b, Gemm::nn(2, 2, 2));
        assert_eq!(c, [19.0, 22.0, 43.0, 50.0]);
        gemm(&mut c, &a, &b, Gemm::nt(2, 2, 2)); // A·Bᵀ = [17 23; 39 53]
        assert_eq!(c, [17.0, 23.0, 39.0, 53.0]);
        gemm(&mut c, &a, &b, Gemm::tn(2, 2, 2)); // Aᵀ·B = [26 30; 38 44]
        assert_eq!(c, [26.0, 30.0, 38.0, 44.0]);
    }

    #[test]
    #[should_panic(expected = "gemm operands too short")]
    fn short_operands_are_caught_before_any_kernel_runs() {
        let mut c = [0.0f32; 4];
        gemm(&mut c, &[1.0; 3], &[1.0; 4], Gemm::nn(2, 2, 2));
    }
}
