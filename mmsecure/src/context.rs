//! The context a region is made, used and released in: the IRQL, the process, and what happens
//! to a secure that cannot be released where its region is dropped.

use core::ffi::c_void;
use core::ptr::NonNull;
use core::sync::atomic::{AtomicUsize, Ordering};

use mmsecure_sys::{APC_LEVEL, DISPATCH_LEVEL, PEPROCESS};

use crate::kernel;

/// The highest IRQL at which the secure routines run, and at which user memory is touched
/// (`APC_LEVEL`): above it a page fault on pageable user memory bug checks.
pub(crate) const SECURE_MAX: u8 = APC_LEVEL;
/// `ObfReferenceObject` and `ObfDereferenceObject` run at `DISPATCH_LEVEL` at most.
pub(crate) const OBJECT_MAX: u8 = DISPATCH_LEVEL;

// The IRQL check lives beside the IRQL read, in `kernel`, which calls nothing of this module's.
pub(crate) use crate::kernel::require_irql;

/// How many secures were left standing because their region was dropped where it could not be
/// unsecured.
static ABANDONED: AtomicUsize = AtomicUsize::new(0);

/// How many secures this driver has left standing so far because a [`SecureRegion`] (or a
/// [`RawRegion`]) was dropped where `MmUnsecureVirtualMemory` must not run: in another process
/// context than the one that secured it, or above `APC_LEVEL`.
///
/// Such a drop does not call the kernel. The secure stays until its process exits, which drops
/// every secure of the process; until then the user cannot free or re-protect that memory. Each
/// one is a bug in the driver (drop regions in their process, at `PASSIVE_LEVEL` or
/// `APC_LEVEL`), made harmless: a driver can log this count. In the host model each one is also
/// a `Misuse` of kind `Abandoned` on the process. The count is global, so under cargo's parallel
/// test threads another test's drop can move it: a test asserts on its own process instead,
/// `assert_eq!(process.abandoned_secures(), 0)` (`host::Process::abandoned_secures`).
///
/// A region dropped above `DISPATCH_LEVEL` also keeps its reference on the process object
/// (`ObfDereferenceObject` needs `DISPATCH_LEVEL` or below): the object is then never freed.
///
/// [`SecureRegion`]: crate::SecureRegion
/// [`RawRegion`]: crate::RawRegion
///
/// ```
/// use mmsecure::{ProbeMode, SecureRegion};
/// use mmsecure::host::{MisuseKind, Process, PAGE_READWRITE};
///
/// let (app, other) = (Process::new(), Process::new());
/// let page = app.allocate(4096, PAGE_READWRITE).unwrap();
/// let in_app = app.attach();
/// let region = SecureRegion::new(page, 4096, ProbeMode::ReadWrite)?;
/// drop(in_app);
///
/// let before = mmsecure::abandoned_secures();
/// let in_other = other.attach();
/// drop(region); // in the wrong process: the kernel is not called
/// drop(in_other);
/// assert_eq!(mmsecure::abandoned_secures(), before + 1);
/// assert_eq!(app.misuses()[0].kind, MisuseKind::Abandoned);
/// assert_eq!(app.abandoned_secures(), 1); // this process's count: no other test moves it
/// assert_eq!(app.secure_count(), 1); // left standing...
/// app.exit();
/// assert_eq!(app.secure_count(), 0); // ...until the process exits
/// # Ok::<(), mmsecure::Error>(())
/// ```
#[must_use]
pub fn abandoned_secures() -> usize {
    ABANDONED.load(Ordering::Relaxed)
}

/// Releases a secure and the process reference its region holds: `MmUnsecureVirtualMemory` when
/// this thread is in `process`'s context at `APC_LEVEL` or below, else the secure is abandoned
/// (counted and reported); then `ObfDereferenceObject` where the IRQL allows it.
///
/// # Safety
///
/// `handle` is a live secure made in `process`'s context, released once, here; `process` carries
/// the reference the region took, given up here.
///
/// Always inlined, so that in a driver every secure's own function shows the unsecure (or the
/// call to [`abandon`]) that ends it, which `cargo xtask bench --disasm-check` follows.
#[inline(always)]
pub(crate) unsafe fn release(handle: NonNull<c_void>, process: PEPROCESS) {
    // SAFETY: the caller's contract; its reference keeps `process` from naming another process.
    let irql = unsafe { unsecure_or_abandon(handle, process) };
    // SAFETY: the caller gives up the reference it carries; the IRQL is the one read before the
    // unsecure (which returns at the IRQL it was called at).
    unsafe { dereference_at(process, irql) };
}

/// `MmUnsecureVirtualMemory` when this thread is in `process`'s context at `APC_LEVEL` or
/// below, else the secure is abandoned (counted and reported). Returns the IRQL it read.
///
/// # Safety
///
/// `handle` is a live secure made in `process`'s context, released once, here, and `process`
/// cannot have come to name another process since: the caller holds a reference on it, or it is
/// the process that owns this thread (see `SecureRegion::scope`).
#[inline(always)]
pub(crate) unsafe fn unsecure_or_abandon(handle: NonNull<c_void>, process: PEPROCESS) -> u8 {
    let irql = kernel::irql();
    if irql <= SECURE_MAX && kernel::current_process() == process {
        // SAFETY: the caller's handle is live; this thread is in the securing process's context
        // (the caller's contract makes the pointer comparison an identity) at an IRQL the
        // routine allows.
        unsafe { kernel::unsecure(handle.as_ptr()) };
    } else {
        abandon(handle, process);
    }
    irql
}

/// Leaves a secure standing: counts it and reports it (see [`abandoned_secures`]). Out of line
/// and cold: a bug's path, kept off the drop's, and the one function besides
/// `MmUnsecureVirtualMemory` that the disassembly check accepts as the end of a secure.
#[cold]
#[inline(never)]
fn abandon(handle: NonNull<c_void>, process: PEPROCESS) {
    ABANDONED.fetch_add(1, Ordering::Relaxed);
    mmsecure_sys::report_abandoned_secure(handle.as_ptr(), process);
}

/// `ObfDereferenceObject` where the IRQL allows it (`DISPATCH_LEVEL` or below); above, the
/// reference is kept for good (the object leaks; nothing is corrupted).
///
/// # Safety
///
/// The caller holds a reference on `process` and gives it up.
#[inline]
pub(crate) unsafe fn dereference(process: PEPROCESS) {
    // SAFETY: the caller's contract, at the IRQL read now.
    unsafe { dereference_at(process, kernel::irql()) };
}

/// [`dereference`] at `irql`, the current IRQL as the caller has just read it.
///
/// # Safety
///
/// As for [`dereference`], and `irql` is the current IRQL.
#[inline(always)]
unsafe fn dereference_at(process: PEPROCESS, irql: u8) {
    if irql <= OBJECT_MAX {
        // SAFETY: the caller's reference, given up at an IRQL the routine allows.
        unsafe { kernel::dereference(process) };
    }
}
