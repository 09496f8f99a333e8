//! The one guarded copy between user memory and the driver's, with every check a copy needs,
//! and the cursor that [`Reader`](crate::Reader) and [`Writer`](crate::Writer) are made of,
//! shared by [`SecureRegion`](crate::SecureRegion) and [`UserSlice`](crate::UserSlice).

use core::marker::PhantomData;
use core::mem::{size_of, MaybeUninit};
use core::ptr;

use bytemuck::AnyBitPattern;
use mmsecure_sys::PEPROCESS;

use crate::copy::{copy_from_user, copy_to_user};
use crate::{context, kernel, user_range, CursorError, Error};

/// A checked user range of one process: `len` bytes at `base`, writable or not. Plain data: what
/// keeps the range meaningful (a secure, a process reference) belongs to whoever made it.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Span {
    pub(crate) base: usize,
    pub(crate) len: usize,
    pub(crate) process: PEPROCESS,
    pub(crate) writable: bool,
}

impl Span {
    /// The user address `offset` bytes in, once `len` bytes there are known to lie inside the
    /// span, the IRQL allows touching user memory, and this thread is in the span's process's
    /// context.
    #[inline]
    fn user_addr(&self, offset: usize, len: usize) -> Result<usize, Error> {
        user_range::check_access(offset, len, self.len)?;
        context::require_irql(context::SECURE_MAX)?;
        if kernel::current_process() != self.process {
            return Err(Error::WrongProcess);
        }
        Ok(self.base.wrapping_add(offset))
    }

    /// Copies `len` bytes at `offset` into `dst`.
    ///
    /// # Safety
    ///
    /// `dst` is the driver's own memory, valid for `len` bytes of writes; the span's maker keeps
    /// its range a user range of `process` (checked by `user_range::check`).
    #[inline]
    pub(crate) unsafe fn read_into(
        &self,
        offset: usize,
        dst: *mut u8,
        len: usize,
    ) -> Result<(), Error> {
        let src = self.user_addr(offset, len)?;
        // SAFETY: `user_addr` checked that the range lies inside the span (a user range) in the
        // current process; the caller vouches for `dst`.
        unsafe { copy_in(dst, src, len) }
    }

    /// Copies `out.len()` bytes at `offset` into `out`.
    #[inline]
    pub(crate) fn read(&self, offset: usize, out: &mut [u8]) -> Result<(), Error> {
        // SAFETY: `out` is the driver's own memory, valid for its length.
        unsafe { self.read_into(offset, out.as_mut_ptr(), out.len()) }
    }

    /// Copies a `T` out at `offset`.
    #[inline]
    pub(crate) fn read_value<T: AnyBitPattern>(&self, offset: usize) -> Result<T, Error> {
        let () = crate::stack_bound::StackBound::<T>::CHECK;
        let mut value = MaybeUninit::<T>::uninit();
        // SAFETY: `value` is a local of exactly `size_of::<T>()` bytes.
        unsafe { self.read_into(offset, value.as_mut_ptr().cast::<u8>(), size_of::<T>()) }?;
        // SAFETY: the copy succeeded, so every byte of `value` was written, and
        // `T: AnyBitPattern` makes any bytes a valid `T`.
        Ok(unsafe { value.assume_init() })
    }

    /// Copies `data` in at `offset`; [`Error::NotWritable`] on a span that is not writable.
    #[inline]
    pub(crate) fn write(&self, offset: usize, data: &[u8]) -> Result<(), Error> {
        if !self.writable {
            return Err(Error::NotWritable);
        }
        let dst = self.user_addr(offset, data.len())?;
        // SAFETY: as in `read_into`; `data` is the driver's own memory.
        unsafe { copy_out(dst, data) }
    }
}

/// The guarded copy from user memory: every read of user memory in this crate ends here.
///
/// # Safety
///
/// `src..src + len` is a user range (`user_range::check`) of the current process, or `len` is 0
/// (then nothing is touched, whatever `src` is), and the caller has checked that the IRQL is `APC_LEVEL` or below (`context::require_irql`); `dst` is
/// the driver's own memory, valid for `len` bytes of writes.
#[inline]
pub(crate) unsafe fn copy_in(dst: *mut u8, src: usize, len: usize) -> Result<(), Error> {
    // SAFETY: a user range of the current process at an IRQL where a page fault is allowed: a
    // fault there (freed, re-protected, in-page error) comes back as an error. `dst` is the
    // caller's, not user memory.
    unsafe { copy_from_user(dst, src as *const u8, len) }
}

/// The guarded copy to user memory, as [`copy_in`]: every write of user memory ends here.
///
/// # Safety
///
/// `dst..dst + data.len()` is a user range (`user_range::check`) of the current process, or
/// `data` is empty, at an IRQL the caller has checked, as for [`copy_in`].
#[inline]
pub(crate) unsafe fn copy_out(dst: usize, data: &[u8]) -> Result<(), Error> {
    // SAFETY: as in `copy_in`: a read-only or freed page faults, and the fault is an error;
    // `data` is the driver's own memory.
    unsafe { copy_to_user(dst as *mut u8, data.as_ptr(), data.len()) }
}

/// What a cursor holds to keep its range meaningful: nothing of its own for a region's cursor
/// ([`RegionHold`], the region holds the secure and the process reference for the borrow `'r`),
/// a process reference and a double-fetch request for a slice's ([`SliceHold`]). Sealed: only
/// this crate's two types implement it. A driver names it to take either kind of cursor:
///
/// ```
/// use mmsecure::{CursorHold, Reader, UserSlice};
/// # use mmsecure::host::{Process, PAGE_READWRITE};
///
/// fn tag<H: CursorHold>(reader: &mut Reader<'_, H>) -> Result<u32, mmsecure::CursorError> {
///     reader.read()
/// }
/// # let process = Process::new();
/// # let _in_process = process.attach();
/// # let page = process.allocate(4096, PAGE_READWRITE).unwrap();
/// assert_eq!(tag(&mut UserSlice::new(page, 4)?.reader())?, 0);
/// # Ok::<(), mmsecure::Error>(())
/// ```
pub trait CursorHold: sealed::Sealed {}

mod sealed {
    /// The crate's own: a second hold, for a clone of the cursor.
    pub trait Sealed: Sized {
        fn duplicate(&self) -> Self;
        /// The process the clone's span must name: the one its hold has a reference on, or
        /// [`NO_PROCESS`](super::NO_PROCESS) where it could take none. `None`: the span's own.
        fn process(&self) -> Option<mmsecure_sys::PEPROCESS> {
            None
        }
    }
}

/// A region's cursor's hold: nothing (the region holds the secure and the process reference),
/// so a region's [`Reader`](crate::Reader) and [`Writer`](crate::Writer) have no drop code. The
/// default of their type parameter.
///
/// ```
/// use mmsecure::{ProbeMode, Reader, RegionHold, SecureRegion};
/// # use mmsecure::host::{Process, PAGE_READWRITE};
/// # let process = Process::new();
/// # let _in_process = process.attach();
/// # let page = process.allocate(4096, PAGE_READWRITE).unwrap();
/// let region = SecureRegion::new(page, 8, ProbeMode::ReadOnly)?;
/// let _reader: Reader<'_, RegionHold> = region.reader(); // the same type as Reader<'_>
/// # Ok::<(), mmsecure::Error>(())
/// ```
#[derive(Debug)]
pub struct RegionHold(());

impl CursorHold for RegionHold {}

impl sealed::Sealed for RegionHold {
    #[inline]
    fn duplicate(&self) -> RegionHold {
        RegionHold(())
    }
}

/// A slice's cursor's hold: a reference on the slice's process (`ObfReferenceObject`) and a hold
/// on its double-fetch request, both given up when the cursor is dropped. Each cursor (a
/// clone's too) has its own.
///
/// ```
/// use mmsecure::{Reader, SliceHold, UserSlice};
/// # use mmsecure::host::{Process, PAGE_READWRITE};
/// # let process = Process::new();
/// # let _in_process = process.attach();
/// # let page = process.allocate(4096, PAGE_READWRITE).unwrap();
/// let reader: Reader<'static, SliceHold> = UserSlice::new(page, 8)?.reader();
/// assert_eq!(process.driver_references(), 1);
/// drop(reader);
/// assert_eq!(process.driver_references(), 0);
/// # Ok::<(), mmsecure::Error>(())
/// ```
#[derive(Debug)]
pub struct SliceHold {
    process: PEPROCESS,
    request: usize,
}

impl SliceHold {
    /// Takes over a reference on `process` and a hold on `request`.
    #[inline]
    pub(crate) fn adopt(process: PEPROCESS, request: usize) -> SliceHold {
        SliceHold { process, request }
    }
}

impl CursorHold for SliceHold {}

impl sealed::Sealed for SliceHold {
    fn duplicate(&self) -> SliceHold {
        mmsecure_sys::report_request_retain(self.request);
        // Above DISPATCH_LEVEL, `ObfReferenceObject` bug checks: the clone takes no reference and
        // names no process, so that every copy through it is `WrongProcess`.
        if self.process.is_null() || kernel::irql() > context::OBJECT_MAX {
            return SliceHold::adopt(ptr::null_mut(), self.request);
        }
        // SAFETY: this hold has a reference on the process, so the object is alive; taking one
        // more only adds a count, at the IRQL <= DISPATCH_LEVEL checked just now.
        unsafe { kernel::reference(self.process) };
        SliceHold::adopt(self.process, self.request)
    }

    fn process(&self) -> Option<PEPROCESS> {
        Some(if self.process.is_null() {
            NO_PROCESS
        } else {
            self.process
        })
    }
}

impl Drop for SliceHold {
    #[inline]
    fn drop(&mut self) {
        mmsecure_sys::report_request_end(self.request);
        if !self.process.is_null() {
            // SAFETY: this hold's own reference, given up once, here.
            unsafe { context::dereference(self.process) };
        }
    }
}

/// What the span of a clone that could take no process reference names: no process object has
/// this address (it is not even aligned), so `IoGetCurrentProcess` never returns it, and every
/// copy through the clone is [`Error::WrongProcess`] at no cost to the others' copies.
pub(crate) const NO_PROCESS: PEPROCESS = usize::MAX as PEPROCESS;

/// A position in a [`Span`], with what keeps the span meaningful (`H`).
pub(crate) struct Cursor<'r, H> {
    pub(crate) span: Span,
    pub(crate) offset: usize,
    hold: H,
    /// The region borrowed, for a region's cursor. Only this field names `'r`, and it has no
    /// drop glue (drop check looks at `H`, which names no lifetime).
    _borrow: PhantomData<&'r ()>,
    /// Tied to a process context: not `Send`, not `Sync`.
    _context: PhantomData<*mut ()>,
}

impl<'r> Cursor<'r, RegionHold> {
    /// A cursor at the start of a region's span, borrowing what the region holds.
    #[inline]
    pub(crate) fn borrowed(span: Span) -> Cursor<'r, RegionHold> {
        Cursor::new(span, RegionHold(()))
    }
}

impl<'r, H: CursorHold> Cursor<'r, H> {
    #[inline]
    pub(crate) fn new(span: Span, hold: H) -> Cursor<'r, H> {
        Cursor {
            span,
            offset: 0,
            hold,
            _borrow: PhantomData,
            _context: PhantomData,
        }
    }

    /// A second cursor at the same place, with a hold of its own.
    #[inline]
    pub(crate) fn duplicate(&self) -> Cursor<'r, H> {
        let hold = sealed::Sealed::duplicate(&self.hold);
        let mut span = self.span;
        if let Some(process) = sealed::Sealed::process(&hold) {
            span.process = process;
        }
        let mut copy = Cursor::new(span, hold);
        copy.offset = self.offset;
        copy
    }

    /// Bytes left.
    #[inline]
    pub(crate) fn len(&self) -> usize {
        self.span.len - self.offset
    }

    /// Moves on `n` bytes; more than are left is [`Error::OutOfBounds`], and the cursor stays.
    #[inline]
    pub(crate) fn skip(&mut self, n: usize) -> Result<(), CursorError> {
        if n > self.len() {
            return Err(self.out_of_bounds(n));
        }
        self.offset += n;
        Ok(())
    }

    /// Copies the next `len` bytes into `dst` and moves past them.
    ///
    /// # Safety
    ///
    /// `dst` is the driver's own memory, valid for `len` bytes of writes.
    #[inline]
    pub(crate) unsafe fn read_into(&mut self, dst: *mut u8, len: usize) -> Result<(), CursorError> {
        // SAFETY: the caller vouches for `dst`.
        let result = unsafe { self.span.read_into(self.offset, dst, len) };
        self.advance(len, result)
    }

    /// Copies the next `T` out and moves past it.
    #[inline]
    pub(crate) fn read_value<T: AnyBitPattern>(&mut self) -> Result<T, CursorError> {
        let () = crate::stack_bound::StackBound::<T>::CHECK;
        let result = self.span.read_value::<T>(self.offset);
        self.advance(size_of::<T>(), result)
    }

    /// Copies `data` in at the cursor and moves past it.
    #[inline]
    pub(crate) fn write(&mut self, data: &[u8]) -> Result<(), CursorError> {
        let result = self.span.write(self.offset, data);
        self.advance(data.len(), result)
    }

    /// Moves the cursor past an access of `len` bytes that succeeded or faulted (a fault touched
    /// some of them); any other error touched no user memory and leaves it.
    #[inline]
    fn advance<T>(&mut self, len: usize, result: Result<T, Error>) -> Result<T, CursorError> {
        match result {
            Ok(value) => {
                self.offset += len;
                Ok(value)
            }
            Err(error) => Err(self.failed(len, error)),
        }
    }

    #[cold]
    fn failed(&mut self, len: usize, error: Error) -> CursorError {
        let at = self.offset;
        if let Error::Fault { .. } = error {
            self.offset += len;
        }
        CursorError::new(at, error)
    }

    #[cold]
    pub(crate) fn out_of_bounds(&self, len: usize) -> CursorError {
        CursorError::new(
            self.offset,
            Error::OutOfBounds {
                offset: self.offset,
                len,
                region_len: self.span.len,
            },
        )
    }
}
