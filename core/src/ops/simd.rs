//! SIMD micro-kernels and CPU detection: the one module of `regkern-core` that uses `unsafe`.
//!
//! Measurement made it necessary: without explicit FMA the compiler may not fuse `a*b+c`, and
//! baseline x86_64 only auto-vectorises to 4-wide SSE, about a quarter of the machine's peak.
//! Detection reads `cpuid` and `xgetbv` directly, so it works without `std` and a firmware build
//! and a host build of the same code pick the same kernel on the same CPU.
//!
//! Every pointer access below stays inside the slices it came from: `gemm_with` checks the
//! operand extents (`Gemm::assert_fits`) before any kernel runs, and the driver only forms tiles
//! whose rows and columns lie inside those extents.
#![allow(unsafe_code)]

use super::gemm::Gemm;

/// Shape of a single-query attention (`attend_one`).
#[derive(Clone, Copy, Debug)]
#[cfg_attr(not(target_arch = "x86_64"), allow(dead_code))] // only the x86_64 kernel reads it
pub(crate) struct AttendShape {
    pub heads: usize,
    pub groups: usize,
    pub head_dim: usize,
    pub len: usize,
    pub scale: f32,
}

/// One elementwise GELU pass over equal-length slices, for [`gelu`]: `out = gelu(inp)`,
/// `x = gelu(x)`, `d *= gelu'(inp)` given the forward pass's `out` (from which Φ(inp) is
/// `out / inp`), or the same with `out` recomputed (the same bits).
#[cfg_attr(not(target_arch = "x86_64"), allow(dead_code))] // only the x86_64 kernel reads it
pub(crate) enum GeluPass<'s> {
    Forward { out: &'s mut [f32], inp: &'s [f32] },
    InPlace { x: &'s mut [f32] },
    ScaleGrad { d: &'s mut [f32], inp: &'s [f32], out: &'s [f32] },
    ScaleGradRecompute { d: &'s mut [f32], inp: &'s [f32] },
}

#[cfg(target_arch = "x86_64")]
mod x86 {
    use core::arch::x86_64::*;
    use core::sync::atomic::{AtomicU8, Ordering};

    use super::{AttendShape, GeluPass, Gemm};
    use crate::ops::gemm::{Tile, drive, is_large, pack_len, store_tile};

    /// Run `f` with a zeroed stack buffer of at least `need` floats (at most 256 × 64, the largest
    /// block the kernels pack). Safe Rust must initialise it, and zeroing 64 KiB costs more than
    /// the arithmetic of a small product, so the buffer comes in sizes: an 8×32 and a 32×32 block
    /// (an attention tile's products), 64×64 (a projection of width 64), and the full block.
    #[inline(always)]
    fn with_pack(need: usize, f: impl FnOnce(&mut [f32])) {
        if need <= 8 * 32 {
            f(&mut [0.0f32; 8 * 32])
        } else if need <= 32 * 32 {
            f(&mut [0.0f32; 32 * 32])
        } else if need <= 64 * 64 {
            f(&mut [0.0f32; 64 * 64])
        } else {
            f(&mut [0.0f32; 256 * 64])
        }
    }

    const DETECTED: u8 = 1;
    const AVX2_FMA: u8 = 2;
    const AVX512F: u8 = 4;
    static FEATURES: AtomicU8 = AtomicU8::new(0);

    /// Read XCR0, which says which register states the OS saves on a context switch.
    #[target_feature(enable = "xsave")]
    fn xcr0() -> u64 {
        // SAFETY: only called after cpuid reported OSXSAVE, so XGETBV is available and enabled.
        unsafe { _xgetbv(0) }
    }

    fn detect() -> u8 {
        let mut bits = DETECTED;
        if cfg!(miri) {
            return bits; // Miri runs no CPUID (inline assembly): the portable kernels, as on an MCU
        }
        let leaf0 = __cpuid(0);
        let leaf1 = __cpuid(1);
        let (fma, osxsave, avx) =
            (leaf1.ecx >> 12 & 1 == 1, leaf1.ecx >> 27 & 1 == 1, leaf1.ecx >> 28 & 1 == 1);
        if !(osxsave && avx) || leaf0.eax < 7 {
            return bits;
        }
        // SAFETY: OSXSAVE is set (checked above), which is the precondition of XGETBV.
        let xcr0 = unsafe { xcr0() };
        let leaf7 = __cpuid_count(7, 0);
        // AVX-512 counts only with VL (128/256-bit forms), which the elementwise kernels use too.
        let (avx2, avx512f) = (leaf7.ebx >> 5 & 1 == 1, leaf7.ebx >> 16 & 1 == 1 && leaf7.ebx >> 31 & 1 == 1);
        // XMM|YMM state, and additionally opmask|ZMM_Hi256|Hi16_ZMM for AVX-512.
        let (ymm_os, zmm_os) = (xcr0 & 0x6 == 0x6, xcr0 & 0xe6 == 0xe6);
        if ymm_os && avx2 && fma {
            bits |= AVX2_FMA;
            if zmm_os && avx512f {
                bits |= AVX512F;
            }
        }
        bits
    }

    fn features() -> u8 {
        let f = FEATURES.load(Ordering::Relaxed);
        if f & DETECTED != 0 {
            return f;
        }
        let f = detect();
        FEATURES.store(f, Ordering::Relaxed);
        f
    }

    pub(crate) fn has_avx2_fma() -> bool {
        features() & AVX2_FMA != 0
    }

    pub(crate) fn has_avx512f() -> bool {
        features() & AVX512F != 0
    }

    /// Row pointers of the tile's A rows, advanced by `p * a_step` per k step.
    #[inline(always)]
    fn a_row_ptrs<const MR: usize>(a: &[f32], t: &Tile<'_, MR>) -> [*const f32; MR] {
        core::array::from_fn(|r| a[t.a_rows[r]..].as_ptr())
    }

    const AVX2_MR: usize = 6;
    const AVX2_NR: usize = 16;

    /// Floats of the A-packing buffer of the AVX2 wide blocking.
    const AVX2_APACK: usize = crate::ops::gemm::MC.div_ceil(AVX2_MR) * AVX2_MR * 256;

    /// 6×16 tile: 12 ymm accumulators, two B vectors and one broadcast A per step. `WIDE` tells
    /// the two blockings' copies apart, as for [`micro_avx512`].
    #[target_feature(enable = "avx2,fma")]
    fn micro_avx2<const COPY: u8>(c: &mut [f32], a: &[f32], t: &Tile<'_, AVX2_MR>) {
        let rows = a_row_ptrs(a, t);
        let bp = t.b_panel.as_ptr();
        // A large product's C tile is rarely in cache by the time the tile comes round again:
        // fetching it now hides the misses behind the k loop instead of stalling at its end.
        // (A prefetch does not fault, so a partial tile's rows need no check.)
        let cp = c.as_ptr().wrapping_add(t.c_at);
        for r in 0..AVX2_MR {
            let row = cp.wrapping_add(r * t.ldc).cast::<i8>();
            _mm_prefetch::<_MM_HINT_T0>(row);
            _mm_prefetch::<_MM_HINT_T0>(row.wrapping_add(63));
        }
        let mut acc = [[_mm256_setzero_ps(); 2]; AVX2_MR];
        for p in 0..t.kc {
            // SAFETY: the panel holds kc × 16 floats; row r of A holds element (r, p) at
            // rows[r] + p·a_step, inside A by the driver's construction.
            unsafe {
                let b0 = _mm256_loadu_ps(bp.add(p * AVX2_NR));
                let b1 = _mm256_loadu_ps(bp.add(p * AVX2_NR + 8));
                for (acc_r, row) in acc.iter_mut().zip(&rows) {
                    let av = _mm256_broadcast_ss(&*row.add(p * t.a_step));
                    acc_r[0] = _mm256_fmadd_ps(av, b0, acc_r[0]);
                    acc_r[1] = _mm256_fmadd_ps(av, b1, acc_r[1]);
                }
            }
        }
        if t.mr == AVX2_MR && t.nr == AVX2_NR {
            let cp = c[t.c_at..].as_mut_ptr();
            for (r, acc_r) in acc.iter().enumerate() {
                // SAFETY: a full tile: rows c_at + r·ldc .. + 16 lie inside C (assert_fits).
                unsafe {
                    let row = cp.add(r * t.ldc);
                    if t.overwrite {
                        _mm256_storeu_ps(row, acc_r[0]);
                        _mm256_storeu_ps(row.add(8), acc_r[1]);
                    } else {
                        _mm256_storeu_ps(row, _mm256_add_ps(_mm256_loadu_ps(row), acc_r[0]));
                        _mm256_storeu_ps(row.add(8), _mm256_add_ps(_mm256_loadu_ps(row.add(8)), acc_r[1]));
                    }
                }
            }
        } else {
            let mut tile = [[0.0f32; AVX2_NR]; AVX2_MR];
            for (dst, acc_r) in tile.iter_mut().zip(&acc) {
                // SAFETY: dst is 16 floats.
                unsafe {
                    _mm256_storeu_ps(dst.as_mut_ptr(), acc_r[0]);
                    _mm256_storeu_ps(dst.as_mut_ptr().add(8), acc_r[1]);
                }
            }
            store_tile(c, &tile, t);
        }
    }

    const NARROW_MR: usize = 12;
    const NARROW_NR: usize = 8;

    /// 12×8 tile for products at most 8 columns wide (an attention head's `P·V`, `dS·K`, `Pᵀ·dO`
    /// at head_dim 8), where a 16-wide tile would compute as many zeros as values: 12 ymm
    /// accumulators, one B vector and one broadcast A per row and step. Each element of C is the
    /// same chain of fused multiply-adds as in [`micro_avx2`], so the bits do not depend on
    /// which of the two runs.
    #[target_feature(enable = "avx2,fma")]
    fn micro_avx2_narrow(c: &mut [f32], a: &[f32], t: &Tile<'_, NARROW_MR>) {
        let rows = a_row_ptrs(a, t);
        let bp = t.b_panel.as_ptr();
        let mut acc = [_mm256_setzero_ps(); NARROW_MR];
        for p in 0..t.kc {
            // SAFETY: the panel holds kc × 8 floats; row r of A holds element (r, p) at
            // rows[r] + p·a_step, inside A by the driver's construction.
            unsafe {
                let b0 = _mm256_loadu_ps(bp.add(p * NARROW_NR));
                for (acc_r, row) in acc.iter_mut().zip(&rows) {
                    *acc_r = _mm256_fmadd_ps(_mm256_broadcast_ss(&*row.add(p * t.a_step)), b0, *acc_r);
                }
            }
        }
        if t.mr == NARROW_MR && t.nr == NARROW_NR {
            let cp = c[t.c_at..].as_mut_ptr();
            for (r, acc_r) in acc.iter().enumerate() {
                // SAFETY: a full tile: rows c_at + r·ldc .. + 8 lie inside C (assert_fits).
                unsafe {
                    let row = cp.add(r * t.ldc);
                    let v = if t.overwrite { *acc_r } else { _mm256_add_ps(_mm256_loadu_ps(row), *acc_r) };
                    _mm256_storeu_ps(row, v);
                }
            }
        } else {
            let mut tile = [[0.0f32; NARROW_NR]; NARROW_MR];
            for (dst, acc_r) in tile.iter_mut().zip(&acc) {
                // SAFETY: dst is 8 floats.
                unsafe { _mm256_storeu_ps(dst.as_mut_ptr(), *acc_r) };
            }
            store_tile(c, &tile, t);
        }
    }

    /// Products exactly 8 columns wide with B stored k × n (an attention head's `P·V`, `dS·K`,
    /// `Pᵀ·dO`, `dSᵀ·Q` at head_dim 8): each row of B is one vector, read in place, so nothing
    /// is packed. The tiles, blocks of k and each element's chain of fused multiply-adds are
    /// those of [`micro_avx2_narrow`] under the driver, so the bits are the same.
    #[target_feature(enable = "avx2,fma")]
    fn gemm_avx2_narrow_direct(c: &mut [f32], a: &[f32], b: &[f32], g: Gemm) {
        const KC: usize = 256;
        debug_assert!(g.n == NARROW_NR && !g.trans_b);
        let a_step = if g.trans_a { g.lda } else { 1 };
        for pc in (0..g.k).step_by(KC) {
            let kc = KC.min(g.k - pc);
            let overwrite = !g.accumulate && pc == 0;
            let b_rows = &b[pc * g.ldb..];
            for i0 in (0..g.m).step_by(NARROW_MR) {
                let mr = NARROW_MR.min(g.m - i0);
                // Rows past mr repeat the last valid one (computed, never stored).
                let a_at: [usize; NARROW_MR] = core::array::from_fn(|r| {
                    let i = i0 + r.min(mr - 1);
                    if g.trans_a { pc * g.lda + i } else { i * g.lda + pc }
                });
                let rows: [*const f32; NARROW_MR] = core::array::from_fn(|r| a[a_at[r]..].as_ptr());
                let mut acc = [_mm256_setzero_ps(); NARROW_MR];
                for p in 0..kc {
                    // SAFETY: row pc + p of B holds 8 floats at p·ldb (assert_fits: (k−1)·ldb + 8
                    // ≤ b.len()); element (r, p) of A is at rows[r] + p·a_step, inside A.
                    unsafe {
                        let b0 = _mm256_loadu_ps(b_rows.as_ptr().add(p * g.ldb));
                        for (acc_r, row) in acc.iter_mut().zip(&rows) {
                            *acc_r = _mm256_fmadd_ps(_mm256_broadcast_ss(&*row.add(p * a_step)), b0, *acc_r);
                        }
                    }
                }
                for (r, acc_r) in acc.iter().enumerate().take(mr) {
                    let row = c[(i0 + r) * g.ldc..][..NARROW_NR].as_mut_ptr();
                    // SAFETY: row points at 8 floats of C.
                    unsafe {
                        let v = if overwrite { *acc_r } else { _mm256_add_ps(_mm256_loadu_ps(row), *acc_r) };
                        _mm256_storeu_ps(row, v);
                    }
                }
            }
        }
    }

    #[target_feature(enable = "avx2,fma")]
    fn gemm_avx2_impl(c: &mut [f32], a: &[f32], b: &[f32], g: Gemm) {
        if g.n == NARROW_NR && !g.trans_b {
            return gemm_avx2_narrow_direct(c, a, b, g);
        }
        if g.n <= NARROW_NR {
            let need = pack_len::<NARROW_NR, 256, 64>(&g);
            return with_pack(need, |pack| {
                let bufs = (pack, &mut [][..]);
                drive::<NARROW_MR, NARROW_NR, 256, 64, false>(c, a, b, g, bufs, |c, a, t| {
                    micro_avx2_narrow(c, a, t)
                })
            });
        }
        if is_large(&g) {
            // The wide blocking (see `gemm_avx512_large`): B 256 × 512 (or, from 1024 columns,
            // 256 × 1024) at a time, A packed — once per block of B, so the wider block halves
            // A's packing: 1024³ at 93.4–93.8 against 90.1–92.5 GFLOP/s (Zen 3, best of ten,
            // three interleaved rounds) for 1 MB of stack (README, "Stack").
            return match g.n {
                ..1024 => gemm_avx2_packed_a::<512, { 256 * 512 }, 1>(c, a, b, g),
                _ => gemm_avx2_packed_a::<1024, { 256 * 1024 }, 2>(c, a, b, g),
            };
        }
        if packs_a_avx2(&g) {
            return match g.n {
                ..=128 => gemm_avx2_packed_a::<128, { 256 * 128 }, 3>(c, a, b, g),
                _ => gemm_avx2_packed_a::<256, { 256 * 256 }, 4>(c, a, b, g),
            };
        }
        // A closure inherits gemm_avx2_impl's target features, so the micro-kernel call is safe.
        let need = pack_len::<AVX2_NR, 256, 64>(&g);
        with_pack(need, |pack| {
            let bufs = (pack, &mut [][..]);
            drive::<AVX2_MR, AVX2_NR, 256, 64, false>(c, a, b, g, bufs, |c, a, t| micro_avx2::<0>(c, a, t))
        });
    }

    /// Whether an AVX2 product reads A transposed (a weight gradient, `doutᵀ·inp`) and is deep
    /// and wide enough to pack it: unpacked, each k step of a tile reads a row of A `lda` floats
    /// further on, a new page every few steps. (Measured on Zen 3: 1024 × 256 × 1024 at 66 →
    /// 88 GFLOP/s packed; at n ≤ 64 packing A for so few panels of B loses, 80 → 72; and so it
    /// does below 96 rows, where A is narrow enough to stream well unpacked: 64 × 128 × 1024 at
    /// 79–81 unpacked against 64–76 packed, 64 × 256 × 1024 at 77–81 against 66–77, best of
    /// eight in three interleaved rounds.)
    #[inline(always)]
    const fn packs_a_avx2(g: &Gemm) -> bool {
        g.trans_a && g.m >= 96 && g.n > 64 && g.k >= 128
    }

    /// The blocking of large and [`packs_a_avx2`] products: B 256 × NC and A MC × 256 at a
    /// time, both packed, in a never-inlined function whose stack buffers (B's sized by NC) are set up only
    /// for such products. `COPY` tells the instances' micro-kernels apart (see [`micro_avx512`]).
    #[inline(never)]
    #[target_feature(enable = "avx2,fma")]
    fn gemm_avx2_packed_a<const NC: usize, const PACK: usize, const COPY: u8>(
        c: &mut [f32],
        a: &[f32],
        b: &[f32],
        g: Gemm,
    ) {
        const { assert!(PACK == 256 * NC) };
        let (mut pack, mut apack) = ([0.0f32; PACK], [0.0f32; AVX2_APACK]);
        let bufs = (&mut pack[..], &mut apack[..]);
        drive::<AVX2_MR, AVX2_NR, 256, NC, true>(c, a, b, g, bufs, |c, a, t| micro_avx2::<COPY>(c, a, t));
    }

    pub(crate) fn gemm_avx2(c: &mut [f32], a: &[f32], b: &[f32], g: Gemm) {
        assert!(has_avx2_fma());
        // SAFETY: the CPU supports AVX2 and FMA (asserted above).
        unsafe { gemm_avx2_impl(c, a, b, g) }
    }

    const AVX512_MR: usize = 8;
    const AVX512_NR: usize = 32;
    /// Floats of the A-packing buffer of the wide blocking: MC rows (rounded up to whole tiles)
    /// by 256.
    const APACK: usize = crate::ops::gemm::MC.div_ceil(AVX512_MR) * AVX512_MR * 256;

    /// 8×32 tile: 16 zmm accumulators, two B vectors and one broadcast A per step. `WIDE` only
    /// tells the two blockings' copies apart: LLVM inlines a function with a single caller, and
    /// the kernel must be inlined into each driver's loop (a call per tile costs ~30% at n = 64).
    #[target_feature(enable = "avx512f")]
    fn micro_avx512<const WIDE: bool>(c: &mut [f32], a: &[f32], t: &Tile<'_, AVX512_MR>) {
        let rows = a_row_ptrs(a, t);
        let bp = t.b_panel.as_ptr();
        let mut acc = [[_mm512_setzero_ps(); 2]; AVX512_MR];
        for p in 0..t.kc {
            // SAFETY: as in micro_avx2, with a kc × 32 panel.
            unsafe {
                let b0 = _mm512_loadu_ps(bp.add(p * AVX512_NR));
                let b1 = _mm512_loadu_ps(bp.add(p * AVX512_NR + 16));
                for (acc_r, row) in acc.iter_mut().zip(&rows) {
                    let av = _mm512_set1_ps(*row.add(p * t.a_step));
                    acc_r[0] = _mm512_fmadd_ps(av, b0, acc_r[0]);
                    acc_r[1] = _mm512_fmadd_ps(av, b1, acc_r[1]);
                }
            }
        }
        if t.mr == AVX512_MR && t.nr == AVX512_NR {
            let cp = c[t.c_at..].as_mut_ptr();
            for (r, acc_r) in acc.iter().enumerate() {
                // SAFETY: a full tile lies inside C (assert_fits).
                unsafe {
                    let row = cp.add(r * t.ldc);
                    if t.overwrite {
                        _mm512_storeu_ps(row, acc_r[0]);
                        _mm512_storeu_ps(row.add(16), acc_r[1]);
                    } else {
                        _mm512_storeu_ps(row, _mm512_add_ps(_mm512_loadu_ps(row), acc_r[0]));
                        _mm512_storeu_ps(row.add(16), _mm512_add_ps(_mm512_loadu_ps(row.add(16)), acc_r[1]));
                    }
                }
            }
        } else {
            let mut tile = [[0.0f32; AVX512_NR]; AVX512_MR];
            for (dst, acc_r) in tile.iter_mut().zip(&acc) {
                // SAFETY: dst is 32 floats.
                unsafe {
                    _mm512_storeu_ps(dst.as_mut_ptr(), acc_r[0]);
                    _mm512_storeu_ps(dst.as_mut_ptr().add(16), acc_r[1]);
                }
            }
            store_tile(c, &tile, t);
        }
    }

    #[target_feature(enable = "avx512f")]
    fn gemm_avx512_impl(c: &mut [f32], a: &[f32], b: &[f32], g: Gemm) {
        if is_large(&g) {
            return gemm_avx512_large(c, a, b, g);
        }
        let need = pack_len::<AVX512_NR, 256, 64>(&g);
        with_pack(need, |pack| {
            let bufs = (pack, &mut [][..]);
            drive::<AVX512_MR, AVX512_NR, 256, 64, false>(c, a, b, g, bufs, |c, a, t| {
                micro_avx512::<false>(c, a, t)
            })
        });
    }

    /// The wide blocking: B 256 × 512 and A MC × 256 at a time, so each block of A meets 16
    /// panels of B. Its own function (never inlined): its 650 KB stack frame must not be set up
    /// for the small products.
    #[inline(never)]
    #[target_feature(enable = "avx512f")]
    fn gemm_avx512_large(c: &mut [f32], a: &[f32], b: &[f32], g: Gemm) {
        let (mut pack, mut apack) = ([0.0f32; 256 * 512], [0.0f32; APACK]);
        let bufs = (&mut pack[..], &mut apack[..]);
        drive::<AVX512_MR, AVX512_NR, 256, 512, true>(c, a, b, g, bufs, |c, a, t| {
            micro_avx512::<true>(c, a, t)
        });
    }

    pub(crate) fn gemm_avx512(c: &mut [f32], a: &[f32], b: &[f32], g: Gemm) {
        assert!(has_avx512f());
        // SAFETY: the CPU supports AVX-512F (asserted above).
        unsafe { gemm_avx512_impl(c, a, b, g) }
    }

    /// `y (1×n) (+)= x · op(B)` with AVX-512: the one-row product of decoding a token.
    ///
    /// With B stored n×k (`x·Bᵀ`, a linear layer), four outputs at a time each sum their row of B
    /// against x in 16-lane FMA accumulators, reduced at the end; with B stored k×n, 64 outputs
    /// at a time accumulate `x[p]·B[p, ..]` over p in registers. Either way x and B are read once,
    /// in order. (The portable `gemv` sums in another order: the bits differ in the last place,
    /// as every SIMD kernel's do.) A strided x (`trans_a`) takes the portable loop.
    #[target_feature(enable = "avx512f")]
    fn gemv_avx512_impl(c: &mut [f32], a: &[f32], b: &[f32], g: Gemm) {
        if g.trans_a {
            return crate::ops::gemm::gemv(c, a, b, g);
        }
        let (n, k) = (g.n, g.k);
        let (x, y) = (&a[..k], &mut c[..n]);
        let store = |y: &mut f32, v: f32| *y = if g.accumulate { *y + v } else { v };
        if g.trans_b {
            let full = k / 16 * 16;
            let tail_mask: __mmask16 = ((1u32 << (k - full)) - 1) as __mmask16;
            let xp = x.as_ptr();
            let mut j = 0;
            while j < n {
                let rows = 4.min(n - j);
                // Row q of this group of (up to) four outputs; the last repeats past `rows`.
                let r: [*const f32; 4] =
                    [0, 1, 2, 3].map(|q| b[(j + q.min(rows - 1)) * g.ldb..][..k].as_ptr());
                let mut acc = [_mm512_setzero_ps(); 4];
                let mut p = 0;
                while p < full {
                    // SAFETY: p + 16 ≤ full ≤ k: inside x and inside each row (k floats, sliced above).
                    unsafe {
                        let xv = _mm512_loadu_ps(xp.add(p));
                        for q in 0..4 {
                            acc[q] = _mm512_fmadd_ps(xv, _mm512_loadu_ps(r[q].add(p)), acc[q]);
                        }
                    }
                    p += 16;
                }
                if full < k {
                    // SAFETY: masked loads of the k − full floats left in x and in each row.
                    unsafe {
                        let xv = _mm512_maskz_loadu_ps(tail_mask, xp.add(full));
                        for q in 0..4 {
                            let rv = _mm512_maskz_loadu_ps(tail_mask, r[q].add(full));
                            acc[q] = _mm512_fmadd_ps(xv, rv, acc[q]);
                        }
                    }
                }
                for q in 0..rows {
                    store(&mut y[j + q], _mm512_reduce_add_ps(acc[q]));
                }
                j += rows;
            }
        } else {
            for (jb, yb) in y.chunks_mut(64).enumerate() {
                let (j0, w) = (jb * 64, yb.len());
                let masks: [__mmask16; 4] = core::array::from_fn(|q| {
                    let live = w.saturating_sub(q * 16).min(16);
                    ((1u32 << live) - 1) as __mmask16
                });
                let mut acc = [_mm512_setzero_ps(); 4];
                for (p, &xp) in x.iter().enumerate() {
                    let xv = _mm512_set1_ps(xp);
                    let r = &b[p * g.ldb + j0..][..w];
                    for (q, s) in acc.iter_mut().enumerate() {
                        // SAFETY: the mask enables lanes q·16 + l < w only, inside r.
                        let bv = unsafe { _mm512_maskz_loadu_ps(masks[q], r.as_ptr().wrapping_add(q * 16)) };
                        *s = _mm512_fmadd_ps(xv, bv, *s);
                    }
                }
                let mut lanes = [0.0f32; 64];
                for (q, s) in acc.iter().enumerate() {
                    // SAFETY: lanes holds 4 × 16 floats.
                    unsafe { _mm512_storeu_ps(lanes[q * 16..].as_mut_ptr(), *s) };
                }
                yb.iter_mut().zip(&lanes).for_each(|(yv, &v)| store(yv, v));
            }
        }
    }

    pub(crate) fn gemv_avx512(c: &mut [f32], a: &[f32], b: &[f32], g: Gemm) {
        assert!(has_avx512f());
        // SAFETY: the CPU supports AVX-512F (asserted above).
        unsafe { gemv_avx512_impl(c, a, b, g) }
    }

    /// Sign-bit lane mask (for `maskload`/`maskstore`) enabling the first `live` (≤ 8) lanes.
    #[target_feature(enable = "avx2,fma")]
    fn lanes_avx2(live: usize) -> __m256i {
        let lane = _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7);
        _mm256_cmpgt_epi32(_mm256_set1_epi32(live.min(8) as i32), lane)
    }

    /// The 8 × 8 transpose of eight rows: lane l of result d is lane d of `r[l]`.
    #[target_feature(enable = "avx2,fma")]
    #[inline]
    fn transpose8_avx2(r: [__m256; 8]) -> [__m256; 8] {
        let t: [__m256; 8] = core::array::from_fn(|u| {
            let (x, y) = (r[u / 2 * 2], r[u / 2 * 2 + 1]);
            if u % 2 == 0 { _mm256_unpacklo_ps(x, y) } else { _mm256_unpackhi_ps(x, y) }
        });
        // s[4h + c]: columns c and c + 4 of rows 4h..4h + 4 (low and high halves).
        let s: [__m256; 8] = core::array::from_fn(|u| {
            let (h, c) = (u / 4, u % 4);
            let (x, y) = (t[4 * h + c / 2], t[4 * h + 2 + c / 2]);
            if c % 2 == 0 { _mm256_shuffle_ps::<0x44>(x, y) } else { _mm256_shuffle_ps::<0xEE>(x, y) }
        });
        core::array::from_fn(|d| {
            let (lo, hi) = (s[d % 4], s[4 + d % 4]);
            if d < 4 {
                _mm256_permute2f128_ps::<0x20>(lo, hi)
            } else {
                _mm256_permute2f128_ps::<0x31>(lo, hi)
            }
        })
    }

    /// Eight rows of B (`b[start + r·ldb..]`, r < 8) transposed into a packed panel: element p
    /// (< `deep`, a multiple of 8) of row r goes to `panel[p·nr + col + r]` (see `pack_b`).
    #[target_feature(enable = "avx2,fma")]
    fn transpose_rows8_avx2(
        panel: &mut [f32],
        (nr, col): (usize, usize),
        b: &[f32],
        (start, ldb): (usize, usize),
        deep: usize,
    ) {
        let (bp, pp) = (b.as_ptr(), panel.as_mut_ptr());
        for pb in (0..deep).step_by(8) {
            let mut rows = [_mm256_setzero_ps(); 8];
            for (r, row) in rows.iter_mut().enumerate() {
                // SAFETY: row r holds `deep` floats from start + r·ldb (checked by the caller).
                *row = unsafe { _mm256_loadu_ps(bp.add(start + r * ldb + pb)) };
            }
            for (q, &v) in transpose8_avx2(rows).iter().enumerate() {
                // SAFETY: panel holds (deep − 1)·nr + col + 8 floats (checked by the caller).
                unsafe { _mm256_storeu_ps(pp.add((pb + q) * nr + col), v) };
            }
        }
    }

    /// `pack_b`'s transposition of eight rows of B with AVX2 (see [`transpose_rows8_avx2`]);
    /// false, doing nothing, on a CPU without it. Panics if a slice is too short.
    pub(crate) fn transpose_rows8(
        panel: &mut [f32],
        (nr, col): (usize, usize),
        b: &[f32],
        (start, ldb): (usize, usize),
        deep: usize,
    ) -> bool {
        if deep == 0 || !has_avx2_fma() {
            return deep == 0;
        }
        assert!(
            deep.is_multiple_of(8) && col + 8 <= nr,
            "transpose_rows8: {deep} deep into column {col} of {nr}"
        );
        assert!(
            start + 7 * ldb + deep <= b.len() && (deep - 1) * nr + col + 8 <= panel.len(),
            "transpose_rows8: short slice"
        );
        // SAFETY: the CPU supports AVX2 and FMA (checked above); the slices hold every element
        // read or written (asserted above).
        unsafe { transpose_rows8_avx2(panel, (nr, col), b, (start, ldb), deep) };
        true
    }

    /// One attention head's product at head_dim ≤ 8 (see [`head_gemm`]), straight from its
    /// operands: `Sᵀ = X·Yᵀ` (B transposed, k = head_dim ≤ 8) or `C (+)= op(A)·B` (B in place,
    /// n = head_dim ≤ 8). The caller checked the shape and [`Gemm::assert_fits`].
    #[target_feature(enable = "avx2,fma")]
    fn head_gemm_avx2(c: &mut [f32], a: &[f32], b: &[f32], g: Gemm) {
        if g.trans_b {
            match g.k {
                1 => head_scores_avx2::<1>(c, a, b, g),
                2 => head_scores_avx2::<2>(c, a, b, g),
                3 => head_scores_avx2::<3>(c, a, b, g),
                4 => head_scores_avx2::<4>(c, a, b, g),
                5 => head_scores_avx2::<5>(c, a, b, g),
                6 => head_scores_avx2::<6>(c, a, b, g),
                7 => head_scores_avx2::<7>(c, a, b, g),
                _ => head_scores_avx2::<8>(c, a, b, g),
            }
        } else {
            head_rows_avx2(c, a, b, g)
        }
    }

    /// `C = A·Bᵀ` over `HD` ≤ 8 (a head's scoresᵀ `K·Qᵀ` or `V·dOᵀ`): eight rows of B at a time
    /// are transposed in registers, then each row of C takes one chain of HD fused
    /// multiply-adds per eight columns. Every element is the chain the gemm kernels compute
    /// (from zero, k in order), so the bits are theirs.
    #[target_feature(enable = "avx2,fma")]
    fn head_scores_avx2<const HD: usize>(c: &mut [f32], a: &[f32], b: &[f32], g: Gemm) {
        // No closures in here: one inherits this function's target features, so it cannot be
        // inlined into `array::from_fn` or `map`, which then call it per element.
        let dmask = lanes_avx2(HD);
        let (ap, bp, cp) = (a.as_ptr(), b.as_ptr(), c.as_mut_ptr());
        for j0 in (0..g.n).step_by(8) {
            let nc = 8.min(g.n - j0);
            let mut rows = [_mm256_setzero_ps(); 8];
            for (r, row) in rows.iter_mut().enumerate().take(nc) {
                // SAFETY: row j0 + r < n of B holds HD floats at (j0 + r)·ldb (assert_fits), and
                // the mask enables only lanes below HD.
                *row = unsafe {
                    let src = bp.add((j0 + r) * g.ldb);
                    if HD == 8 { _mm256_loadu_ps(src) } else { _mm256_maskload_ps(src, dmask) }
                };
            }
            let bt = transpose8_avx2(rows); // bt[p]: element p of columns j0.. of op(B)
            let cmask = lanes_avx2(nc);
            // SCORE_ROWS rows of C at a time: independent chains hide the FMA latency.
            for i0 in (0..g.m).step_by(SCORE_ROWS) {
                let mr = SCORE_ROWS.min(g.m - i0);
                // Rows past mr repeat the last valid one (computed, never stored).
                let mut ar = [ap; SCORE_ROWS];
                for (r, row) in ar.iter_mut().enumerate() {
                    *row = row.wrapping_add((i0 + r.min(mr - 1)) * g.lda);
                }
                let mut acc = [_mm256_setzero_ps(); SCORE_ROWS];
                for (p, &col) in bt.iter().enumerate().take(HD) {
                    for (acc_r, row) in acc.iter_mut().zip(&ar) {
                        // SAFETY: each row of A (< m) holds HD floats (assert_fits).
                        let x = unsafe { *row.add(p) };
                        *acc_r = _mm256_fmadd_ps(_mm256_set1_ps(x), col, *acc_r);
                    }
                }
                for (r, acc_r) in acc.iter().enumerate().take(mr) {
                    // SAFETY: row i0 + r < m of C holds columns j0..j0 + nc (assert_fits), and the
                    // mask enables only lanes below nc.
                    // (A masked store, not a copy of the tail: a call to memcpy here would make
                    // every vector register, bt among them, spill around it.)
                    unsafe {
                        let dst = cp.add((i0 + r) * g.ldc + j0);
                        if nc == 8 {
                            _mm256_storeu_ps(dst, *acc_r)
                        } else {
                            _mm256_maskstore_ps(dst, cmask, *acc_r)
                        }
                    }
                }
            }
        }
    }

    /// Rows of C per pass of [`head_scores_avx2`].
    const SCORE_ROWS: usize = 8;

    /// `C (+)= op(A)·B` with n ≤ 8 and B read in place (a head's `P·V`, `dS·K`, `Pᵀ·dO`,
    /// `dSᵀ·Q`): eight rows of C at a time, one vector each, with one load of B's row and eight
    /// broadcasts of A per step. Blocks of k and each element's chain are those of the gemm's
    /// narrow kernels, so the bits are theirs.
    #[target_feature(enable = "avx2,fma")]
    fn head_rows_avx2(c: &mut [f32], a: &[f32], b: &[f32], g: Gemm) {
        const KC: usize = 256;
        const MR: usize = 8;
        let whole = g.n == 8;
        let bmask = lanes_avx2(g.n);
        // Element (i, p) of op(A) is at i·row_step + p·p_step.
        let (row_step, p_step) = if g.trans_a { (1, g.lda) } else { (g.lda, 1) };
        for pc in (0..g.k).step_by(KC) {
            let kc = KC.min(g.k - pc);
            let overwrite = !g.accumulate && pc == 0;
            let bp = b[pc * g.ldb..].as_ptr();
            for i0 in (0..g.m).step_by(MR) {
                let mr = MR.min(g.m - i0);
                // Rows past mr repeat the last valid one (computed, never stored). A plain loop:
                // a closure here would not inline (see head_scores_avx2).
                let mut rows = [a.as_ptr(); MR];
                for (r, row) in rows.iter_mut().enumerate() {
                    *row = a[(i0 + r.min(mr - 1)) * row_step + pc * p_step..].as_ptr();
                }
                let mut acc = [_mm256_setzero_ps(); MR];
                for p in 0..kc {
                    // SAFETY: row pc + p of B holds n floats at p·ldb, and the mask enables only
                    // lanes below n (assert_fits: (k − 1)·ldb + n ≤ b.len()); element (r, p) of
                    // A is at rows[r] + p·p_step, inside A.
                    unsafe {
                        let row = bp.add(p * g.ldb);
                        let bv = if whole { _mm256_loadu_ps(row) } else { _mm256_maskload_ps(row, bmask) };
                        for (acc_r, row) in acc.iter_mut().zip(&rows) {
                            *acc_r = _mm256_fmadd_ps(_mm256_broadcast_ss(&*row.add(p * p_step)), bv, *acc_r);
                        }
                    }
                }
                for (r, acc_r) in acc.iter().enumerate().take(mr) {
                    let dst = c[(i0 + r) * g.ldc..][..g.n].as_mut_ptr();
                    // SAFETY: dst points at n floats; the mask enables only lanes below n.
                    unsafe {
                        if whole {
                            let v =
                                if overwrite { *acc_r } else { _mm256_add_ps(_mm256_loadu_ps(dst), *acc_r) };
                            _mm256_storeu_ps(dst, v);
                        } else {
                            let v = if overwrite {
                                *acc_r
                            } else {
                                _mm256_add_ps(_mm256_maskload_ps(dst, bmask), *acc_r)
                            };
                            _mm256_maskstore_ps(dst, bmask, v);
                        }
                    }
                }
            }
        }
    }

    /// One attention head's product with AVX2 and FMA, without a gemm call's dispatch, packing
    /// or tile set-up: `C = A·Bᵀ` with k ≤ 8 (overwriting), or `C (+)= op(A)·B` with n ≤ 8 —
    /// at least two rows either way (one row takes the gemv path, whose sums run in another
    /// order). The same bits as [`crate::ops::gemm()`]. Returns false, doing nothing, for any
    /// other product or on a CPU without AVX2 and FMA.
    pub(crate) fn head_gemm(c: &mut [f32], a: &[f32], b: &[f32], g: Gemm) -> bool {
        let fits = match g.trans_b {
            true => !g.trans_a && !g.accumulate && (1..=8).contains(&g.k) && g.n >= 1,
            false => (1..=8).contains(&g.n) && g.k >= 1,
        };
        if !(fits && g.m >= 2 && has_avx2_fma()) {
            return false;
        }
        g.assert_fits(c.len(), a.len(), b.len());
        // SAFETY: the CPU supports AVX2 and FMA (checked above); the operands hold every
        // element the product touches (assert_fits).
        unsafe { head_gemm_avx2(c, a, b, g) };
        true
    }

    /// The eight sums of eight vectors' lanes: lane q of the result is the sum of `v[q]`'s.
    #[target_feature(enable = "avx2,fma")]
    fn sums8_avx2(v: [__m256; 8]) -> __m256 {
        let h01 = _mm256_hadd_ps(v[0], v[1]);
        let h23 = _mm256_hadd_ps(v[2], v[3]);
        let h45 = _mm256_hadd_ps(v[4], v[5]);
        let h67 = _mm256_hadd_ps(v[6], v[7]);
        let lo = _mm256_hadd_ps(h01, h23); // sums of lanes 0..4 | 4..8 of v[0..4]
        let hi = _mm256_hadd_ps(h45, h67); // the same of v[4..8]
        _mm256_add_ps(_mm256_permute2f128_ps::<0x20>(lo, hi), _mm256_permute2f128_ps::<0x31>(lo, hi))
    }

    /// Sum of the eight lanes.
    #[target_feature(enable = "avx2,fma")]
    fn hsum_avx2(v: __m256) -> f32 {
        let s = _mm_add_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps::<1>(v));
        let s = _mm_add_ps(s, _mm_movehl_ps(s, s));
        _mm_cvtss_f32(_mm_add_ss(s, _mm_movehdup_ps(s)))
    }

    /// Largest of the eight lanes.
    #[target_feature(enable = "avx2,fma")]
    fn hmax_avx2(v: __m256) -> f32 {
        let s = _mm_max_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps::<1>(v));
        let s = _mm_max_ps(s, _mm_movehl_ps(s, s));
        _mm_cvtss_f32(_mm_max_ss(s, _mm_movehdup_ps(s)))
    }

    /// `y (1×n) (+)= x · op(B)` with AVX2 and FMA, as [`gemv_avx512_impl`] does it on 8 lanes:
    /// with B stored n×k, eight outputs at a time each sum their row of B against x in one
    /// accumulator (eight independent FMA chains), reduced together at the end; with B stored
    /// k×n, 32 outputs at a time accumulate `x[p]·B[p, ..]` in registers. A strided x
    /// (`trans_a`) takes the portable loop.
    #[target_feature(enable = "avx2,fma")]
    fn gemv_avx2_impl(c: &mut [f32], a: &[f32], b: &[f32], g: Gemm) {
        if g.trans_a {
            return crate::ops::gemm::gemv(c, a, b, g);
        }
        let (n, k) = (g.n, g.k);
        let (x, y) = (&a[..k], &mut c[..n]);
        let store = |y: &mut f32, v: f32| *y = if g.accumulate { *y + v } else { v };
        if g.trans_b {
            let full = k / 8 * 8;
            let tail = lanes_avx2(k - full);
            let xp = x.as_ptr();
            let mut j = 0;
            while j < n {
                let rows = 8.min(n - j);
                // Row q of this group of (up to) eight outputs; the last repeats past `rows`.
                let r: [*const f32; 8] =
                    core::array::from_fn(|q| b[(j + q.min(rows - 1)) * g.ldb..][..k].as_ptr());
                let mut acc = [_mm256_setzero_ps(); 8];
                let mut p = 0;
                while p < full {
                    // SAFETY: p + 8 ≤ full ≤ k: inside x and inside each row (k floats, sliced above).
                    unsafe {
                        let xv = _mm256_loadu_ps(xp.add(p));
                        for q in 0..8 {
                            acc[q] = _mm256_fmadd_ps(xv, _mm256_loadu_ps(r[q].add(p)), acc[q]);
                        }
                    }
                    p += 8;
                }
                if full < k {
                    // SAFETY: masked loads of the k − full floats left in x and in each row.
                    unsafe {
                        let xv = _mm256_maskload_ps(xp.add(full), tail);
                        for q in 0..8 {
                            let rv = _mm256_maskload_ps(r[q].add(full), tail);
                            acc[q] = _mm256_fmadd_ps(xv, rv, acc[q]);
                        }
                    }
                }
                let sums = sums8_avx2(acc);
                if rows == 8 {
                    let yp = y[j..j + 8].as_mut_ptr();
                    // SAFETY: yp points at 8 floats of y.
                    unsafe {
                        let prev = if g.accumulate { _mm256_loadu_ps(yp) } else { _mm256_setzero_ps() };
                        _mm256_storeu_ps(yp, if g.accumulate { _mm256_add_ps(prev, sums) } else { sums });
                    }
                } else {
                    let mut lanes = [0.0f32; 8];
                    // SAFETY: lanes holds 8 floats.
                    unsafe { _mm256_storeu_ps(lanes.as_mut_ptr(), sums) };
                    y[j..j + rows].iter_mut().zip(&lanes).for_each(|(yv, &v)| store(yv, v));
                }
                j += rows;
            }
        } else {
            for (jb, yb) in y.chunks_mut(32).enumerate() {
                let (j0, w) = (jb * 32, yb.len());
                let masks: [__m256i; 4] = core::array::from_fn(|q| lanes_avx2(w.saturating_sub(q * 8)));
                let mut acc = [_mm256_setzero_ps(); 4];
                for (p, &xp) in x.iter().enumerate() {
                    let xv = _mm256_set1_ps(xp);
                    let r = &b[p * g.ldb + j0..][..w];
                    for (q, s) in acc.iter_mut().enumerate() {
                        // SAFETY: the mask enables lanes q·8 + l < w only, inside r; a fully
                        // masked load reads nothing.
                        let bv = unsafe { _mm256_maskload_ps(r.as_ptr().wrapping_add(q * 8), masks[q]) };
                        *s = _mm256_fmadd_ps(xv, bv, *s);
                    }
                }
                let mut lanes = [0.0f32; 32];
                for (q, s) in acc.iter().enumerate() {
                    // SAFETY: lanes holds 4 × 8 floats.
                    unsafe { _mm256_storeu_ps(lanes[q * 8..].as_mut_ptr(), *s) };
                }
                yb.iter_mut().zip(&lanes).for_each(|(yv, &v)| store(yv, v));
            }
        }
    }

    pub(crate) fn gemv_avx2(c: &mut [f32], a: &[f32], b: &[f32], g: Gemm) {
        assert!(has_avx2_fma());
        // SAFETY: the CPU supports AVX2 and FMA (asserted above).
        unsafe { gemv_avx2_impl(c, a, b, g) }
    }

    /// [`crate::ops::math::exp`]'s range reduction and polynomial on 8 lanes, with fused
    /// multiply-adds (so the last bits can differ from the scalar function's), for finite or −∞
    /// inputs.
    #[target_feature(enable = "avx2,fma")]
    fn exp_avx2(x: __m256) -> __m256 {
        use core::f32::consts::LOG2_E;
        const MAGIC: f32 = 12_582_912.0;
        let set = _mm256_set1_ps;
        let xc = _mm256_min_ps(_mm256_max_ps(x, set(-87.336_54)), set(88.376_26));
        let shifted = _mm256_fmadd_ps(xc, set(LOG2_E), set(MAGIC));
        let n_bits =
            _mm256_sub_epi32(_mm256_castps_si256(shifted), _mm256_set1_epi32(MAGIC.to_bits() as i32));
        let n = _mm256_sub_ps(shifted, set(MAGIC));
        let r = _mm256_fnmadd_ps(n, set(-2.121_944_4e-4), _mm256_fnmadd_ps(n, set(0.693_359_4), xc));
        let mut p = set(1.987_569_1e-4);
        for c in [1.398_199_9e-3, 8.333_452e-3, 4.166_579_6e-2, 1.666_666_5e-1, 0.5] {
            p = _mm256_fmadd_ps(p, r, set(c));
        }
        let e = _mm256_add_ps(_mm256_fmadd_ps(_mm256_mul_ps(p, r), r, r), set(1.0));
        let scale =
            _mm256_castsi256_ps(_mm256_slli_epi32::<23>(_mm256_add_epi32(n_bits, _mm256_set1_epi32(127))));
        _mm256_mul_ps(e, scale)
    }

    /// Φ(x), [`crate::ops::math::normal_cdf`]'s formula on 8 lanes with fused multiply-adds.
    #[target_feature(enable = "avx2,fma")]
    fn normal_cdf_avx2(x: __m256) -> __m256 {
        let set = _mm256_set1_ps;
        let z = _mm256_mul_ps(_mm256_andnot_ps(set(-0.0), x), set(core::f32::consts::FRAC_1_SQRT_2));
        // t = 1/(1 + z/2) from the reciprocal estimate and one Newton step (~2⁻²² relative; a
        // division would wait on the divider).
        let den = _mm256_fmadd_ps(set(0.5), z, set(1.0));
        let r0 = _mm256_rcp_ps(den);
        let t = _mm256_fmadd_ps(_mm256_fnmadd_ps(den, r0, set(1.0)), r0, r0);
        // The polynomial in Estrin's form (pairs, then powers t², t⁴, t⁸): four dependent
        // steps instead of Horner's nine, so more vectors are in flight at once.
        let c = [
            -1.265_512_2,
            1.000_023_7,
            0.374_091_96,
            0.096_784_18,
            -0.186_288_06,
            0.278_868_07,
            -1.135_204,
            1.488_515_9,
            -0.822_152_2,
            0.170_872_77,
        ];
        let pair = |i: usize| _mm256_fmadd_ps(set(c[i + 1]), t, set(c[i]));
        let (t2, q) = (_mm256_mul_ps(t, t), [pair(0), pair(2), pair(4), pair(6), pair(8)]);
        let t4 = _mm256_mul_ps(t2, t2);
        let (r0, r1) = (_mm256_fmadd_ps(q[1], t2, q[0]), _mm256_fmadd_ps(q[3], t2, q[2]));
        let poly = _mm256_fmadd_ps(q[4], _mm256_mul_ps(t4, t4), _mm256_fmadd_ps(r1, t4, r0));
        let half_erfc = _mm256_mul_ps(set(0.5), _mm256_mul_ps(t, exp_avx2(_mm256_fnmadd_ps(z, z, poly))));
        // x < 0: ½·erfc(|x|/√2); else 1 − ½·erfc(x/√2). NaN stays NaN (through t).
        let negative = _mm256_cmp_ps::<_CMP_LT_OQ>(x, _mm256_setzero_ps());
        _mm256_blendv_ps(_mm256_sub_ps(set(1.0), half_erfc), half_erfc, negative)
    }

    /// GELU'(x) = Φ(x) + x·φ(x) on 8 lanes with fused multiply-adds, given GELU(x) = x·Φ(x) as
    /// the forward kernel computed it: Φ(x) is GELU(x)/x (to a few ulp; ½ where |x| < 2⁻⁶⁰, whose
    /// Φ rounds to ½), so only φ's exponential is evaluated, not Φ's polynomial and second one.
    #[target_feature(enable = "avx2,fma")]
    fn gelu_grad_avx2(x: __m256, gelu: __m256) -> __m256 {
        let set = _mm256_set1_ps;
        let pdf = _mm256_mul_ps(set(0.398_942_3), exp_avx2(_mm256_mul_ps(set(-0.5), _mm256_mul_ps(x, x))));
        let tiny = _mm256_cmp_ps::<_CMP_LT_OQ>(_mm256_andnot_ps(set(-0.0), x), set(8.673_617e-19));
        let cdf = _mm256_blendv_ps(_mm256_div_ps(gelu, x), set(0.5), tiny);
        _mm256_fmadd_ps(x, pdf, cdf)
    }

    /// `d ← d · f(d, a, b)` over three slices of the same length, 8 lanes at a time; the last
    /// partial vector goes through zero-padded copies, and only its live lanes are written.
    #[inline(always)]
    fn lanes3(d: &mut [f32], a: &[f32], b: &[f32], f: impl Fn(__m256, __m256, __m256) -> __m256) {
        let n = d.len();
        let whole = n / 8 * 8;
        let (a, b) = (&a[..n], &b[..n]);
        for ((o, x), y) in d[..whole].chunks_exact_mut(8).zip(a.chunks_exact(8)).zip(b.chunks_exact(8)) {
            // SAFETY: each chunk holds 8 floats.
            unsafe {
                let v =
                    f(_mm256_loadu_ps(o.as_ptr()), _mm256_loadu_ps(x.as_ptr()), _mm256_loadu_ps(y.as_ptr()));
                _mm256_storeu_ps(o.as_mut_ptr(), v)
            };
        }
        if whole < n {
            let (mut o, mut x, mut y) = ([0.0f32; 8], [0.0f32; 8], [0.0f32; 8]);
            o[..n - whole].copy_from_slice(&d[whole..]);
            x[..n - whole].copy_from_slice(&a[whole..]);
            y[..n - whole].copy_from_slice(&b[whole..]);
            // SAFETY: each array holds 8 floats.
            unsafe {
                let v =
                    f(_mm256_loadu_ps(o.as_ptr()), _mm256_loadu_ps(x.as_ptr()), _mm256_loadu_ps(y.as_ptr()));
                _mm256_storeu_ps(o.as_mut_ptr(), v)
            };
            d[whole..].copy_from_slice(&o[..n - whole]);
        }
    }

    /// `out ← f(out, a)` over two slices of the same length ([`lanes3`] with `a` twice).
    #[inline(always)]
    fn lanes2(out: &mut [f32], a: &[f32], f: impl Fn(__m256, __m256) -> __m256) {
        lanes3(out, a, a, |o, x, _| f(o, x));
    }

    /// `x ← f(x)` 8 lanes at a time, the last partial vector through a zero-padded copy.
    #[inline(always)]
    fn lanes1(x: &mut [f32], f: impl Fn(__m256) -> __m256) {
        let n = x.len();
        let whole = n / 8 * 8;
        for v in x[..whole].chunks_exact_mut(8) {
            // SAFETY: each chunk holds 8 floats.
            unsafe { _mm256_storeu_ps(v.as_mut_ptr(), f(_mm256_loadu_ps(v.as_ptr()))) };
        }
        if whole < n {
            let mut v = [0.0f32; 8];
            v[..n - whole].copy_from_slice(&x[whole..]);
            // SAFETY: v holds 8 floats.
            unsafe { _mm256_storeu_ps(v.as_mut_ptr(), f(_mm256_loadu_ps(v.as_ptr()))) };
            x[whole..].copy_from_slice(&v[..n - whole]);
        }
    }

    /// Lanes `l` of a chunk of queries `i0 + l` that key `j` is visible to: all of them, or
    /// (causal) those with `i0 + l ≥ j`. Positions fit i32 ([`softmax_columns`] checks).
    #[target_feature(enable = "avx2,fma")]
    #[inline]
    fn visible_avx2(i0: usize, j: usize, causal: bool) -> __m256 {
        if !causal {
            return _mm256_castsi256_ps(_mm256_set1_epi32(-1));
        }
        let queries =
            _mm256_add_epi32(_mm256_set1_epi32(i0 as i32), _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7));
        _mm256_castsi256_ps(_mm256_cmpgt_epi32(queries, _mm256_set1_epi32(j as i32 - 1)))
    }

    /// A column softmax with AVX2 and FMA (see [`softmax_columns`]), eight columns at a time:
    /// their maxima and sums stay in registers, over three passes down the tile.
    #[target_feature(enable = "avx2,fma")]
    fn softmax_columns_avx2(pt: &mut [f32], (tk, tq): (usize, usize), scale: f32, causal: bool) {
        let p = pt[..tk * tq].as_mut_ptr();
        let scale_v = _mm256_set1_ps(scale);
        for i0 in (0..tq).step_by(8) {
            let nq = 8.min(tq - i0);
            let live = lanes_avx2(nq);
            // SAFETY (every access below): entry (j, i0 + l) with j < tk and l < nq lies inside
            // the tile's tk·tq floats, and the partial chunk's mask enables only lanes below nq.
            let load = |j: usize| unsafe {
                let at = p.add(j * tq + i0);
                if nq == 8 { _mm256_loadu_ps(at) } else { _mm256_maskload_ps(at, live) }
            };
            let store = |j: usize, v: __m256| unsafe {
                let at = p.add(j * tq + i0);
                if nq == 8 { _mm256_storeu_ps(at, v) } else { _mm256_maskstore_ps(at, live, v) }
            };
            // Keys past the chunk's last query are masked for all of its lanes (causal).
            let seen = if causal { tk.min(i0 + nq) } else { tk };
            // The maximum over visible keys, taking a key only when greater (NaN never is), as
            // the portable loop does: `max_ps(s, top)` is `s > top ? s : top`, and a masked key
            // enters as −∞.
            let neg_inf = _mm256_set1_ps(f32::NEG_INFINITY);
            let mut top = neg_inf;
            for j in 0..seen {
                let s = if causal {
                    _mm256_blendv_ps(neg_inf, load(j), visible_avx2(i0, j, true))
                } else {
                    load(j)
                };
                top = _mm256_max_ps(s, top);
            }
            // Exponentials, masked ones 0; each column's sum in key order (a masked 0 adds
            // nothing), as the portable loop sums.
            let mut total = _mm256_setzero_ps();
            for j in 0..tk {
                let e = if j < seen {
                    let e = exp_avx2(_mm256_mul_ps(_mm256_sub_ps(load(j), top), scale_v));
                    _mm256_and_ps(e, visible_avx2(i0, j, causal))
                } else {
                    _mm256_setzero_ps()
                };
                total = _mm256_add_ps(total, e);
                store(j, e);
            }
            let inv = _mm256_div_ps(_mm256_set1_ps(1.0), total);
            for j in 0..tk {
                store(j, _mm256_mul_ps(load(j), inv));
            }
        }
    }

    /// Columns of a Tk × Tq tile ← softmax over keys of `scale ·` column, with AVX2 and FMA:
    /// the function of `attention::softmax_columns`'s loops, in the same order (so up to the
    /// exponential's last bits). False, doing nothing, on a CPU without AVX2 and FMA or for a
    /// tile whose positions do not fit i32.
    pub(crate) fn softmax_columns(pt: &mut [f32], shape: (usize, usize), scale: f32, causal: bool) -> bool {
        let (tk, tq) = shape;
        let fits = tk < i32::MAX as usize && tq < i32::MAX as usize - 8;
        // SAFETY: the CPU supports AVX2 and FMA (checked first).
        fits && has_avx2_fma() && {
            unsafe { softmax_columns_avx2(pt, shape, scale, causal) };
            true
        }
    }

    /// GELU passes with AVX2 and FMA (see [`GeluPass`]).
    #[target_feature(enable = "avx2,fma")]
    fn gelu_avx2_impl(pass: GeluPass<'_>) {
        match pass {
            GeluPass::Forward { out, inp } => lanes2(out, inp, |_, x| _mm256_mul_ps(x, normal_cdf_avx2(x))),
            GeluPass::InPlace { x } => lanes1(x, |v| _mm256_mul_ps(v, normal_cdf_avx2(v))),
            GeluPass::ScaleGrad { d, inp, out } => {
                lanes3(d, inp, out, |g, x, y| _mm256_mul_ps(g, gelu_grad_avx2(x, y)))
            }
            GeluPass::ScaleGradRecompute { d, inp } => lanes2(d, inp, |g, x| {
                _mm256_mul_ps(g, gelu_grad_avx2(x, _mm256_mul_ps(x, normal_cdf_avx2(x))))
            }),
        }
    }

    /// Run a GELU pass with AVX2 and FMA; false (nothing done) when the CPU lacks them.
    pub(crate) fn gelu(pass: GeluPass<'_>) -> bool {
        // SAFETY: the CPU supports AVX2 and FMA (checked first).
        has_avx2_fma() && {
            unsafe { gelu_avx2_impl(pass) };
            true
        }
    }

    /// Positions per pass of [`attend_lanes_avx2`] and [`attend_heads_avx2`]: their scores live on the
    /// stack, and their softmax is rescaled (online) from one chunk to the next.
    const ATTEND_CHUNK: usize = 64;

    /// One query attending over `len` cached positions with AVX2 and FMA (see
    /// [`crate::layers::attention::forward_one`], whose result this is up to rounding). At
    /// head_dim ≤ 8 eight heads run together, one per lane ([`attend_lanes_avx2`]); above, the
    /// heads of a kv group run two at a time ([`attend_heads_avx2`]), so each key and value row is
    /// loaded once for both.
    ///
    /// Returns false, computing nothing, for shapes it does not take (head_dim above 16).
    #[target_feature(enable = "avx2,fma")]
    fn attend_one_avx2_impl(out: &mut [f32], q: &[f32], kv: [&[f32]; 2], shape: AttendShape) -> bool {
        let AttendShape { heads, groups, head_dim: hd, len, .. } = shape;
        if hd == 0 || hd > 16 || groups == 0 || heads % groups != 0 || len == 0 {
            return false;
        }
        let kvd = groups * hd;
        let [k, v] = kv;
        let (k, v) = (&k[..len * kvd], &v[..len * kvd]); // every row below lies inside these
        let (q, out) = (&q[..heads * hd], &mut out[..heads * hd]);
        if hd <= 8 {
            let mut h0 = 0;
            while h0 < heads {
                h0 += match hd {
                    8 => attend_lanes_avx2::<true>(out, q, [k, v], h0, shape),
                    _ => attend_lanes_avx2::<false>(out, q, [k, v], h0, shape),
                };
            }
            return true;
        }
        let per_group = heads / groups;
        for g in 0..groups {
            let (mut h0, end) = (g * per_group, (g + 1) * per_group);
            while h0 < end {
                let at = (g, h0);
                h0 += match end - h0 {
                    2.. => attend_heads_avx2::<2, 2>(out, q, [k, v], at, shape),
                    _ => attend_heads_avx2::<1, 2>(out, q, [k, v], at, shape),
                };
            }
        }
        true
    }

    /// Heads `h0..h0 + 8` (fewer at the end) at head_dim ≤ 8 (exactly 8 when `WHOLE`), one head
    /// per lane (see [`attend_one_avx2_impl`], which checked the shape). Per position: the eight
    /// heads' products with their group's key row, reduced together into one vector of scores
    /// ([`sums8_avx2`]'s reduction). Per chunk of positions: the running maximum of each lane,
    /// rescaling what was summed so far when it grows; one exponential per position for all
    /// heads; every head's weighted value rows, in eight independent chains of multiply-adds.
    /// Each lane's arithmetic is its own head's alone, whatever runs beside it. Spare lanes
    /// repeat the last head and are not stored. Returns how many heads it took.
    #[target_feature(enable = "avx2,fma")]
    fn attend_lanes_avx2<const WHOLE: bool>(
        out: &mut [f32],
        q: &[f32],
        [k, v]: [&[f32]; 2],
        h0: usize,
        shape: AttendShape,
    ) -> usize {
        let AttendShape { heads, groups, head_dim: hd, len, scale } = shape;
        debug_assert!(hd <= 8 && WHOLE == (hd == 8) && h0 < heads);
        let (kvd, per_group, live) = (groups * hd, heads / groups, (heads - h0).min(8));
        let dmask = lanes_avx2(hd);
        // The hd floats at p as one vector (lanes past hd read 0).
        // SAFETY: callers pass p with hd floats after it; WHOLE rows have 8, and otherwise the
        // mask enables only lanes l < hd.
        let load =
            |p: *const f32| unsafe { if WHOLE { _mm256_loadu_ps(p) } else { _mm256_maskload_ps(p, dmask) } };
        // Where each lane's head's key/value columns start in a cache row (off + hd ≤ kvd), and
        // its scaled query.
        let mut off = [0usize; 8];
        let mut qv = [_mm256_setzero_ps(); 8];
        for l in 0..8 {
            let h = h0 + l.min(live - 1);
            off[l] = h / per_group * hd;
            qv[l] = _mm256_mul_ps(load(q[h * hd..][..hd].as_ptr()), _mm256_set1_ps(scale));
        }
        let (k, v) = (&k[..len * kvd], &v[..len * kvd]);
        // Lane l's columns of row j < len: hd floats inside k or v (off[l] + hd ≤ kvd).
        let at = |x: &[f32], j: usize, l: usize| {
            debug_assert!(j < len);
            x.as_ptr().wrapping_add(j * kvd + off[l])
        };
        let mut top = _mm256_set1_ps(f32::NEG_INFINITY); // running maximum per lane
        let mut total = _mm256_setzero_ps(); // running sum of exp per lane
        let mut acc = [_mm256_setzero_ps(); 8]; // one head's output each
        let mut sc = [_mm256_setzero_ps(); ATTEND_CHUNK]; // a chunk's scores, then weights
        for c0 in (0..len).step_by(ATTEND_CHUNK) {
            let sc = &mut sc[..ATTEND_CHUNK.min(len - c0)];
            let mut chunk_top = _mm256_set1_ps(f32::NEG_INFINITY);
            for (j, s) in (c0..).zip(sc.iter_mut()) {
                let p = |l: usize| _mm256_mul_ps(qv[l], load(at(k, j, l)));
                let h01 = _mm256_hadd_ps(p(0), p(1));
                let h23 = _mm256_hadd_ps(p(2), p(3));
                let h45 = _mm256_hadd_ps(p(4), p(5));
                let h67 = _mm256_hadd_ps(p(6), p(7));
                // sums8_avx2's reduction, written out so the products are not all live at once.
                let (lo, hi) = (_mm256_hadd_ps(h01, h23), _mm256_hadd_ps(h45, h67));
                *s = _mm256_add_ps(
                    _mm256_permute2f128_ps::<0x20>(lo, hi),
                    _mm256_permute2f128_ps::<0x31>(lo, hi),
                );
                chunk_top = _mm256_max_ps(chunk_top, *s);
            }
            let m_new = _mm256_max_ps(top, chunk_top);
            let c = exp_avx2(_mm256_sub_ps(top, m_new)); // ~0 at the first chunk, on zeros
            top = m_new;
            let mut cl = [0.0f32; 8];
            // SAFETY: cl holds 8 floats.
            unsafe { _mm256_storeu_ps(cl.as_mut_ptr(), c) };
            acc.iter_mut().zip(cl).for_each(|(a, cl)| *a = _mm256_mul_ps(*a, _mm256_set1_ps(cl)));
            // The weights (exponentials), two positions per step so their chains overlap.
            let (mut sum0, mut sum1) = (_mm256_setzero_ps(), _mm256_setzero_ps());
            let mut pairs = sc.chunks_exact_mut(2);
            for s in &mut pairs {
                let e0 = exp_avx2(_mm256_sub_ps(s[0], m_new));
                let e1 = exp_avx2(_mm256_sub_ps(s[1], m_new));
                (s[0], s[1]) = (e0, e1);
                (sum0, sum1) = (_mm256_add_ps(sum0, e0), _mm256_add_ps(sum1, e1));
            }
            for s in pairs.into_remainder() {
                *s = exp_avx2(_mm256_sub_ps(*s, m_new));
                sum0 = _mm256_add_ps(sum0, *s);
            }
            total = _mm256_fmadd_ps(total, c, _mm256_add_ps(sum0, sum1));
            for (j, s) in (c0..).zip(sc.iter()) {
                let w = (s as *const __m256).cast::<f32>();
                for (l, a) in acc.iter_mut().enumerate() {
                    // SAFETY: w points at 8 floats.
                    let wl = unsafe { _mm256_broadcast_ss(&*w.add(l)) };
                    *a = _mm256_fmadd_ps(wl, load(at(v, j, l)), *a);
                }
            }
        }
        let mut inv = [0.0f32; 8];
        // SAFETY: inv holds 8 floats.
        unsafe { _mm256_storeu_ps(inv.as_mut_ptr(), _mm256_div_ps(_mm256_set1_ps(1.0), total)) };
        for l in 0..live {
            let o = _mm256_mul_ps(acc[l], _mm256_set1_ps(inv[l]));
            let dst = &mut out[(h0 + l) * hd..][..hd];
            // SAFETY: dst holds hd floats; a whole row 8, and otherwise the mask enables l < hd.
            unsafe {
                if WHOLE {
                    _mm256_storeu_ps(dst.as_mut_ptr(), o)
                } else {
                    _mm256_maskstore_ps(dst.as_mut_ptr(), dmask, o)
                }
            }
        }
        live
    }

    /// Heads `h0..h0 + R` of kv group `g`, their rows `V` ymm wide (see [`attend_one_avx2_impl`],
    /// which checked the shape and sliced k and v to `len` rows). Per chunk of positions: the
    /// scores, eight keys at a time (eight key rows' products with a query reduced together);
    /// the running maximum, rescaling what was summed so far when it grows; the exponentials;
    /// and the weighted value rows, in two interleaved accumulators per head. Returns R.
    #[target_feature(enable = "avx2,fma")]
    fn attend_heads_avx2<const R: usize, const V: usize>(
        out: &mut [f32],
        q: &[f32],
        [k, v]: [&[f32]; 2],
        (g, h0): (usize, usize),
        shape: AttendShape,
    ) -> usize {
        let AttendShape { groups, head_dim: hd, len, scale, .. } = shape;
        let kvd = groups * hd;
        let whole = hd == 8 * V;
        let dmask: [__m256i; V] = core::array::from_fn(|u| lanes_avx2(hd.saturating_sub(u * 8)));
        // Vector u of a row of hd floats: lanes past hd read 0.
        let load = |row: &[f32], u: usize| -> __m256 {
            // SAFETY: row holds hd floats; a whole row (hd = 8·V) has 8 at u·8, and otherwise the
            // mask enables only lanes u·8 + l < hd.
            unsafe {
                if whole {
                    _mm256_loadu_ps(row.as_ptr().add(u * 8))
                } else {
                    _mm256_maskload_ps(row.as_ptr().wrapping_add(u * 8), dmask[u])
                }
            }
        };
        let row_of = |x: &[f32], j: usize| -> [__m256; V] {
            let row = &x[j * kvd + g * hd..][..hd];
            core::array::from_fn(|u| load(row, u))
        };
        let scale_v = _mm256_set1_ps(scale);
        let qv: [[__m256; V]; R] = core::array::from_fn(|hh| {
            core::array::from_fn(|u| _mm256_mul_ps(load(&q[(h0 + hh) * hd..][..hd], u), scale_v))
        });
        let product = |hh: usize, kr: &[__m256; V]| -> __m256 {
            let mut s = _mm256_mul_ps(qv[hh][0], kr[0]);
            for u in 1..V {
                s = _mm256_fmadd_ps(qv[hh][u], kr[u], s);
            }
            s
        };
        let mut top = [f32::NEG_INFINITY; R]; // running maximum per head
        let mut total = [0.0f32; R]; // running sum of exp per head
        let mut acc = [[[_mm256_setzero_ps(); V]; 2]; R]; // outputs, two interleaved sums per head
        let mut sc = [[0.0f32; ATTEND_CHUNK]; R];
        for c0 in (0..len).step_by(ATTEND_CHUNK) {
            let n = ATTEND_CHUNK.min(len - c0);
            let blocks = n / 8 * 8;
            let mut top_v = [_mm256_set1_ps(f32::NEG_INFINITY); R];
            for jb in (0..blocks).step_by(8) {
                let kr: [[__m256; V]; 8] = core::array::from_fn(|l| row_of(k, c0 + jb + l));
                for hh in 0..R {
                    let sv = sums8_avx2(core::array::from_fn(|l| product(hh, &kr[l])));
                    // SAFETY: jb + 8 ≤ blocks ≤ ATTEND_CHUNK: inside sc[hh].
                    unsafe { _mm256_storeu_ps(sc[hh].as_mut_ptr().add(jb), sv) };
                    top_v[hh] = _mm256_max_ps(top_v[hh], sv);
                }
            }
            for j in blocks..n {
                let kr = row_of(k, c0 + j);
                for (hh, row) in sc.iter_mut().enumerate() {
                    row[j] = hsum_avx2(product(hh, &kr));
                }
            }
            for hh in 0..R {
                let chunk_top = sc[hh][blocks..n].iter().fold(hmax_avx2(top_v[hh]), |m, &s| m.max(s));
                let m_new = top[hh].max(chunk_top);
                let c = crate::ops::math::exp(top[hh] - m_new); // ~0 at the first chunk, on zeros
                top[hh] = m_new;
                let cv = _mm256_set1_ps(c);
                acc[hh].iter_mut().flatten().for_each(|a| *a = _mm256_mul_ps(*a, cv));
                let m_v = _mm256_set1_ps(m_new);
                let mut sum_v = _mm256_setzero_ps();
                for jb in (0..blocks).step_by(8) {
                    // SAFETY: jb + 8 ≤ blocks ≤ ATTEND_CHUNK: inside sc[hh].
                    unsafe {
                        let e = exp_avx2(_mm256_sub_ps(_mm256_loadu_ps(sc[hh].as_ptr().add(jb)), m_v));
                        _mm256_storeu_ps(sc[hh].as_mut_ptr().add(jb), e);
                        sum_v = _mm256_add_ps(sum_v, e);
                    }
                }
                let mut sum = hsum_avx2(sum_v);
                for s in &mut sc[hh][blocks..n] {
                    *s = crate::ops::math::exp(*s - m_new);
                    sum += *s;
                }
                total[hh] = total[hh] * c + sum;
            }
            // Σ_j p_j · v_j; positions alternate between two accumulators per head.
            let add_row = |acc: &mut [[[__m256; V]; 2]; R], j: usize, t: usize| {
                let vr = row_of(v, c0 + j);
                for hh in 0..R {
                    let pv = _mm256_set1_ps(sc[hh][j]);
                    for u in 0..V {
                        acc[hh][t][u] = _mm256_fmadd_ps(pv, vr[u], acc[hh][t][u]);
                    }
                }
            };
            let pairs = n / 2 * 2;
            for j in (0..pairs).step_by(2) {
                add_row(&mut acc, j, 0);
                add_row(&mut acc, j + 1, 1);
            }
            if pairs < n {
                add_row(&mut acc, pairs, 0);
            }
        }
        for hh in 0..R {
            let inv = _mm256_set1_ps(1.0 / total[hh]);
            let dst = &mut out[(h0 + hh) * hd..][..hd];
            for u in 0..V {
                let mut lanes = [0.0f32; 8];
                let o = _mm256_mul_ps(_mm256_add_ps(acc[hh][0][u], acc[hh][1][u]), inv);
                // SAFETY: lanes holds 8 floats.
                unsafe { _mm256_storeu_ps(lanes.as_mut_ptr(), o) };
                let live = hd.saturating_sub(u * 8).min(8);
                dst[u * 8..][..live].copy_from_slice(&lanes[..live]);
            }
        }
        R
    }

    /// [`crate::ops::math::exp`] on 16 lanes: the same range reduction and polynomial, for finite
    /// or −∞ inputs (−∞ gives the clamp's ~1e-38, which callers mask).
    #[target_feature(enable = "avx512f")]
    fn exp_avx512(x: __m512) -> __m512 {
        use core::f32::consts::LOG2_E;
        const MAGIC: f32 = 12_582_912.0;
        let set = _mm512_set1_ps;
        let xc = _mm512_min_ps(_mm512_max_ps(x, set(-87.336_54)), set(88.376_26));
        let shifted = _mm512_add_ps(_mm512_mul_ps(xc, set(LOG2_E)), set(MAGIC));
        let n_bits =
            _mm512_sub_epi32(_mm512_castps_si512(shifted), _mm512_set1_epi32(MAGIC.to_bits() as i32));
        let n = _mm512_sub_ps(shifted, set(MAGIC));
        let r = _mm512_sub_ps(
            _mm512_sub_ps(xc, _mm512_mul_ps(n, set(0.693_359_4))),
            _mm512_mul_ps(n, set(-2.121_944_4e-4)),
        );
        let mut p = set(1.987_569_1e-4);
        for c in [1.398_199_9e-3, 8.333_452e-3, 4.166_579_6e-2, 1.666_666_5e-1, 0.5] {
            p = _mm512_add_ps(_mm512_mul_ps(p, r), set(c));
        }
        let e = _mm512_add_ps(_mm512_add_ps(_mm512_mul_ps(_mm512_mul_ps(p, r), r), r), set(1.0));
        let scale =
            _mm512_castsi512_ps(_mm512_slli_epi32::<23>(_mm512_add_epi32(n_bits, _mm512_set1_epi32(127))));
        _mm512_mul_ps(e, scale)
    }

    /// One query attending over `len` cached positions, with AVX-512 (see
    /// [`crate::layers::attention::forward_one`], whose result this is up to rounding): the heads
    /// of a kv group are processed together, so each key element is gathered and each value row
    /// loaded once for all of them, 16 positions at a time; the softmax is computed online (a
    /// running maximum and sum, rescaling the accumulators when the maximum grows), so no scores
    /// are stored.
    ///
    /// Returns false, computing nothing, for shapes it does not take: head_dim above 16, or
    /// indices beyond `i32` (the portable loop then runs).
    #[target_feature(enable = "avx512f")]
    fn attend_one_avx512_impl(out: &mut [f32], q: &[f32], kv: [&[f32]; 2], shape: AttendShape) -> bool {
        let AttendShape { heads, groups, head_dim: hd, len, .. } = shape;
        let kvd = groups * hd;
        let fits_i32 = len.checked_mul(kvd).is_some_and(|n| n <= i32::MAX as usize);
        if hd == 0 || hd > 16 || groups == 0 || heads % groups != 0 || !fits_i32 || len == 0 {
            return false;
        }
        let [k, v] = kv;
        let (k, v) = (&k[..len * kvd], &v[..len * kvd]); // every index below stays under len·kvd
        let (q, out) = (&q[..heads * hd], &mut out[..heads * hd]);
        let per_group = heads / groups;
        for g in 0..groups {
            let (mut h0, end) = (g * per_group, (g + 1) * per_group);
            while h0 < end {
                // The heads of a chunk keep their scores and outputs in registers: R is a constant.
                let r = match end - h0 {
                    8.. => attend_heads::<8>(out, q, [k, v], (g, h0), shape),
                    4..=7 => attend_heads::<4>(out, q, [k, v], (g, h0), shape),
                    2 | 3 => attend_heads::<2>(out, q, [k, v], (g, h0), shape),
                    _ => attend_heads::<1>(out, q, [k, v], (g, h0), shape),
                };
                h0 += r;
            }
        }
        true
    }

    /// Heads `h0..h0 + R` of kv group `g` (see [`attend_one_avx512_impl`], which checked the
    /// shape and sliced k and v to `len` rows). Returns R.
    #[target_feature(enable = "avx512f")]
    fn attend_heads<const R: usize>(
        out: &mut [f32],
        q: &[f32],
        [k, v]: [&[f32]; 2],
        (g, h0): (usize, usize),
        shape: AttendShape,
    ) -> usize {
        let AttendShape { groups, head_dim: hd, len, scale, .. } = shape;
        let kvd = groups * hd;
        let lane = _mm512_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15);
        let stride = _mm512_set1_epi32(kvd as i32);
        let dmask: __mmask16 = ((1u32 << hd) - 1) as __mmask16;
        let qs: [[f32; 16]; R] = core::array::from_fn(|hh| {
            let mut row = [0.0f32; 16];
            row[..hd].iter_mut().zip(&q[(h0 + hh) * hd..][..hd]).for_each(|(d, &x)| *d = x * scale);
            row
        });
        let mut top = [f32::NEG_INFINITY; R]; // running maximum per head
        let mut total = [0.0f32; R]; // running sum of exp per head
        let mut acc = [_mm512_setzero_ps(); R]; // outputs, hd ≤ 16 lanes each
        let mut jb = 0;
        while jb < len {
            let live = 16.min(len - jb);
            let mask: __mmask16 = ((1u32 << live) - 1) as __mmask16;
            let rows = _mm512_mullo_epi32(_mm512_add_epi32(_mm512_set1_epi32(jb as i32), lane), stride);
            // scores[hh][lane] = Σ_d q[h0+hh, d]·scale · k[jb+lane, g, d]
            let mut sc = [_mm512_setzero_ps(); R];
            for d in 0..hd {
                let col = &k[g * hd + d..];
                // SAFETY: lanes under `mask` read col[(jb+l)·kvd] = k[(jb+l)·kvd + g·hd + d], below
                // len·kvd = k.len(); masked-off lanes are not read.
                let kd =
                    unsafe { _mm512_mask_i32gather_ps::<4>(_mm512_setzero_ps(), mask, rows, col.as_ptr()) };
                for hh in 0..R {
                    sc[hh] = _mm512_fmadd_ps(_mm512_set1_ps(qs[hh][d]), kd, sc[hh]);
                }
            }
            let mut p = [[0.0f32; 16]; R];
            for hh in 0..R {
                let s = _mm512_mask_blend_ps(mask, _mm512_set1_ps(f32::NEG_INFINITY), sc[hh]);
                let m_new = top[hh].max(_mm512_reduce_max_ps(s));
                let c = crate::ops::math::exp(top[hh] - m_new); // ~0 at the first block, on zeros
                top[hh] = m_new;
                // Lanes past `live` become exactly 0.
                let pv = _mm512_maskz_mov_ps(mask, exp_avx512(_mm512_sub_ps(s, _mm512_set1_ps(m_new))));
                total[hh] = total[hh] * c + _mm512_reduce_add_ps(pv);
                // SAFETY: p[hh] holds 16 floats.
                unsafe { _mm512_storeu_ps(p[hh].as_mut_ptr(), pv) };
                acc[hh] = _mm512_mul_ps(acc[hh], _mm512_set1_ps(c));
            }
            for l in 0..live {
                let row = &v[(jb + l) * kvd + g * hd..][..hd];
                // SAFETY: dmask enables hd lanes, all inside row.
                let vr = unsafe { _mm512_maskz_loadu_ps(dmask, row.as_ptr()) };
                for hh in 0..R {
                    acc[hh] = _mm512_fmadd_ps(_mm512_set1_ps(p[hh][l]), vr, acc[hh]);
                }
            }
            jb += 16;
        }
        for hh in 0..R {
            let o = _mm512_mul_ps(acc[hh], _mm512_set1_ps(1.0 / total[hh]));
            let dst = &mut out[(h0 + hh) * hd..][..hd];
            // SAFETY: dmask enables hd lanes, all inside dst.
            unsafe { _mm512_mask_storeu_ps(dst.as_mut_ptr(), dmask, o) };
        }
        R
    }

    /// One query's attention with the widest kernel this CPU has (AVX-512, else AVX2); false when
    /// there is none for this CPU or shape.
    pub(crate) fn attend_one(out: &mut [f32], q: &[f32], kv: [&[f32]; 2], shape: AttendShape) -> bool {
        if has_avx512f() {
            // SAFETY: the CPU supports AVX-512F (checked just above).
            unsafe { attend_one_avx512_impl(out, q, kv, shape) }
        } else if has_avx2_fma() {
            // SAFETY: the CPU supports AVX2 and FMA (checked just above).
            unsafe { attend_one_avx2_impl(out, q, kv, shape) }
        } else {
            false
        }
    }

    /// `$fn`: `$chains` independent multiply-add chains of one vector each, `iters` steps: enough
    /// of them that the FMA units' throughput, not their latency, bounds the loop. The chains are
    /// an array the loop fully unrolls, so the compiler keeps them in registers. Returns a
    /// checksum that keeps the loop alive.
    macro_rules! fma_chains_fn {
        ($fn:ident, $feature:literal, $chains:literal, $set1:ident, $fmadd:ident, $store:ident, $lanes:literal) => {
            #[target_feature(enable = $feature)]
            fn $fn(iters: usize, x: f32) -> f32 {
                let (m, a) = ($set1(x), $set1(1e-7));
                let mut acc = [$set1(1.0); $chains];
                for _ in 0..iters {
                    for v in acc.iter_mut() {
                        *v = $fmadd(*v, m, a);
                    }
                }
                let mut lanes = [0.0f32; $lanes];
                let mut sum = 0.0;
                for v in acc {
                    // SAFETY: lanes holds one vector's floats.
                    unsafe { $store(lanes.as_mut_ptr(), v) };
                    sum += lanes.iter().sum::<f32>();
                }
                sum
            }
        };
    }
    fma_chains_fn!(
        fma_chains_avx512_impl,
        "avx512f",
        16,
        _mm512_set1_ps,
        _mm512_fmadd_ps,
        _mm512_storeu_ps,
        16
    );
    fma_chains_fn!(
        fma_chains_avx2_impl,
        "avx2,fma",
        12,
        _mm256_set1_ps,
        _mm256_fmadd_ps,
        _mm256_storeu_ps,
        8
    );

    /// Floating-point operations done and a checksum, or `None` when the CPU lacks the kernel's
    /// instructions.
    pub(crate) fn fma_chains(kernel: crate::ops::Kernel, iters: usize, x: f32) -> Option<(u64, f32)> {
        use crate::ops::Kernel;
        let steps = iters as u64;
        match kernel {
            // SAFETY: the CPU supports AVX-512F (checked in the guard).
            Kernel::Avx512 if has_avx512f() => {
                Some((steps * 16 * 16 * 2, unsafe { fma_chains_avx512_impl(iters, x) }))
            }
            // SAFETY: the CPU supports AVX2 and FMA (checked in the guard).
            Kernel::Avx2 if has_avx2_fma() => {
                Some((steps * 12 * 8 * 2, unsafe { fma_chains_avx2_impl(iters, x) }))
            }
            _ => None,
        }
    }

    /// Calls `f` from a function compiled with AVX2 and FMA: whatever inlines into it (the
    /// `#[inline(always)]` kernel bodies of the layers) is vectorised 8 floats wide.
    #[target_feature(enable = "avx2,fma")]
    fn run_avx2<R>(f: impl FnOnce() -> R) -> R {
        f()
    }

    /// As [`run_avx2`], 16 floats wide.
    #[target_feature(enable = "avx512f,avx512vl,avx2,fma")]
    fn run_avx512<R>(f: impl FnOnce() -> R) -> R {
        f()
    }

    pub(crate) fn vectorized<R>(f: impl FnOnce() -> R) -> R {
        if has_avx512f() {
            // SAFETY: the CPU supports AVX-512F/VL, AVX2 and FMA (has_avx512f implies the others).
            unsafe { run_avx512(f) }
        } else if has_avx2_fma() {
            // SAFETY: the CPU supports AVX2 and FMA (checked just above).
            unsafe { run_avx2(f) }
        } else {
            f()
        }
    }
}

#[cfg(target_arch = "x86_64")]
pub(crate) use x86::{
    attend_one, fma_chains, gelu, gemm_avx2, gemm_avx512, gemv_avx2, gemv_avx512, has_avx2_fma, has_avx512f,
    head_gemm, softmax_columns, transpose_rows8, vectorized,
};

/// IEEE square root that the compiler can vectorise (`sqrtps`/`vsqrtps`). libm's `sqrtf` is inline
/// assembly: opaque to the vectoriser, and its legacy-SSE `sqrtss` stalls inside AVX code.
#[cfg(target_arch = "x86_64")]
#[inline(always)]
pub(crate) fn sqrt(x: f32) -> f32 {
    use core::arch::x86_64::{_mm_cvtss_f32, _mm_set_ss, _mm_sqrt_ss};
    // SAFETY: SSE is part of the x86_64 baseline, so these intrinsics are always available.
    unsafe { _mm_cvtss_f32(_mm_sqrt_ss(_mm_set_ss(x))) }
}

/// IEEE square root (libm elsewhere; correctly rounded either way, so results agree).
#[cfg(not(target_arch = "x86_64"))]
#[inline(always)]
pub(crate) fn sqrt(x: f32) -> f32 {
    libm::sqrtf(x)
}

#[cfg(not(target_arch = "x86_64"))]
mod other {
    use super::Gemm;

    pub(crate) fn has_avx2_fma() -> bool {
        false
    }

    pub(crate) fn has_avx512f() -> bool {
        false
    }

    pub(crate) fn gemm_avx2(c: &mut [f32], a: &[f32], b: &[f32], g: Gemm) {
        crate::ops::gemm::gemm_portable(c, a, b, g)
    }

    pub(crate) fn gemm_avx512(c: &mut [f32], a: &[f32], b: &[f32], g: Gemm) {
        crate::ops::gemm::gemm_portable(c, a, b, g)
    }

    pub(crate) fn gemv_avx512(c: &mut [f32], a: &[f32], b: &[f32], g: Gemm) {
        crate::ops::gemm::gemv(c, a, b, g)
    }

    pub(crate) fn gemv_avx2(c: &mut [f32], a: &[f32], b: &[f32], g: Gemm) {
        crate::ops::gemm::gemv(c, a, b, g)
    }

    pub(crate) fn head_gemm(_: &mut [f32], _: &[f32], _: &[f32], _: Gemm) -> bool {
        false
    }

    pub(crate) fn attend_one(_: &mut [f32], _: &[f32], _: [&[f32]; 2], _: super::AttendShape) -> bool {
        false
    }

    pub(crate) fn vectorized<R>(f: impl FnOnce() -> R) -> R {
        f()
    }

    pub(crate) fn gelu(_: super::GeluPass<'_>) -> bool {
        false
    }

    pub(crate) fn softmax_columns(_: &mut [f32], _: (usize, usize), _: f32, _: bool) -> bool {
        false
    }

    pub(crate) fn fma_chains(_: crate::ops::Kernel, _: usize, _: f32) -> Option<(u64, f32)> {
        None
    }
}

#[cfg(not(target_arch = "x86_64"))]
pub(crate) use other::{
    attend_one, fma_chains, gelu, gemm_avx2, gemm_avx512, gemv_avx2, gemv_avx512, has_avx2_fma, has_avx512f,
    head_gemm, softmax_columns, vectorized,
};
