//! Seeded pseudo-random numbers: xoshiro256++ seeded through SplitMix64.
//!
//! [`Xoshiro256`] implements `rand_core`'s generator traits (`TryRng<Error = Infallible>`, hence
//! `Rng` and the deprecated alias `RngCore`, and `SeedableRng`), so it plugs into the `rand`
//! ecosystem; regkern itself only needs [`Xoshiro256::uniform`] and [`Xoshiro256::normal`].
//! Streams derived with [`Xoshiro256::stream`] let a dataset draw sample `i` without drawing
//! samples `0..i` first, so data needs no storage.
//!
//! reference: <https://prng.di.unimi.it/xoshiro256plusplus.c> (Blackman & Vigna, public domain)

use core::convert::Infallible;

use rand_core::{SeedableRng, TryRng};

/// One step of SplitMix64: a good 64-bit mixer, used to expand seeds.
/// reference: <https://prng.di.unimi.it/splitmix64.c>
pub const fn splitmix64(state: &mut u64) -> u64 {
    *state = state.wrapping_add(0x9E37_79B9_7F4A_7C15);
    let mut z = *state;
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

/// xoshiro256++: 256 bits of state, period 2^256 − 1, fast and statistically strong.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Xoshiro256 {
    s: [u64; 4],
}

impl Xoshiro256 {
    /// A generator whose whole state is expanded from `seed` by SplitMix64 (never all zero).
    pub const fn seed_from(seed: u64) -> Self {
        let mut sm = seed;
        let s = [splitmix64(&mut sm), splitmix64(&mut sm), splitmix64(&mut sm), splitmix64(&mut sm)];
        Xoshiro256 { s }
    }

    /// An independent stream for (`seed`, `a`, `b`), e.g. (run seed, purpose, sample index).
    pub const fn stream(seed: u64, a: u64, b: u64) -> Self {
        let mut sm = seed;
        let k0 = splitmix64(&mut sm);
        let mut sm = k0 ^ a.wrapping_mul(0xD605_BBB5_8C8A_BBAF);
        let k1 = splitmix64(&mut sm);
        Self::seed_from(k1 ^ b.wrapping_mul(0xA24B_AED4_963E_E407))
    }

    /// The next 64 random bits.
    pub const fn next(&mut self) -> u64 {
        let s = &mut self.s;
        let result = s[0].wrapping_add(s[3]).rotate_left(23).wrapping_add(s[0]);
        let t = s[1] << 17;
        s[2] ^= s[0];
        s[3] ^= s[1];
        s[1] ^= s[2];
        s[0] ^= s[3];
        s[2] ^= t;
        s[3] = s[3].rotate_left(45);
        result
    }

    /// Uniform in `[0, 1)` with 24 random bits (every value exactly representable).
    pub fn uniform(&mut self) -> f32 {
        (self.next() >> 40) as f32 * (1.0 / (1u32 << 24) as f32)
    }

    /// Uniform in `[lo, hi)`.
    pub fn uniform_in(&mut self, lo: f32, hi: f32) -> f32 {
        lo + (hi - lo) * self.uniform()
    }

    /// Standard normal N(0, 1) by the Box–Muller transform (computed in f64, rounded once).
    pub fn normal(&mut self) -> f32 {
        // 53-bit uniforms; u1 in (0, 1] so that ln(u1) is finite.
        let u1 = ((self.next() >> 11) as f64 + 1.0) * (1.0 / (1u64 << 53) as f64);
        let u2 = (self.next() >> 11) as f64 * (1.0 / (1u64 << 53) as f64);
        let r = libm::sqrt(-2.0 * libm::log(u1));
        (r * libm::cos(core::f64::consts::TAU * u2)) as f32
    }

    /// Fill `out` with U(lo, hi).
    pub fn fill_uniform(&mut self, out: &mut [f32], lo: f32, hi: f32) {
        out.iter_mut().for_each(|v| *v = self.uniform_in(lo, hi));
    }

    /// Fill `out` with N(mean, std²).
    pub fn fill_normal(&mut self, out: &mut [f32], mean: f32, std: f32) {
        out.iter_mut().for_each(|v| *v = mean + std * self.normal());
    }

    /// A uniformly random index in `0..n` (`n > 0`), by Lemire's unbiased multiply-shift.
    pub fn below(&mut self, n: u32) -> u32 {
        debug_assert!(n > 0);
        let threshold = n.wrapping_neg() % n;
        loop {
            let m = u64::from(self.next() as u32) * u64::from(n);
            if (m as u32) >= threshold {
                return (m >> 32) as u32;
            }
        }
    }
}

impl TryRng for Xoshiro256 {
    type Error = Infallible;

    fn try_next_u32(&mut self) -> Result<u32, Infallible> {
        Ok((self.next() >> 32) as u32)
    }

    fn try_next_u64(&mut self) -> Result<u64, Infallible> {
        Ok(self.next())
    }

    fn try_fill_bytes(&mut self, dst: &mut [u8]) -> Result<(), Infallible> {
        for chunk in dst.chunks_mut(8) {
            let bytes = self.next().to_le_bytes();
            chunk.copy_from_slice(&bytes[..chunk.len()]);
        }
        Ok(())
    }
}

impl SeedableRng for Xoshiro256 {
    type Seed = [u8; 32];

    fn from_seed(seed: [u8; 32]) -> Self {
        let mut s = [0u64; 4];
        for (w, b) in s.iter_mut().zip(seed.chunks_exact(8)) {
            let mut le = [0u8; 8];
            le.copy_from_slice(b);
            *w = u64::from_le_bytes(le);
        }
        if s == [0; 4] {
            // The all-zero state is a fixed point; fall back to the SplitMix expansion of 0.
            return Self::seed_from(0);
        }
        Xoshiro256 { s }
    }

    fn seed_from_u64(seed: u64) -> Self {
        Self::seed_from(seed)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn matches_the_reference_sequence() {
        // State 1, 2, 3, 4 through the reference C implementation's next():
        // s[0]+s[3] = 5, rotl(5, 23) + 1 = 41943041.
        let mut r = Xoshiro256 { s: [1, 2, 3, 4] };
        assert_eq!(r.next(), 41_943_041);
        assert_eq!(r.next(), 58_720_359);
    }

    #[test]
    fn implements_rand_core_traits() {
        fn takes_rng<R: rand_core::Rng>(r: &mut R) -> u64 {
            r.next_u64()
        }
        #[allow(deprecated)]
        fn takes_rng_core<R: rand_core::RngCore>(r: &mut R) -> u32 {
            r.next_u32()
        }
        let mut a = Xoshiro256::seed_from_u64(7);
        let mut b = Xoshiro256::seed_from(7);
        assert_eq!(takes_rng(&mut a), b.next());
        let _ = takes_rng_core(&mut a);
        let mut bytes = [0u8; 11];
        rand_core::Rng::fill_bytes(&mut a, &mut bytes);
        assert!(bytes.iter().any(|&x| x != 0));
    }

    #[test]
    fn uniform_and_normal_have_the_right_moments() {
        let mut r = Xoshiro256::seed_from(42);
        let n = 200_000;
        let (mut su, mut sn, mut sn2) = (0.0f64, 0.0f64, 0.0f64);
        for _ in 0..n {
            let u = r.uniform();
            assert!((0.0..1.0).contains(&u));
            su += f64::from(u);
            let z = f64::from(r.normal());
            sn += z;
            sn2 += z * z;
        }
        let n = f64::from(n);
        assert!((su / n - 0.5).abs() < 0.005, "uniform mean {}", su / n);
        assert!((sn / n).abs() < 0.01, "normal mean {}", sn / n);
        assert!((sn2 / n - 1.0).abs() < 0.015, "normal variance {}", sn2 / n);
    }

    #[test]
    fn streams_are_reproducible_and_distinct() {
        assert_eq!(Xoshiro256::stream(1, 2, 3).next(), Xoshiro256::stream(1, 2, 3).next());
        assert_ne!(Xoshiro256::stream(1, 2, 3).next(), Xoshiro256::stream(1, 2, 4).next());
        assert_ne!(Xoshiro256::stream(1, 2, 3).next(), Xoshiro256::stream(1, 3, 3).next());
    }

    #[test]
    fn below_stays_in_range() {
        let mut r = Xoshiro256::seed_from(3);
        let mut seen = [false; 7];
        for _ in 0..1000 {
            seen[r.below(7) as usize] = true;
        }
        assert!(seen.iter().all(|&s| s));
    }
}
