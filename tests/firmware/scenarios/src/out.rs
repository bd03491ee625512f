//! Output without `core::fmt`: lines of words, hex and decimal, built in a fixed buffer.
//!
//! Floats are printed only as the hex of their bits, so a firmware run and a host run can be
//! diffed exactly and no float formatting is linked into an image.

/// Where a scenario's results go, and the hooks a firmware measures with.
pub trait Platform {
    /// One line of results (no newline). Every such line must be the same on every target.
    fn line(&mut self, text: &[u8]);

    /// A training step starts (the firmware reads its instruction counter; the host does nothing).
    fn step_start(&mut self) {}

    /// A training step ends.
    fn step_end(&mut self) {}
}

/// Capacity of a [`Line`], in bytes: more than any line the scenarios print.
pub const LINE_CAP: usize = 96;

const HEX: &[u8; 16] = b"0123456789abcdef";

/// A line under construction. Fields are separated by single spaces. The builder methods take
/// and return `&mut Line`, so a chain builds one line in place rather than moving a copy per
/// field across a microcontroller's stack.
pub struct Line {
    buf: [u8; LINE_CAP],
    len: usize,
}

impl Line {
    /// A line starting with `key`.
    pub fn new(key: &str) -> Self {
        let mut l = Line { buf: [0; LINE_CAP], len: 0 };
        l.push(key.as_bytes());
        l
    }

    fn push(&mut self, bytes: &[u8]) {
        for &b in bytes {
            if self.len == LINE_CAP {
                // The scenarios' lines are far shorter; a cut line ends in '~' so a diff shows it.
                self.buf[LINE_CAP - 1] = b'~';
                return;
            }
            self.buf[self.len] = b;
            self.len += 1;
        }
    }

    fn sep(&mut self) {
        self.push(b" ");
    }

    /// A word.
    pub fn word(&mut self, w: &str) -> &mut Self {
        self.sep();
        self.push(w.as_bytes());
        self
    }

    /// A u32 as 8 hex digits.
    pub fn hex(&mut self, v: u32) -> &mut Self {
        self.sep();
        for i in (0..8).rev() {
            self.push(&[HEX[(v >> (4 * i)) as usize & 0xf]]);
        }
        self
    }

    /// An f32 as the 8 hex digits of its bits.
    pub fn f32(&mut self, v: f32) -> &mut Self {
        self.hex(v.to_bits())
    }

    /// An unsigned integer in decimal.
    pub fn dec(&mut self, v: u64) -> &mut Self {
        self.sep();
        self.digits(v);
        self
    }

    /// A signed integer in decimal.
    pub fn int(&mut self, v: i64) -> &mut Self {
        self.sep();
        if v < 0 {
            self.push(b"-");
        }
        self.digits(v.unsigned_abs());
        self
    }

    fn digits(&mut self, mut v: u64) {
        let (mut digits, mut n) = ([0u8; 20], 0);
        loop {
            digits[n] = b'0' + (v % 10) as u8;
            n += 1;
            v /= 10;
            if v == 0 {
                break;
            }
        }
        digits[..n].reverse();
        self.push(&digits[..n]);
    }

    /// The bytes so far.
    pub fn as_bytes(&self) -> &[u8] {
        &self.buf[..self.len]
    }

    /// Hand the line to `p`.
    pub fn emit(&self, p: &mut impl Platform) {
        p.line(self.as_bytes());
    }
}

/// FNV-1a (32-bit) over the little-endian bytes of each float's bits: a checksum of parameters
/// that any C or Python program can recompute.
pub fn fnv1a(words: &[f32]) -> u32 {
    words.iter().fold(FNV_BASIS, |h, w| fnv1a_bytes(h, &w.to_bits().to_le_bytes()))
}

const FNV_BASIS: u32 = 0x811c_9dc5;

/// Continue an FNV-1a hash `h` over `bytes`.
fn fnv1a_bytes(h: u32, bytes: &[u8]) -> u32 {
    bytes.iter().fold(h, |h, &b| (h ^ u32::from(b)).wrapping_mul(0x0100_0193))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fields_are_spaced_and_exact() {
        let mut l = Line::new("loss");
        l.dec(0).dec(1234567).f32(1.0).hex(0xdead_beef).int(-42).int(7);
        assert_eq!(l.as_bytes(), b"loss 0 1234567 3f800000 deadbeef -42 7");
    }

    #[test]
    fn a_long_line_is_cut_visibly() {
        let mut l = Line::new("x");
        for _ in 0..40 {
            l.hex(0);
        }
        assert_eq!(l.as_bytes().len(), LINE_CAP);
        assert_eq!(*l.as_bytes().last().unwrap(), b'~');
    }

    #[test]
    fn fnv1a_matches_the_reference_vectors() {
        // From the FNV reference (isthe.com/chongo/tech/comp/fnv): "", "a", "foobar".
        assert_eq!(fnv1a_bytes(FNV_BASIS, b""), 0x811c_9dc5);
        assert_eq!(fnv1a_bytes(FNV_BASIS, b"a"), 0xe40c_292c);
        assert_eq!(fnv1a_bytes(FNV_BASIS, b"foobar"), 0xbf9c_f968);
        // Floats hash as their little-endian bytes.
        let w =
            [f32::from_bits(u32::from_le_bytes(*b"foob")), f32::from_bits(u32::from_le_bytes(*b"ar\0\0"))];
        assert_eq!(fnv1a(&w), fnv1a_bytes(FNV_BASIS, b"foobar\0\0"));
    }
}
