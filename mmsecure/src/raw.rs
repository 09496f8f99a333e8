//! [`RawRegion`]: a secure taken out of its [`SecureRegion`](crate::SecureRegion) to wait elsewhere, and
//! [`FromRawError`], which hands it back when it cannot be rebuilt yet.

use core::ffi::c_void;
use core::fmt;
use core::mem::ManuallyDrop;
use core::ptr::NonNull;

use mmsecure_sys::PEPROCESS;

use crate::{context, Error, ProbeMode, ProcessRef, UserPtr};

/// A [`SecureRegion`](crate::SecureRegion) taken apart by [`SecureRegion::into_raw`](crate::SecureRegion::into_raw): the secure handle, the range it
/// was made for, and the reference on the securing process. It cannot be copied or cloned, and
/// only [`into_raw`](crate::SecureRegion::into_raw) makes one, so a secure is rebuilt at most once.
///
/// It is `Send` and `Sync`, so it can wait in a driver's queue and be finished on another
/// thread; [`SecureRegion::from_raw`](crate::SecureRegion::from_raw) rebuilds it there once the thread is attached to
/// [`eprocess`](Self::eprocess). Dropped, it is released as a region is: unsecured if the thread is
/// in the securing process's context at `APC_LEVEL` or below, else left standing until the
/// process exits (see [`abandoned_secures`](crate::abandoned_secures)).
///
/// ```
/// use mmsecure::{ProbeMode, SecureRegion};
/// use mmsecure::host::{AccessMode, Process, PAGE_READWRITE};
///
/// let process = Process::new();
/// let page = process.allocate(4096, PAGE_READWRITE).unwrap();
/// let raw = {
///     let _in_process = process.attach();
///     SecureRegion::new(page, 4096, ProbeMode::ReadWrite)?.into_raw()
/// };
/// assert_eq!(raw.eprocess(), process.eprocess());
/// assert!(process.free(page, AccessMode::User).is_err()); // still secured
///
/// // Another thread finishes the work, attached to the process.
/// let worker = process.clone();
/// std::thread::spawn(move || {
///     let _in_process = worker.attach();
///     let region = SecureRegion::from_raw(raw).unwrap();
///     region.write_slice(0, b"done").unwrap();
/// })
/// .join()
/// .unwrap();
/// assert!(process.free(page, AccessMode::User).is_ok()); // the worker's drop unsecured it
/// # Ok::<(), mmsecure::Error>(())
/// ```
#[derive(PartialEq, Eq)]
#[must_use = "a dropped raw region is released like a region: rebuild it with from_raw"]
pub struct RawRegion {
    handle: NonNull<c_void>,
    address: NonNull<u8>,
    len: usize,
    mode: ProbeMode,
    /// Referenced: the reference moves with the raw region.
    process: PEPROCESS,
}

// SAFETY: a `RawRegion` holds a secure handle and a referenced process pointer that nothing here
// dereferences; the kernel ties neither to a thread. Rebuilding (`from_raw`) and dropping check
// the current thread's process and IRQL, so it may move to, and be shared with, any thread.
unsafe impl Send for RawRegion {}
// SAFETY: as for `Send`: shared access only reads the plain fields.
unsafe impl Sync for RawRegion {}

impl RawRegion {
    pub(crate) fn new(
        handle: NonNull<c_void>,
        address: NonNull<u8>,
        len: usize,
        mode: ProbeMode,
        process: PEPROCESS,
    ) -> RawRegion {
        RawRegion {
            handle,
            address,
            len,
            mode,
            process,
        }
    }

    /// The parts, for a region that takes over the secure and the reference.
    pub(crate) fn into_parts(self) -> (NonNull<c_void>, NonNull<u8>, usize, ProbeMode, PEPROCESS) {
        let this = ManuallyDrop::new(self);
        (this.handle, this.address, this.len, this.mode, this.process)
    }

    /// The value the secure routine returned, good only for `MmUnsecureVirtualMemory` in
    /// [`eprocess`](Self::eprocess)'s context.
    ///
    /// ```
    /// # use mmsecure::{ProbeMode, SecureRegion, UserPtr};
    /// # use mmsecure::host::{Process, PAGE_READWRITE};
    /// # let process = Process::new();
    /// # let _in_process = process.attach();
    /// # let page = process.allocate(4096, PAGE_READWRITE).unwrap();
    /// let raw = SecureRegion::new(page, 16, ProbeMode::ReadOnly)?.into_raw();
    /// assert!(!raw.handle().is_null());
    /// # Ok::<(), mmsecure::Error>(())
    /// ```
    #[must_use]
    pub fn handle(&self) -> mmsecure_sys::HANDLE {
        self.handle.as_ptr()
    }

    /// The first byte of the range.
    ///
    /// ```
    /// # use mmsecure::{ProbeMode, SecureRegion, UserPtr};
    /// # use mmsecure::host::{Process, PAGE_READWRITE};
    /// # let process = Process::new();
    /// # let _in_process = process.attach();
    /// # let page = process.allocate(4096, PAGE_READWRITE).unwrap();
    /// let raw = SecureRegion::new(page, 16, ProbeMode::ReadOnly)?.into_raw();
    /// assert_eq!(raw.address(), UserPtr::from(page));
    /// assert_eq!(raw.len(), 16);
    /// assert_eq!(raw.mode(), ProbeMode::ReadOnly);
    /// # Ok::<(), mmsecure::Error>(())
    /// ```
    #[must_use]
    pub fn address(&self) -> UserPtr {
        UserPtr::from(self.address.as_ptr())
    }

    /// The length of the range in bytes; never zero.
    #[allow(clippy::len_without_is_empty)]
    #[must_use]
    pub fn len(&self) -> usize {
        self.len
    }

    /// The probe mode of the secure.
    #[must_use]
    pub fn mode(&self) -> ProbeMode {
        self.mode
    }

    /// The process that secured the range; the raw region holds a reference on it.
    #[must_use]
    pub fn eprocess(&self) -> PEPROCESS {
        self.process
    }

    /// A reference of the caller's own on [`eprocess`](Self::eprocess): for a worker that attaches
    /// to it, so that the process outlives the attach even when this raw region's reference
    /// (released when the region it is rebuilt into drops) is the last other one.
    /// [`Error::IrqlTooHigh`] above `DISPATCH_LEVEL`.
    ///
    /// ```
    /// use mmsecure::{ProbeMode, SecureRegion};
    /// use mmsecure::host::{Process, PAGE_READWRITE};
    ///
    /// let process = Process::new();
    /// let _in_process = process.attach();
    /// let page = process.allocate(4096, PAGE_READWRITE).unwrap();
    /// let raw = SecureRegion::new(page, 64, ProbeMode::ReadWrite)?.into_raw();
    /// let keep = raw.process_ref()?;
    /// assert_eq!(keep.as_ptr(), raw.eprocess());
    /// assert_eq!(process.driver_references(), 2); // the raw region's, and this one
    /// # Ok::<(), mmsecure::Error>(())
    /// ```
    pub fn process_ref(&self) -> Result<ProcessRef, Error> {
        // SAFETY: this raw region holds a reference on its process.
        unsafe { ProcessRef::to_referenced(self.process) }
    }

    /// Gives the secure up without unsecuring it, and releases the process reference: for a
    /// request whose process has exited (a process-notify routine or the IRP's cancellation
    /// says so), where exit already dropped the secure and there is nothing left to unsecure.
    ///
    /// Called while the process still runs, the secure stays until the process exits; nothing
    /// worse happens, so this is safe, but it is then a leak. Unlike a drop in the wrong
    /// context it is not counted in [`abandoned_secures`](crate::abandoned_secures): this is
    /// the driver's stated intent. Above `DISPATCH_LEVEL` the reference is kept (see there).
    ///
    /// ```
    /// use mmsecure::{ProbeMode, SecureRegion};
    /// use mmsecure::host::{Process, PAGE_READWRITE};
    ///
    /// let process = Process::new();
    /// let page = process.allocate(4096, PAGE_READWRITE).unwrap();
    /// let raw = {
    ///     let _in_process = process.attach();
    ///     SecureRegion::new(page, 64, ProbeMode::ReadWrite)?.into_raw()
    /// };
    /// process.exit(); // the requester went away; its secures with it
    /// raw.leak(); // from a worker thread in no process context
    /// assert_eq!(process.driver_references(), 0);
    /// assert!(process.misuses().is_empty());
    /// # Ok::<(), mmsecure::Error>(())
    /// ```
    pub fn leak(self) {
        let (_handle, _address, _len, _mode, process) = self.into_parts();
        // SAFETY: the reference this raw region carried, given up once.
        unsafe { context::dereference(process) };
    }
}

impl Drop for RawRegion {
    fn drop(&mut self) {
        // SAFETY: a raw region owns its secure and its process reference (from `into_raw`, or
        // handed back by a failed `from_raw`); `into_parts` moves them out without dropping, so
        // this runs only for a raw region that still owns them, once.
        unsafe { context::release(self.handle, self.process) };
    }
}

impl fmt::Debug for RawRegion {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RawRegion")
            .field("handle", &self.handle)
            .field("address", &self.address)
            .field("len", &self.len)
            .field("mode", &self.mode)
            .field("process", &self.process)
            .finish()
    }
}

/// [`SecureRegion::from_raw`](crate::SecureRegion::from_raw) refused: why, and the [`RawRegion`], unchanged, to try again in
/// the right context. Dropping the error drops the raw region (released as a region is: in the
/// wrong context, left standing until the process exits and counted in
/// [`abandoned_secures`](crate::abandoned_secures)).
///
/// There is no `From<FromRawError> for Error`, on purpose: `?` would drop the raw region where
/// `from_raw` has just said it cannot be released, and no retry would be possible. Take the raw
/// region back with [`into_raw`](Self::into_raw), and the cause with [`error`](Self::error).
/// *Changed in issue #22*: the conversion existed before.
///
/// ```compile_fail
/// use mmsecure::{Error, RawRegion, SecureRegion};
///
/// fn finish(raw: RawRegion) -> Result<(), Error> {
///     let region = SecureRegion::from_raw(raw)?; // does not compile: no From<FromRawError>
///     region.write_slice(0, b"done")
/// }
/// ```
///
/// ```
/// use mmsecure::{Error, ProbeMode, SecureRegion};
/// use mmsecure::host::{raise_irql, Process, PAGE_READWRITE};
/// use mmsecure::sys::DISPATCH_LEVEL;
///
/// let process = Process::new();
/// let _in_process = process.attach();
/// let page = process.allocate(4096, PAGE_READWRITE).unwrap();
/// let raw = SecureRegion::new(page, 64, ProbeMode::ReadWrite)?.into_raw();
///
/// let raised = raise_irql(DISPATCH_LEVEL);
/// let refused = SecureRegion::from_raw(raw).unwrap_err();
/// assert_eq!(refused.error(), Error::IrqlTooHigh { irql: 2, max: 1 });
/// drop(raised);
/// let raw = refused.into_raw(); // nothing lost: try again where it can be rebuilt
/// let region = SecureRegion::from_raw(raw).expect("in the process, at PASSIVE_LEVEL");
/// region.write_slice(0, b"done")?;
/// # Ok::<(), Error>(())
/// ```
#[must_use = "dropping it drops the raw region where it cannot be released: take it back with into_raw"]
pub struct FromRawError {
    raw: RawRegion,
    error: Error,
}

impl FromRawError {
    pub(crate) fn new(raw: RawRegion, error: Error) -> FromRawError {
        FromRawError { raw, error }
    }

    /// Why the region was not rebuilt: [`Error::WrongProcess`] or [`Error::IrqlTooHigh`].
    #[must_use]
    pub fn error(&self) -> Error {
        self.error
    }

    /// The raw region, unchanged.
    pub fn into_raw(self) -> RawRegion {
        self.raw
    }
}

impl fmt::Debug for FromRawError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("FromRawError")
            .field("error", &self.error)
            .field("raw", &self.raw)
            .finish()
    }
}

impl fmt::Display for FromRawError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "the raw region cannot be rebuilt here: {}", self.error)
    }
}

#[cfg(feature = "std")]
#[cfg_attr(docsrs, doc(cfg(feature = "std")))]
impl std::error::Error for FromRawError {}
