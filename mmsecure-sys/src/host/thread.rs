//! Per-thread context: the current process (`KeStackAttachProcess`) and the current IRQL
//! (`KeRaiseIrql`), and how the model stops a caller as a bug check would.

use core::cell::{Cell, RefCell};
use core::fmt;
use core::marker::PhantomData;

use std::sync::Arc;

use super::process::{Process, ProcessInner};
use crate::{APC_LEVEL, DISPATCH_LEVEL, KIRQL, PASSIVE_LEVEL, PEPROCESS};

std::thread_local! {
    /// The process whose address space this thread is in; `None` is the System process.
    static CURRENT: RefCell<Current> = const { RefCell::new(Current(None)) };
    /// What the hot paths (`IoGetCurrentProcess`, every guarded copy, every process reference)
    /// read of `CURRENT`, kept beside it as plain values: no borrow, no destructor to register.
    static FAST: Cell<Fast> = const { Cell::new(SYSTEM) };
    static IRQL: Cell<KIRQL> = const { Cell::new(PASSIVE_LEVEL) };
    /// How many [`Attach`] guards of this thread stand.
    static ATTACH_DEPTH: Cell<usize> = const { Cell::new(0) };
    /// The id of the process that owns this thread (0: System), attached elsewhere or not: what
    /// `PsGetCurrentProcessId` answers. Set by [`Process::run_thread`] only.
    static OWN: Cell<u64> = const { Cell::new(0) };
}

/// The id of the process that owns this thread, 0 for System.
#[inline]
pub(crate) fn own_pid() -> u64 {
    OWN.try_with(Cell::get).unwrap_or(0)
}

/// Runs `f` on this thread as a thread of `process`: owned by it (`PsGetCurrentProcessId` names
/// it) and in its context without an attach, as a thread of an application is when it calls a
/// driver. `process` is held until `f` returns, as a thread's reference keeps its process object
/// (WRK ps/create.c `PspCreateThread` L345-L364 takes it; ps/psdelete.c `PspThreadDelete` L1677
/// drops it). Afterwards the thread is a System thread again.
pub(crate) fn as_thread_of<R>(process: &Process, f: impl FnOnce() -> R) -> R {
    struct Own(Option<Process>);
    impl Drop for Own {
        fn drop(&mut self) {
            let _ = OWN.try_with(|own| own.set(0));
            drop(set_current(None));
            drop(self.0.take());
        }
    }
    let own = Own(Some(process.clone()));
    let _ = OWN.try_with(|slot| slot.set(process.id()));
    drop(set_current(Some(process.clone())));
    let result = f();
    drop(own);
    result
}

/// The current process as the hot paths see it.
#[derive(Clone, Copy)]
pub(crate) struct Fast {
    /// Its `EPROCESS` value; 0 for System.
    pub(crate) eprocess: usize,
    /// Its id; 0 for System.
    pub(crate) pid: u64,
    /// Its shared state, kept alive by `CURRENT`'s `Process`; null for System.
    pub(crate) inner: *const ProcessInner,
}

const SYSTEM: Fast = Fast {
    eprocess: 0,
    pid: 0,
    inner: core::ptr::null(),
};

fn fast_of(process: Option<&Process>) -> Fast {
    match process {
        Some(process) => Fast {
            eprocess: process.eprocess() as usize,
            pid: process.id(),
            inner: Arc::as_ptr(&process.inner),
        },
        None => SYSTEM,
    }
}

/// What `CURRENT` holds: the process, whose `Arc` keeps alive what `FAST.inner` points to. `FAST`
/// is only ever set from inside a `CURRENT` access, and this type's `Drop` (at thread exit,
/// when the slot's value is destroyed) resets it to System before the `Process` goes: so `FAST`
/// never points to a process `CURRENT` does not hold, even while the thread's locals are torn
/// down in any order.
struct Current(Option<Process>);

impl Drop for Current {
    fn drop(&mut self) {
        let _ = FAST.try_with(|fast| fast.set(SYSTEM));
    }
}

/// Puts `process` in `CURRENT` and mirrors it in `FAST`; returns what was there. When the slot is
/// gone (thread exit), nothing changes (`FAST` is System then) and `process` is handed back.
fn set_current(process: Option<Process>) -> Option<Process> {
    let mut process = Some(process);
    let previous = CURRENT.try_with(|current| {
        let new = process.take().flatten();
        let _ = FAST.try_with(|fast| fast.set(fast_of(new.as_ref())));
        core::mem::replace(&mut current.borrow_mut().0, new)
    });
    match previous {
        Ok(previous) => previous,
        // Not set: give the value back for the caller to drop, here, after every borrow.
        Err(_) => process.flatten(),
    }
}

/// The current process, as plain values (see [`Fast`]).
#[inline]
pub(crate) fn current_fast() -> Fast {
    FAST.try_with(Cell::get).unwrap_or(SYSTEM)
}

/// The process this thread is attached to, if any.
pub(crate) fn current_process() -> Option<Process> {
    CURRENT
        .try_with(|current| current.borrow().0.clone())
        .ok()
        .flatten()
}

/// The `EPROCESS` of the process this thread is attached to, if any, read in place: unlike
/// [`current_process`] it takes no reference, so `IoGetCurrentProcess` (called on every copy by
/// mmsecure) costs no atomic read-modify-write.
#[inline]
pub(crate) fn current_eprocess() -> Option<PEPROCESS> {
    match current_fast().eprocess {
        0 => None,
        eprocess => Some(eprocess as PEPROCESS),
    }
}

/// The id of the process this thread is attached to, 0 for none (System), read in place.
#[inline]
pub(crate) fn current_pid() -> u64 {
    current_fast().pid
}

/// This thread's time in another process' context: made by
/// [`Process::attach`](super::Process::attach), like `KeStackAttachProcess`; dropping it returns
/// to the context before (`KeUnstackDetachProcess`). Attaches nest, and must be undone in the
/// reverse order: dropping one while a later one of the same thread stands (or after a later
/// one was leaked with `mem::forget`) stops the caller as the bug check
/// `INVALID_PROCESS_DETACH_ATTEMPT` (0x6) would. WRK's `KeUnstackDetachProcess` bug checks so
/// when the thread is not attached or has APCs queued for the attached process (ke/procobj.c
/// L719-L724); that it also checks the `KAPC_STATE` is the latest one has no WRK line: the
/// model takes the stricter reading, with Microsoft's description of bug check 0x6.
///
/// Neither `Send` nor `Sync`: the attachment belongs to the thread that made it.
#[must_use = "the thread is attached only until this guard is dropped"]
pub struct Attach {
    previous: Option<Process>,
    /// This guard's place among the thread's attaches, from 1.
    depth: usize,
    _thread: PhantomData<*mut ()>,
}

impl Attach {
    pub(crate) fn new(process: &Process) -> Attach {
        let depth = ATTACH_DEPTH
            .try_with(|depth| {
                let mine = depth.get() + 1;
                depth.set(mine);
                mine
            })
            .unwrap_or(0);
        let previous = set_current(Some(process.clone()));
        Attach {
            previous,
            depth,
            _thread: PhantomData,
        }
    }
}

impl Drop for Attach {
    fn drop(&mut self) {
        // At thread exit the slots may be gone already; there is nothing to check or restore
        // then. The process replaced (or handed back) is dropped here, after `FAST` no longer
        // names it.
        let mine = self.depth;
        if let Ok(latest) = ATTACH_DEPTH.try_with(|depth| depth.replace(mine.saturating_sub(1))) {
            if latest != mine && mine != 0 {
                stop(format_args!(
                    "INVALID_PROCESS_DETACH_ATTEMPT (bug check 0x6): KeUnstackDetachProcess of \
                     attach number {mine} of this thread while attach number {latest} is the \
                     latest: attaches must be undone in the reverse order"
                ));
            }
        }
        drop(set_current(self.previous.take()));
    }
}

impl fmt::Debug for Attach {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Attach")
            .field("previous", &self.previous)
            .finish()
    }
}

/// The current IRQL of this thread, as `KeGetCurrentIrql` returns it in the kernel.
///
/// The model keeps one IRQL per thread, `PASSIVE_LEVEL` until [`raise_irql`] raises it.
///
/// # Safety
///
/// Always safe to call on the host; it is `unsafe` only to match the kernel's routine, whose
/// callers must run in kernel mode.
///
/// ```
/// use mmsecure_sys::{host, KeGetCurrentIrql, DISPATCH_LEVEL};
///
/// // SAFETY: the host model reads a thread-local.
/// assert_eq!(unsafe { KeGetCurrentIrql() }, 0);
/// let _raised = host::raise_irql(DISPATCH_LEVEL);
/// // SAFETY: as above.
/// assert_eq!(unsafe { KeGetCurrentIrql() }, 2);
/// ```
#[allow(non_snake_case)]
#[inline]
pub unsafe fn KeGetCurrentIrql() -> KIRQL {
    irql()
}

#[inline]
pub(crate) fn irql() -> KIRQL {
    IRQL.try_with(Cell::get).unwrap_or(PASSIVE_LEVEL)
}

/// Raises this thread's IRQL to `new` until the returned guard is dropped, like `KeRaiseIrql`
/// (and `KeLowerIrql` on drop).
///
/// # Panics
///
/// If `new` is below the current IRQL: the kernel bug checks with `IRQL_NOT_GREATER_OR_EQUAL`.
///
/// ```
/// use mmsecure_sys::{host, APC_LEVEL};
///
/// let raised = host::raise_irql(APC_LEVEL);
/// assert_eq!(host::current_irql(), 1);
/// drop(raised);
/// assert_eq!(host::current_irql(), 0);
/// ```
pub fn raise_irql(new: KIRQL) -> Irql {
    let previous = irql();
    if new < previous {
        panic!(
            "IRQL_NOT_GREATER_OR_EQUAL (bug check 0x9): KeRaiseIrql to IRQL {new} from IRQL {previous}"
        );
    }
    let _ = IRQL.try_with(|irql| irql.set(new));
    Irql {
        previous,
        _thread: PhantomData,
    }
}

/// This thread's current IRQL (what [`KeGetCurrentIrql`] answers, without `unsafe`).
pub fn current_irql() -> KIRQL {
    irql()
}

/// A raised IRQL, made by [`raise_irql`]; dropping it lowers the IRQL back to where it was.
/// Neither `Send` nor `Sync`: IRQL belongs to a processor (here, a thread).
#[must_use = "the IRQL is raised only until this guard is dropped"]
#[derive(Debug)]
pub struct Irql {
    previous: KIRQL,
    _thread: PhantomData<*mut ()>,
}

impl Drop for Irql {
    /// Lowers the IRQL back (`KeLowerIrql`). If that level is above the current one (a guard
    /// dropped after another raised earlier one lowered the IRQL past it: out of order), this
    /// stops the caller as the bug check `IRQL_NOT_LESS_OR_EQUAL` (0xA) would. WRK's
    /// `KeLowerIrql` only asserts it (inc/amd64.h L3186, checked builds) and on a free build
    /// would silently raise; Driver Verifier stops such a driver with
    /// `DRIVER_VERIFIER_DETECTED_VIOLATION` (0xC4): the model takes the fatal reading, worse for
    /// the driver, and names the IRQL bug check family the x86 HAL's checked `KfLowerIrql` uses.
    fn drop(&mut self) {
        let previous = self.previous;
        let current = irql();
        if previous > current {
            stop(format_args!(
                "IRQL_NOT_LESS_OR_EQUAL (bug check 0xA): KeLowerIrql to IRQL {previous} ({}) at \
                 IRQL {current} ({}), a lowering to a higher level: IRQL guards dropped out of \
                 order (Driver Verifier: bug check 0xC4)",
                irql_name(previous),
                irql_name(current),
            ));
        }
        let _ = IRQL.try_with(|irql| irql.set(previous));
    }
}

/// A readable name for an IRQL.
fn irql_name(irql: KIRQL) -> &'static str {
    match irql {
        PASSIVE_LEVEL => "PASSIVE_LEVEL",
        APC_LEVEL => "APC_LEVEL",
        DISPATCH_LEVEL => "DISPATCH_LEVEL",
        _ => "a device IRQL or above",
    }
}

/// Stops the caller of `routine` as the kernel's bug check `IRQL_NOT_LESS_OR_EQUAL` would, if the
/// thread's IRQL is above `max`.
#[inline]
pub(crate) fn require_irql(routine: &str, max: KIRQL) {
    let irql = irql();
    if irql > max {
        irql_too_high(routine, irql, max);
    }
}

#[cold]
fn irql_too_high(routine: &str, irql: KIRQL, max: KIRQL) -> ! {
    stop(format_args!(
        "IRQL_NOT_LESS_OR_EQUAL (bug check 0xA): {routine} called at IRQL {irql} ({}); it \
         requires IRQL <= {max} ({})",
        irql_name(irql),
        irql_name(max),
    ))
}

/// Stops the whole binary with `message`, as a bug check stops the machine.
///
/// The model's routines are `extern "C"` functions, which cannot unwind: a panic there aborts
/// (Rust 1.81 and later) or is undefined behaviour (earlier). So the model prints the message,
/// prefixed like a panic, straight to the process's stderr (past a test harness's capture), and
/// aborts. A test that expects a bug check runs the offending code in a child process
/// ([`assert_bug_check`](super::assert_bug_check)).
pub(crate) fn stop(message: fmt::Arguments<'_>) -> ! {
    super::bug_check::write_and_abort(message)
}
