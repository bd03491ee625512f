//! Key/value cache for incremental decoding, stored as f32, f16 or bf16 inside the f32 arena.
//!
//! Layout, in arena words: `[k|v][layer][sequence][position][row]`, where a row holds one token's
//! G·D keys (or values): `kv_dim` words in f32, or `⌈kv_dim / 2⌉` words holding two halves each
//! (low half first) in f16/bf16. The cache is full size from the start (planned from
//! `max_seq_len`); nothing grows.
//!
//! Half-precision words are built with `to_bits`/`from_bits`, so the arena stays `&mut [f32]` and
//! no `unsafe` is needed; the words are only ever moved, never used in arithmetic.
//!
//! **Precision** (measured; `tests/generation.rs`, `host-cli/tests/cli.rs`). Generating 112 values
//! after a 16-value prompt with the P4 model, the largest difference from uncached generation,
//! relative to the largest value, is 1.4e-6 with an f32 cache, 2.2e-5 with f16 and 7.2e-4 with
//! bf16 (the tests hold them to 1e-5, 1e-3 and 1e-2). On the trained E4 model the free-running
//! validation MSE moves by 6.5e-5 (f16) and 2.1e-3 (bf16), relative. f16 keeps 11 significant
//! bits but overflows past ±65504; bf16 keeps f32's range with 8 bits.

use half::{bf16, f16};

/// Storage type of cached keys and values (`--kv_cache f32|f16|bf16`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum KvDtype {
    /// Exact: cached and uncached decoding agree to rounding.
    #[default]
    F32,
    /// IEEE half: 11-bit significand, range ±65504. Half the bytes.
    F16,
    /// bfloat16: 8-bit significand, f32's range. Half the bytes.
    Bf16,
}

impl KvDtype {
    /// The CLI spelling.
    pub const fn name(self) -> &'static str {
        match self {
            KvDtype::F32 => "f32",
            KvDtype::F16 => "f16",
            KvDtype::Bf16 => "bf16",
        }
    }

    /// Parse the CLI spelling.
    pub fn from_name(s: &str) -> Option<Self> {
        [KvDtype::F32, KvDtype::F16, KvDtype::Bf16].into_iter().find(|d| d.name() == s)
    }
}

/// Dims of a KV cache.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct KvCache {
    /// Storage type.
    pub dtype: KvDtype,
    /// Transformer layers.
    pub n_layers: usize,
    /// Sequences decoded at once (the planned maximum batch).
    pub n_seq: usize,
    /// Positions per sequence (`max_seq_len`).
    pub max_pos: usize,
    /// Keys (or values) per token, G·D.
    pub kv_dim: usize,
}

impl KvCache {
    /// Arena words of one cached row.
    pub const fn row_words(&self) -> usize {
        match self.dtype {
            KvDtype::F32 => self.kv_dim,
            KvDtype::F16 | KvDtype::Bf16 => self.kv_dim.div_ceil(2),
        }
    }

    /// Arena words of the whole cache (keys and values), or `None` on overflow.
    pub fn words(&self) -> Option<usize> {
        2usize
            .checked_mul(self.n_layers)?
            .checked_mul(self.n_seq)?
            .checked_mul(self.max_pos)?
            .checked_mul(self.row_words())
    }

    /// Word offset of the first row of (`kv`: 0 keys, 1 values, `layer`, sequence `b`).
    pub fn block_start(&self, kv: usize, layer: usize, b: usize) -> usize {
        ((kv * self.n_layers + layer) * self.n_seq + b) * self.max_pos * self.row_words()
    }

    /// Store one token's row (`kv_dim` floats) at position `pos`. Overwrites.
    pub fn store(&self, cache: &mut [f32], (kv, layer, b, pos): (usize, usize, usize, usize), row: &[f32]) {
        debug_assert_eq!(row.len(), self.kv_dim);
        let w = self.row_words();
        let dst = &mut cache[self.block_start(kv, layer, b) + pos * w..][..w];
        match self.dtype {
            KvDtype::F32 => dst.copy_from_slice(row),
            KvDtype::F16 => pack(dst, row, |x| f16::from_f32(x).to_bits()),
            KvDtype::Bf16 => pack(dst, row, |x| bf16::from_f32(x).to_bits()),
        }
    }

    /// The rows of positions `0..len` of (`kv`, `layer`, `b`) as f32, `len × kv_dim` floats:
    /// borrowed from the cache when it stores f32, else converted into `scratch`.
    pub fn rows<'c>(
        &self,
        cache: &'c [f32],
        (kv, layer, b): (usize, usize, usize),
        len: usize,
        scratch: &'c mut [f32],
    ) -> &'c [f32] {
        let start = self.block_start(kv, layer, b);
        let w = self.row_words();
        match self.dtype {
            KvDtype::F32 => &cache[start..start + len * w],
            half_type => {
                let out = &mut scratch[..len * self.kv_dim];
                for (words, row) in
                    cache[start..start + len * w].chunks_exact(w).zip(out.chunks_exact_mut(self.kv_dim))
                {
                    match half_type {
                        KvDtype::F16 => unpack(row, words, |h| f16::from_bits(h).to_f32()),
                        _ => unpack(row, words, |h| bf16::from_bits(h).to_f32()),
                    }
                }
                out
            }
        }
    }
}

/// Two 16-bit values per word, low half first; an odd row's last high half is 0.
fn pack(dst: &mut [f32], row: &[f32], to_bits: impl Fn(f32) -> u16) {
    for (word, pair) in dst.iter_mut().zip(row.chunks(2)) {
        let lo = u32::from(to_bits(pair[0]));
        let hi = pair.get(1).map_or(0, |&x| u32::from(to_bits(x)));
        *word = f32::from_bits(lo | hi << 16);
    }
}

fn unpack(row: &mut [f32], words: &[f32], from_bits: impl Fn(u16) -> f32) {
    for (pair, word) in row.chunks_mut(2).zip(words) {
        let bits = word.to_bits();
        pair[0] = from_bits(bits as u16);
        if let Some(x) = pair.get_mut(1) {
            *x = from_bits((bits >> 16) as u16);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cache(dtype: KvDtype, kv_dim: usize) -> KvCache {
        KvCache { dtype, n_layers: 2, n_seq: 3, max_pos: 5, kv_dim }
    }

    #[test]
    fn rows_round_trip_within_the_type_precision() {
        for (dtype, tol) in [(KvDtype::F32, 0.0), (KvDtype::F16, 1e-3), (KvDtype::Bf16, 8e-3)] {
            for kv_dim in [4, 5] {
                let c = cache(dtype, kv_dim);
                let mut mem = [0.0f32; 2 * 2 * 3 * 5 * 5];
                assert!(c.words().unwrap() <= mem.len());
                let row: [f32; 5] = [0.1, -2.5, 3.75e-2, 100.0, -7.0];
                c.store(&mut mem, (1, 1, 2, 4), &row[..kv_dim]);
                c.store(&mut mem, (0, 1, 2, 4), &[9.0; 5][..kv_dim]);
                let mut scratch = [0.0f32; 25];
                let got = c.rows(&mem, (1, 1, 2), 5, &mut scratch);
                let last = &got[4 * kv_dim..5 * kv_dim];
                for (g, w) in last.iter().zip(&row) {
                    assert!((g - w).abs() <= tol * w.abs(), "{dtype:?}: {g} vs {w}");
                }
                assert!(got[..4 * kv_dim].iter().all(|&v| v == 0.0), "{dtype:?}: other positions untouched");
            }
        }
    }

    #[test]
    fn half_types_take_half_the_words() {
        assert_eq!(cache(KvDtype::F32, 32).words(), Some(2 * 2 * 3 * 5 * 32));
        assert_eq!(cache(KvDtype::F16, 32).words(), Some(2 * 2 * 3 * 5 * 16));
        assert_eq!(cache(KvDtype::Bf16, 32).words(), Some(2 * 2 * 3 * 5 * 16));
        let huge = KvCache { dtype: KvDtype::F32, n_layers: usize::MAX, n_seq: 2, max_pos: 2, kv_dim: 2 };
        assert_eq!(huge.words(), None);
    }
}
