//! Mean squared error: `L = mean((pred − target)²)` over every element (PyTorch `nn.MSELoss()`).
//!
//! Shapes: pred, target, dpred all (len) and equal.

/// The loss. Accumulates in f64 so that it does not depend on the batch's summation order
/// more than rounding requires.
pub fn forward(pred: &[f32], target: &[f32]) -> f32 {
    debug_assert_eq!(pred.len(), target.len());
    if pred.is_empty() {
        return 0.0;
    }
    let sum: f64 = pred.iter().zip(target).map(|(&p, &t)| f64::from(p - t) * f64::from(p - t)).sum();
    (sum / pred.len() as f64) as f32
}

/// Backward of [`forward`], scaled by `dloss`. Accumulates (`+=`) `dloss · 2(pred − target)/len`
/// into `dpred`.
pub fn backward(dpred: &mut [f32], pred: &[f32], target: &[f32], dloss: f32) {
    debug_assert!(dpred.len() == pred.len() && pred.len() == target.len());
    let s = dloss * 2.0 / pred.len() as f32;
    for ((d, &p), &t) in dpred.iter_mut().zip(pred).zip(target) {
        *d += s * (p - t);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testing::{grad_check, lcg_fill};

    #[test]
    fn value_by_hand() {
        assert_eq!(forward(&[1.0, 2.0], &[0.0, 4.0]), 2.5);
    }

    #[test]
    fn backward_matches_finite_differences() {
        let (mut p, mut t) = ([0.0f32; 10], [0.0f32; 10]);
        lcg_fill(&mut p, &mut 5);
        lcg_fill(&mut t, &mut 6);
        let mut dp = [0.0f32; 10];
        backward(&mut dp, &p, &t, 1.0);
        assert!(grad_check(&mut p, &dp, |p| f64::from(forward(p, &t))) < 1e-3);
    }
}
