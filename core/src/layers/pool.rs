//! Mean pooling over the sequence: `out[b] = (1/T) Σ_t inp[b, t]` (the regression head's input).
//!
//! Shapes: inp (B, T, C) → out (B, C); `c` is the width C and `seq` is T.

/// Overwrites `out` (B·C) with the mean over the `seq` tokens of each sequence of `inp` (B·T·C).
pub fn forward(out: &mut [f32], inp: &[f32], c: usize, seq: usize) {
    debug_assert_eq!(out.len() * seq, inp.len());
    let inv = 1.0 / seq as f32;
    for (o, x) in out.chunks_exact_mut(c).zip(inp.chunks_exact(seq * c)) {
        o.fill(0.0);
        for tok in x.chunks_exact(c) {
            o.iter_mut().zip(tok).for_each(|(s, &v)| *s += v);
        }
        o.iter_mut().for_each(|s| *s *= inv);
    }
}

/// Backward of [`forward`]. Accumulates (`+=`) `dout[b] / T` into every token of `dinp[b]`.
pub fn backward(dinp: &mut [f32], dout: &[f32], c: usize, seq: usize) {
    debug_assert_eq!(dout.len() * seq, dinp.len());
    let inv = 1.0 / seq as f32;
    for (dx, dy) in dinp.chunks_exact_mut(seq * c).zip(dout.chunks_exact(c)) {
        for tok in dx.chunks_exact_mut(c) {
            tok.iter_mut().zip(dy).for_each(|(g, &d)| *g += d * inv);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testing::{grad_check, lcg_fill, weighted_sum};

    #[test]
    fn mean_by_hand_and_gradient() {
        // B = 1, T = 2, C = 2: mean of [1, 2] and [3, 6] = [2, 4]
        let mut out = [0.0f32; 2];
        forward(&mut out, &[1.0, 2.0, 3.0, 6.0], 2, 2);
        assert_eq!(out, [2.0, 4.0]);
        let (mut x, mut r) = ([0.0f32; 2 * 3 * 4], [0.0f32; 2 * 4]);
        lcg_fill(&mut x, &mut 3);
        lcg_fill(&mut r, &mut 4);
        let mut dx = [0.0f32; 24];
        backward(&mut dx, &r, 4, 3);
        let err = grad_check(&mut x, &dx, |x| {
            let mut o = [0.0f32; 8];
            forward(&mut o, x, 4, 3);
            weighted_sum(&o, &r)
        });
        assert!(err < 1e-3);
    }
}
