//! Reading the safetensors header without heap: a small JSON reader ([`Parser`]), strings left
//! encoded in the file ([`Str`]), tensor entries ([`Entry`]) and the parsed [`Header`].

use super::crc::Crc32c;
use super::{CRC_KEY, MAX_HEADER, MAX_STEPS, Progress, bad, ensure_bad};
use crate::error::{Error, Result};

/// A parsed safetensors header: the JSON, where the data begins, and accessors.
#[derive(Clone, Copy, Debug)]
pub struct Header<'b> {
    pub(super) json: &'b [u8],
    /// Offset of the JSON in the file (8).
    pub(super) base: usize,
    /// Offset of the tensor data in the file.
    pub(super) data_start: usize,
}

impl<'b> Header<'b> {
    /// Check the framing and the JSON of `bytes` (not yet against any model).
    pub fn parse(bytes: &'b [u8]) -> Result<Self> {
        ensure_bad(bytes.len() >= 8, "file shorter than its 8-byte header length", 0)?;
        let n = u64::from_le_bytes(bytes[..8].try_into().expect("8 bytes"));
        ensure_bad(n <= MAX_HEADER as u64, "header larger than 100 MB", 0)?;
        let n = n as usize;
        ensure_bad(n <= bytes.len() - 8, "header length beyond the end of the file", 0)?;
        let json = &bytes[8..8 + n];
        ensure_bad(json.first() == Some(&b'{'), "header is not a JSON object", 8)?;
        let h = Header { json, base: 8, data_start: 8 + n };
        // Walk it once: syntax, metadata and entry shapes; trailing bytes may only be spaces.
        let mut p = h.parser();
        p.object(|p, key| {
            if key.eq_str("__metadata__") {
                p.object(|p, _| p.string().map(|_| ()))
            } else {
                Entry::parse(p, key).map(|_| ())
            }
        })?;
        p.ws();
        ensure_bad(p.at == json.len(), "bytes after the header's JSON object", h.base + p.at)?;
        h.check_crc(&bytes[h.data_start..])?;
        Ok(h)
    }

    /// Check `regkern.crc32c`, when the file has one (regkern writes it; PyTorch does not):
    /// the CRC-32C of the other `regkern.*` metadata and of the tensor data must match it.
    fn check_crc(&self, data: &[u8]) -> Result<()> {
        let Some(saved) = self.metadata(CRC_KEY) else { return Ok(()) };
        let saved = saved.decode::<8>().and_then(|s| u32::from_str_radix(&s, 16).ok());
        let at = self.base; // the metadata's values are validated strings
        let saved = saved.ok_or(bad("regkern.crc32c is not 8 hex digits", at))?;
        let mut crc = Crc32c::default();
        self.each_metadata(|k, v| {
            if k.starts_with("regkern.") && !k.eq_str(CRC_KEY) {
                crc_chars(&mut crc, k);
                crc.update(b"=");
                crc_chars(&mut crc, v);
                crc.update(b"\n");
            }
        });
        crc.update(data);
        ensure_bad(
            crc.finish() == saved,
            "checksum (regkern.crc32c) does not match: the file was changed or damaged",
            at,
        )
    }

    /// Every metadata pair, in file order.
    pub(super) fn each_metadata(&self, mut f: impl FnMut(Str<'b>, Str<'b>)) {
        let mut p = self.parser();
        // The header was validated by `parse`: no error can occur here.
        let _ = p.object(|p, k| {
            if k.eq_str("__metadata__") {
                p.object(|p, mk| {
                    let v = p.string()?;
                    f(mk, v);
                    Ok(())
                })
            } else {
                Entry::parse(p, k).map(|_| ())
            }
        });
    }

    /// The name of the tensor whose key starts at byte `offset` of the file (errors about a
    /// tensor give that offset).
    pub fn tensor_at(&self, offset: usize) -> Option<Str<'b>> {
        self.entries().filter_map(|e| e.ok()).find(|e| e.key_at == offset).map(|e| e.name)
    }

    pub(super) fn parser(&self) -> Parser<'b> {
        Parser { s: self.json, at: 0, base: self.base }
    }

    /// The metadata value under `key`, if present.
    pub fn metadata(&self, key: &str) -> Option<Str<'b>> {
        let mut found = None;
        self.each_metadata(|k, v| {
            if k.eq_str(key) {
                found = Some(v);
            }
        });
        found
    }

    /// Training progress (epochs and steps done), for training checkpoints: `None` when absent
    /// or out of range (more than [`MAX_STEPS`] steps, or more epochs than steps).
    pub fn progress(&self) -> Option<Progress> {
        let num = |k: &str| self.metadata(k).and_then(|s| s.parse::<u64>());
        let p = Progress { epochs: num("regkern.epochs")?, steps: num("regkern.steps")? };
        (p.steps <= MAX_STEPS && p.epochs <= p.steps).then_some(p)
    }

    /// The optimizer whose state a training checkpoint holds (`adam`, `sgd`, `rmsprop`).
    pub fn optimizer_name(&self) -> Option<Str<'b>> {
        self.metadata("regkern.optimizer")
    }

    /// The tensor entries, in header order.
    pub(super) fn entries(&self) -> Entries<'b> {
        let mut p = self.parser();
        p.ws();
        p.at += 1; // '{', checked by parse
        Entries { p, done: false }
    }
}

/// One tensor entry of the header.
#[derive(Clone, Copy, Debug)]
pub(super) struct Entry<'b> {
    pub(super) name: Str<'b>,
    /// Offset in the file of the entry's key (for error messages).
    pub(super) key_at: usize,
    pub(super) dtype: Str<'b>,
    pub(super) shape: [usize; 4],
    pub(super) rank: usize,
    pub(super) begin: usize,
    pub(super) end: usize,
}

impl<'b> Entry<'b> {
    pub(super) fn shape(&self) -> &[usize] {
        &self.shape[..self.rank]
    }

    /// Parse the value of the entry whose key `name` was just read.
    pub(super) fn parse(p: &mut Parser<'b>, name: Str<'b>) -> Result<Self> {
        let key_at = name.at;
        let mut e =
            Entry { name, key_at, dtype: Str::default(), shape: [0; 4], rank: usize::MAX, begin: 1, end: 0 };
        let mut offsets = false;
        p.object(|p, k| {
            if k.eq_str("dtype") {
                e.dtype = p.string()?;
            } else if k.eq_str("shape") {
                e.rank = 0;
                p.array(|p| {
                    let d = p.number()?;
                    ensure_bad(e.rank < 4, "tensor of rank above 4", p.base + p.at)?;
                    e.shape[e.rank] = d;
                    e.rank += 1;
                    Ok(())
                })?;
            } else if k.eq_str("data_offsets") {
                let mut n = 0;
                p.array(|p| {
                    let v = p.number()?;
                    ensure_bad(n < 2, "data_offsets must be two numbers", p.base + p.at)?;
                    if n == 0 {
                        e.begin = v
                    } else {
                        e.end = v
                    }
                    n += 1;
                    Ok(())
                })?;
                ensure_bad(n == 2, "data_offsets must be two numbers", k.at)?;
                offsets = true;
            } else {
                return Err(bad("unknown field in a tensor entry", k.at));
            }
            Ok(())
        })?;
        ensure_bad(
            e.dtype.raw.is_some() && e.rank != usize::MAX && offsets,
            "tensor entry lacks dtype, shape or data_offsets",
            key_at,
        )?;
        Ok(e)
    }
}

/// Iterator over the header's tensor entries (skipping `__metadata__`).
pub(super) struct Entries<'b> {
    p: Parser<'b>,
    done: bool,
}

impl<'b> Iterator for Entries<'b> {
    type Item = Result<Entry<'b>>;

    fn next(&mut self) -> Option<Self::Item> {
        loop {
            if self.done {
                return None;
            }
            let p = &mut self.p;
            p.ws();
            if p.peek() == Some(b',') {
                p.at += 1;
                p.ws();
            }
            if p.peek() == Some(b'}') || p.peek().is_none() {
                self.done = true;
                return None;
            }
            let r = (|| {
                let key = p.string()?;
                p.ws();
                p.expect(b':')?;
                if key.eq_str("__metadata__") {
                    p.object(|p, _| p.string().map(|_| ()))?;
                    return Ok(None);
                }
                Entry::parse(p, key).map(Some)
            })();
            match r {
                Ok(Some(e)) => return Some(Ok(e)),
                Ok(None) => continue,
                Err(e) => {
                    self.done = true;
                    return Some(Err(e));
                }
            }
        }
    }
}

/// A JSON string of the header: its raw bytes between the quotes (escapes undecoded) and its
/// offset in the file.
#[derive(Clone, Copy, Debug, Default)]
pub struct Str<'b> {
    raw: Option<&'b [u8]>,
    at: usize,
}

impl PartialEq for Str<'_> {
    fn eq(&self, other: &Self) -> bool {
        self.chars().eq(other.chars())
    }
}

impl<'b> Str<'b> {
    /// The decoded characters (escapes resolved; invalid sequences were rejected by the parser).
    pub fn chars(&self) -> impl Iterator<Item = char> + 'b {
        let raw = self.raw.unwrap_or(&[]);
        let s = core::str::from_utf8(raw).unwrap_or("");
        let mut it = s.chars();
        core::iter::from_fn(move || {
            let c = it.next()?;
            if c != '\\' {
                return Some(c);
            }
            Some(match it.next()? {
                'n' => '\n',
                't' => '\t',
                'r' => '\r',
                'b' => '\u{8}',
                'f' => '\u{c}',
                'u' => {
                    let hex = |it: &mut core::str::Chars<'_>| {
                        (0..4).try_fold(0u32, |v, _| Some(v * 16 + it.next()?.to_digit(16)?))
                    };
                    let hi = hex(&mut it)?;
                    if (0xD800..0xDC00).contains(&hi) {
                        // A surrogate pair: \uD8xx\uDCxx.
                        let (_, _) = (it.next()?, it.next()?);
                        let lo = hex(&mut it)?;
                        char::from_u32(0x10000 + ((hi - 0xD800) << 10) + (lo.wrapping_sub(0xDC00) & 0x3FF))?
                    } else {
                        char::from_u32(hi)?
                    }
                }
                other => other, // \" \\ \/
            })
        })
    }

    /// True when the decoded string equals `s`.
    pub fn eq_str(&self, s: &str) -> bool {
        self.chars().eq(s.chars())
    }

    /// The decoded string in a fixed-capacity buffer, if it fits.
    pub fn decode<const N: usize>(&self) -> Option<heapless::String<N>> {
        let mut out = heapless::String::new();
        for c in self.chars() {
            out.push(c).ok()?;
        }
        Some(out)
    }

    /// Parse the decoded string as a number.
    pub fn parse<T: core::str::FromStr>(&self) -> Option<T> {
        self.decode::<40>()?.parse().ok()
    }

    pub(super) fn starts_with(&self, prefix: &str) -> bool {
        let mut c = self.chars();
        prefix.chars().all(|p| c.next() == Some(p))
    }

    /// The rest after `prefix` (only for strings without escapes, as regkern's names are).
    pub(super) fn strip_prefix(&self, prefix: &str) -> Option<Str<'b>> {
        let raw = self.raw?;
        let rest = raw.strip_prefix(prefix.as_bytes())?;
        Some(Str { raw: Some(rest), at: self.at })
    }
}

/// Feed a decoded string's UTF-8 to `crc`.
fn crc_chars(crc: &mut Crc32c, s: Str<'_>) {
    for c in s.chars() {
        crc.update(c.encode_utf8(&mut [0; 4]).as_bytes());
    }
}

/// A small JSON reader over the header: objects, arrays of non-negative integers, strings.
#[derive(Clone, Copy, Debug)]
pub(super) struct Parser<'b> {
    s: &'b [u8],
    at: usize,
    /// Offset of `s` in the file.
    base: usize,
}

impl<'b> Parser<'b> {
    fn peek(&self) -> Option<u8> {
        self.s.get(self.at).copied()
    }

    fn ws(&mut self) {
        while matches!(self.peek(), Some(b' ' | b'\t' | b'\n' | b'\r')) {
            self.at += 1;
        }
    }

    fn err(&self, reason: &'static str) -> Error {
        bad(reason, self.base + self.at)
    }

    fn expect(&mut self, b: u8) -> Result<()> {
        if self.peek() == Some(b) {
            self.at += 1;
            Ok(())
        } else {
            Err(self.err("malformed header JSON"))
        }
    }

    /// `{ "key": value, ... }`, calling `value` after each key and its colon.
    fn object(&mut self, mut value: impl FnMut(&mut Self, Str<'b>) -> Result<()>) -> Result<()> {
        self.ws();
        self.expect(b'{')?;
        self.ws();
        if self.peek() == Some(b'}') {
            self.at += 1;
            return Ok(());
        }
        loop {
            self.ws();
            let key = self.string()?;
            self.ws();
            self.expect(b':')?;
            self.ws();
            value(self, key)?;
            self.ws();
            match self.peek() {
                Some(b',') => self.at += 1,
                Some(b'}') => {
                    self.at += 1;
                    return Ok(());
                }
                _ => return Err(self.err("malformed header JSON")),
            }
        }
    }

    /// `[ item, ... ]`.
    fn array(&mut self, mut item: impl FnMut(&mut Self) -> Result<()>) -> Result<()> {
        self.ws();
        self.expect(b'[')?;
        self.ws();
        if self.peek() == Some(b']') {
            self.at += 1;
            return Ok(());
        }
        loop {
            self.ws();
            item(self)?;
            self.ws();
            match self.peek() {
                Some(b',') => self.at += 1,
                Some(b']') => {
                    self.at += 1;
                    return Ok(());
                }
                _ => return Err(self.err("malformed header JSON")),
            }
        }
    }

    /// A non-negative integer that fits in usize.
    fn number(&mut self) -> Result<usize> {
        self.ws();
        let start = self.at;
        let mut v: usize = 0;
        while let Some(d @ b'0'..=b'9') = self.peek() {
            v = v
                .checked_mul(10)
                .and_then(|v| v.checked_add(usize::from(d - b'0')))
                .ok_or(self.err("number too large"))?;
            self.at += 1;
        }
        if self.at == start {
            return Err(self.err("expected a non-negative integer"));
        }
        Ok(v)
    }

    /// A string; escapes are validated and left encoded.
    fn string(&mut self) -> Result<Str<'b>> {
        self.ws();
        let at = self.base + self.at;
        self.expect(b'"')?;
        let start = self.at;
        loop {
            match self.peek() {
                None => return Err(self.err("unterminated string in header")),
                Some(b'"') => break,
                Some(b'\\') => {
                    self.at += 1;
                    match self.peek() {
                        Some(b'"' | b'\\' | b'/' | b'b' | b'f' | b'n' | b'r' | b't') => self.at += 1,
                        Some(b'u') => {
                            let hex = self.s.get(self.at + 1..self.at + 5);
                            if !hex.is_some_and(|h| h.iter().all(u8::is_ascii_hexdigit)) {
                                return Err(self.err("bad \\u escape in header"));
                            }
                            self.at += 5;
                        }
                        _ => return Err(self.err("bad escape in header")),
                    }
                }
                Some(c) if c < 0x20 => return Err(self.err("control character in a header string")),
                Some(_) => self.at += 1,
            }
        }
        let raw = &self.s[start..self.at];
        self.at += 1;
        if core::str::from_utf8(raw).is_err() {
            return Err(bad("header string is not UTF-8", at));
        }
        Ok(Str { raw: Some(raw), at })
    }
}
