//! [`UserSlice`]: a probed range of user memory, reached by guarded copies, with no secure.

use core::fmt;
use core::marker::PhantomData;
use core::mem::ManuallyDrop;

use mmsecure_sys::PEPROCESS;

use crate::span::{Cursor, SliceHold, Span};
use crate::{context, kernel, user_range, Error, Reader, UserPtr, Writer};

/// A range of user memory checked as `ProbeForRead`/`ProbeForWrite` check it, and reached only
/// by guarded copies through its [`reader`](Self::reader) and [`writer`](Self::writer): the
/// C idiom (`ProbeForRead` then `memcpy` under `__try`) at its cost, with no secure.
///
/// Use a slice for a request a dispatch routine reads and answers in the caller's context; use a
/// [`SecureRegion`](crate::SecureRegion) for a range the driver keeps using (across a pended
/// IRP, a long operation on a buffer it must not lose). Every copy is guarded either way: a page
/// the user frees or re-protects mid-copy is [`Error::Fault`] with the kernel's status, not a
/// crash. What a secure adds is that the user *cannot* free or re-protect the range meanwhile.
///
/// # What it checks
///
/// [`new`](Self::new) and [`aligned`](Self::aligned) check what the probe routines check
/// (the WRK's `base/ntos/ex/probe.c`, `ProbeForWrite`; `ProbeForRead` in `ex.h`): a zero length
/// is valid and checks and touches nothing; otherwise the start must be aligned
/// ([`Error::Misaligned`], `STATUS_DATATYPE_MISALIGNMENT`), the range must not wrap
/// ([`Error::Overflow`]) or reach above [`highest_user_address`](crate::highest_user_address)
/// ([`Error::NotUserRange`]). Address zero is [`Error::NullAddress`] (the probe lets it pass and
/// the first touch raises; this crate says so first). Whether the memory is there is learnt from
/// the copy, as in C.
///
/// # The process rule, without a secure
///
/// A user address means something only in its process. A slice records the process it was made
/// in (`IoGetCurrentProcess`) and takes a reference on that process object
/// (`ObfReferenceObject`); every copy first checks the IRQL (`APC_LEVEL` or below) and that the
/// current process is that one ([`Error::WrongProcess`] otherwise), then copies under the guard.
///
/// - **EPROCESS reuse.** A referenced object is not freed, so while the slice (or any of its
///   cursors, each holding a reference of its own) lives, no other process can be created at the
///   same `EPROCESS` address: pointer equality with the current process is identity.
/// - **Attach.** Under `KeStackAttachProcess` to another process, the current process is that
///   other one: the comparison fails, and nothing is touched.
/// - **Exit.** After the process exits, its object lives on (referenced) but its address space
///   is gone; no thread runs in it any more, so a copy from elsewhere is `WrongProcess`, and a
///   copy in its context (attached to the dying process) finds no memory and faults.
///
/// - **Which process.** The one current when the slice is made: under an attach, the process
///   attached to. In a system thread (a work item, `DriverEntry`) that is the System process,
///   whose user half holds nothing a requester sent: a requester's pointer handed to a work item
///   must be read before the hand-off, or kept with a [`SecureRegion`](crate::SecureRegion) and
///   read under an attach. Unlike `MmSecureVirtualMemory`, which refuses in System, a slice made
///   there is accepted, and its copies fault where System has nothing mapped.
///
/// A cheaper rule (comparing a process id, or the `EPROCESS` alone without a reference) would not
/// do: ids and object addresses are reused after the last reference goes. The reference costs
/// an interlocked increment and decrement per slice (`docs/performance.md`).
///
/// The slice and its cursors are neither `Send` nor `Sync`, and cannot be cloned (a second
/// reader is [`Reader::clone_reader`], which the double-fetch detector watches).
///
/// ```
/// use mmsecure::UserSlice;
/// use mmsecure::host::{Process, PAGE_READWRITE};
///
/// let process = Process::new();
/// let _in_process = process.attach();
/// let buffer = process.allocate(4096, PAGE_READWRITE).unwrap();
/// process.write(buffer, &[3, 0, 0, 0, b'a', b'b', b'c']).unwrap();
///
/// let mut reader = UserSlice::new(buffer, 64)?.reader();
/// let len = u32::from_le(reader.read::<u32>()?) as usize;
/// let mut payload = [0u8; 16];
/// reader.read_slice(payload.get_mut(..len).ok_or(mmsecure::Error::ZeroLength)?)?;
/// assert_eq!(&payload[..3], b"abc");
/// assert_eq!(process.secure_count(), 0); // no secure was made
/// # Ok::<(), mmsecure::Error>(())
/// ```
pub struct UserSlice {
    span: Span,
    request: usize,
    /// Tied to a process context: not `Send`, not `Sync`.
    _context: PhantomData<*mut ()>,
}

impl UserSlice {
    /// A slice of `len` bytes at `address` in the current process, with no alignment asked
    /// (`ProbeForRead(address, len, 1)`). See the type's docs for what is checked. Call at
    /// `APC_LEVEL` or below ([`Error::IrqlTooHigh`]).
    ///
    /// ```
    /// use mmsecure::{highest_user_address, Error, UserPtr, UserSlice};
    ///
    /// assert_eq!(UserSlice::new(UserPtr::NULL, 4).unwrap_err(), Error::NullAddress);
    /// assert_eq!(UserSlice::new(UserPtr::new(usize::MAX - 1), 4).unwrap_err(), Error::Overflow);
    /// let kernel = UserPtr::new(highest_user_address() + 1);
    /// assert_eq!(UserSlice::new(kernel, 1).unwrap_err(), Error::NotUserRange);
    /// // A zero length is valid, wherever it points, and touches nothing.
    /// assert!(UserSlice::new(UserPtr::NULL, 0)?.is_empty());
    /// # Ok::<(), Error>(())
    /// ```
    #[inline]
    pub fn new(address: impl Into<UserPtr>, len: usize) -> Result<UserSlice, Error> {
        UserSlice::aligned(address, len, 1)
    }

    /// A slice whose start must be a multiple of `align` (a power of two; anything else is
    /// [`Error::BadAlignment`]), as `ProbeForRead(address, len, align)` asks: a misaligned start
    /// is [`Error::Misaligned`], whose status is `STATUS_DATATYPE_MISALIGNMENT`, the exception the
    /// probe raises. Like the probe, a zero length checks nothing, the alignment included.
    ///
    /// ```
    /// use mmsecure::{Error, UserSlice};
    /// use mmsecure::host::{Process, PAGE_READWRITE};
    /// use mmsecure::status::STATUS_DATATYPE_MISALIGNMENT;
    ///
    /// let process = Process::new();
    /// let _in_process = process.attach();
    /// let page = process.allocate(4096, PAGE_READWRITE).unwrap();
    /// assert!(UserSlice::aligned(page, 16, 8).is_ok());
    /// let err = UserSlice::aligned(page.wrapping_add(2), 16, 8).unwrap_err();
    /// assert_eq!(err, Error::Misaligned { align: 8 });
    /// assert_eq!(err.to_ntstatus(), STATUS_DATATYPE_MISALIGNMENT);
    /// assert_eq!(UserSlice::aligned(page, 16, 3).unwrap_err(), Error::BadAlignment(3));
    /// ```
    #[inline]
    pub fn aligned(
        address: impl Into<UserPtr>,
        len: usize,
        align: usize,
    ) -> Result<UserSlice, Error> {
        let base = address.into().addr();
        check_probe(base, len, align)?;
        context::require_irql(context::SECURE_MAX)?;
        let process = kernel::reference_current();
        let request = mmsecure_sys::report_request_begin(process, base, len);
        Ok(UserSlice {
            span: Span {
                base,
                len,
                process,
                writable: true,
            },
            request,
            _context: PhantomData,
        })
    }

    /// The first byte, as given.
    ///
    /// ```
    /// # use mmsecure::{UserPtr, UserSlice};
    /// let slice = UserSlice::new(UserPtr::new(0x1000), 0)?;
    /// assert_eq!(slice.address(), UserPtr::new(0x1000));
    /// # Ok::<(), mmsecure::Error>(())
    /// ```
    #[must_use]
    pub fn address(&self) -> UserPtr {
        UserPtr::new(self.span.base)
    }

    /// The length in bytes.
    ///
    /// ```
    /// # use mmsecure::{UserPtr, UserSlice};
    /// assert_eq!(UserSlice::new(UserPtr::new(0x1000), 16)?.len(), 16);
    /// # Ok::<(), mmsecure::Error>(())
    /// ```
    #[must_use]
    pub fn len(&self) -> usize {
        self.span.len
    }

    /// Whether the length is zero.
    ///
    /// ```
    /// # use mmsecure::{UserPtr, UserSlice};
    /// assert!(UserSlice::new(UserPtr::new(0x1000), 0)?.is_empty());
    /// # Ok::<(), mmsecure::Error>(())
    /// ```
    #[must_use]
    pub fn is_empty(&self) -> bool {
        self.span.len == 0
    }

    /// The process the slice was made in (and holds a reference on).
    ///
    /// ```
    /// # use mmsecure::{UserPtr, UserSlice};
    /// let process = mmsecure::host::Process::new();
    /// let _in_process = process.attach();
    /// assert_eq!(UserSlice::new(UserPtr::new(0x1000), 0)?.eprocess(), process.eprocess());
    /// # Ok::<(), mmsecure::Error>(())
    /// ```
    #[must_use]
    pub fn eprocess(&self) -> PEPROCESS {
        self.span.process
    }

    /// Turns the slice into a [`Reader`] over all of it, which takes over the slice's process
    /// reference: one slice, one reader (as in the Linux kernel's `UserSlice`).
    ///
    /// ```
    /// # use mmsecure::UserSlice;
    /// # use mmsecure::host::{Process, PAGE_READWRITE};
    /// # let process = Process::new();
    /// # let _in_process = process.attach();
    /// # let page = process.allocate(4096, PAGE_READWRITE).unwrap();
    /// process.write(page, &9u16.to_ne_bytes()).unwrap();
    /// let mut reader = UserSlice::new(page, 2)?.reader();
    /// assert_eq!(reader.read::<u16>()?, 9);
    /// assert!(reader.is_empty());
    /// # Ok::<(), mmsecure::Error>(())
    /// ```
    #[must_use]
    pub fn reader(self) -> Reader<'static, SliceHold> {
        let (span, hold) = self.into_parts();
        Reader::new(Cursor::new(span, hold))
    }

    /// Turns the slice into a [`Writer`] over all of it, as [`reader`](Self::reader) does. The
    /// copy is guarded: read-only or freed memory is [`Error::Fault`] (`STATUS_ACCESS_VIOLATION`).
    ///
    /// ```
    /// use mmsecure::{status, Error, UserSlice};
    /// use mmsecure::host::{Process, PAGE_READONLY};
    ///
    /// let process = Process::new();
    /// let _in_process = process.attach();
    /// let page = process.allocate(4096, PAGE_READONLY).unwrap();
    /// let err = UserSlice::new(page, 4)?.writer().write(&1u32).unwrap_err();
    /// assert_eq!(err.error(), Error::Fault { code: status::STATUS_ACCESS_VIOLATION });
    /// # Ok::<(), Error>(())
    /// ```
    #[must_use]
    pub fn writer(self) -> Writer<'static, SliceHold> {
        let (span, hold) = self.into_parts();
        Writer::new(Cursor::new(span, hold))
    }

    /// A [`Reader`] and a [`Writer`] over the same bytes, each at the start and each with a
    /// process reference of its own: for an `METHOD_NEITHER` request whose input and output are
    /// one buffer. Read what you need before you write over it. Above `DISPATCH_LEVEL`, where
    /// no second reference can be taken, the writer takes none and refuses every copy with
    /// [`Error::WrongProcess`] (see [`Reader::clone_reader`]).
    ///
    /// ```
    /// # use mmsecure::UserSlice;
    /// # use mmsecure::host::{Process, PAGE_READWRITE};
    /// # let process = Process::new();
    /// # let _in_process = process.attach();
    /// # let page = process.allocate(4096, PAGE_READWRITE).unwrap();
    /// process.write(page, &5u32.to_ne_bytes()).unwrap();
    /// let (mut reader, mut writer) = UserSlice::new(page, 4)?.reader_writer();
    /// let value: u32 = reader.read()?;
    /// writer.write(&(value * 2))?;
    /// let mut seen = [0u8; 4];
    /// process.read(page, &mut seen).unwrap();
    /// assert_eq!(u32::from_ne_bytes(seen), 10);
    /// # Ok::<(), mmsecure::Error>(())
    /// ```
    #[must_use]
    pub fn reader_writer(self) -> (Reader<'static, SliceHold>, Writer<'static, SliceHold>) {
        let (span, hold) = self.into_parts();
        let reader = Cursor::new(span, hold);
        let writer = reader.duplicate();
        (Reader::new(reader), Writer::new(writer))
    }

    /// The span, and the process reference and request handed on to the caller as a hold.
    fn into_parts(self) -> (Span, SliceHold) {
        let this = ManuallyDrop::new(self);
        (this.span, SliceHold::adopt(this.span.process, this.request))
    }
}

impl Drop for UserSlice {
    #[inline]
    fn drop(&mut self) {
        mmsecure_sys::report_request_end(self.request);
        // SAFETY: the slice's own reference, taken in `aligned`, given up once, here.
        unsafe { context::dereference(self.span.process) };
    }
}

impl fmt::Debug for UserSlice {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("UserSlice")
            .field("address", &self.address())
            .field("len", &self.span.len)
            .finish_non_exhaustive()
    }
}

/// What `ProbeForRead`/`ProbeForWrite` check, in their order: nothing for a zero length; else
/// the alignment, then the range (null first: this crate's own check).
#[inline]
pub(crate) fn check_probe(address: usize, len: usize, align: usize) -> Result<(), Error> {
    if !align.is_power_of_two() {
        return Err(Error::BadAlignment(align));
    }
    if len == 0 {
        return Ok(());
    }
    if address & (align - 1) != 0 {
        return Err(Error::Misaligned { align });
    }
    user_range::check(address, len)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn probe_checks_come_in_the_probes_order() {
        assert_eq!(check_probe(0, 0, 1), Ok(()));
        assert_eq!(check_probe(1, 0, 8), Ok(()));
        assert_eq!(check_probe(1, 4, 0), Err(Error::BadAlignment(0)));
        assert_eq!(check_probe(2, 4, 4), Err(Error::Misaligned { align: 4 }));
        assert_eq!(check_probe(0, 4, 4), Err(Error::NullAddress));
        assert_eq!(check_probe(usize::MAX - 3, 8, 4), Err(Error::Overflow));
        assert_eq!(check_probe(0x1000, 16, 16), Ok(()));
    }
}
