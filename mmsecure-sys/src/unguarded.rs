//! Windows targets other than x86_64 (aarch64): no exception guard yet.
//!
//! ARM64 Windows has structured exception handling too, with its own unwind codes, and the
//! assembler directives for them differ from x64's; nobody has written and tested the ARM64
//! version of `seh.rs` yet. Until then the copy and the call run without a guard and say so
//! ([`COPY_GUARDED`] is `false`): a fault during the copy is unhandled in kernel mode, which is a
//! bug check (`KMODE_EXCEPTION_NOT_HANDLED` or `PAGE_FAULT_IN_NONPAGED_AREA`).

use core::ffi::c_void;

use crate::NTSTATUS;

/// Faults during the copy are not caught on this target.
pub(crate) const COPY_GUARDED: bool = false;

/// The unguarded copy; always returns `STATUS_SUCCESS` (0), since a fault never comes back.
///
/// # Safety
///
/// See [`crate::copy_guarded`]; in addition, nothing catches a fault here.
#[inline]
pub(crate) unsafe fn copy_guarded(dst: *mut u8, src: *const u8, len: usize) -> NTSTATUS {
    // SAFETY: the caller vouches for the ranges.
    unsafe { crate::copy::copy_unguarded(dst, src, len) };
    0
}

/// Calls `f(context)` with no guard; returns `STATUS_SUCCESS` (0) when it returns.
///
/// # Safety
///
/// See [`crate::call_guarded`]; in addition, nothing catches an exception `f` raises.
#[inline]
pub(crate) unsafe fn call_guarded(
    f: unsafe extern "C" fn(*mut c_void),
    context: *mut c_void,
) -> NTSTATUS {
    // SAFETY: the caller vouches for `f(context)`.
    unsafe { f(context) };
    0
}
