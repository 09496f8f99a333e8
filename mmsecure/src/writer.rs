//! [`Writer`]: a cursor that writes a region front to back.

use core::fmt;

use bytemuck::NoUninit;

use crate::span::{Cursor, CursorHold, RegionHold};
use crate::{CursorError, SecureRegion};

/// A cursor over a [`SecureRegion`] or a [`UserSlice`](crate::UserSlice) that copies bytes into
/// it front to back: each write starts where the last one ended. Made by
/// [`SecureRegion::writer`] and [`UserSlice::writer`](crate::UserSlice::writer) (one
/// implementation, shared with [`Reader`](crate::Reader)).
///
/// Each write checks what [`SecureRegion::write_slice`] checks: a [`ProbeMode::ReadOnly`] region refuses
/// it ([`Error::NotWritable`](crate::Error::NotWritable)), and so do the bounds, the IRQL and the
/// process. An error that touched no user memory leaves the cursor where it was; a fault
/// ([`Error::Fault`](crate::Error::Fault)) moves it past the failed write, part of which may have
/// landed. Every error says where the cursor was ([`CursorError::offset`]).
///
/// [`ProbeMode::ReadOnly`]: crate::ProbeMode::ReadOnly
///
/// ```
/// use mmsecure::{ProbeMode, SecureRegion};
/// use mmsecure::host::{Process, PAGE_READWRITE};
///
/// let process = Process::new();
/// let _in_process = process.attach();
/// let output = process.allocate(4096, PAGE_READWRITE).unwrap();
///
/// let region = SecureRegion::new(output, 8, ProbeMode::ReadWrite)?;
/// let mut writer = region.writer();
/// writer.write(&0x0102_u16.to_le())?;
/// writer.write_slice(b"reply!")?;
/// assert!(writer.is_empty());
///
/// let mut seen = [0u8; 8];
/// process.read(output, &mut seen).unwrap();
/// assert_eq!(&seen, b"\x02\x01reply!");
/// # Ok::<(), mmsecure::Error>(())
/// ```
pub struct Writer<'r, H = RegionHold> {
    cursor: Cursor<'r, H>,
}

impl SecureRegion {
    /// A [`Writer`] over the whole region, at its start. On a read-only region every write
    /// fails with [`Error::NotWritable`](crate::Error::NotWritable).
    ///
    /// ```
    /// use mmsecure::{Error, ProbeMode, SecureRegion};
    /// use mmsecure::host::{Process, PAGE_READWRITE};
    ///
    /// let process = Process::new();
    /// let _in_process = process.attach();
    /// let page = process.allocate(4096, PAGE_READWRITE).unwrap();
    /// let region = SecureRegion::new(page, 16, ProbeMode::ReadOnly)?;
    /// let mut writer = region.writer();
    /// assert_eq!(writer.write(&1u32).unwrap_err().error(), Error::NotWritable);
    /// assert_eq!(writer.len(), 16);
    /// # Ok::<(), Error>(())
    /// ```
    #[inline]
    #[must_use]
    pub fn writer(&self) -> Writer<'_> {
        Writer::new(Cursor::borrowed(self.span()))
    }
}

impl<'r, H: CursorHold> Writer<'r, H> {
    #[inline]
    pub(crate) fn new(cursor: Cursor<'r, H>) -> Writer<'r, H> {
        Writer { cursor }
    }

    /// How many bytes are left to write.
    ///
    /// ```
    /// # use mmsecure::{ProbeMode, SecureRegion};
    /// # use mmsecure::host::{Process, PAGE_READWRITE};
    /// # let process = Process::new();
    /// # let _in_process = process.attach();
    /// # let page = process.allocate(4096, PAGE_READWRITE).unwrap();
    /// let region = SecureRegion::new(page, 16, ProbeMode::ReadWrite)?;
    /// let mut writer = region.writer();
    /// writer.write(&7u32)?;
    /// assert_eq!(writer.len(), 12);
    /// # Ok::<(), mmsecure::Error>(())
    /// ```
    #[inline]
    #[must_use]
    pub fn len(&self) -> usize {
        self.cursor.len()
    }

    /// Whether the region is full.
    ///
    /// ```
    /// # use mmsecure::{ProbeMode, SecureRegion};
    /// # use mmsecure::host::{Process, PAGE_READWRITE};
    /// # let process = Process::new();
    /// # let _in_process = process.attach();
    /// # let page = process.allocate(4096, PAGE_READWRITE).unwrap();
    /// let region = SecureRegion::new(page, 4, ProbeMode::ReadWrite)?;
    /// let mut writer = region.writer();
    /// writer.write(&7u32)?;
    /// assert!(writer.is_empty());
    /// # Ok::<(), mmsecure::Error>(())
    /// ```
    #[inline]
    #[must_use]
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Where the next write starts, from the start of the region.
    ///
    /// ```
    /// # use mmsecure::{ProbeMode, SecureRegion};
    /// # use mmsecure::host::{Process, PAGE_READWRITE};
    /// # let process = Process::new();
    /// # let _in_process = process.attach();
    /// # let page = process.allocate(4096, PAGE_READWRITE).unwrap();
    /// let region = SecureRegion::new(page, 16, ProbeMode::ReadWrite)?;
    /// let mut writer = region.writer();
    /// writer.write_slice(b"abc")?;
    /// assert_eq!(writer.offset(), 3);
    /// # Ok::<(), mmsecure::Error>(())
    /// ```
    #[inline]
    #[must_use]
    pub fn offset(&self) -> usize {
        self.cursor.offset
    }

    /// Copies `value`'s bytes into the region at the cursor (no alignment needed). `T` must have
    /// no padding ([`NoUninit`]): padding bytes are uninitialized, and copying them out would
    /// leak kernel memory to the user. After a fault the user's range holds an exact prefix of
    /// the value's bytes, as after [`SecureRegion::write_slice`].
    ///
    /// ```
    /// # use mmsecure::{Error, ProbeMode, SecureRegion};
    /// # use mmsecure::host::{Process, PAGE_READWRITE};
    /// # let process = Process::new();
    /// # let _in_process = process.attach();
    /// # let page = process.allocate(4096, PAGE_READWRITE).unwrap();
    /// let region = SecureRegion::new(page, 6, ProbeMode::ReadWrite)?;
    /// let mut writer = region.writer();
    /// writer.write(&1u32)?;
    /// let err = writer.write(&2u32).unwrap_err();
    /// assert_eq!(err.offset(), 4);
    /// assert!(matches!(err.error(), Error::OutOfBounds { .. }));
    /// # Ok::<(), Error>(())
    /// ```
    #[inline]
    pub fn write<T: NoUninit>(&mut self, value: &T) -> Result<(), CursorError> {
        self.write_slice(bytemuck::bytes_of(value))
    }

    /// Copies `data` into the region at the cursor. After a fault the user's range holds an
    /// exact prefix of `data`, as after [`SecureRegion::write_slice`].
    ///
    /// ```
    /// # use mmsecure::{ProbeMode, SecureRegion};
    /// # use mmsecure::host::{Process, PAGE_READWRITE};
    /// # let process = Process::new();
    /// # let _in_process = process.attach();
    /// # let page = process.allocate(4096, PAGE_READWRITE).unwrap();
    /// let region = SecureRegion::new(page, 4, ProbeMode::ReadWrite)?;
    /// let mut writer = region.writer();
    /// writer.write_slice(b"ok")?;
    /// writer.write_slice(b"!!")?;
    /// let mut seen = [0u8; 4];
    /// process.read(page, &mut seen).unwrap();
    /// assert_eq!(&seen, b"ok!!");
    /// # Ok::<(), mmsecure::Error>(())
    /// ```
    #[inline]
    pub fn write_slice(&mut self, data: &[u8]) -> Result<(), CursorError> {
        self.cursor.write(data)
    }

    /// Copies as much of `value` as fits before the end, from its start, and returns how many
    /// bytes that was: for an output that is answered with `STATUS_BUFFER_OVERFLOW` (the
    /// warning that says "this much of it") when the user's buffer is short. Nothing left is
    /// `Ok(0)`. A fault or a check that fails is an error, as for [`write`](Self::write).
    ///
    /// ```
    /// use mmsecure::UserSlice;
    /// # use mmsecure::host::{Process, PAGE_READWRITE};
    /// # let process = Process::new();
    /// # let _in_process = process.attach();
    /// # let page = process.allocate(4096, PAGE_READWRITE).unwrap();
    /// let mut writer = UserSlice::new(page, 6)?.writer();
    /// assert_eq!(writer.write_truncated(&0x0807_0605_0403_0201_u64.to_le())?, 6);
    /// assert_eq!(writer.write_truncated(&1u32)?, 0);
    /// let mut seen = [0u8; 6];
    /// process.read(page, &mut seen).unwrap();
    /// assert_eq!(seen, [1, 2, 3, 4, 5, 6]);
    /// # Ok::<(), mmsecure::Error>(())
    /// ```
    pub fn write_truncated<T: NoUninit>(&mut self, value: &T) -> Result<usize, CursorError> {
        let bytes = bytemuck::bytes_of(value);
        let fits = &bytes[..bytes.len().min(self.len())];
        self.cursor.write(fits)?;
        Ok(fits.len())
    }
}

impl<H: CursorHold> fmt::Debug for Writer<'_, H> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Writer")
            .field("offset", &self.cursor.offset)
            .field("len", &self.len())
            .finish()
    }
}
