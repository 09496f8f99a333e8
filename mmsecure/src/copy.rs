//! Copies between user memory and the driver's own memory: mmsecure-sys's guarded copy, with a
//! caught exception turned into [`Error::Fault`].
//!
//! The copy itself (one `rep movsb` on x86_64, which the compiler cannot see into, so a user
//! thread writing the bytes meanwhile is no data race) and its exception frame are the sys
//! crate's, because they differ by backend: an assembly function with a structured-exception
//! handler on x86_64 and ARM64 Windows, the host model off Windows. This crate does not know
//! which one it has.

use crate::Error;

/// Copies `len` bytes from `src` to `dst`. A fault during the copy (an in-page error, say) is
/// [`Error::Fault`] with the exception's code, where `mmsecure_sys::COPY_GUARDED`; the bytes
/// before the faulting one have been copied then, the others not (an exact prefix on every
/// backend: see `mmsecure_sys::copy_guarded`).
///
/// # Safety
///
/// As `mmsecure_sys::copy_guarded`: the ranges do not overlap, and each is the driver's own
/// memory valid for `len` bytes or user memory of the current process.
#[inline]
pub(crate) unsafe fn copy_bytes(dst: *mut u8, src: *const u8, len: usize) -> Result<(), Error> {
    // SAFETY: the caller's contract is the sys crate's.
    let status = unsafe { mmsecure_sys::copy_guarded(dst, src, len) };
    if status == mmsecure_sys::STATUS_SUCCESS {
        Ok(())
    } else {
        Err(Error::Fault { code: status })
    }
}
