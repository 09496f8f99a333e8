//! [`Misuse`]: what the kernel silently tolerates and the model records, so a test can assert
//! there was none.
//!
//! `MmUnsecureVirtualMemory` called in another process than the one that secured the range, or
//! after that process exited, finds nothing and returns (modern kernels; DOCS require the right
//! process and a live one). The model does the same and records the call: against the process the
//! call ran in, against the process that issued the handle, and in a global list that also holds
//! calls made with no process at all.
//!
//! A process in strict mode ([`Process::set_strict`](super::Process::set_strict)) stops the
//! whole test binary at the first misuse recorded against it, as Driver Verifier would bug check:
//! the misuse happens inside an `extern "C"` routine, which cannot unwind, so the model prints the
//! misuse and aborts instead of panicking.

use core::fmt;
use std::sync::{Arc, Mutex};
use std::vec::Vec;

use super::process::{Process, ProcessInner};
use super::{lock, thread};

/// What went wrong in a call the kernel tolerates.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum MisuseKind {
    /// `MmUnsecureVirtualMemory` with a handle issued in another process (it must be called in
    /// the securing process' context: attach first).
    WrongProcess,
    /// `MmUnsecureVirtualMemory` in a process that has exited (exit already dropped every
    /// secure of the process).
    AfterExit,
    /// `MmUnsecureVirtualMemory` with a handle no live secure has: never issued, or unsecured
    /// already (a double unsecure), or of a process that no longer exists.
    UnknownHandle,
    /// `MmUnsecureVirtualMemory` on a thread in no process' context (the System process, which
    /// has no user memory).
    NoProcess,
}

/// One recorded misuse.
///
/// ```
/// use mmsecure_sys::host::{MisuseKind, Process, PAGE_READWRITE};
/// use mmsecure_sys::{MmSecureVirtualMemory, MmUnsecureVirtualMemory};
///
/// let app = Process::new();
/// let other = Process::new();
/// let page = app.allocate(4096, PAGE_READWRITE).unwrap();
/// let handle = {
///     let _in = app.attach();
///     // SAFETY: the model checks the range itself.
///     unsafe { MmSecureVirtualMemory(page.cast(), 4096, PAGE_READWRITE) }
/// };
/// {
///     let _in = other.attach();
///     // SAFETY: a live handle; the wrong process is the point of this example.
///     unsafe { MmUnsecureVirtualMemory(handle) }; // does nothing, as in the kernel
/// }
/// let misuse = &app.misuses()[0];
/// assert_eq!(misuse.kind, MisuseKind::WrongProcess);
/// assert_eq!(misuse.process, Some(other.id()));
/// assert_eq!(misuse.owner, Some(app.id()));
/// assert_eq!(app.secure_count(), 1); // still secured
/// # let _in = app.attach();
/// # unsafe { MmUnsecureVirtualMemory(handle) };
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Misuse {
    /// What went wrong.
    pub kind: MisuseKind,
    /// The handle passed.
    pub handle: usize,
    /// The id of the process the call ran in, `None` in no process (System).
    pub process: Option<u64>,
    /// The id of the process that issued the handle, if the model knows it.
    pub owner: Option<u64>,
}

impl fmt::Display for Misuse {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{:?}: MmUnsecureVirtualMemory({:#x}) ",
            self.kind, self.handle
        )?;
        match self.process {
            Some(id) => write!(f, "in process {id}")?,
            None => write!(f, "in no process context (System)")?,
        }
        match self.owner {
            Some(id) => write!(f, ", handle issued in process {id}"),
            None => write!(f, ", handle not known to be live"),
        }
    }
}

/// Every misuse recorded in this test binary, in order.
static ALL: Mutex<Vec<Misuse>> = Mutex::new(Vec::new());

/// Every misuse recorded so far in this binary, by any process or none, in order.
///
/// Tests run in parallel threads of one binary; to assert that a test's own code made no
/// misuse, prefer [`Process::misuses`](super::Process::misuses) on its own processes.
///
/// ```
/// use mmsecure_sys::MmUnsecureVirtualMemory;
/// use mmsecure_sys::host::{misuses, MisuseKind};
///
/// // No process attached: this thread is in the System process.
/// let bogus: usize = 0x5EC0_0000_0000_0001;
/// // SAFETY: a bogus handle is what this example shows being recorded.
/// unsafe { MmUnsecureVirtualMemory(bogus as _) };
/// assert!(misuses().iter().any(|m| m.kind == MisuseKind::NoProcess && m.handle == bogus));
/// ```
pub fn misuses() -> Vec<Misuse> {
    lock(&ALL).clone()
}

/// Records `misuse` globally, against the process the call ran in and against the handle's
/// owner, and stops the binary if either is strict.
pub(crate) fn record(misuse: Misuse, current: Option<&Process>, owner: Option<&Arc<ProcessInner>>) {
    lock(&ALL).push(misuse.clone());
    let mut strict = false;
    if let Some(current) = current {
        current.inner.record(misuse.clone());
        strict |= current.is_strict();
    }
    if let Some(owner) = owner {
        let same = current.map_or(false, |c| Arc::ptr_eq(&c.inner, owner));
        if !same {
            owner.record(misuse.clone());
        }
        strict |= owner.is_strict();
    }
    if strict {
        thread::stop(format_args!(
            "mmsecure host model, strict mode: misuse: {misuse}"
        ));
    }
}
