//! [`Misuse`]: what the kernel silently tolerates and the model records, so a test can assert
//! there was none.
//!
//! One thing is recorded: a secure that a safe wrapper could not unsecure where it was dropped
//! (in another process context, or above `APC_LEVEL`), and so left standing until its process
//! exits, reported through [`report_abandoned_secure`](crate::report_abandoned_secure). What the
//! kernel does *not* tolerate, an unsecure in the wrong process, a second unsecure of one handle,
//! stops the binary instead (see the rules in the [module docs](super)).
//!
//! `MmUnsecureVirtualMemory` in a process that has exited is not recorded: the kernel returns
//! once the address space is deleted (WRK mapview.c, `MiUnsecureVirtualMemory`, L6730-L6736),
//! and a driver finishing a pended IRP cannot close the race with the exit. *Changed in issue
//! #22*: it was recorded as `AfterExit`, and strict mode stopped the binary.
//!
//! A misuse is recorded against the process the call ran in, against the process that issued
//! the handle, and in a global list. A process in strict mode
//! ([`Process::set_strict`](super::Process::set_strict)) stops the whole test binary at the first
//! misuse recorded against it, as Driver Verifier would bug check: the misuse happens inside an
//! `extern "C"` routine, which cannot unwind, so the model prints the misuse and aborts instead of
//! panicking.

use core::fmt;
use std::sync::{Arc, Mutex};
use std::vec::Vec;

use super::process::{Process, ProcessInner};
use super::{lock, object, secure, thread};
use crate::{HANDLE, PEPROCESS};

/// What went wrong in a call the kernel tolerates.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum MisuseKind {
    /// A secure left standing by a wrapper dropped where it could not unsecure: in another
    /// process context, or above `APC_LEVEL`. It stays until its process exits.
    Abandoned,
}

/// One recorded misuse.
///
/// ```
/// use mmsecure_sys::host::{MisuseKind, Process, PAGE_READWRITE};
/// use mmsecure_sys::{MmSecureVirtualMemory, MmUnsecureVirtualMemory};
///
/// let (app, other) = (Process::new(), Process::new());
/// let page = app.allocate(4096, PAGE_READWRITE).unwrap();
/// let in_app = app.attach();
/// // SAFETY: the model checks the range itself.
/// let handle = unsafe { MmSecureVirtualMemory(page.cast(), 4096, PAGE_READWRITE) };
/// drop(in_app);
/// // A wrapper dropped in another process cannot unsecure there, and says so.
/// let _in_other = other.attach();
/// mmsecure_sys::report_abandoned_secure(handle, app.eprocess());
/// let misuse = &app.misuses()[0];
/// assert_eq!(misuse.kind, MisuseKind::Abandoned);
/// assert_eq!(misuse.pid, Some(other.id()));
/// assert_eq!(misuse.owner_pid, Some(app.id()));
///
/// // An unsecure after the exit is no misuse: the kernel returns (WRK).
/// let in_app = app.attach();
/// // SAFETY: the model checks the range itself.
/// let late = unsafe { MmSecureVirtualMemory(page.cast(), 4096, PAGE_READWRITE) };
/// app.exit();
/// // SAFETY: the handle was live until the exit.
/// unsafe { MmUnsecureVirtualMemory(late) };
/// assert_eq!(app.misuses().len(), 1);
/// ```
#[derive(Clone, PartialEq, Eq)]
pub struct Misuse {
    /// What went wrong.
    pub kind: MisuseKind,
    /// The handle passed.
    pub handle: usize,
    /// The id ([`Process::id`](super::Process::id)) of the process the call ran in, `None` in no
    /// process (System).
    pub pid: Option<u64>,
    /// The id of the process that issued the handle, if the model knows it.
    pub owner_pid: Option<u64>,
}

/// `Debug` prints the handle in hex, as handles are written everywhere else (`Display`, a
/// debugger): `Misuse { kind: Abandoned, handle: 0x1f40, pid: Some(3), owner_pid: Some(3) }`.
impl fmt::Debug for Misuse {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Misuse")
            .field("kind", &self.kind)
            .field("handle", &format_args!("{:#x}", self.handle))
            .field("pid", &self.pid)
            .field("owner_pid", &self.owner_pid)
            .finish()
    }
}

impl fmt::Display for Misuse {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.kind {
            MisuseKind::Abandoned => {
                write!(f, "Abandoned: secure {:#x} left standing ", self.handle)?
            }
        }
        match self.pid {
            Some(id) => write!(f, "in process {id}")?,
            None => write!(f, "in no process context (System)")?,
        }
        match self.owner_pid {
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
/// use mmsecure_sys::host::{misuses, MisuseKind, Process, PAGE_READWRITE};
/// use mmsecure_sys::MmSecureVirtualMemory;
///
/// let app = Process::new();
/// let page = app.allocate(4096, PAGE_READWRITE).unwrap();
/// let _in = app.attach();
/// // SAFETY: the model checks the range itself.
/// let handle = unsafe { MmSecureVirtualMemory(page.cast(), 4096, PAGE_READWRITE) };
/// // A wrapper that could not unsecure here reports the secure it leaves standing.
/// mmsecure_sys::report_abandoned_secure(handle, app.eprocess());
/// assert!(misuses().iter().any(|m| m.kind == MisuseKind::Abandoned && m.handle == handle as usize));
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

/// A wrapper left the secure `handle`, made in the process `process`, standing: recorded as
/// [`MisuseKind::Abandoned`] against that process (and the current one).
pub(crate) fn abandoned(handle: HANDLE, process: PEPROCESS) {
    let handle = handle as usize;
    let owner = object::process_of(process);
    let current = thread::current_process();
    let misuse = Misuse {
        kind: MisuseKind::Abandoned,
        handle,
        pid: current.as_ref().map(Process::id),
        owner_pid: secure::owner(handle)
            .map(|owner| owner.pid)
            .or_else(|| owner.as_ref().map(|owner| owner.id())),
    };
    record(
        misuse,
        current.as_ref(),
        owner.as_ref().map(|owner| &owner.inner),
    );
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::format;

    #[test]
    fn debug_prints_the_handle_in_hex() {
        let misuse = Misuse {
            kind: MisuseKind::Abandoned,
            handle: 0x1f40,
            pid: Some(3),
            owner_pid: None,
        };
        assert_eq!(
            format!("{misuse:?}"),
            "Misuse { kind: Abandoned, handle: 0x1f40, pid: Some(3), owner_pid: None }"
        );
    }
}
