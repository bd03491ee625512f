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

#[cfg(target_arch = "x86_64")]
mod x86 {
    use core::arch::x86_64::*;
    use core::sync::atomic::{AtomicU8, Ordering};

    use super::Gemm;
    use crate::ops::gemm::{Tile, drive, pack_len, store_tile};

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

    /// 6×16 tile: 12 ymm accumulators, two B vectors and one broadcast A per step.
    #[target_feature(enable = "avx2,fma")]
    fn micro_avx2(c: &mut [f32], a: &[f32], t: &Tile<'_, AVX2_MR>) {
        let rows = a_row_ptrs(a, t);
        let bp = t.b_panel.as_ptr();
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

    #[target_feature(enable = "avx2,fma")]
    fn gemm_avx2_impl(c: &mut [f32], a: &[f32], b: &[f32], g: Gemm) {
        // A closure inherits gemm_avx2_impl's target features, so the micro-kernel call is safe.
        let need = pack_len::<AVX2_NR, 256, 64>(&g);
        with_pack(need, |pack| {
            drive::<AVX2_MR, AVX2_NR, 256, 64>(c, a, b, g, pack, |c, a, t| micro_avx2(c, a, t))
        });
    }

    pub(crate) fn gemm_avx2(c: &mut [f32], a: &[f32], b: &[f32], g: Gemm) {
        assert!(has_avx2_fma());
        // SAFETY: the CPU supports AVX2 and FMA (asserted above).
        unsafe { gemm_avx2_impl(c, a, b, g) }
    }

    const AVX512_MR: usize = 8;
    const AVX512_NR: usize = 32;

    /// 8×32 tile: 16 zmm accumulators, two B vectors and one broadcast A per step.
    #[target_feature(enable = "avx512f")]
    fn micro_avx512(c: &mut [f32], a: &[f32], t: &Tile<'_, AVX512_MR>) {
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
        let need = pack_len::<AVX512_NR, 256, 64>(&g);
        with_pack(need, |pack| {
            drive::<AVX512_MR, AVX512_NR, 256, 64>(c, a, b, g, pack, |c, a, t| micro_avx512(c, a, t))
        });
    }

    pub(crate) fn gemm_avx512(c: &mut [f32], a: &[f32], b: &[f32], g: Gemm) {
        assert!(has_avx512f());
        // SAFETY: the CPU supports AVX-512F (asserted above).
        unsafe { gemm_avx512_impl(c, a, b, g) }
    }

    /// Independent multiply-add chains, `iters` steps each: enough of them (16 × 16 lanes) that the
    /// FMA units' throughput, not their latency, bounds the loop. Each chain is its own local, so
    /// the compiler keeps them in registers. Returns a checksum that keeps the loop alive.
    #[target_feature(enable = "avx512f")]
    fn fma_chains_avx512_impl(iters: usize, x: f32) -> f32 {
        let (m, a) = (_mm512_set1_ps(x), _mm512_set1_ps(1e-7));
        let one = _mm512_set1_ps(1.0);
        let (mut c0, mut c1, mut c2, mut c3, mut c4, mut c5, mut c6, mut c7) =
            (one, one, one, one, one, one, one, one);
        let (mut c8, mut c9, mut ca, mut cb, mut cc, mut cd, mut ce, mut cf) =
            (one, one, one, one, one, one, one, one);
        for _ in 0..iters {
            c0 = _mm512_fmadd_ps(c0, m, a);
            c1 = _mm512_fmadd_ps(c1, m, a);
            c2 = _mm512_fmadd_ps(c2, m, a);
            c3 = _mm512_fmadd_ps(c3, m, a);
            c4 = _mm512_fmadd_ps(c4, m, a);
            c5 = _mm512_fmadd_ps(c5, m, a);
            c6 = _mm512_fmadd_ps(c6, m, a);
            c7 = _mm512_fmadd_ps(c7, m, a);
            c8 = _mm512_fmadd_ps(c8, m, a);
            c9 = _mm512_fmadd_ps(c9, m, a);
            ca = _mm512_fmadd_ps(ca, m, a);
            cb = _mm512_fmadd_ps(cb, m, a);
            cc = _mm512_fmadd_ps(cc, m, a);
            cd = _mm512_fmadd_ps(cd, m, a);
            ce = _mm512_fmadd_ps(ce, m, a);
            cf = _mm512_fmadd_ps(cf, m, a);
        }
        [c0, c1, c2, c3, c4, c5, c6, c7, c8, c9, ca, cb, cc, cd, ce, cf]
            .iter()
            .map(|&v| _mm512_reduce_add_ps(v))
            .sum()
    }

    /// As [`fma_chains_avx512_impl`], 8 lanes wide with AVX2 + FMA.
    #[target_feature(enable = "avx2,fma")]
    fn fma_chains_avx2_impl(iters: usize, x: f32) -> f32 {
        let (m, a) = (_mm256_set1_ps(x), _mm256_set1_ps(1e-7));
        let one = _mm256_set1_ps(1.0);
        let (mut c0, mut c1, mut c2, mut c3, mut c4, mut c5, mut c6, mut c7) =
            (one, one, one, one, one, one, one, one);
        let (mut c8, mut c9, mut ca, mut cb) = (one, one, one, one);
        for _ in 0..iters {
            c0 = _mm256_fmadd_ps(c0, m, a);
            c1 = _mm256_fmadd_ps(c1, m, a);
            c2 = _mm256_fmadd_ps(c2, m, a);
            c3 = _mm256_fmadd_ps(c3, m, a);
            c4 = _mm256_fmadd_ps(c4, m, a);
            c5 = _mm256_fmadd_ps(c5, m, a);
            c6 = _mm256_fmadd_ps(c6, m, a);
            c7 = _mm256_fmadd_ps(c7, m, a);
            c8 = _mm256_fmadd_ps(c8, m, a);
            c9 = _mm256_fmadd_ps(c9, m, a);
            ca = _mm256_fmadd_ps(ca, m, a);
            cb = _mm256_fmadd_ps(cb, m, a);
        }
        let mut lanes = [0.0f32; 8];
        let mut sum = 0.0;
        for v in [c0, c1, c2, c3, c4, c5, c6, c7, c8, c9, ca, cb] {
            // SAFETY: lanes holds 8 floats.
            unsafe { _mm256_storeu_ps(lanes.as_mut_ptr(), v) };
            sum += lanes.iter().sum::<f32>();
        }
        sum
    }

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
pub(crate) use x86::{fma_chains, gemm_avx2, gemm_avx512, has_avx2_fma, has_avx512f, vectorized};

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

    pub(crate) fn vectorized<R>(f: impl FnOnce() -> R) -> R {
        f()
    }

    pub(crate) fn fma_chains(_: crate::ops::Kernel, _: usize, _: f32) -> Option<(u64, f32)> {
        None
    }
}

#[cfg(not(target_arch = "x86_64"))]
pub(crate) use other::{fma_chains, gemm_avx2, gemm_avx512, has_avx2_fma, has_avx512f, vectorized};
