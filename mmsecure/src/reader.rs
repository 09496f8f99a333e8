//! [`Reader`]: a cursor that reads a region front to back, each byte at most once.

use core::fmt;
use core::mem::MaybeUninit;

use bytemuck::AnyBitPattern;

use crate::span::{Cursor, CursorHold, RegionHold};
use crate::{CursorError, Error, SecureRegion};

/// A cursor over a [`SecureRegion`] or a [`UserSlice`](crate::UserSlice) that copies its bytes
/// out front to back: each read starts where the last one ended, so no byte is read twice. Made
/// by [`SecureRegion::reader`] (borrowing the region: `'r`) and by
/// [`UserSlice::reader`](crate::UserSlice::reader) (owning what the slice held: `'static`).
/// One implementation serves both.
///
/// # Why a cursor
///
/// A secure keeps the user's pages mapped, not the bytes still: a user thread can rewrite them
/// between two reads. A driver that reads a length, checks it, and later reads the same bytes
/// again to use them has checked one value and used another (a *double fetch*, a
/// time-of-check-to-time-of-use bug). With a reader, the second read of those bytes does not
/// happen by accident: reading on moves on. To read bytes again, ask for it
/// ([`clone_reader`](Self::clone_reader)) and know that the user may have changed them. The host
/// model reports every double fetch (`Process::double_fetches`), a reader's included.
///
/// Each read checks what [`SecureRegion::read_slice`] checks (bounds, IRQL, process). An error that
/// touched no user memory (out of bounds, IRQL, process) leaves the cursor where it was; a fault
/// ([`Error::Fault`]) consumes the bytes of the failed read, some of which were read. Every error
/// says where the cursor was ([`CursorError::offset`]).
///
/// ```
/// use mmsecure::{ProbeMode, SecureRegion};
/// use mmsecure::host::{Process, PAGE_READWRITE};
///
/// let process = Process::new();
/// let _in_process = process.attach();
/// let buffer = process.allocate(4096, PAGE_READWRITE).unwrap();
/// // The user's request: a little-endian length, then that many bytes.
/// process.write(buffer, &[5, 0, 0, 0, b'h', b'e', b'l', b'l', b'o']).unwrap();
///
/// let region = SecureRegion::new(buffer, 64, ProbeMode::ReadOnly)?;
/// let mut reader = region.reader();
/// let len = u32::from_le(reader.read::<u32>()?) as usize;
/// assert!(len <= 16); // check the copy: the user's bytes may say something else by now
/// let mut payload = [0u8; 16];
/// reader.read_slice(&mut payload[..len])?;
/// assert_eq!(&payload[..len], b"hello");
/// assert_eq!(reader.len(), 64 - 9);
/// assert!(process.double_fetches().is_empty());
/// # Ok::<(), mmsecure::Error>(())
/// ```
pub struct Reader<'r, H = RegionHold> {
    cursor: Cursor<'r, H>,
}

impl SecureRegion {
    /// A [`Reader`] over the whole region, at its start.
    ///
    /// Each reader reads each byte at most once; two readers of one region read the same bytes
    /// (which the host model reports as a double fetch when both read them in one request). Keep
    /// one reader per region, and hand it on.
    ///
    /// ```
    /// use mmsecure::{ProbeMode, SecureRegion};
    /// use mmsecure::host::{Process, PAGE_READWRITE};
    ///
    /// let process = Process::new();
    /// let _in_process = process.attach();
    /// let page = process.allocate(4096, PAGE_READWRITE).unwrap();
    /// let region = SecureRegion::new(page, 32, ProbeMode::ReadOnly)?;
    /// let reader = region.reader();
    /// assert_eq!((reader.offset(), reader.len()), (0, 32));
    /// # Ok::<(), mmsecure::Error>(())
    /// ```
    #[inline]
    #[must_use]
    pub fn reader(&self) -> Reader<'_> {
        Reader::new(Cursor::borrowed(self.span()))
    }
}

impl<'r, H: CursorHold> Reader<'r, H> {
    #[inline]
    pub(crate) fn new(cursor: Cursor<'r, H>) -> Reader<'r, H> {
        Reader { cursor }
    }

    /// How many bytes are left to read.
    ///
    /// ```
    /// # use mmsecure::{ProbeMode, SecureRegion};
    /// # use mmsecure::host::{Process, PAGE_READWRITE};
    /// # let process = Process::new();
    /// # let _in_process = process.attach();
    /// # let page = process.allocate(4096, PAGE_READWRITE).unwrap();
    /// let region = SecureRegion::new(page, 10, ProbeMode::ReadOnly)?;
    /// let mut reader = region.reader();
    /// reader.skip(4)?;
    /// assert_eq!(reader.len(), 6);
    /// # Ok::<(), mmsecure::Error>(())
    /// ```
    #[inline]
    #[must_use]
    pub fn len(&self) -> usize {
        self.cursor.len()
    }

    /// Whether every byte has been read (or skipped).
    ///
    /// ```
    /// # use mmsecure::{ProbeMode, SecureRegion};
    /// # use mmsecure::host::{Process, PAGE_READWRITE};
    /// # let process = Process::new();
    /// # let _in_process = process.attach();
    /// # let page = process.allocate(4096, PAGE_READWRITE).unwrap();
    /// let region = SecureRegion::new(page, 2, ProbeMode::ReadOnly)?;
    /// let mut reader = region.reader();
    /// assert!(!reader.is_empty());
    /// let _: u16 = reader.read()?;
    /// assert!(reader.is_empty());
    /// # Ok::<(), mmsecure::Error>(())
    /// ```
    #[inline]
    #[must_use]
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Where the next read starts, from the start of the region.
    ///
    /// ```
    /// # use mmsecure::{ProbeMode, SecureRegion};
    /// # use mmsecure::host::{Process, PAGE_READWRITE};
    /// # let process = Process::new();
    /// # let _in_process = process.attach();
    /// # let page = process.allocate(4096, PAGE_READWRITE).unwrap();
    /// let region = SecureRegion::new(page, 16, ProbeMode::ReadOnly)?;
    /// let mut reader = region.reader();
    /// let _: u32 = reader.read()?;
    /// assert_eq!(reader.offset(), 4);
    /// # Ok::<(), mmsecure::Error>(())
    /// ```
    #[inline]
    #[must_use]
    pub fn offset(&self) -> usize {
        self.cursor.offset
    }

    /// Moves on `n` bytes without reading them (a field the driver ignores, padding). More than
    /// [`len`](Self::len) is [`Error::OutOfBounds`], and the cursor stays.
    ///
    /// ```
    /// # use mmsecure::{Error, ProbeMode, SecureRegion};
    /// # use mmsecure::host::{Process, PAGE_READWRITE};
    /// # let process = Process::new();
    /// # let _in_process = process.attach();
    /// # let page = process.allocate(4096, PAGE_READWRITE).unwrap();
    /// let region = SecureRegion::new(page, 8, ProbeMode::ReadOnly)?;
    /// let mut reader = region.reader();
    /// reader.skip(6)?;
    /// let err = reader.skip(3).unwrap_err();
    /// assert_eq!(err.error(), Error::OutOfBounds { offset: 6, len: 3, region_len: 8 });
    /// assert_eq!(reader.offset(), 6);
    /// # Ok::<(), Error>(())
    /// ```
    #[inline]
    pub fn skip(&mut self, n: usize) -> Result<(), CursorError> {
        self.cursor.skip(n)
    }

    /// Copies the next `size_of::<T>()` bytes out as a `T` (no alignment needed). `T` must
    /// accept any bit pattern ([`AnyBitPattern`]), since the user chooses the bytes: integers,
    /// arrays of them, and `#[repr(C)]` structs of them with `#[derive(AnyBitPattern)]` (see the
    /// crate docs' *Typed copies*).
    ///
    /// Costs what [`SecureRegion::read`] costs, plus moving the cursor. As there, `T` may
    /// be at most [`MAX_TYPED_READ`](crate::MAX_TYPED_READ) (1 KiB) large, or the call does not
    /// compile.
    ///
    /// ```
    /// # use mmsecure::{ProbeMode, SecureRegion};
    /// # use mmsecure::host::{Process, PAGE_READWRITE};
    /// # let process = Process::new();
    /// # let _in_process = process.attach();
    /// # let page = process.allocate(4096, PAGE_READWRITE).unwrap();
    /// process.write(page, &[1, 0, 2, 0, 0, 0]).unwrap();
    /// let region = SecureRegion::new(page, 6, ProbeMode::ReadOnly)?;
    /// let mut reader = region.reader();
    /// let kind: u16 = reader.read()?;
    /// let value: u32 = reader.read()?;
    /// assert_eq!((kind, value), (1, 2));
    /// # Ok::<(), mmsecure::Error>(())
    /// ```
    #[inline]
    pub fn read<T: AnyBitPattern>(&mut self) -> Result<T, CursorError> {
        let () = crate::stack_bound::StackBound::<T>::CHECK;
        self.cursor.read_value::<T>()
    }

    /// Copies the next `out.len()` bytes into `out`. After a fault `out` holds an exact prefix
    /// of them and is unchanged after it, as after [`SecureRegion::read_slice`].
    ///
    /// ```
    /// # use mmsecure::{ProbeMode, SecureRegion};
    /// # use mmsecure::host::{Process, PAGE_READWRITE};
    /// # let process = Process::new();
    /// # let _in_process = process.attach();
    /// # let page = process.allocate(4096, PAGE_READWRITE).unwrap();
    /// process.write(page, b"abcdef").unwrap();
    /// let region = SecureRegion::new(page, 6, ProbeMode::ReadOnly)?;
    /// let mut reader = region.reader();
    /// let (mut first, mut second) = ([0u8; 2], [0u8; 4]);
    /// reader.read_slice(&mut first)?;
    /// reader.read_slice(&mut second)?;
    /// assert_eq!((&first, &second), (b"ab", b"cdef"));
    /// # Ok::<(), mmsecure::Error>(())
    /// ```
    #[inline]
    pub fn read_slice(&mut self, out: &mut [u8]) -> Result<(), CursorError> {
        // SAFETY: `out` is the driver's own memory, valid for its length.
        unsafe { self.cursor.read_into(out.as_mut_ptr(), out.len()) }
    }

    /// Copies the next `out.len()` bytes into `out`, which need not be initialized: for a
    /// buffer the driver would otherwise zero first only to overwrite it. Once this returns
    /// `Ok`, every byte of `out` is initialized; after an error, none may be assumed to be (a
    /// fault writes an exact prefix, as [`SecureRegion::read_slice`] does, but does not say how long).
    ///
    /// ```
    /// use core::mem::MaybeUninit;
    /// # use mmsecure::{ProbeMode, SecureRegion};
    /// # use mmsecure::host::{Process, PAGE_READWRITE};
    /// # let process = Process::new();
    /// # let _in_process = process.attach();
    /// # let page = process.allocate(4096, PAGE_READWRITE).unwrap();
    /// process.write(page, b"raw!").unwrap();
    /// let region = SecureRegion::new(page, 4, ProbeMode::ReadOnly)?;
    /// let mut out = [MaybeUninit::<u8>::uninit(); 4];
    /// region.reader().read_raw(&mut out)?;
    /// // SAFETY: `read_raw` returned `Ok`, so all four bytes were written.
    /// let bytes = out.map(|byte| unsafe { byte.assume_init() });
    /// assert_eq!(&bytes, b"raw!");
    /// # Ok::<(), mmsecure::Error>(())
    /// ```
    #[inline]
    pub fn read_raw(&mut self, out: &mut [MaybeUninit<u8>]) -> Result<(), CursorError> {
        let len = out.len();
        // SAFETY: `out` is the driver's own memory, valid for `len` bytes of writes; the copy
        // writes bytes only, so uninitialized bytes there are fine.
        unsafe { self.cursor.read_into(out.as_mut_ptr().cast(), len) }
    }

    /// Copies the next `size_of_val(out)` bytes into `out`, a typed array: a counted array of
    /// structs, read in one copy into the driver's own memory (`T` accepts any bit pattern, as
    /// for [`read`](Self::read)). After a fault `out` holds an exact prefix of the bytes (its
    /// elements stay valid `T`s, whatever bytes they hold), as after
    /// [`read_slice`](Self::read_slice).
    ///
    /// ```
    /// use mmsecure::UserSlice;
    /// # use mmsecure::host::{Process, PAGE_READWRITE};
    /// # let process = Process::new();
    /// # let _in_process = process.attach();
    /// # let page = process.allocate(4096, PAGE_READWRITE).unwrap();
    /// // A count, then that many u32 entries.
    /// process.write(page, &[2, 0, 0, 0, 7, 0, 0, 0, 9, 0, 0, 0]).unwrap();
    /// let mut reader = UserSlice::new(page, 12)?.reader();
    /// let count = u32::from_le(reader.read::<u32>()?) as usize;
    /// let mut entries = [0u32; 8];
    /// let entries = entries.get_mut(..count).ok_or(mmsecure::Error::StringTooLong(count))?;
    /// reader.read_into(entries)?;
    /// assert_eq!(entries, &[7u32.to_le(), 9u32.to_le()]);
    /// # Ok::<(), mmsecure::Error>(())
    /// ```
    #[inline]
    pub fn read_into<T: AnyBitPattern>(&mut self, out: &mut [T]) -> Result<(), CursorError> {
        let () = crate::stack_bound::StackBound::<T>::CHECK;
        let bytes = core::mem::size_of_val(out);
        // SAFETY: `out` is the driver's own memory, valid for `bytes` bytes of writes; any
        // bytes make valid `T`s (`AnyBitPattern`), so a partial copy leaves valid elements.
        unsafe { self.cursor.read_into(out.as_mut_ptr().cast(), bytes) }
    }

    /// Reads a NUL-terminated byte string into `buf`: the bytes up to the NUL, which is read
    /// but not returned. Each byte is read from user memory once (the user may change the string
    /// meanwhile: what this returns is one reading of it). The bound is `buf.len()` or what is
    /// left, whichever is smaller; no NUL within it is [`Error::Unterminated`]. The cursor moves
    /// past every byte read: the NUL included, or the whole bound.
    ///
    /// ```
    /// use mmsecure::{Error, UserSlice};
    /// # use mmsecure::host::{Process, PAGE_READWRITE};
    /// # let process = Process::new();
    /// # let _in_process = process.attach();
    /// # let page = process.allocate(4096, PAGE_READWRITE).unwrap();
    /// process.write(page, b"name\0rest").unwrap();
    /// let mut reader = UserSlice::new(page, 9)?.reader();
    /// let mut buf = [0u8; 16];
    /// assert_eq!(reader.read_cstr(&mut buf)?, b"name");
    /// assert_eq!(reader.offset(), 5);
    /// let err = reader.read_cstr(&mut buf).unwrap_err(); // "rest" has no NUL
    /// assert_eq!(err.error(), Error::Unterminated);
    /// # Ok::<(), Error>(())
    /// ```
    pub fn read_cstr<'b>(&mut self, buf: &'b mut [u8]) -> Result<&'b [u8], CursorError> {
        let len = self.read_terminated(buf)?;
        Ok(&buf[..len])
    }

    /// Reads a NUL-terminated UTF-16 string into `buf`, as [`read_cstr`](Self::read_cstr) does
    /// bytes: up to the `0u16` (read, not returned), each unit read once, no NUL within the
    /// bound is [`Error::Unterminated`]. Units are read in native byte order, unaligned.
    ///
    /// ```
    /// use mmsecure::UserSlice;
    /// # use mmsecure::host::{Process, PAGE_READWRITE};
    /// # let process = Process::new();
    /// # let _in_process = process.attach();
    /// # let page = process.allocate(4096, PAGE_READWRITE).unwrap();
    /// let units: Vec<u8> = [b'h' as u16, b'i' as u16, 0].iter().flat_map(|u| u.to_ne_bytes()).collect();
    /// process.write(page, &units).unwrap();
    /// let mut buf = [0u16; 8];
    /// let name = UserSlice::new(page, 64)?.reader().read_wstr(&mut buf)?.to_vec();
    /// assert_eq!(String::from_utf16(&name).unwrap(), "hi");
    /// # Ok::<(), mmsecure::Error>(())
    /// ```
    pub fn read_wstr<'b>(&mut self, buf: &'b mut [u16]) -> Result<&'b [u16], CursorError> {
        let len = self.read_terminated(buf)?;
        Ok(&buf[..len])
    }

    /// Reads units into `buf` one at a time until a zero unit: how many came before it.
    fn read_terminated<U: AnyBitPattern + PartialEq>(
        &mut self,
        buf: &mut [U],
    ) -> Result<usize, CursorError> {
        let start = self.cursor.offset;
        let bound = buf.len().min(self.len() / core::mem::size_of::<U>());
        for (i, slot) in buf.iter_mut().take(bound).enumerate() {
            let unit: U = self.cursor.read_value()?;
            if unit == U::zeroed() {
                return Ok(i);
            }
            *slot = unit;
        }
        Err(CursorError::new(start, Error::Unterminated))
    }

    /// A second reader at the same offset, to read the same bytes again: the one explicit way
    /// to do so. Reading from the clone does not move this reader.
    ///
    /// The user may have changed the bytes in between, so never check a value through one
    /// reader and use it through the other. The host model reports the second read as a double
    /// fetch when both fall in one request; that is the point.
    ///
    /// A slice's clone takes a process reference of its own, which `ObfReferenceObject` allows
    /// only at `DISPATCH_LEVEL` or below: cloned above that, the clone takes none, and every
    /// copy through it is [`Error::WrongProcess`], whatever the IRQL later.
    ///
    /// ```
    /// # use mmsecure::{ProbeMode, SecureRegion};
    /// # use mmsecure::host::{Process, PAGE_READWRITE};
    /// let process = Process::new();
    /// let _in_process = process.attach();
    /// let page = process.allocate(4096, PAGE_READWRITE).unwrap();
    /// let region = SecureRegion::new(page, 8, ProbeMode::ReadOnly)?;
    /// let mut reader = region.reader();
    /// let mut again = reader.clone_reader();
    /// let first: u64 = reader.read()?;
    /// let second: u64 = again.read()?;
    /// assert_eq!(first, second); // here; a user thread could have made them differ
    /// assert_eq!(process.double_fetches().len(), 1);
    /// # Ok::<(), mmsecure::Error>(())
    /// ```
    #[must_use]
    pub fn clone_reader(&self) -> Reader<'r, H> {
        Reader::new(self.cursor.duplicate())
    }

    /// Appends every byte left to `out`, growing it with `Vec::try_reserve`
    /// ([`Error::NoMemory`] if that fails, before anything is read). Feature `alloc`: in a
    /// kernel driver the global allocator comes from a crate such as `wdk-alloc`.
    ///
    /// On an error `out` keeps its length (its spare capacity may hold part of the bytes).
    ///
    /// ```
    /// # use mmsecure::{ProbeMode, SecureRegion};
    /// # use mmsecure::host::{Process, PAGE_READWRITE};
    /// # let process = Process::new();
    /// # let _in_process = process.attach();
    /// # let page = process.allocate(4096, PAGE_READWRITE).unwrap();
    /// process.write(page, b"\x03\x00tail").unwrap();
    /// let region = SecureRegion::new(page, 6, ProbeMode::ReadOnly)?;
    /// let mut reader = region.reader();
    /// let _tag: u16 = reader.read()?;
    /// let mut rest = Vec::new();
    /// reader.read_all(&mut rest)?;
    /// assert_eq!(rest, b"tail");
    /// assert!(reader.is_empty());
    /// # Ok::<(), mmsecure::Error>(())
    /// ```
    #[cfg(feature = "alloc")]
    #[cfg_attr(docsrs, doc(cfg(feature = "alloc")))]
    pub fn read_all(&mut self, out: &mut alloc::vec::Vec<u8>) -> Result<(), CursorError> {
        let len = self.len();
        if len == 0 {
            return Ok(());
        }
        if out.try_reserve(len).is_err() {
            return Err(CursorError::new(self.cursor.offset, Error::NoMemory));
        }
        let spare = out.spare_capacity_mut();
        // SAFETY: `try_reserve` made `spare` at least `len` bytes of the driver's own memory,
        // disjoint from user memory.
        unsafe { self.cursor.read_into(spare.as_mut_ptr().cast(), len) }?;
        let filled = out.len() + len;
        // SAFETY: the copy succeeded, so the `len` bytes after the old length are initialized,
        // and `try_reserve` made room for them.
        unsafe { out.set_len(filled) };
        Ok(())
    }
}

impl<H: CursorHold> fmt::Debug for Reader<'_, H> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Reader")
            .field("offset", &self.cursor.offset)
            .field("len", &self.len())
            .finish()
    }
}
