//! The host backend's guarded copy and guarded call, and the faults a test injects into them.
//!
//! The guarded copy is where the model plays the MMU. Each side of a copy that lies in the
//! model's memory (user memory of any process, live or freed) is checked against the current
//! process's pages, in order, as a forward copy touches them:
//!
//! - a byte the current process does not have committed with the access (read for the source,
//!   write for the destination) raises `STATUS_ACCESS_VIOLATION`: no-access, decommitted and
//!   freed pages, a write to a read-only page, another process's allocation, any user byte in
//!   the System process or in an exited one;
//! - a guard page raises `STATUS_GUARD_PAGE_VIOLATION` once and loses its guard;
//! - a page with a fault a test injected ([`Process::inject_fault`]) raises the injected code,
//!   as a page whose page-file read fails raises `STATUS_IN_PAGE_ERROR`;
//! - at IRQL >= `DISPATCH_LEVEL`, touching user memory at all stops the caller as the bug check
//!   `IRQL_NOT_LESS_OR_EQUAL` (0xA) would: the model treats user memory as pageable and never
//!   resident, the stricter reading of "a page fault at DISPATCH_LEVEL bug checks".
//!
//! The copy then copies the bytes before the first faulting byte, as `rep movsb` does before the
//! faulting access, and returns the code. The driver's own memory (anything the model did not
//! allocate) is not checked.
//!
//! What the copy read of user memory goes to the double-fetch detector (`fetch`).
//!
//! The checks are made when the copy starts; the pages are not re-checked while it runs, so a
//! user thread that changes a protection in the middle of a copy is not seen by it.
//!
//! A successful check is remembered per thread (one for the source side, one for the destination
//! side) with the count of changes to every address space it was made at: a copy inside the
//! remembered range, in the same process, with nothing changed anywhere since and no fault
//! injected anywhere, costs a few loads, the IRQL check and the double-fetch record, as the slow
//! path does. When a copy of user memory starts where its side's last check ended (a cursor
//! walking on), the remembered range goes on past the checked one over the next pages (up to
//! 64, in one allocation) that the check would pass and leave as they are: already touched (rule 24's
//! sense), with the access, not a guard page, and for a write not copy-on-write
//! (`AddressSpace::quiet_end`). A copy there would change nothing in the model, so skipping the
//! check is exactly the check. Touched state only ever goes from false to true; every other
//! change to a page (protect, commit, decommit, free, a guard lost, a copy-on-write page
//! written, a new allocation, exit, a backing made or dropped) bumps the count of changes.

use core::cell::Cell;
use core::ffi::c_void;
use core::sync::atomic::{AtomicUsize, Ordering};
use std::vec::Vec;

use super::fetch;
use super::process::{Process, QuietEnds};
use super::status::STATUS_ACCESS_VIOLATION;
use super::thread::{current_pid, current_process, irql, stop};
use super::{lock, memory, PAGE_SIZE};
use crate::copy::copy_unguarded;
use crate::{UserPtr, DISPATCH_LEVEL, NTSTATUS};

/// Injected faults are caught by the host's guarded copy.
pub(crate) const COPY_GUARDED: bool = true;

/// How many injected faults stand, in all processes: the guarded copy's fast path reads only this.
static INJECTED: AtomicUsize = AtomicUsize::new(0);

/// Pages that fault on access by a guarded copy, and the code they raise.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Fault {
    /// The first byte of the first faulting page.
    start: usize,
    /// One past the last byte of the last faulting page.
    end: usize,
    status: NTSTATUS,
}

/// Forgets `count` faults of a process that is going away.
pub(crate) fn forget(count: usize) {
    if count != 0 {
        INJECTED.fetch_sub(count, Ordering::Relaxed);
    }
}

impl Process {
    /// Makes every page overlapping `addr .. addr + len` fault with `status` when a guarded copy
    /// ([`copy_guarded`](crate::copy_guarded)) touches it in this process' context, as a page
    /// whose page-file read fails raises `STATUS_IN_PAGE_ERROR` on Windows. The bytes, the
    /// protections and the process' own [`read`](Process::read) and [`write`](Process::write)
    /// are unaffected. Faults add up; a zero `len` injects nothing.
    ///
    /// ```
    /// use mmsecure_sys::host::{Process, PAGE_READWRITE, PAGE_SIZE, STATUS_IN_PAGE_ERROR};
    ///
    /// let process = Process::new();
    /// let _in_process = process.attach();
    /// let buffer = process.allocate(2 * PAGE_SIZE, PAGE_READWRITE).unwrap();
    /// process.write(buffer, &[7; 2 * PAGE_SIZE]).unwrap();
    /// let second_page = buffer.wrapping_add(PAGE_SIZE);
    /// process.inject_fault(second_page, 1, STATUS_IN_PAGE_ERROR);
    ///
    /// let mut out = [0u8; 2 * PAGE_SIZE];
    /// // SAFETY: the buffer is committed and readable in the current process; `out` is ours.
    /// let status = unsafe { mmsecure_sys::copy_guarded(out.as_mut_ptr(), buffer, out.len()) };
    /// assert_eq!(status, STATUS_IN_PAGE_ERROR);
    /// // The bytes before the faulting page were copied, the rest not.
    /// assert!(out[..PAGE_SIZE].iter().all(|b| *b == 7));
    /// assert!(out[PAGE_SIZE..].iter().all(|b| *b == 0));
    ///
    /// process.clear_faults();
    /// // SAFETY: as above.
    /// let status = unsafe { mmsecure_sys::copy_guarded(out.as_mut_ptr(), buffer, out.len()) };
    /// assert_eq!(status, 0);
    /// ```
    pub fn inject_fault(&self, addr: impl Into<UserPtr>, len: usize, status: NTSTATUS) {
        if len == 0 {
            return;
        }
        let addr = addr.into().addr();
        let start = addr / PAGE_SIZE * PAGE_SIZE;
        let last = addr.saturating_add(len - 1) / PAGE_SIZE;
        let end = last.saturating_mul(PAGE_SIZE).saturating_add(PAGE_SIZE);
        let mut faults = lock(&self.inner.faults);
        faults.push(Fault { start, end, status });
        INJECTED.fetch_add(1, Ordering::Relaxed);
    }

    /// Removes every fault injected into this process.
    pub fn clear_faults(&self) {
        let mut faults = lock(&self.inner.faults);
        forget(faults.len());
        faults.clear();
    }

    /// Where a copy of `len` bytes from `src` to `dst` first touches an injected fault: how many
    /// bytes come before it, and the code. The earliest fault wins, as the copy runs forward.
    fn first_fault_injected(
        &self,
        dst: usize,
        src: usize,
        len: usize,
    ) -> Option<(usize, NTSTATUS)> {
        let faults: Vec<Fault> = lock(&self.inner.faults).clone();
        let offset_in = |start: usize, fault: &Fault| {
            let end = start.saturating_add(len);
            (start < fault.end && fault.start < end).then(|| fault.start.saturating_sub(start))
        };
        faults
            .iter()
            .filter_map(|fault| {
                let at = match (offset_in(src, fault), offset_in(dst, fault)) {
                    (Some(a), Some(b)) => a.min(b),
                    (a, b) => a.or(b)?,
                };
                Some((at, fault.status))
            })
            .min_by_key(|(at, _)| *at)
    }
}

/// The guarded copy of the host backend: see [`crate::copy_guarded`] and the module docs.
///
/// # Safety
///
/// See [`crate::copy_guarded`].
#[inline]
pub(crate) unsafe fn copy_guarded(dst: *mut u8, src: *const u8, len: usize) -> NTSTATUS {
    // SAFETY: the caller's contract.
    unsafe { copy_checked(dst, src, len, None) }
}

/// The host's [`crate::copy_from_user`]: [`copy_guarded`] with the source taken as user memory
/// wherever it lies. A host address that no simulated process maps is then not the driver's own
/// memory but a user address the current process has not mapped, and faults with
/// `STATUS_ACCESS_VIOLATION`, as it does on Windows.
///
/// # Safety
///
/// See [`crate::copy_from_user`].
#[inline]
pub(crate) unsafe fn copy_from_user(dst: *mut u8, src: *const u8, len: usize) -> NTSTATUS {
    // SAFETY: the caller's contract; nothing is touched on the user side that the model did not
    // find mapped in the current process.
    unsafe { copy_checked(dst, src, len, Some(Side::Read)) }
}

/// The host's [`crate::copy_to_user`], as [`copy_from_user`] with the destination the user's.
///
/// # Safety
///
/// See [`crate::copy_to_user`].
#[inline]
pub(crate) unsafe fn copy_to_user(dst: *mut u8, src: *const u8, len: usize) -> NTSTATUS {
    // SAFETY: as in `copy_from_user`.
    unsafe { copy_checked(dst, src, len, Some(Side::Write)) }
}

/// The guarded copy, with `user` the side that is user memory whatever its address, if the
/// caller named one; the other sides are user memory where they lie in the model's.
///
/// # Safety
///
/// See [`crate::copy_guarded`].
#[inline(always)]
unsafe fn copy_checked(dst: *mut u8, src: *const u8, len: usize, user: Option<Side>) -> NTSTATUS {
    let seen = Seen {
        generation: memory::generation(),
        pid: current_pid(),
    };
    // With a user side named, the other is the driver's own memory by the caller's contract:
    // nothing of the model's to check there.
    let read_ok = |user| hit(Side::Read, src as usize, len, seen, user);
    let write_ok = |user| hit(Side::Write, dst as usize, len, seen, user);
    let fast = len == 0
        || (INJECTED.load(Ordering::Relaxed) == 0
            && match user {
                Some(Side::Read) => read_ok(true),
                Some(Side::Write) => write_ok(true),
                None => read_ok(false) && write_ok(false),
            });
    if fast {
        // SAFETY: the caller vouches for both ranges, and the model checked them, or the user
        // side the caller named, the other being the caller's own memory (this thread, this
        // process, nothing changed anywhere since), and found nothing that faults.
        unsafe { copy_unguarded(dst, src, len) };
        fetch::record(src as usize, len);
        return 0;
    }
    match check(dst as usize, src as usize, len, seen, user) {
        Some((done, status)) => {
            // SAFETY: the caller vouches for `len` bytes of both ranges; `done <= len`, and the
            // bytes before `done` passed the model's checks.
            unsafe { copy_unguarded(dst, src, done) };
            fetch::record(src as usize, done);
            status
        }
        None => {
            // SAFETY: the caller vouches for both ranges, and the model found nothing that
            // faults in them.
            unsafe { copy_unguarded(dst, src, len) };
            fetch::record(src as usize, len);
            0
        }
    }
}

/// What a copy's checks are made against: the count of changes to every address space, and the
/// current process, both read once when the copy starts.
#[derive(Clone, Copy)]
struct Seen {
    generation: u64,
    pid: u64,
}

/// How many pages after a successfully checked range a check is remembered for, at most: 256
/// KiB, a request's payload read in parts.
const QUIET_PAGES: usize = 64;

/// A check of one side of a copy that found nothing to fault.
#[derive(Clone, Copy)]
struct Checked {
    /// `memory::generation()` when the check began.
    generation: u64,
    /// The current process's id then (0: System); unused for the driver's own memory.
    pid: u64,
    start: usize,
    end: usize,
    /// Whether the range is the model's memory (then IRQL matters) or the driver's own.
    user: bool,
}

const UNCHECKED: Checked = Checked {
    generation: u64::MAX,
    pid: 0,
    start: 0,
    end: 0,
    user: false,
};

std::thread_local! {
    /// The last successful check of a copy's source, and of a copy's destination.
    static READ: Cell<Checked> = const { Cell::new(UNCHECKED) };
    static WRITE: Cell<Checked> = const { Cell::new(UNCHECKED) };
}

/// The two sides of a copy: the source is read, the destination written.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Side {
    Read,
    Write,
}

impl Side {
    /// The side's last successful check on this thread.
    fn last(self) -> &'static std::thread::LocalKey<Cell<Checked>> {
        match self {
            Side::Read => &READ,
            Side::Write => &WRITE,
        }
    }

    fn remember(self, checked: Checked) {
        let _ = self.last().try_with(|cell| cell.set(checked));
    }
}

/// Whether this side of a copy is covered by its last successful check, with nothing changed
/// since, and checked as user memory if `user` says it is; for user memory, also stops the
/// caller above `APC_LEVEL` as the slow path would.
#[inline]
fn hit(side: Side, start: usize, len: usize, seen: Seen, user: bool) -> bool {
    let last = side.last().try_with(Cell::get).unwrap_or(UNCHECKED);
    let hit = last.generation == seen.generation
        && last.start <= start
        && start.saturating_add(len) <= last.end
        && (last.user || !user)
        && (!last.user || last.pid == seen.pid);
    if hit && last.user {
        require_irql_for_user_memory(start, len);
    }
    hit
}

/// The slow path: where the copy first faults, if it does (how many bytes come before it, and
/// the code), with what the copy did up to there applied to the current process's pages.
#[cold]
fn check(
    dst: usize,
    src: usize,
    len: usize,
    seen: Seen,
    user: Option<Side>,
) -> Option<(usize, NTSTATUS)> {
    // A named user side is user memory wherever it lies, and the other side is then the driver's
    // own; unnamed, a side is user memory where it lies in the model's.
    let (src_user, dst_user) = match user {
        Some(Side::Read) => (true, false),
        Some(Side::Write) => (false, true),
        None => (
            memory::is_model_memory(src, len),
            memory::is_model_memory(dst, len),
        ),
    };
    if src_user {
        require_irql_for_user_memory(src, len);
    }
    if dst_user {
        require_irql_for_user_memory(dst, len);
    }
    let process = current_process();
    let injected = process
        .as_ref()
        .filter(|_| INJECTED.load(Ordering::Relaxed) != 0)
        .and_then(|process| process.first_fault_injected(dst, src, len));
    // Only a copy that starts where its side's last check ended (a cursor walking on) looks for
    // quiet pages past its range: other copies (a structure, then a string somewhere else) would
    // pay the look-up for nothing.
    let walking = |side: Side, start: usize, user: bool| {
        let walks = user
            && side
                .last()
                .try_with(|last| {
                    let last = last.get();
                    last.user && last.end == start
                })
                .unwrap_or(false);
        if walks {
            QUIET_PAGES
        } else {
            0
        }
    };
    let outcome = match &process {
        Some(process) if src_user || dst_user => process.copy_faults(
            src_user.then_some(src),
            dst_user.then_some(dst),
            len,
            injected,
            (
                walking(Side::Read, src, src_user),
                walking(Side::Write, dst, dst_user),
            ),
        ),
        Some(_) => injected.map_or(
            Ok(QuietEnds {
                src: None,
                dst: None,
            }),
            Err,
        ),
        None if src_user || dst_user => Err((0, STATUS_ACCESS_VIOLATION)),
        None => Ok(QuietEnds {
            src: None,
            dst: None,
        }),
    };
    let quiet = match outcome {
        Ok(quiet) => quiet,
        Err(fault) => return Some(fault),
    };
    // User memory: the check holds on over the quiet pages after the range too. The driver's own
    // memory: only the range (a backing may lie right after it).
    for (side, start, user, end) in [
        (Side::Read, src, src_user, quiet.src),
        (Side::Write, dst, dst_user, quiet.dst),
    ] {
        side.remember(Checked {
            generation: seen.generation,
            pid: seen.pid,
            start: walked_from(side, start, user, seen).unwrap_or(start),
            end: end.unwrap_or(start + len),
            user,
        });
    }
    None
}

/// Where the user-memory check that this side's check of `start` walks on from began, if it still
/// holds: the same process, nothing changed in any address space since, and its range ending at
/// `start`. Then the two checks are one, and the range remembered starts there: a reader that
/// walks a buffer again from its start (a new slice over the same request) finds it checked.
fn walked_from(side: Side, start: usize, user: bool, seen: Seen) -> Option<usize> {
    let last = side.last().try_with(Cell::get).ok()?;
    let holds = user
        && last.user
        && last.end == start
        && last.generation == seen.generation
        && last.pid == seen.pid;
    holds.then_some(last.start)
}

/// Stops the caller if user memory is touched at `DISPATCH_LEVEL` or above.
#[inline]
fn require_irql_for_user_memory(start: usize, len: usize) {
    let irql = irql();
    if irql >= DISPATCH_LEVEL {
        stop(format_args!(
            "IRQL_NOT_LESS_OR_EQUAL (bug check 0xA): a guarded copy touched user memory \
             ({len} bytes at {start:#x}) at IRQL {irql}; user memory is pageable, and a page \
             fault at DISPATCH_LEVEL or above bug checks (the model treats every user page as \
             not resident)"
        ));
    }
}

std::thread_local! {
    /// How many `call_guarded` calls are running on this thread.
    static GUARDS: Cell<usize> = const { Cell::new(0) };
    /// The first code raised inside the innermost running `call_guarded`.
    static RAISED: Cell<Option<NTSTATUS>> = const { Cell::new(None) };
}

/// The guarded call of the host backend: see [`crate::call_guarded`].
///
/// # Safety
///
/// See [`crate::call_guarded`].
pub(crate) unsafe fn call_guarded(
    f: unsafe extern "C" fn(*mut c_void),
    context: *mut c_void,
) -> NTSTATUS {
    let outer = RAISED.with(|raised| raised.take());
    GUARDS.with(|guards| guards.set(guards.get() + 1));
    // SAFETY: the caller vouches for `f(context)`.
    unsafe { f(context) };
    GUARDS.with(|guards| guards.set(guards.get() - 1));
    let inner = RAISED.with(|raised| raised.replace(outer));
    inner.unwrap_or(0)
}

/// Raises an exception with `status` in the host model, as `ExRaiseStatus` does on Windows, for
/// the innermost running [`call_guarded`](crate::call_guarded) to catch.
///
/// The host cannot unwind `f`'s frames the way Windows does: `f` is an `extern "C"` function, and
/// unwinding out of one aborts (Rust 1.81 and later) or is undefined behaviour (earlier). So this
/// records `status` and **returns**; the enclosing `call_guarded` returns the first status raised
/// in it once `f` returns. Code that raises should return right after, as nothing after a raise
/// runs on Windows.
///
/// With no `call_guarded` running on this thread the exception is unhandled, and the model stops
/// the binary as the bug check `KMODE_EXCEPTION_NOT_HANDLED` (0x1E) would stop the machine.
///
/// ```
/// use core::ffi::c_void;
/// use mmsecure_sys::host::{raise_exception, STATUS_ACCESS_VIOLATION};
///
/// unsafe extern "C" fn raises(_context: *mut c_void) {
///     raise_exception(STATUS_ACCESS_VIOLATION);
/// }
/// // SAFETY: `raises` ignores its context.
/// let status = unsafe { mmsecure_sys::call_guarded(raises, core::ptr::null_mut()) };
/// assert_eq!(status, STATUS_ACCESS_VIOLATION);
/// ```
pub fn raise_exception(status: NTSTATUS) {
    let guarded = GUARDS.with(|guards| guards.get()) != 0;
    if !guarded {
        stop(format_args!(
            "KMODE_EXCEPTION_NOT_HANDLED (bug check 0x1E): exception {:#010X} raised with no \
             call_guarded running on this thread",
            status as u32
        ));
    }
    RAISED.with(|raised| {
        if raised.get().is_none() {
            raised.set(Some(status));
        }
    });
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::host::status::STATUS_GUARD_PAGE_VIOLATION;
    use crate::host::{
        AccessMode, PAGE_GUARD, PAGE_NOACCESS, PAGE_READONLY, PAGE_READWRITE, PAGE_WRITECOPY,
    };

    const CODE: NTSTATUS = 0xC000_0006_u32 as NTSTATUS;

    std::thread_local! {
        /// The driver's side of the tests' copies: one address for all of them, so that its
        /// side's remembered check always holds and only the user side decides the path.
        static DRIVER: Cell<u8> = const { Cell::new(0) };
    }

    /// A guarded copy of one byte from `src` into the driver's byte.
    fn read_byte(src: usize) -> NTSTATUS {
        let out = DRIVER.with(Cell::as_ptr);
        // SAFETY: `out` is this thread's own byte; `src` is model memory, which may fault: the
        // copy says.
        unsafe { copy_guarded(out, src as *const u8, 1) }
    }

    /// A guarded copy of one byte from the driver's byte to `dst`.
    fn write_byte(dst: usize) -> NTSTATUS {
        let byte = DRIVER.with(Cell::as_ptr);
        // SAFETY: as in `read_byte`, the other way.
        unsafe { copy_guarded(dst as *mut u8, byte, 1) }
    }

    /// Reads `at`, then `at + 1`: a walk, which the second check remembers past its range.
    fn read_walk(at: usize) {
        assert_eq!(read_byte(at), 0);
        assert_eq!(read_byte(at + 1), 0);
    }

    /// Writes `at`, then `at + 1`, as [`read_walk`].
    fn write_walk(at: usize) {
        assert_eq!(write_byte(at), 0);
        assert_eq!(write_byte(at + 1), 0);
    }

    /// Whether this thread's last remembered check of `side` covers `at`. Not whether it still
    /// holds: tests on other threads change address spaces at any time, and with them the
    /// generation (a copy then takes the slow check, which these tests' outcomes do not tell).
    fn remembered(side: Side, at: usize) -> bool {
        let last = side.last().with(Cell::get);
        last.start <= at && at < last.end
    }

    #[test]
    fn a_copy_past_a_widened_check_still_sees_what_changed_since() {
        let process = Process::new();
        let base = process.allocate(8 * PAGE_SIZE, PAGE_READWRITE).unwrap() as usize;
        process.write(base as *mut u8, &[7; 8 * PAGE_SIZE]).unwrap();
        let page = |n: usize| base + n * PAGE_SIZE;
        let _in = process.attach();
        // A walk's check at the start holds for the touched pages after it...
        read_walk(page(0));
        assert!(remembered(Side::Read, page(7)));
        // ...until a protection change, a decommit or a free.
        process
            .protect(
                page(3) as *mut u8,
                PAGE_SIZE,
                PAGE_NOACCESS,
                AccessMode::User,
            )
            .unwrap();
        assert_eq!(read_byte(page(3)), STATUS_ACCESS_VIOLATION);
        read_walk(page(4));
        assert!(remembered(Side::Read, page(6)));
        process
            .decommit(page(6) as *mut u8, PAGE_SIZE, AccessMode::User)
            .unwrap();
        assert_eq!(read_byte(page(6)), STATUS_ACCESS_VIOLATION);
        write_walk(page(4));
        assert!(remembered(Side::Write, page(5)));
        process
            .protect(
                page(5) as *mut u8,
                PAGE_SIZE,
                PAGE_READONLY,
                AccessMode::User,
            )
            .unwrap();
        assert_eq!(write_byte(page(5)), STATUS_ACCESS_VIOLATION);
        read_walk(page(4));
        assert!(remembered(Side::Read, page(5)));
        process.free(base as *mut u8, AccessMode::User).unwrap();
        assert_eq!(read_byte(page(5)), STATUS_ACCESS_VIOLATION);
    }

    #[test]
    fn only_a_walk_is_remembered_past_its_range() {
        let process = Process::new();
        let base = process.allocate(2 * PAGE_SIZE, PAGE_READWRITE).unwrap() as usize;
        process.write(base as *mut u8, &[7; 2 * PAGE_SIZE]).unwrap();
        let _in = process.attach();
        assert_eq!(read_byte(base + 100), 0);
        assert_eq!(read_byte(base + 10), 0);
        assert!(!remembered(Side::Read, base + 11));
        assert_eq!(read_byte(base + 11), 0);
        assert!(remembered(Side::Read, base + PAGE_SIZE));
    }

    #[test]
    fn a_walk_keeps_the_start_it_walked_from() {
        let process = Process::new();
        let base = process.allocate(2 * PAGE_SIZE, PAGE_READWRITE).unwrap() as usize;
        process.write(base as *mut u8, &[7; 2 * PAGE_SIZE]).unwrap();
        let _in = process.attach();
        // The two checks are one only if no address space changed between them; tests on other
        // threads change them at any time, so walk until a walk ran with none changed.
        let quiet_walk = (0..1000).any(|_| {
            let before = memory::generation();
            read_walk(base);
            memory::generation() == before
        });
        assert!(
            quiet_walk,
            "other threads changed an address space during every walk"
        );
        assert!(remembered(Side::Read, base));
        assert!(remembered(Side::Read, base + PAGE_SIZE));
        process
            .protect(base as *mut u8, PAGE_SIZE, PAGE_NOACCESS, AccessMode::User)
            .unwrap();
        assert_eq!(read_byte(base), STATUS_ACCESS_VIOLATION);
    }

    #[test]
    fn a_widened_check_stops_before_pages_a_copy_would_change() {
        let process = Process::new();
        let base = process.allocate(4 * PAGE_SIZE, PAGE_READWRITE).unwrap() as usize;
        let page = |n: usize| base + n * PAGE_SIZE;
        process.write(base as *mut u8, &[7; 2 * PAGE_SIZE]).unwrap();
        process
            .protect(
                page(3) as *mut u8,
                PAGE_SIZE,
                PAGE_READWRITE | PAGE_GUARD,
                AccessMode::User,
            )
            .unwrap();
        let _in = process.attach();
        read_walk(page(0));
        // Page 2 was never touched: the copy that first reaches it touches it (rule 24).
        assert!(remembered(Side::Read, page(1)));
        assert!(!remembered(Side::Read, page(2)));
        assert_eq!(process.is_touched(page(2) as *const u8), Some(false));
        assert_eq!(read_byte(page(1)), 0);
        assert_eq!(read_byte(page(2)), 0);
        assert_eq!(process.is_touched(page(2) as *const u8), Some(true));
        // A guard page faults once, however the check before it was remembered.
        assert!(!remembered(Side::Read, page(3)));
        assert_eq!(read_byte(page(3)), STATUS_GUARD_PAGE_VIOLATION);
        assert_eq!(read_byte(page(3)), 0);
        // A copy-on-write page becomes read-write when a copy first writes it.
        let view = process.map_view(2 * PAGE_SIZE, PAGE_WRITECOPY).unwrap() as usize;
        process
            .read(view as *const u8, &mut [0; 2 * PAGE_SIZE])
            .unwrap();
        assert_eq!(write_byte(view), 0);
        write_walk(view);
        assert!(!remembered(Side::Write, view + PAGE_SIZE));
        assert_eq!(write_byte(view + PAGE_SIZE), 0);
        assert_eq!(
            process.protection((view + PAGE_SIZE) as *const u8),
            Some(PAGE_READWRITE)
        );
    }

    #[test]
    fn first_fault_is_the_earliest_faulting_byte_of_either_range() {
        let process = Process::new();
        let base = process.allocate(4 * PAGE_SIZE, PAGE_READWRITE).unwrap() as usize;
        process.inject_fault((base + 2 * PAGE_SIZE + 5) as *const u8, 1, CODE);
        // The whole page faults, not only the byte.
        assert_eq!(
            process.first_fault_injected(0, base + PAGE_SIZE, 2 * PAGE_SIZE),
            Some((PAGE_SIZE, CODE))
        );
        // A destination range faults the same way.
        assert_eq!(
            process.first_fault_injected(base + PAGE_SIZE + 10, 0x10, 2 * PAGE_SIZE),
            Some((PAGE_SIZE - 10, CODE))
        );
        // A range that ends just before the page does not fault.
        assert_eq!(process.first_fault_injected(0, base, 2 * PAGE_SIZE), None);
        // One starting inside the page faults at once.
        assert_eq!(
            process.first_fault_injected(0, base + 2 * PAGE_SIZE + 100, 1),
            Some((0, CODE))
        );
        process.clear_faults();
        assert_eq!(
            process.first_fault_injected(0, base + 2 * PAGE_SIZE, 1),
            None
        );
    }
}
