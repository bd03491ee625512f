//! Checks of what C passes in (NULL, alignment, overflow) and the reporting of errors back
//! (status codes and `rk_error` details), without heap.

use core::ffi::c_char;
use core::fmt::Write;
use core::mem::{align_of, size_of};

use regkern_core::{Error, Result};

use crate::{RK_OK, rk_error, rk_status};

pub(crate) fn null(what: &'static str) -> Error {
    Error::BadPointer { what, reason: "is NULL" }
}

pub(crate) fn check_ptr<T>(p: *const T, what: &'static str) -> Result<()> {
    if p.is_null() {
        return Err(null(what));
    }
    if !(p as usize).is_multiple_of(align_of::<T>()) {
        return Err(Error::BadPointer { what, reason: "is not aligned for its type" });
    }
    Ok(())
}

/// `len` elements at `p`: NULL is allowed only for an empty slice.
///
/// # Safety
/// `p` must point to `len` readable `T`s that stay valid and unaliased by writes for `'a`.
pub(crate) unsafe fn in_slice<'a, T>(p: *const T, len: usize, what: &'static str) -> Result<&'a [T]> {
    if len == 0 {
        return Ok(&[]);
    }
    check_ptr(p, what)?;
    let bytes =
        len.checked_mul(size_of::<T>()).filter(|&b| b <= isize::MAX as usize).ok_or(Error::SizeOverflow)?;
    (p as usize).checked_add(bytes).ok_or(Error::SizeOverflow)?;
    // SAFETY: non-null, aligned, within isize and not wrapping (checked); the caller vouches
    // for validity.
    Ok(unsafe { core::slice::from_raw_parts(p, len) })
}

/// As [`in_slice`], writable.
///
/// # Safety
/// `p` must point to `len` writable `T`s, not accessed otherwise for `'a`.
pub(crate) unsafe fn out_slice<'a, T>(p: *mut T, len: usize, what: &'static str) -> Result<&'a mut [T]> {
    if len == 0 {
        return Ok(&mut []);
    }
    check_ptr(p, what)?;
    let bytes =
        len.checked_mul(size_of::<T>()).filter(|&b| b <= isize::MAX as usize).ok_or(Error::SizeOverflow)?;
    (p as usize).checked_add(bytes).ok_or(Error::SizeOverflow)?;
    // SAFETY: as in `in_slice`; the caller vouches for exclusive access.
    Ok(unsafe { core::slice::from_raw_parts_mut(p, len) })
}

/// A readable `T` at `p`.
///
/// # Safety
/// `p`, if non-null and aligned, must point to a valid `T`.
pub(crate) unsafe fn in_ref<'a, T>(p: *const T, what: &'static str) -> Result<&'a T> {
    check_ptr(p, what)?;
    // SAFETY: non-null and aligned (checked); validity is the caller's promise.
    Ok(unsafe { &*p })
}

/// A writable `T` at `p`.
///
/// # Safety
/// `p`, if non-null and aligned, must point to memory writable as a `T`.
pub(crate) unsafe fn out_ref<'a, T>(p: *mut T, what: &'static str) -> Result<&'a mut T> {
    check_ptr(p, what)?;
    // SAFETY: non-null and aligned (checked); writability is the caller's promise.
    Ok(unsafe { &mut *p })
}

/// Write `s` into `dst` as a NUL-terminated C string, truncated to fit.
pub(crate) fn c_string(dst: &mut [c_char], s: &str) {
    let n = s.len().min(dst.len().saturating_sub(1));
    for (d, &b) in dst.iter_mut().zip(&s.as_bytes()[..n]) {
        *d = b as c_char;
    }
    if let Some(end) = dst.get_mut(n) {
        *end = 0;
    }
}

/// Formats into a fixed buffer, truncating.
struct Fixed<'b> {
    buf: &'b mut [u8],
    len: usize,
}

impl Write for Fixed<'_> {
    fn write_str(&mut self, s: &str) -> core::fmt::Result {
        let room = self.buf.len() - self.len;
        let n = s.len().min(room);
        self.buf[self.len..self.len + n].copy_from_slice(&s.as_bytes()[..n]);
        self.len += n;
        Ok(())
    }
}

/// The status of `r`, with its details written to `err` when `err` is usable.
/// On success a usable `err` is reset (code `RK_OK`, empty field, message "ok"), so it always
/// describes the call that last wrote it.
pub(crate) fn report(r: Result<()>, err: *mut rk_error) -> rk_status {
    let usable = !err.is_null() && (err as usize).is_multiple_of(align_of::<rk_error>());
    let Err(e) = r else {
        if usable {
            let mut ok = rk_error { code: RK_OK, needed: 0, got: 0, field: [0; 32], message: [0; 192] };
            c_string(&mut ok.message, "ok");
            // SAFETY: `err` is non-null and aligned (checked); the caller passes writable memory.
            unsafe { core::ptr::write(err, ok) };
        }
        return RK_OK;
    };
    let code = e.code();
    if !usable {
        return code;
    }
    let (field, needed, got) = match e {
        Error::BadConfig { field, .. } => (field, 0, 0),
        Error::BadLen { what, expected, got } => (what, expected, got),
        Error::ArenaTooSmall { needed, got } => ("arena_bytes", needed, got),
        Error::BatchTooLarge { max, got } => ("batch", max, got),
        Error::OptimizerMismatch { needed, planned } => ("optimizer", needed, planned),
        Error::ContextTooLong { needed, max } => ("steps", needed, max),
        Error::BadPointer { what, .. } => (what, 0, 0),
        Error::BadCheckpoint { offset, .. } => ("buf", 0, offset),
        _ => ("", 0, 0),
    };
    let mut detail =
        rk_error { code, needed: needed as u64, got: got as u64, field: [0; 32], message: [0; 192] };
    c_string(&mut detail.field, field);
    let mut buf = [0u8; 191];
    let mut w = Fixed { buf: &mut buf, len: 0 };
    let _ = write!(w, "{e}");
    let len = w.len;
    // Truncation may have cut a UTF-8 sequence: keep the valid prefix.
    let text = match core::str::from_utf8(&buf[..len]) {
        Ok(t) => t,
        Err(u) => core::str::from_utf8(&buf[..u.valid_up_to()]).unwrap_or(""),
    };
    c_string(&mut detail.message, text);
    // SAFETY: `err` is non-null and aligned (checked); the caller passes writable memory.
    unsafe { core::ptr::write(err, detail) };
    code
}
