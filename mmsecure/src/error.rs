//! The one error type of the crate.

use core::fmt;

use mmsecure_sys::NTSTATUS;

/// Why securing or accessing a user range did not happen.
///
/// Each variant is one cause a caller can act on. Every variant except [`Error::Refused`],
/// [`Error::Unavailable`], [`Error::Fault`] and [`Error::NoMemory`] is detected by this crate
/// before any kernel routine is called and before user memory is touched.
///
/// A dispatch routine completes its IRP with [`Error::to_ntstatus`], whose table follows the
/// kernel's own conventions (see the [`status`](crate::status) module).
///
/// ```
/// use mmsecure::{Error, ProbeMode, SecureRegion};
///
/// let err = SecureRegion::new(core::ptr::null::<u8>(), 16, ProbeMode::ReadOnly).unwrap_err();
/// assert_eq!(err, Error::NullAddress);
/// assert_eq!(err.to_string(), "the user address is null");
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum Error {
    /// The address is null.
    NullAddress,
    /// The length is zero: there is nothing to secure.
    ZeroLength,
    /// `address + len` does not fit in the address space.
    Overflow,
    /// Part of the range lies above the highest user-mode address (a kernel address, for
    /// instance).
    NotUserRange,
    /// A raw probe mode that is neither `PAGE_READONLY` nor `PAGE_READWRITE`.
    UnknownProbeMode(u32),
    /// Raw flags with bits that are not one of the four `MM_SECURE_*` values; holds those bits.
    UnknownFlags(u32),
    /// Flags that [`SecureRegion::with_flags`](crate::SecureRegion::with_flags) does not take,
    /// because with them a safe drop can bug check; holds those bits. Only
    /// [`SecureFlags::USER_MODE_ONLY`](crate::SecureFlags::USER_MODE_ONLY) is one: it lets a
    /// kernel-mode free or unmap (another driver's `ZwFreeVirtualMemory`) remove the allocation,
    /// the secure with it, and the region's `MmUnsecureVirtualMemory` then bug checks
    /// (`MEMORY_MANAGEMENT`, 0x1A). A driver that can promise no such free asks with the `unsafe`
    /// [`SecureRegion::with_any_flags`](crate::SecureRegion::with_any_flags).
    UnsafeFlags(u32),
    /// An access at `offset` of `len` bytes does not fit in a region of `region_len` bytes.
    OutOfBounds {
        /// Where the access starts, from the start of the region.
        offset: usize,
        /// How many bytes the access asked for.
        len: usize,
        /// How many bytes the region has.
        region_len: usize,
    },
    /// A write to a region secured with [`ProbeMode::ReadOnly`](crate::ProbeMode::ReadOnly):
    /// such a secure does not promise that the pages are writable.
    NotWritable,
    /// The region is being used from a process context other than the one that secured it; the
    /// same address means other memory there. Attach to the securing process first.
    WrongProcess,
    /// The kernel refused to secure the range: it is not committed, not inside one allocation,
    /// lacks the access the probe mode asks, or the flags cannot be honoured (for example
    /// [`SecureFlags::EXCLUSIVE`](crate::SecureFlags::EXCLUSIVE) with another secure on the
    /// allocation).
    Refused,
    /// The current IRQL is above what the operation allows: securing, unsecuring and every copy
    /// of user memory need `APC_LEVEL` or below (user memory is pageable, and a page fault at
    /// `DISPATCH_LEVEL` bug checks); the first look-up of `MmSecureVirtualMemoryEx` needs
    /// `PASSIVE_LEVEL`. Read at run time, in every build, before the kernel or user memory is
    /// touched.
    IrqlTooHigh {
        /// The IRQL the call was made at.
        irql: u8,
        /// The highest IRQL the operation allows.
        max: u8,
    },
    /// `MmSecureVirtualMemoryEx` is not available: this Windows is older than Windows 10 1809
    /// (build 17763).
    Unavailable,
    /// The copy raised an exception, caught and returned instead of crashing the system: `code`
    /// is its NTSTATUS, for instance `STATUS_IN_PAGE_ERROR` (0xC0000006) when a page of the
    /// secured range could not be read in, or `STATUS_ACCESS_VIOLATION` (0xC0000005). Part of the
    /// bytes may have been copied (see [`SecureRegion::read_slice`](crate::SecureRegion::read_slice)). Only
    /// where exceptions are caught (`mmsecure_sys::COPY_GUARDED`: x86_64 Windows, ARM64 Windows
    /// by design but never run there, and the host model); see `docs/exceptions.md`.
    ///
    /// `code` has the type of the `STATUS_*` constants ([`status`](crate::status)), so a match
    /// needs no cast: `Error::Fault { code: mmsecure::status::STATUS_IN_PAGE_ERROR }`.
    Fault {
        /// The exception code, an NTSTATUS.
        code: NTSTATUS,
    },
    /// An allocation failed: `Reader::read_all` (feature `alloc`) could not grow its `Vec` for
    /// the rest of the region. Nothing was read.
    NoMemory,
    /// The address is not a multiple of the alignment asked for
    /// ([`UserSlice::aligned`](crate::UserSlice::aligned), a `UNICODE_STRING`'s buffer): what
    /// `ProbeForRead`/`ProbeForWrite` raise as `STATUS_DATATYPE_MISALIGNMENT`.
    Misaligned {
        /// The alignment asked for, in bytes.
        align: usize,
    },
    /// The alignment asked for is not a power of two; holds it.
    BadAlignment(usize),
    /// No NUL within the bound of a string read
    /// ([`Reader::read_cstr`](crate::Reader::read_cstr),
    /// [`Reader::read_wstr`](crate::Reader::read_wstr)).
    Unterminated,
    /// A captured `UNICODE_STRING` is malformed: an odd `Length`, or `Length` above
    /// `MaximumLength`.
    BadUnicodeString,
    /// A captured string is longer than the driver's buffer or maximum; holds its length in
    /// UTF-16 units.
    StringTooLong(usize),
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match *self {
            Error::NullAddress => f.write_str("the user address is null"),
            Error::ZeroLength => f.write_str("the length is zero"),
            Error::Overflow => f.write_str("address + length overflows the address space"),
            Error::NotUserRange => {
                f.write_str("the range reaches above the highest user-mode address")
            }
            Error::UnknownProbeMode(raw) => write!(
                f,
                "probe mode {raw:#x} is neither PAGE_READONLY (0x2) nor PAGE_READWRITE (0x4)"
            ),
            Error::UnknownFlags(bits) => {
                write!(f, "flag bits {bits:#x} are not MM_SECURE_* values")
            }
            Error::UnsafeFlags(bits) => write!(
                f,
                "flag bits {bits:#x} (MM_SECURE_USER_MODE_ONLY) let a kernel-mode free take the \
                 secure, after which the region's drop bug checks: use the unsafe \
                 SecureRegion::with_any_flags"
            ),
            Error::OutOfBounds {
                offset,
                len,
                region_len,
            } => write!(
                f,
                "{len} bytes at offset {offset} do not fit in a region of {region_len} bytes"
            ),
            Error::NotWritable => f.write_str("the region is secured read-only"),
            Error::WrongProcess => f.write_str("the region belongs to another process context"),
            Error::Refused => f.write_str("the kernel refused to secure the range"),
            Error::IrqlTooHigh { irql, max } => write!(
                f,
                "called at IRQL {irql}, above the highest this allows ({max})"
            ),
            Error::Unavailable => f.write_str(
                "MmSecureVirtualMemoryEx is not available on this Windows (needs 10.0.17763)",
            ),
            Error::Fault { code } => {
                write!(f, "the copy raised exception {:#010X}", code as u32)
            }
            Error::NoMemory => f.write_str("an allocation for the copy failed"),
            Error::Misaligned { align } => {
                write!(f, "the user address is not aligned to {align} bytes")
            }
            Error::BadAlignment(align) => {
                write!(f, "alignment {align} is not a power of two")
            }
            Error::Unterminated => f.write_str("no NUL within the bound of the string"),
            Error::BadUnicodeString => {
                f.write_str("the UNICODE_STRING's Length is odd or above its MaximumLength")
            }
            Error::StringTooLong(units) => {
                write!(f, "the string's {units} UTF-16 units do not fit")
            }
        }
    }
}

#[cfg(feature = "std")]
#[cfg_attr(docsrs, doc(cfg(feature = "std")))]
impl std::error::Error for Error {}
