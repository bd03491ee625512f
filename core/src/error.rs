//! Errors are values: one `Copy` enum whose numeric codes are stable and shared with the C ABI.
//!
//! Codes are negative (`0` means success at the C boundary). A code is never reused, so a
//! program compiled against an older header still reads every status correctly.

use core::fmt;

/// Everything that can go wrong in regkern, with enough detail to act on.
#[non_exhaustive]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Error {
    /// A configuration value is invalid: `field` names it, `reason` says what is wrong.
    BadConfig {
        /// The offending field, spelled as the CLI flag / config field.
        field: &'static str,
        /// What is wrong with it.
        reason: &'static str,
    },
    /// A buffer has the wrong number of elements.
    BadLen {
        /// Which buffer.
        what: &'static str,
        /// Elements expected.
        expected: usize,
        /// Elements given.
        got: usize,
    },
    /// The caller's arena is smaller than the plan needs. Both figures are bytes.
    ArenaTooSmall {
        /// Bytes the plan needs.
        needed: usize,
        /// Bytes the caller gave.
        got: usize,
    },
    /// A batch holds more samples than the model was planned for.
    BatchTooLarge {
        /// The planned maximum batch.
        max: usize,
        /// Samples in the batch.
        got: usize,
    },
    /// A loss or gradient became NaN or infinite; training stops before the update is applied.
    NonFinite {
        /// The optimizer step (0-based) at which it happened.
        step: u64,
        /// `"loss"` or `"gradient"`.
        what: &'static str,
    },
    /// A size computed from the config does not fit in `usize`.
    SizeOverflow,
    /// A dataset has no samples, or fewer than a split needs.
    EmptyDataset,
    /// The buffers were planned for inference, but the call needs training buffers.
    NotTrainable,
    /// The optimizer needs more state than the plan reserved (plan with the same optimizer).
    OptimizerMismatch {
        /// State copies of the parameters the optimizer needs.
        needed: usize,
        /// State copies the plan reserved.
        planned: usize,
    },
    /// A sequence would need more positions than `max_seq_len` (e.g. expanding generation);
    /// use a sliding window, fewer steps, or a model with a longer `max_seq_len`.
    ContextTooLong {
        /// Positions needed.
        needed: usize,
        /// `max_seq_len`.
        max: usize,
    },
    /// A pointer passed through the C ABI is null, misaligned, or not an initialised handle.
    BadPointer {
        /// The argument, as named in the C header.
        what: &'static str,
        /// What is wrong with it.
        reason: &'static str,
    },
    /// A checkpoint is malformed or does not match the model; nothing was loaded.
    BadCheckpoint {
        /// What is wrong.
        reason: &'static str,
        /// Byte offset in the file where the problem lies (e.g. the offending tensor's name).
        offset: usize,
    },
}

/// `core::result::Result` with [`Error`].
pub type Result<T> = core::result::Result<T, Error>;

impl Error {
    /// The stable numeric code of this error (always negative). Equal to the C ABI's `rk_status`.
    pub const fn code(&self) -> i32 {
        match self {
            Error::BadConfig { .. } => -1,
            Error::BadLen { .. } => -2,
            Error::ArenaTooSmall { .. } => -3,
            Error::BatchTooLarge { .. } => -4,
            Error::NonFinite { .. } => -5,
            Error::SizeOverflow => -6,
            Error::EmptyDataset => -7,
            Error::NotTrainable => -8,
            Error::OptimizerMismatch { .. } => -9,
            Error::ContextTooLong { .. } => -10,
            Error::BadCheckpoint { .. } => -11,
            Error::BadPointer { .. } => -12,
        }
    }

    /// A short static description of an error code, as `rk_status_str` returns it.
    pub const fn describe(code: i32) -> &'static str {
        match code {
            0 => "ok",
            -1 => "invalid configuration",
            -2 => "buffer has the wrong length",
            -3 => "arena too small",
            -4 => "batch larger than planned",
            -5 => "non-finite loss or gradient",
            -6 => "size overflow",
            -7 => "empty dataset",
            -8 => "model was planned for inference only",
            -9 => "optimizer needs more state than planned",
            -10 => "sequence longer than max_seq_len",
            -11 => "invalid checkpoint",
            -12 => "null or misaligned pointer, or not a model handle",
            _ => "unknown status code",
        }
    }
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match *self {
            Error::BadConfig { field, reason } => write!(f, "invalid config: {field} {reason}"),
            Error::BadLen { what, expected, got } => {
                write!(f, "{what} has {got} elements, expected {expected}")
            }
            Error::ArenaTooSmall { needed, got } => {
                write!(f, "arena too small: needed {needed} bytes, got {got}")
            }
            Error::BatchTooLarge { max, got } => {
                write!(f, "batch of {got} samples is larger than the planned maximum {max}")
            }
            Error::NonFinite { step, what } => write!(f, "non-finite {what} at step {step}"),
            Error::SizeOverflow => write!(f, "a size computed from the config overflows usize"),
            Error::EmptyDataset => write!(f, "dataset is empty or too small for the split"),
            Error::NotTrainable => write!(f, "the model was planned for inference; plan it for training"),
            Error::OptimizerMismatch { needed, planned } => write!(
                f,
                "optimizer needs {needed} state copies of the parameters, the plan reserved {planned}"
            ),
            Error::ContextTooLong { needed, max } => write!(
                f,
                "the context would need {needed} positions, more than max_seq_len {max}; use a sliding window"
            ),
            Error::BadCheckpoint { reason, offset } => {
                write!(f, "invalid checkpoint: {reason} (at byte {offset})")
            }
            Error::BadPointer { what, reason } => write!(f, "bad pointer: {what} {reason}"),
        }
    }
}

impl core::error::Error for Error {}

/// `Err(BadConfig)` unless `ok`.
pub(crate) fn ensure(ok: bool, field: &'static str, reason: &'static str) -> Result<()> {
    if ok { Ok(()) } else { Err(Error::BadConfig { field, reason }) }
}

/// `Err(BadLen)` unless `got == expected`.
pub(crate) fn check_len(what: &'static str, got: usize, expected: usize) -> Result<()> {
    if got == expected { Ok(()) } else { Err(Error::BadLen { what, expected, got }) }
}

/// `a * b`, or `Err(SizeOverflow)`.
pub(crate) fn mul(a: usize, b: usize) -> Result<usize> {
    a.checked_mul(b).ok_or(Error::SizeOverflow)
}

#[cfg(test)]
mod tests {
    use super::*;

    const ALL: [Error; 12] = [
        Error::BadConfig { field: "f", reason: "r" },
        Error::BadLen { what: "x", expected: 1, got: 2 },
        Error::ArenaTooSmall { needed: 8, got: 4 },
        Error::BatchTooLarge { max: 1, got: 2 },
        Error::NonFinite { step: 3, what: "loss" },
        Error::SizeOverflow,
        Error::EmptyDataset,
        Error::NotTrainable,
        Error::OptimizerMismatch { needed: 2, planned: 0 },
        Error::ContextTooLong { needed: 129, max: 128 },
        Error::BadCheckpoint { reason: "r", offset: 8 },
        Error::BadPointer { what: "x", reason: "is null" },
    ];

    #[test]
    fn codes_are_negative_unique_and_described() {
        for (i, e) in ALL.iter().enumerate() {
            assert!(e.code() < 0);
            assert_ne!(Error::describe(e.code()), "unknown status code", "{e:?}");
            for other in &ALL[i + 1..] {
                assert_ne!(e.code(), other.code(), "{e:?} and {other:?} share a code");
            }
        }
        assert_eq!(Error::describe(0), "ok");
    }

    #[test]
    fn codes_are_pinned() {
        // The C ABI publishes these numbers; changing one breaks compiled callers.
        let codes: [i32; 12] = ALL.map(|e| e.code());
        assert_eq!(codes, [-1, -2, -3, -4, -5, -6, -7, -8, -9, -10, -11, -12]);
    }
}
