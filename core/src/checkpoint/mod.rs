//! Checkpoints: safetensors bytes written into, and read from, caller buffers without heap.
//!
//! The format is Hugging Face's safetensors: an 8-byte little-endian header length `N`, `N` bytes
//! of JSON, then the tensors' bytes. regkern writes
//!
//! ```text
//! {"__metadata__":{"format":"pt","regkern.version":"0.1.0","regkern.type":"nlinear",...},
//!  "layers.0.weight":{"dtype":"F32","shape":[128,8],"data_offsets":[0,4096]}, ...}
//! ```
//!
//! with every parameter under its PyTorch name, in `state_dict` order, f32 little-endian, the
//! header padded with spaces to a multiple of 8 bytes. So
//! `model.load_state_dict(safetensors.torch.load_file(path))` works on the equivalent PyTorch
//! module, and the model's config travels in the metadata (`regkern.*` keys, all strings), so a
//! checkpoint alone is enough to rebuild the model ([`Header::config`]).
//!
//! A *training* checkpoint also holds the optimizer's state (`optimizer.<state>.<name>`, with
//! PyTorch's state names: `exp_avg`, `exp_avg_sq`, `momentum_buffer`, `square_avg`, `grad_avg`)
//! and the progress (`regkern.epochs`, `regkern.steps`), from which training resumes exactly.
//!
//! Loading follows the format's safety rules and checks everything against the model before it
//! writes a single parameter, so a bad file leaves the model untouched: header length within the
//! file and at most [`MAX_HEADER`] bytes, valid JSON, dtype `F32`, shapes equal to the model's,
//! tensors that tile the data region exactly (in bounds, no overlap, no gap, no trailing bytes),
//! every parameter present once and no unknown name. Errors are [`Error::BadCheckpoint`] with the
//! byte offset in the file where the problem lies.

use core::fmt::{self, Write};

mod crc;
mod header;
mod metadata;
#[cfg(test)]
mod tests;

pub use crc::Crc32c;
pub use header::{Header, Str};
use metadata::{metadata_crc, write_header};

use crate::arena::Region;
use crate::error::{Error, Result, check_len};
use crate::models::{Model, ParamInfo};
use crate::optim::Optimizer;

/// Largest header accepted, in bytes (the safetensors reference implementation's limit).
pub const MAX_HEADER: usize = 100_000_000;

/// Most optimizer steps a checkpoint may record (2^53: every count is exact in an f64, and no
/// run that resumes from it can wrap the counter).
pub const MAX_STEPS: u64 = 1 << 53;

/// The metadata key of the checkpoint's checksum: CRC-32C, 8 hex digits, over the other
/// `regkern.*` metadata (`key=value\n` per pair, in file order) and the tensor data.
pub const CRC_KEY: &str = "regkern.crc32c";

/// How far training got: stored in training checkpoints, restored by resuming.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Progress {
    /// Epochs completed.
    pub epochs: u64,
    /// Optimizer steps taken.
    pub steps: u64,
}

/// The optimizer's part of a training checkpoint.
#[derive(Clone, Copy, Debug)]
pub struct TrainingState<'a> {
    /// The optimizer whose state this is (its name is stored and checked on load).
    pub optimizer: &'a Optimizer,
    /// Its state: `optimizer.state_copies()` copies of the parameter layout.
    pub opt_state: &'a [f32],
    /// Epochs and steps done.
    pub progress: Progress,
}

/// Bytes [`save`] needs for the checkpoint of `model`: exact for parameters only; for a training
/// checkpoint (with `optimizer`'s state) an upper bound, as the progress numbers vary in length.
pub fn saved_len(model: &Model, optimizer: Option<&Optimizer>) -> Result<usize> {
    let mut count = Counter(0);
    let progress = Progress { epochs: u64::MAX, steps: u64::MAX }; // the longest numbers
    write_header(&mut count, model, optimizer.map(|o| (o, progress)), 0).map_err(|_| Error::SizeOverflow)?;
    let header = count.0.next_multiple_of(8);
    let copies = optimizer.map_or(0, Optimizer::state_copies);
    let floats = model.param_floats().checked_mul(1 + copies).ok_or(Error::SizeOverflow)?;
    floats.checked_mul(4).and_then(|d| d.checked_add(8 + header)).ok_or(Error::SizeOverflow)
}

/// Write the checkpoint of `model` with parameters `params` (and, for a training checkpoint, the
/// optimizer state) into `out`; returns the bytes written. `out` must hold at least
/// [`saved_len`] bytes (`BadLen` otherwise; nothing is written then).
pub fn save(
    model: &Model,
    params: &[f32],
    training: Option<TrainingState<'_>>,
    out: &mut [u8],
) -> Result<usize> {
    check_len("params", params.len(), model.report().floats(Region::Params))?;
    let opt = training.map(|t| (t.optimizer, t.progress));
    let mut count = Counter(0);
    write_header(&mut count, model, opt, 0).map_err(|_| Error::SizeOverflow)?; // a CRC is 8 digits
    let header = count.0.next_multiple_of(8);
    let state = training.map_or(&[][..], |t| t.opt_state);
    let copies = training.map_or(0, |t| t.optimizer.state_copies());
    if let Some(t) = training {
        check_len("opt_state", t.opt_state.len(), params.len() * copies)?;
        check_len(
            "optimizer state copies",
            copies,
            model.report().floats(Region::OptState) / params.len().max(1),
        )?;
    }
    let total = 8 + header + 4 * model.param_floats() * (1 + copies);
    if out.len() < total {
        return Err(Error::BadLen { what: "checkpoint buffer", expected: total, got: out.len() });
    }
    let (len, rest) = out[..total].split_at_mut(8);
    len.copy_from_slice(&(header as u64).to_le_bytes());
    let (head, data) = rest.split_at_mut(header);
    // Data: the parameters in table order, then each state copy in the same order.
    let mut at = 0;
    for copy in 0..=copies {
        let src = if copy == 0 { params } else { &state[(copy - 1) * params.len()..][..params.len()] };
        for p in model.params() {
            for v in &src[p.slot.range()] {
                data[at..at + 4].copy_from_slice(&v.to_le_bytes());
                at += 4;
            }
        }
    }
    // Then the header, whose checksum covers its metadata and the data.
    let mut crc = metadata_crc(model, opt).map_err(|_| Error::SizeOverflow)?;
    crc.update(data);
    let mut w = SliceWriter { buf: head, at: 0 };
    write_header(&mut w, model, opt, crc.finish()).map_err(|_| Error::SizeOverflow)?;
    let end = w.at;
    head[end..].fill(b' ');
    Ok(total)
}

/// Check `bytes` as a checkpoint of `model` (with `optimizer`'s state and the progress, for a
/// training checkpoint) without writing anything: the checksum, when the file has one; every
/// tensor's name, dtype, shape and extent against the model; finite values; the progress
/// counters. What [`load`] checks before it copies, for a caller that wants to know before it
/// allocates the arena (a model planned from a checkpoint's own metadata, say). Sizes are checked
/// against the file first, so a config whose tensors the file cannot hold fails at once.
pub fn verify<'b>(bytes: &'b [u8], model: &Model, optimizer: Option<&Optimizer>) -> Result<Header<'b>> {
    let header = Header::parse(bytes)?;
    let copies = match optimizer {
        Some(o) => {
            let saved = header.metadata("regkern.optimizer");
            if !saved.is_some_and(|s| s.eq_str(o.name())) {
                return Err(bad("optimizer state is missing or from another optimizer", header.base));
            }
            if header.progress().is_none_or(|p| usize::try_from(p.epochs).is_err()) {
                return Err(bad(
                    "training progress (regkern.epochs, regkern.steps) is missing or out of range",
                    header.base,
                ));
            }
            o.state_copies()
        }
        None => 0,
    };
    // The file must have an entry per tensor of the model before any entry is matched to one
    // (matching is linear in the model's tensors, and a lying config may claim millions). Then
    // every entry must have the model's shape and lie in the file, so the model's bytes are
    // the file's.
    let data_len = bytes.len() - header.data_start;
    let entries = header.entries().count();
    if model.param_count().checked_mul(1 + copies).is_none_or(|n| n > entries) {
        return Err(bad("tensors missing: every parameter must be present", header.base));
    }
    // Every entry against the model and the data region. A file in regkern's own order (the
    // model's table order, copy after copy, each tensor where the previous one ends) tiles the
    // data and names every tensor once by construction, so it is checked in one pass; any other
    // order (PyTorch's, say) needs every pair of entries compared afterwards (`check_extent`).
    let (mut count, mut sum, mut reaches_end) = (0usize, 0usize, false);
    let (mut ordered, mut next_begin, mut near) = (true, 0usize, 0usize);
    for (k, e) in header.entries().enumerate() {
        let e = e?;
        let at = e.key_at;
        ensure_bad(e.begin <= e.end && e.end <= data_len, "data_offsets out of bounds", at)?;
        ordered &= e.begin == next_begin;
        next_begin = e.end;
        let Some((copy, i, p)) = find_tensor(model, optimizer, &e.name, k, &mut near) else {
            // Another optimizer's state, when only the parameters are wanted, is skipped.
            if optimizer.is_none() && e.name.starts_with("optimizer.") {
                sum += e.end - e.begin;
                reaches_end |= e.end == data_len;
                continue;
            }
            return Err(bad("tensor name not in the model", at));
        };
        ordered &= copy * model.param_count() + i == k;
        ensure_bad(e.dtype.eq_str("F32"), "dtype must be F32", at)?;
        ensure_bad(e.shape() == p.shape(), "shape differs from the model's", at)?;
        ensure_bad(e.end - e.begin == 4 * p.slot.len, "data_offsets do not match the shape", at)?;
        let data = &bytes[header.data_start + e.begin..header.data_start + e.end];
        // An f32 is NaN or infinite exactly when its exponent bits are all ones.
        let non_finite = data.chunks_exact(4).any(|b| b[3] & 0x7f == 0x7f && b[2] & 0x80 != 0);
        ensure_bad(!non_finite, "tensor holds NaN or infinite values", at)?;
        sum += e.end - e.begin;
        reaches_end |= e.end == data_len;
        count += 1;
    }
    if !ordered {
        // Pairwise, so bounded: a file of more tensors must be in regkern's order.
        ensure_bad(
            entries <= MAX_UNORDERED,
            "more than 1024 tensors, not in the model's order",
            header.base,
        )?;
        check_tiling(&header)?;
    }
    let expected = model.param_count() * (1 + copies);
    if count != expected {
        return Err(bad("tensors missing: every parameter must be present", header.base));
    }
    ensure_bad(
        sum == data_len && (reaches_end || data_len == 0),
        "tensors do not tile the data exactly",
        header.base,
    )?;
    Ok(header)
}

/// Check `bytes` as a checkpoint of `model` ([`verify`]) and copy its parameters into `params`
/// (and, with `training`, the optimizer state into its slice). Returns the parsed header
/// (metadata, progress). On any error nothing has been written.
pub fn load<'b>(
    bytes: &'b [u8],
    model: &Model,
    params: &mut [f32],
    training: Option<(&Optimizer, &mut [f32])>,
) -> Result<Header<'b>> {
    check_len("params", params.len(), model.report().floats(Region::Params))?;
    if let Some((o, state)) = &training {
        check_len("opt_state", state.len(), params.len() * o.state_copies())?;
    }
    let optimizer = training.as_ref().map(|(o, _)| **o);
    let header = verify(bytes, model, optimizer.as_ref())?;
    // Everything is checked: copy.
    let (state_len, mut state, mut near) = (params.len(), training.map(|(_, s)| s), 0);
    for (k, e) in header.entries().enumerate() {
        let e = e?;
        let Some((copy, _, p)) = find_tensor(model, optimizer.as_ref(), &e.name, k, &mut near) else {
            continue;
        };
        let dst = if copy == 0 {
            &mut params[p.slot.range()]
        } else {
            let state = state.as_deref_mut().expect("copies > 0 only with a state");
            &mut state[(copy - 1) * state_len..][p.slot.range()]
        };
        let src = &bytes[header.data_start + e.begin..header.data_start + e.end];
        for (d, b) in dst.iter_mut().zip(src.chunks_exact(4)) {
            *d = f32::from_le_bytes([b[0], b[1], b[2], b[3]]);
        }
    }
    Ok(header)
}

/// Entries of a checkpoint not in the model's order that [`verify`] accepts: it compares them
/// pairwise (1 M comparisons at most) and may search the table for each name, which stays
/// within a fraction of a second at this size.
const MAX_UNORDERED: usize = 1024;

/// The checkpoint tensor named `name`, the `k`-th entry: which copy (0 = parameters, c = optimizer
/// state c − 1), which row of the model's table and that row. The row regkern's own order puts
/// there is tried first, so a file in that order is matched in O(1) per entry; then the rows
/// around `near`, the row of the previous match, which this sets.
fn find_tensor(
    model: &Model,
    optimizer: Option<&Optimizer>,
    name: &Str<'_>,
    k: usize,
    near: &mut usize,
) -> Option<(usize, usize, ParamInfo)> {
    let (copy, rest) = match name.strip_prefix("optimizer.") {
        Some(rest) => {
            let o = optimizer?;
            (1..=o.state_copies()).find_map(|k| {
                let rest = rest.strip_prefix(o.state_name(k - 1))?;
                Some((k, rest.strip_prefix(".")?))
            })?
        }
        None => (0, *name),
    };
    let n = model.param_count();
    let named = |i: usize| model.param(i).filter(|p| rest.eq_str(p.name.as_str())).map(|p| (copy, i, p));
    let found = named(k.checked_rem(n)?).or_else(|| {
        // Otherwise outwards from the row the previous entry matched: names sorted as PyTorch
        // sorts them are mostly a few rows apart.
        let from = *near % n;
        (0..=n / 2).find_map(|d| named((from + d) % n).or_else(|| named((from + n - d) % n)))
    })?;
    *near = found.1;
    Some(found)
}

/// Every entry against every other (bounds and sizes were checked already): each starts at 0
/// or where another ends, no two start at the same byte, no two share a name. With the sizes
/// summing to the data length and one tensor reaching its end, the tensors then cover the data
/// exactly once. Entries are taken [`CHUNK`] at a time onto the stack and compared with all
/// in one pass, so the file is parsed `entries / CHUNK` times, not `entries` times.
#[inline(never)] // its chunk stays off the stack of the ordered path
fn check_tiling(h: &Header<'_>) -> Result<()> {
    /// What is compared of an entry, and whether it starts where another ends.
    #[derive(Clone, Copy)]
    struct Held<'b> {
        name: Str<'b>,
        key_at: usize,
        begin: usize,
        follows: bool,
    }
    let mut first = 0;
    loop {
        let mut chunk = [None::<Held<'_>>; CHUNK];
        let mut n = 0;
        for (slot, e) in chunk.iter_mut().zip(h.entries().skip(first)) {
            let e = e?;
            *slot = Some(Held { name: e.name, key_at: e.key_at, begin: e.begin, follows: e.begin == 0 });
            n += 1;
        }
        if n == 0 {
            return Ok(());
        }
        for other in h.entries() {
            let other = other?;
            for e in chunk[..n].iter_mut().flatten() {
                e.follows |= other.end == e.begin && other.end > other.begin;
                if other.key_at != e.key_at {
                    ensure_bad(
                        other.name != e.name,
                        "tensor name appears twice",
                        other.key_at.max(e.key_at),
                    )?;
                    ensure_bad(other.begin != e.begin, "data_offsets overlap", e.key_at)?;
                }
            }
        }
        for e in chunk[..n].iter().flatten() {
            ensure_bad(e.follows, "data_offsets overlap or leave a gap", e.key_at)?;
        }
        first += n;
    }
}

/// Entries [`check_tiling`] holds on the stack at a time.
const CHUNK: usize = 32;

fn bad(reason: &'static str, offset: usize) -> Error {
    Error::BadCheckpoint { reason, offset }
}

fn ensure_bad(ok: bool, reason: &'static str, offset: usize) -> Result<()> {
    if ok { Ok(()) } else { Err(bad(reason, offset)) }
}

/// Counts the bytes written.
struct Counter(usize);

impl Write for Counter {
    fn write_str(&mut self, s: &str) -> fmt::Result {
        self.0 = self.0.checked_add(s.len()).ok_or(fmt::Error)?;
        Ok(())
    }
}

/// Writes into a byte slice; fails when it is full.
struct SliceWriter<'o> {
    buf: &'o mut [u8],
    at: usize,
}

impl Write for SliceWriter<'_> {
    fn write_str(&mut self, s: &str) -> fmt::Result {
        let dst = self.buf.get_mut(self.at..self.at + s.len()).ok_or(fmt::Error)?;
        dst.copy_from_slice(s.as_bytes());
        self.at += s.len();
        Ok(())
    }
}
