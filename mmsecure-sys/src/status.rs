//! NTSTATUS values, from `ntstatus.h`: the codes the routines and the guarded copies return, the
//! exception codes a fault raises, and the statuses a driver completes an IOCTL with, all of the
//! type [`NTSTATUS`] (`i32`, the C `LONG`). This is the one set: `mmsecure::status` and the host
//! model re-export it.
//!
//! The top two bits are the severity (`ntdef.h`): 0 success, 1 information, 2 warning, 3 error.
//! [`nt_success`] is true for the first two. For a warning (`STATUS_BUFFER_OVERFLOW`) the I/O
//! manager still copies `Information` bytes back to the caller of a buffered IOCTL; for an error
//! it copies nothing. So a request completed with a warning sets `Information` to what it wrote,
//! and one completed with an error sets it to 0.
//!
//! `tests/windows_sys_agrees.rs` compares every value with Microsoft's metadata (`windows-sys`).
//!
//! ```
//! use mmsecure_sys::status::{nt_error, nt_success, nt_warning, STATUS_BUFFER_OVERFLOW, STATUS_PENDING};
//!
//! assert!(nt_success(STATUS_PENDING));
//! assert!(!nt_success(STATUS_BUFFER_OVERFLOW) && nt_warning(STATUS_BUFFER_OVERFLOW));
//! assert!(!nt_error(STATUS_BUFFER_OVERFLOW));
//! ```

use crate::NTSTATUS;

/// Whether `status` is a success or an informational status (severity 0 or 1): `NT_SUCCESS`.
///
/// ```
/// use mmsecure_sys::status::{nt_success, STATUS_ACCESS_VIOLATION, STATUS_SUCCESS};
/// assert!(nt_success(STATUS_SUCCESS));
/// assert!(!nt_success(STATUS_ACCESS_VIOLATION));
/// ```
#[inline]
#[must_use]
pub const fn nt_success(status: NTSTATUS) -> bool {
    status >= 0
}

/// Whether `status` is informational (severity 1): `NT_INFORMATION`.
///
/// ```
/// use mmsecure_sys::status::{nt_information, STATUS_PENDING};
/// assert!(!nt_information(STATUS_PENDING)); // 0x103 is severity 0
/// assert!(nt_information(0x4000_0000));
/// ```
#[inline]
#[must_use]
pub const fn nt_information(status: NTSTATUS) -> bool {
    (status as u32) >> 30 == 1
}

/// Whether `status` is a warning (severity 2): `NT_WARNING`.
///
/// ```
/// use mmsecure_sys::status::{nt_warning, STATUS_BUFFER_OVERFLOW, STATUS_BUFFER_TOO_SMALL};
/// assert!(nt_warning(STATUS_BUFFER_OVERFLOW));
/// assert!(!nt_warning(STATUS_BUFFER_TOO_SMALL));
/// ```
#[inline]
#[must_use]
pub const fn nt_warning(status: NTSTATUS) -> bool {
    (status as u32) >> 30 == 2
}

/// Whether `status` is an error (severity 3): `NT_ERROR`.
///
/// ```
/// use mmsecure_sys::status::{nt_error, STATUS_BUFFER_OVERFLOW, STATUS_BUFFER_TOO_SMALL};
/// assert!(nt_error(STATUS_BUFFER_TOO_SMALL));
/// assert!(!nt_error(STATUS_BUFFER_OVERFLOW));
/// ```
#[inline]
#[must_use]
pub const fn nt_error(status: NTSTATUS) -> bool {
    (status as u32) >> 30 == 3
}

/// Defines each status with its `ntstatus.h` value and an example that checks its severity.
macro_rules! statuses {
    ($( $(#[doc = $doc:literal])* $name:ident = $value:literal, $severity:ident; )*) => {
        $(
            $(#[doc = $doc])*
            ///
            /// ```
            #[doc = concat!("use mmsecure_sys::status::{", stringify!($severity), ", ", stringify!($name), "};")]
            #[doc = concat!("assert_eq!(", stringify!($name), " as u32, ", stringify!($value), ");")]
            #[doc = concat!("assert!(", stringify!($severity), "(", stringify!($name), "));")]
            /// ```
            pub const $name: NTSTATUS = $value as u32 as NTSTATUS;
        )*
    };
}

statuses! {
    /// `STATUS_SUCCESS` (0).
    STATUS_SUCCESS = 0x0000_0000, nt_success;
    /// `STATUS_PENDING` (0x103): the request goes on after the dispatch routine returns; mark the
    /// IRP pending before returning it.
    STATUS_PENDING = 0x0000_0103, nt_success;
    /// `STATUS_GUARD_PAGE_VIOLATION` (0x80000001, a warning): an access hit a guard page, which
    /// loses its guard.
    STATUS_GUARD_PAGE_VIOLATION = 0x8000_0001, nt_warning;
    /// `STATUS_DATATYPE_MISALIGNMENT` (0x80000002, a warning): what `ProbeForRead` and
    /// `ProbeForWrite` raise for a start that is not a multiple of the alignment. Complete with
    /// `Information = 0`.
    STATUS_DATATYPE_MISALIGNMENT = 0x8000_0002, nt_warning;
    /// `STATUS_BUFFER_OVERFLOW` (0x80000005, a warning): the output buffer holds only part of
    /// the answer. Complete with `Information` set to the bytes written: the I/O manager copies
    /// them back for a warning.
    STATUS_BUFFER_OVERFLOW = 0x8000_0005, nt_warning;
    /// `STATUS_UNSUCCESSFUL` (0xC0000001): the request failed, with no better status to say why.
    STATUS_UNSUCCESSFUL = 0xC000_0001, nt_error;
    /// `STATUS_ACCESS_VIOLATION` (0xC0000005): an access to memory that is not mapped, or lacks
    /// the access; what `ProbeForRead`/`ProbeForWrite` raise for a range outside user space.
    STATUS_ACCESS_VIOLATION = 0xC000_0005, nt_error;
    /// `STATUS_IN_PAGE_ERROR` (0xC0000006): a page could not be read in from its backing store (a
    /// failed page-file or network read). An access to such a page raises it, secured or not.
    STATUS_IN_PAGE_ERROR = 0xC000_0006, nt_error;
    /// `STATUS_INVALID_PARAMETER` (0xC000000D): a malformed argument.
    STATUS_INVALID_PARAMETER = 0xC000_000D, nt_error;
    /// `STATUS_INVALID_DEVICE_REQUEST` (0xC0000010): an IOCTL code the driver does not handle.
    STATUS_INVALID_DEVICE_REQUEST = 0xC000_0010, nt_error;
    /// `STATUS_NO_MEMORY` (0xC0000017): not enough virtual memory or paging file quota; the model
    /// also returns it for memory it cannot place below the highest user address.
    STATUS_NO_MEMORY = 0xC000_0017, nt_error;
    /// `STATUS_CONFLICTING_ADDRESSES` (0xC0000018): the range is not inside one allocation, or
    /// the operation does not fit the allocation's kind.
    STATUS_CONFLICTING_ADDRESSES = 0xC000_0018, nt_error;
    /// `STATUS_NOT_MAPPED_VIEW` (0xC0000019): an unmap of memory that is not a mapped view.
    STATUS_NOT_MAPPED_VIEW = 0xC000_0019, nt_error;
    /// `STATUS_UNABLE_TO_DELETE_SECTION` (0xC000001B): a free or decommit of a mapped view.
    STATUS_UNABLE_TO_DELETE_SECTION = 0xC000_001B, nt_error;
    /// `STATUS_BUFFER_TOO_SMALL` (0xC0000023, an error): the buffer cannot hold even the fixed
    /// part of the answer. Complete with `Information = 0`, or, where the IOCTL's contract says
    /// so, with the size needed.
    STATUS_BUFFER_TOO_SMALL = 0xC000_0023, nt_error;
    /// `STATUS_NOT_COMMITTED` (0xC000002D): a protection change on reserved, uncommitted pages.
    STATUS_NOT_COMMITTED = 0xC000_002D, nt_error;
    /// `STATUS_INVALID_PAGE_PROTECTION` (0xC0000045): the protection asked for is not allowed,
    /// the code a secure refuses a change with (WRK `MiCheckSecuredVad`), or a malformed value.
    STATUS_INVALID_PAGE_PROTECTION = 0xC000_0045, nt_error;
    /// `STATUS_INSUFFICIENT_RESOURCES` (0xC000009A): an allocation (pool, for a driver) failed.
    STATUS_INSUFFICIENT_RESOURCES = 0xC000_009A, nt_error;
    /// `STATUS_FREE_VM_NOT_AT_BASE` (0xC000009F): a free at an address that is not the base of
    /// its allocation.
    STATUS_FREE_VM_NOT_AT_BASE = 0xC000_009F, nt_error;
    /// `STATUS_MEMORY_NOT_ALLOCATED` (0xC00000A0): the address is in no allocation.
    STATUS_MEMORY_NOT_ALLOCATED = 0xC000_00A0, nt_error;
    /// `STATUS_NOT_SUPPORTED` (0xC00000BB): the request is not supported.
    STATUS_NOT_SUPPORTED = 0xC000_00BB, nt_error;
    /// `STATUS_INTERNAL_ERROR` (0xC00000E5): an internal error occurred.
    STATUS_INTERNAL_ERROR = 0xC000_00E5, nt_error;
    /// `STATUS_PROCESS_IS_TERMINATING` (0xC000010A): the process is exiting, or has exited, and
    /// has no address space any more.
    STATUS_PROCESS_IS_TERMINATING = 0xC000_010A, nt_error;
    /// `STATUS_CANCELLED` (0xC0000120): the request was cancelled; a cancel routine completes the
    /// IRP with it and `Information = 0`.
    STATUS_CANCELLED = 0xC000_0120, nt_error;
    /// `STATUS_INVALID_BUFFER_SIZE` (0xC0000206): the buffer's size is wrong for the request (not
    /// a multiple of an element, say), rather than too small.
    STATUS_INVALID_BUFFER_SIZE = 0xC000_0206, nt_error;
}
