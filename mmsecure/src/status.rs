//! NTSTATUS values: the codes [`Error::to_ntstatus`] returns, the exception codes
//! [`Error::Fault`] carries, and the statuses an IOCTL path completes with (`STATUS_PENDING`,
//! `STATUS_BUFFER_OVERFLOW`, `STATUS_CANCELLED`, ...), with [`nt_success`], [`nt_information`],
//! [`nt_warning`] and [`nt_error`]. All are of the type [`NTSTATUS`] (`i32`,
//! the C `LONG`), so that they compare with each other and with a WDK binding's constants without
//! a cast. They are `mmsecure_sys::status`'s, the one set, which the host model uses too: each
//! value is from `ntstatus.h` and checked against Microsoft's metadata. Each constant's page says
//! what `Information` goes with it.
//!
//! # The table
//!
//! A dispatch routine completes its IRP with one status per failure. [`Error::to_ntstatus`] picks
//! the one the kernel itself returns, or raises, for the same cause:
//!
//! | [`Error`] | NTSTATUS | why |
//! |---|---|---|
//! | `NullAddress`, `Overflow`, `NotUserRange` | [`STATUS_ACCESS_VIOLATION`] | `ProbeForRead`/`ProbeForWrite` raise it for a range that is not within the user-mode address range \[1\]; the WRK's probe tests exactly the end wrapping or passing `MM_USER_PROBE_ADDRESS` \[3\]; address 0 is inside the user range but never mapped (Windows 8 and later refuse to map the first 64 KiB), so touching it raises the same |
//! | `Refused` | [`STATUS_ACCESS_VIOLATION`] | the secure routine refused memory that is not committed, not one allocation, or lacks the access: what `ProbeForRead`/`ProbeForWrite` raise for a range that is not readable, or not writable \[1\]\[2\] |
//! | `NotWritable` | [`STATUS_ACCESS_VIOLATION`] | a write to a range secured for reading: `ProbeForWrite` raises it for a range that is not writable \[2\] |
//! | `ZeroLength` | [`STATUS_INVALID_PARAMETER`] | a length of zero where a buffer is required is an invalid parameter \[4\]; the kernel's own routines (`MmSecureVirtualMemory` among them) refuse it as a bad argument |
//! | `OutOfBounds` | [`STATUS_BUFFER_TOO_SMALL`] | the user's buffer is shorter than what the request reads or writes: "the buffer is too small" \[4\], the status IOCTLs and query routines return for it |
//! | `UnknownProbeMode`, `UnknownFlags` | [`STATUS_INVALID_PARAMETER`] | a raw value the routines do not define \[4\] |
//! | `UnsafeFlags` | [`STATUS_INVALID_PARAMETER`] | a flag the safe constructor does not take: an argument the call refuses, as for `UnknownFlags` \[4\] |
//! | `WrongProcess`, `IrqlTooHigh` | [`STATUS_INTERNAL_ERROR`] | the driver called in the wrong context: nothing the user did, nothing the user can fix. The kernel has no status for either (it bug checks: `IRQL_NOT_LESS_OR_EQUAL`, or an unsecure in the wrong process), so the table says "an internal error occurred" \[4\] |
//! | `Unavailable` | [`STATUS_NOT_SUPPORTED`] | `MmSecureVirtualMemoryEx` does not exist on this Windows: "the request is not supported" \[4\] |
//! | `NoMemory` | [`STATUS_INSUFFICIENT_RESOURCES`] | what a failed pool allocation is reported as, by convention of the WDK's IOCTL pages \[4\]\[5\] |
//! | `Misaligned` | [`STATUS_DATATYPE_MISALIGNMENT`] | what `ProbeForRead`/`ProbeForWrite` raise for a start that is not a multiple of the alignment \[1\]\[3\] (a warning: complete with `Information = 0`, see below) |
//! | `BadAlignment`, `Unterminated`, `BadUnicodeString`, `StringTooLong` | [`STATUS_INVALID_PARAMETER`] | an argument the routine cannot use: an alignment that is not a power of two, a string without its NUL, a `UNICODE_STRING` whose lengths disagree or that exceeds what the driver accepts \[4\] |
//! | `Fault { code }` | `code` | the exception the copy raised, as a `__try/__except` handler would return `GetExceptionCode()`: `STATUS_IN_PAGE_ERROR`, `STATUS_ACCESS_VIOLATION`, ... \[1\] |
//!
//! `Fault`'s code can be a warning (`STATUS_GUARD_PAGE_VIOLATION`, 0x80000001): `NT_SUCCESS` is
//! false for it, but for a warning the I/O manager still returns the IRP's `Information` bytes,
//! so complete such an IRP with `Information = 0` \[5\].
//!
//! Sources: \[1\] Microsoft Learn, *ProbeForRead function (wdm.h)*; \[2\] Microsoft Learn,
//! *ProbeForWrite function (wdm.h)*; \[3\] the Windows Research Kernel, `base/ntos/ex/probe.c`;
//! \[4\] Microsoft, \[MS-ERREF\] 2.3.1 *NTSTATUS Values*; \[5\] Microsoft Learn, *Using NTSTATUS Values*
//! and *Completing IRPs*.
//!
//! ```
//! use mmsecure::status::{STATUS_ACCESS_VIOLATION, STATUS_BUFFER_TOO_SMALL, STATUS_IN_PAGE_ERROR};
//! use mmsecure::{Error, ProbeMode, SecureRegion};
//! use mmsecure::host::{Process, PAGE_READWRITE};
//!
//! let process = Process::new();
//! let _in_process = process.attach();
//! let page = process.allocate(4096, PAGE_READWRITE).unwrap();
//! let region = SecureRegion::new(page, 16, ProbeMode::ReadOnly)?;
//!
//! let mut too_much = [0u8; 17];
//! assert_eq!(region.read_slice(0, &mut too_much).unwrap_err().to_ntstatus(), STATUS_BUFFER_TOO_SMALL);
//! assert_eq!(Error::NotUserRange.to_ntstatus(), STATUS_ACCESS_VIOLATION);
//!
//! // A fault's code is already an NTSTATUS: no cast to compare or to return it.
//! process.inject_fault(page, 1, STATUS_IN_PAGE_ERROR);
//! let fault = region.read_slice(0, &mut [0u8; 4]).unwrap_err();
//! assert_eq!(fault, Error::Fault { code: STATUS_IN_PAGE_ERROR });
//! assert_eq!(fault.to_ntstatus(), STATUS_IN_PAGE_ERROR);
//! # Ok::<(), Error>(())
//! ```

pub use mmsecure_sys::status::*;

use crate::{Error, NTSTATUS};

impl Error {
    /// The NTSTATUS to complete a request with, by the table in the [`status`](crate::status)
    /// module: the status the kernel itself returns, or raises, for the same cause.
    ///
    /// ```
    /// use mmsecure::status::{
    ///     STATUS_ACCESS_VIOLATION, STATUS_BUFFER_TOO_SMALL, STATUS_INTERNAL_ERROR,
    ///     STATUS_INVALID_PARAMETER, STATUS_NOT_SUPPORTED,
    /// };
    /// use mmsecure::Error;
    ///
    /// assert_eq!(Error::NullAddress.to_ntstatus(), STATUS_ACCESS_VIOLATION);
    /// assert_eq!(Error::Refused.to_ntstatus(), STATUS_ACCESS_VIOLATION);
    /// assert_eq!(Error::ZeroLength.to_ntstatus(), STATUS_INVALID_PARAMETER);
    /// let short = Error::OutOfBounds { offset: 8, len: 16, region_len: 16 };
    /// assert_eq!(short.to_ntstatus(), STATUS_BUFFER_TOO_SMALL);
    /// assert_eq!(Error::WrongProcess.to_ntstatus(), STATUS_INTERNAL_ERROR);
    /// assert_eq!(Error::Unavailable.to_ntstatus(), STATUS_NOT_SUPPORTED);
    /// assert_eq!(Error::Fault { code: 0xC000_0006_u32 as i32 }.to_ntstatus(), 0xC000_0006_u32 as i32);
    /// ```
    #[must_use]
    pub const fn to_ntstatus(self) -> NTSTATUS {
        match self {
            Error::NullAddress
            | Error::Overflow
            | Error::NotUserRange
            | Error::Refused
            | Error::NotWritable => STATUS_ACCESS_VIOLATION,
            Error::ZeroLength
            | Error::UnknownProbeMode(_)
            | Error::UnknownFlags(_)
            | Error::UnsafeFlags(_) => STATUS_INVALID_PARAMETER,
            Error::OutOfBounds { .. } => STATUS_BUFFER_TOO_SMALL,
            Error::WrongProcess | Error::IrqlTooHigh { .. } => STATUS_INTERNAL_ERROR,
            Error::Unavailable => STATUS_NOT_SUPPORTED,
            Error::NoMemory => STATUS_INSUFFICIENT_RESOURCES,
            Error::Fault { code } => code,
            Error::Misaligned { .. } => STATUS_DATATYPE_MISALIGNMENT,
            Error::BadAlignment(_)
            | Error::Unterminated
            | Error::BadUnicodeString
            | Error::StringTooLong(_) => STATUS_INVALID_PARAMETER,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_error_maps_to_an_error_status_except_a_warning_fault() {
        let errors = [
            Error::NullAddress,
            Error::ZeroLength,
            Error::Overflow,
            Error::NotUserRange,
            Error::UnknownProbeMode(1),
            Error::UnknownFlags(0x10),
            Error::UnsafeFlags(0x4),
            Error::OutOfBounds {
                offset: 0,
                len: 1,
                region_len: 0,
            },
            Error::NotWritable,
            Error::WrongProcess,
            Error::Refused,
            Error::IrqlTooHigh { irql: 2, max: 1 },
            Error::Unavailable,
            Error::NoMemory,
            Error::Fault {
                code: STATUS_IN_PAGE_ERROR,
            },
            Error::BadAlignment(3),
            Error::Unterminated,
            Error::BadUnicodeString,
            Error::StringTooLong(70_000),
        ];
        for error in errors {
            // Severity 3 (error): the top two bits set.
            assert_eq!(error.to_ntstatus() as u32 >> 30, 3, "{error:?}");
        }
        let guard = Error::Fault {
            code: STATUS_GUARD_PAGE_VIOLATION,
        };
        assert_eq!(guard.to_ntstatus(), STATUS_GUARD_PAGE_VIOLATION);
        // As ProbeForRead raises it: a warning, whose IRP completes with Information = 0.
        let misaligned = Error::Misaligned { align: 2 };
        assert_eq!(misaligned.to_ntstatus(), STATUS_DATATYPE_MISALIGNMENT);
    }
}
