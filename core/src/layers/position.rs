//! Learned positional embedding: `x[b, t] += pos[t]` for t < T (`pos_embed.weight`).
//!
//! Shapes: x (B, T, C); pos (max_seq_len, C), rows 0..T used.

/// Adds `pos[t]` to token t of every sequence of `x` (B·T·C), in place.
pub fn forward_inplace(x: &mut [f32], pos: &[f32], c: usize, seq: usize) {
    let pos = &pos[..seq * c];
    for s in x.chunks_exact_mut(seq * c) {
        s.iter_mut().zip(pos).for_each(|(v, &p)| *v += p);
    }
}

/// Backward of [`forward_inplace`]. Accumulates (`+=`) `Σ_b dx[b, t]` into `dpos[t]`.
pub fn backward(dpos: &mut [f32], dx: &[f32], c: usize, seq: usize) {
    let dpos = &mut dpos[..seq * c];
    for s in dx.chunks_exact(seq * c) {
        dpos.iter_mut().zip(s).for_each(|(g, &d)| *g += d);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn adds_rows_and_sums_their_gradients() {
        // B = 2, T = 2, C = 1, max_seq_len 3
        let mut x = [1.0f32, 2.0, 3.0, 4.0];
        forward_inplace(&mut x, &[10.0, 20.0, 30.0], 1, 2);
        assert_eq!(x, [11.0, 22.0, 13.0, 24.0]);
        let mut dpos = [0.0f32; 3];
        backward(&mut dpos, &[1.0, 2.0, 3.0, 4.0], 1, 2);
        assert_eq!(dpos, [4.0, 6.0, 0.0]);
    }
}
