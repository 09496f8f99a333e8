//! [`ProcessRef`]: a counted reference on a process object, for a worker that must attach.

use core::fmt;

use mmsecure_sys::PEPROCESS;

use crate::{context, kernel, Error};

/// A reference on a process object (`ObfReferenceObject`), released when dropped
/// (`ObfDereferenceObject`): while it stands, [`as_ptr`](Self::as_ptr) names this process and no
/// other, however many of the process's other references go (its handles, its threads, a
/// region's).
///
/// A worker that attaches to a region's process (`KeStackAttachProcess`) needs one: the attach
/// takes no reference, and the region's own goes when the region is dropped, inside the attach,
/// which may free the process under the attached thread. Take a `ProcessRef` first, attach,
/// drop the region, detach, then drop the `ProcessRef` (`docs/rules.md`, §2).
///
/// Made by [`current`](Self::current), [`SecureRegion::process_ref`](crate::SecureRegion::process_ref),
/// [`RawRegion::process_ref`](crate::RawRegion::process_ref) and [`try_clone`](Self::try_clone),
/// each a new reference.
///
/// `Send` and `Sync`: a referenced `EPROCESS` is an object pointer that any thread may use and
/// dereference; nothing here depends on the thread or the process context it was taken in.
///
/// # IRQL
///
/// Both routines run at `DISPATCH_LEVEL` or below. Taking a reference above it is
/// [`Error::IrqlTooHigh`] (which is why there is no `Clone`: a clone cannot fail). Dropped above
/// it, the reference is kept for good rather than released at an IRQL the routine does not
/// allow: the process object then leaks, and nothing is corrupted.
///
/// ```
/// use mmsecure::{ProbeMode, ProcessRef, SecureRegion};
/// use mmsecure::host::{self, Process, PAGE_READWRITE};
///
/// let process = Process::new();
/// let page = process.allocate(4096, PAGE_READWRITE).unwrap();
/// let (raw, keep) = {
///     let _in_process = process.attach(); // the dispatch routine, in the requester's context
///     let region = SecureRegion::new(page, 64, ProbeMode::ReadWrite)?;
///     (region.into_raw(), ProcessRef::current()?)
/// };
/// assert!(!keep.is_current()); // the dispatch routine has returned
/// process.exit();
/// drop(process); // every other reference but the raw region's goes
///
/// std::thread::spawn(move || {
///     let attached = host::attach_eprocess(keep.as_ptr()); // KeStackAttachProcess
///     assert!(keep.is_current());
///     drop(raw); // unsecures (the process exited: the kernel returns) and dereferences
///     drop(attached); // KeUnstackDetachProcess
///     drop(keep); // the last reference: the process object goes, after the detach
/// })
/// .join()
/// .unwrap();
/// # Ok::<(), mmsecure::Error>(())
/// ```
#[derive(PartialEq, Eq)]
#[must_use = "a process reference does nothing but keep the process object"]
pub struct ProcessRef {
    /// Referenced: this value's reference.
    process: PEPROCESS,
}

// SAFETY: a `ProcessRef` holds a referenced process-object pointer, which the kernel lets any
// thread use and dereference (at `DISPATCH_LEVEL` or below, which `Drop` checks); it is tied to
// no thread and no process context.
unsafe impl Send for ProcessRef {}
// SAFETY: shared access only reads the pointer.
unsafe impl Sync for ProcessRef {}

impl ProcessRef {
    /// A reference on the process whose context this thread is in (`IoGetCurrentProcess`, which
    /// `PsGetCurrentProcess` is): the requester's, in a top-level dispatch routine.
    /// [`Error::IrqlTooHigh`] above `DISPATCH_LEVEL`.
    ///
    /// ```
    /// use mmsecure::{Error, ProcessRef};
    /// use mmsecure::host::{self, Process};
    /// use mmsecure::sys::DISPATCH_LEVEL;
    ///
    /// let process = Process::new();
    /// let _in_process = process.attach();
    /// let reference = ProcessRef::current()?;
    /// assert_eq!(reference.as_ptr(), process.eprocess());
    /// assert_eq!(process.driver_references(), 1);
    /// drop(reference);
    /// assert_eq!(process.driver_references(), 0);
    ///
    /// let _raised = host::raise_irql(DISPATCH_LEVEL + 1);
    /// assert_eq!(ProcessRef::current(), Err(Error::IrqlTooHigh { irql: 3, max: 2 }));
    /// # Ok::<(), Error>(())
    /// ```
    pub fn current() -> Result<ProcessRef, Error> {
        context::require_irql(context::OBJECT_MAX)?;
        Ok(ProcessRef {
            process: kernel::reference_current(),
        })
    }

    /// A new reference on `process`.
    ///
    /// # Safety
    ///
    /// `process` names a live process object, kept so for the call: the caller holds a reference
    /// on it, or it is the process that owns the current thread (which holds one).
    pub(crate) unsafe fn to_referenced(process: PEPROCESS) -> Result<ProcessRef, Error> {
        context::require_irql(context::OBJECT_MAX)?;
        // SAFETY: the caller's contract keeps the object live; the IRQL was checked above.
        unsafe { kernel::reference(process) };
        Ok(ProcessRef { process })
    }

    /// Another reference on the same process (`ObfReferenceObject`); [`Error::IrqlTooHigh`]
    /// above `DISPATCH_LEVEL`.
    ///
    /// ```
    /// use mmsecure::ProcessRef;
    /// use mmsecure::host::Process;
    ///
    /// let process = Process::new();
    /// let _in_process = process.attach();
    /// let first = ProcessRef::current()?;
    /// let second = first.try_clone()?;
    /// assert_eq!(first, second);
    /// assert_eq!(process.driver_references(), 2);
    /// # Ok::<(), mmsecure::Error>(())
    /// ```
    pub fn try_clone(&self) -> Result<ProcessRef, Error> {
        // SAFETY: this value holds a reference on the object.
        unsafe { ProcessRef::to_referenced(self.process) }
    }

    /// The process, to attach to (`KeStackAttachProcess`) or compare: it names this process for
    /// as long as this value stands.
    ///
    /// ```
    /// use mmsecure::ProcessRef;
    /// use mmsecure::host::Process;
    ///
    /// let process = Process::new();
    /// let _in_process = process.attach();
    /// assert_eq!(ProcessRef::current()?.as_ptr(), process.eprocess());
    /// # Ok::<(), mmsecure::Error>(())
    /// ```
    #[must_use]
    pub fn as_ptr(&self) -> PEPROCESS {
        self.process
    }

    /// Whether this thread is in the process's context now (`IoGetCurrentProcess` names it).
    ///
    /// ```
    /// use mmsecure::ProcessRef;
    /// use mmsecure::host::Process;
    ///
    /// let (app, other) = (Process::new(), Process::new());
    /// let in_app = app.attach();
    /// let reference = ProcessRef::current()?;
    /// assert!(reference.is_current());
    /// drop(in_app);
    /// let _in_other = other.attach();
    /// assert!(!reference.is_current());
    /// # Ok::<(), mmsecure::Error>(())
    /// ```
    #[must_use]
    pub fn is_current(&self) -> bool {
        kernel::current_process() == self.process
    }
}

impl Drop for ProcessRef {
    fn drop(&mut self) {
        // SAFETY: this value's reference, given up once; above `DISPATCH_LEVEL` it is kept.
        unsafe { context::dereference(self.process) };
    }
}

impl fmt::Debug for ProcessRef {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_tuple("ProcessRef").field(&self.process).finish()
    }
}
