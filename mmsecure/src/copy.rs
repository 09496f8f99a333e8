//! Copies between user memory and the driver's own memory: mmsecure-sys's guarded copy, with a
//! caught exception turned into [`Error::Fault`].
//!
//! The copy itself (one `rep movsb` on x86_64, which the compiler cannot see into, so a user
//! thread writing the bytes meanwhile is no data race) and its exception frame are the sys
//! crate's, because they differ by backend: an assembly function with a structured-exception
//! handler on x86_64 and ARM64 Windows, the host model off Windows. This crate does not know
//! which one it has.

use crate::Error;

/// Copies `len` bytes from user memory at `src` to the driver's `dst`. A fault during the copy
/// (an in-page error, say) is [`Error::Fault`] with the exception's code, where
/// `mmsecure_sys::COPY_GUARDED`; the bytes before the faulting one have been copied then, the
/// others not (an exact prefix on every backend: see `mmsecure_sys::copy_guarded`).
///
/// # Safety
///
/// As `mmsecure_sys::copy_from_user`: `src..src + len` is user memory of the current process (or
/// `len` is 0), `dst` the driver's own memory valid for `len` bytes of writes.
#[inline]
pub(crate) unsafe fn copy_from_user(dst: *mut u8, src: *const u8, len: usize) -> Result<(), Error> {
    // SAFETY: the caller's contract is the sys crate's.
    result(unsafe { mmsecure_sys::copy_from_user(dst, src, len) })
}

/// Copies `len` bytes from the driver's `src` to user memory at `dst`, as [`copy_from_user`].
///
/// # Safety
///
/// As `mmsecure_sys::copy_to_user`: `dst..dst + len` is user memory of the current process (or
/// `len` is 0), `src` the driver's own memory valid for `len` bytes of reads.
#[inline]
pub(crate) unsafe fn copy_to_user(dst: *mut u8, src: *const u8, len: usize) -> Result<(), Error> {
    // SAFETY: the caller's contract is the sys crate's.
    result(unsafe { mmsecure_sys::copy_to_user(dst, src, len) })
}

/// A copy's status as a result.
#[inline(always)]
fn result(status: mmsecure_sys::NTSTATUS) -> Result<(), Error> {
    if status == mmsecure_sys::status::STATUS_SUCCESS {
        Ok(())
    } else {
        Err(Error::Fault { code: status })
    }
}
