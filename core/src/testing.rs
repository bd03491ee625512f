//! Test helpers shared by unit tests and the `tests/` crate (feature `testing`).
//!
//! Finite differences follow ggml's `test-grad0`: central differences, evaluated in f32 and
//! differenced in f64, with the relative error of the whole gradient vector as the verdict.

/// Fill `buf` with deterministic values in [-1, 1) from a 32-bit LCG (Numerical Recipes constants).
pub fn lcg_fill(buf: &mut [f32], seed: &mut u32) {
    for v in buf.iter_mut() {
        *seed = seed.wrapping_mul(1_664_525).wrapping_add(1_013_904_223);
        *v = (*seed >> 8) as f32 / (1u32 << 23) as f32 - 1.0;
    }
}

/// `Σ out[i] · r[i]` in f64: a scalar loss whose gradient w.r.t. `out` is exactly `r`.
pub fn weighted_sum(out: &[f32], r: &[f32]) -> f64 {
    out.iter().zip(r).map(|(&o, &w)| f64::from(o) * f64::from(w)).sum()
}

/// Compare an analytic gradient with central differences of `loss` around `x`.
///
/// Perturbs each element of `x` by ±`eps` (restoring it afterwards) and returns
/// ‖analytic − numeric‖₂ / max(‖analytic‖₂, ‖numeric‖₂), the relative error of the whole vector.
pub fn grad_check_eps(x: &mut [f32], analytic: &[f32], eps: f32, mut loss: impl FnMut(&[f32]) -> f64) -> f64 {
    assert_eq!(x.len(), analytic.len(), "gradient length");
    let (mut diff2, mut a2, mut n2) = (0.0f64, 0.0f64, 0.0f64);
    for i in 0..x.len() {
        let x0 = x[i];
        x[i] = x0 + eps;
        let plus = loss(x);
        x[i] = x0 - eps;
        let minus = loss(x);
        x[i] = x0;
        // The step actually taken in f32, which may differ from 2·eps by rounding.
        let h = f64::from(x0 + eps) - f64::from(x0 - eps);
        let numeric = (plus - minus) / h;
        let a = f64::from(analytic[i]);
        diff2 += (a - numeric) * (a - numeric);
        a2 += a * a;
        n2 += numeric * numeric;
    }
    diff2.sqrt() / a2.sqrt().max(n2.sqrt()).max(1e-12)
}

/// [`grad_check_eps`] with `eps = 1e-2` (STYLE.md §7).
pub fn grad_check(x: &mut [f32], analytic: &[f32], loss: impl FnMut(&[f32]) -> f64) -> f64 {
    grad_check_eps(x, analytic, 1e-2, loss)
}

/// Largest `|a − b| / max(|b|, floor)` over two equal-length slices.
pub fn max_rel_diff(a: &[f32], b: &[f32], floor: f32) -> f32 {
    assert_eq!(a.len(), b.len(), "lengths differ");
    a.iter().zip(b).map(|(&x, &y)| (x - y).abs() / y.abs().max(floor)).fold(0.0, f32::max)
}
