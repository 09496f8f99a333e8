//! [`CursorError`]: an [`Error`] from a [`Reader`](crate::Reader) or [`Writer`](crate::Writer),
//! with where the cursor was.

use core::fmt;

use mmsecure_sys::NTSTATUS;

use crate::Error;

/// Why a [`Reader`](crate::Reader) or [`Writer`](crate::Writer) call failed, and the cursor's
/// offset in the region when it was made.
///
/// `?` turns it into an [`Error`] where a function returns one; [`to_ntstatus`](Self::to_ntstatus)
/// is the error's.
///
/// Why a type of its own, not `Error` itself: where a request is read in parts, the offset is
/// what says which part failed, and only `Error::OutOfBounds` carries one (a fault, a wrong
/// process or a raised IRQL do not). Folding it into `Error` would add an offset to every
/// variant that the other calls have no use for. The cost: a driver with an error type of its
/// own writes two `From` impls, one for `Error` and one for `CursorError` (three lines,
/// `examples/driver_logic.rs`), since Rust does not chain `From` through `Error`.
///
/// ```
/// use mmsecure::{Error, ProbeMode, SecureRegion};
/// use mmsecure::host::{Process, PAGE_READWRITE};
///
/// let process = Process::new();
/// let _in_process = process.attach();
/// let page = process.allocate(4096, PAGE_READWRITE).unwrap();
/// let region = SecureRegion::new(page, 12, ProbeMode::ReadOnly)?;
/// let mut reader = region.reader();
/// let _header: u64 = reader.read()?;
/// let err = reader.read::<u64>().unwrap_err();
/// assert_eq!(err.offset(), 8);
/// assert_eq!(err.error(), Error::OutOfBounds { offset: 8, len: 8, region_len: 12 });
/// assert_eq!(err.to_string(), "at offset 8: 8 bytes at offset 8 do not fit in a region of 12 bytes");
/// # Ok::<(), Error>(())
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct CursorError {
    offset: usize,
    error: Error,
}

impl CursorError {
    pub(crate) fn new(offset: usize, error: Error) -> CursorError {
        CursorError { offset, error }
    }

    /// The cursor's offset from the start of the region when the call was made.
    ///
    /// ```
    /// # use mmsecure::{Error, ProbeMode, SecureRegion};
    /// # use mmsecure::host::{Process, PAGE_READWRITE};
    /// # let process = Process::new();
    /// # let _in_process = process.attach();
    /// # let page = process.allocate(4096, PAGE_READWRITE).unwrap();
    /// let region = SecureRegion::new(page, 4, ProbeMode::ReadOnly)?;
    /// let mut reader = region.reader();
    /// reader.skip(2)?;
    /// let err = reader.read::<u32>().unwrap_err();
    /// assert_eq!(err.offset(), 2);
    /// # Ok::<(), Error>(())
    /// ```
    #[must_use]
    pub fn offset(&self) -> usize {
        self.offset
    }

    /// Why the call failed.
    ///
    /// ```
    /// # use mmsecure::{Error, ProbeMode, SecureRegion};
    /// # use mmsecure::host::{Process, PAGE_READWRITE};
    /// # let process = Process::new();
    /// # let _in_process = process.attach();
    /// # let page = process.allocate(4096, PAGE_READWRITE).unwrap();
    /// let region = SecureRegion::new(page, 4, ProbeMode::ReadOnly)?;
    /// let mut reader = region.reader();
    /// reader.skip(2)?;
    /// let err = reader.read::<u32>().unwrap_err();
    /// assert!(matches!(err.error(), Error::OutOfBounds { offset: 2, len: 4, .. }));
    /// # Ok::<(), Error>(())
    /// ```
    #[must_use]
    pub fn error(&self) -> Error {
        self.error
    }

    /// [`Error::to_ntstatus`] of the error.
    ///
    /// ```
    /// # use mmsecure::{Error, ProbeMode, SecureRegion};
    /// # use mmsecure::host::{Process, PAGE_READWRITE};
    /// # let process = Process::new();
    /// # let _in_process = process.attach();
    /// # let page = process.allocate(4096, PAGE_READWRITE).unwrap();
    /// let region = SecureRegion::new(page, 4, ProbeMode::ReadOnly)?;
    /// let mut reader = region.reader();
    /// reader.skip(2)?;
    /// let err = reader.read::<u32>().unwrap_err();
    /// assert_eq!(err.to_ntstatus(), mmsecure::status::STATUS_BUFFER_TOO_SMALL);
    /// # Ok::<(), Error>(())
    /// ```
    #[must_use]
    pub fn to_ntstatus(&self) -> NTSTATUS {
        self.error.to_ntstatus()
    }
}

impl From<CursorError> for Error {
    fn from(error: CursorError) -> Error {
        error.error
    }
}

impl fmt::Display for CursorError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "at offset {}: {}", self.offset, self.error)
    }
}

#[cfg(feature = "std")]
#[cfg_attr(docsrs, doc(cfg(feature = "std")))]
impl std::error::Error for CursorError {}
