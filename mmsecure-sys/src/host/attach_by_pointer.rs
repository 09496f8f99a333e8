//! Attaching by `PEPROCESS`, as a driver's worker does (`KeStackAttachProcess(process, ..)`): it
//! holds no [`Process`](super::Process), only the pointer a region or a reference gave it.
//!
//! `KeStackAttachProcess` takes no reference on the process: the caller must hold one until it
//! has detached. An attach made here is therefore not counted as one. If the last reference on
//! the process object goes while such an attach stands (a region's drop inside the attach, the
//! caller's own reference dropped before the detach), Windows frees the `EPROCESS` under the
//! attached thread, whose detach then works on freed memory; the model stops the caller there
//! (see [`object`](super::object)'s `dereference`).

use core::fmt;
use core::sync::atomic::Ordering;

use super::object;
use super::process::ProcessInner;
use super::thread::{require_irql, stop, Attach};
use crate::{DISPATCH_LEVEL, PEPROCESS};

/// Attaches this thread to the process `eprocess` names until the guard drops, as
/// `KeStackAttachProcess(eprocess, &mut apc_state)` does (`KeUnstackDetachProcess` on drop):
/// for a test of a worker that holds a `PEPROCESS` (from a region, or a reference of its own),
/// not a [`Process`](super::Process).
///
/// Like the kernel's, this attach takes no reference: hold one (`ObfReferenceObject`, or
/// mmsecure's `ProcessRef`) from before the attach until after the detach. The last reference
/// dropped while the attach stands stops the caller. A pointer that names no live process
/// object (its last reference gone), or a call above `DISPATCH_LEVEL`, stops the caller too.
///
/// ```
/// use mmsecure_sys::host::{self, Process};
/// use mmsecure_sys::{IoGetCurrentProcess, ObfDereferenceObject, ObfReferenceObject};
///
/// let process = Process::new();
/// let eprocess = process.eprocess();
/// // SAFETY: a live process object, at PASSIVE_LEVEL.
/// unsafe { ObfReferenceObject(eprocess.cast()) }; // the worker's own reference
/// drop(process); // the user's handle goes: only the reference keeps the object
///
/// let attached = host::attach_eprocess(eprocess);
/// // SAFETY: the model answers from a thread-local.
/// assert_eq!(unsafe { IoGetCurrentProcess() }, eprocess);
/// drop(attached); // detach first...
/// // SAFETY: the reference taken above, released once, after the detach.
/// unsafe { ObfDereferenceObject(eprocess.cast()) }; // ...then dereference
/// ```
pub fn attach_eprocess(eprocess: PEPROCESS) -> AttachByPointer {
    require_irql("KeStackAttachProcess", DISPATCH_LEVEL);
    let process = match object::process_of(eprocess) {
        Some(process) => process,
        None => stop(format_args!(
            "KeStackAttachProcess({eprocess:p}) on no live process object: a stale or made-up \
             pointer (no bug check of its own: Windows would attach to freed memory); hold a \
             reference on the process from before the attach until after the detach"
        )),
    };
    process
        .inner
        .unreferenced_attaches
        .fetch_add(1, Ordering::SeqCst);
    let attach = process.attach();
    AttachByPointer {
        inner: &*process.inner,
        attach,
    }
}

/// An attach made by [`attach_eprocess`]; dropping it detaches (`KeUnstackDetachProcess`).
/// Neither `Send` nor `Sync`, as [`Attach`].
#[must_use = "the thread is attached only until this guard is dropped"]
pub struct AttachByPointer {
    /// The process attached to, kept alive by `attach` until after this guard's `drop`.
    inner: *const ProcessInner,
    attach: Attach,
}

impl Drop for AttachByPointer {
    fn drop(&mut self) {
        // SAFETY: `self.attach` holds the process (as the thread's current process, or as the
        // context a later attach restores), and is dropped only after this runs.
        let inner = unsafe { &*self.inner };
        inner.unreferenced_attaches.fetch_sub(1, Ordering::SeqCst);
    }
}

impl fmt::Debug for AttachByPointer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("AttachByPointer")
            .field("attach", &self.attach)
            .finish()
    }
}
