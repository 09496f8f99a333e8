//! Random interleavings of a driver's and a user's operations on the host backend, run against
//! the safe API and checked after every step. Shared by `tests/proptest_region.rs` (proptest picks
//! the operations) and `fuzz/fuzz_targets/region_ops.rs` (libFuzzer's bytes are decoded into
//! them).
//!
//! # The world
//!
//! Two user processes to begin with (forks and new processes add more, up to
//! [`MAX_PROCESSES`] at a time), each with four allocations of four pages: two read-write, one
//! reservation with its first two pages committed read-write, one read-only. Two driver threads
//! hold [`SecureRegion`]s; the coordinating thread plays the user threads. Operations run one at
//! a time, in the order given, so every outcome is predictable; the driver threads are real
//! threads (unless `threads` is false) and each region lives on the thread that made it, as a
//! `!Send` region must.
//!
//! Each driver thread has a context, as a kernel thread does: a stack of attaches
//! (`KeStackAttachProcess` to a process, or to none: System) and of raised IRQLs (`APC_LEVEL`,
//! `DISPATCH_LEVEL`). Its operations run in that context: the most recent attach, or, with none,
//! the region's own process (as a driver attaches to it); the highest IRQL raised. So secures,
//! copies, drops and `from_raw` happen in the wrong process and above `APC_LEVEL`, and the
//! harness predicts each outcome.
//!
//! A driver thread may also drop one of its context guards out of order ([`Op::DropOutOfOrder`]),
//! which the model (rule 27 of its table) stops as a bug check: an attach dropped while a later
//! one stands as `INVALID_PROCESS_DETACH_ATTEMPT` (0x6) at once; an IRQL guard dropped early
//! lowers past the later ones, and the first of those then undone whose level to lower to is
//! above the current one as `IRQL_NOT_LESS_OR_EQUAL` (0xA). The harness predicts the bug check
//! and its message from its own record of the thread's context, and ends the sequence there
//! without making the drop, since the kernel would be dead ([`run`], [`run_with_stop`]); the
//! regions are dropped and checked at the end as always. [`replay_stop`] runs the same sequence
//! and makes the drop for real, for a child process to stop in: so the property test proves, for
//! two cases of each kind, that the model stops where and as predicted, after every operation
//! before it. Where no bug check is predicted, the drops are made and must return.
//!
//! Processes exit with regions standing, lose their last
//! `Process` value ("release") while regions still hold a reference, and new processes are
//! created: the model hands a freed `EPROCESS` value to the next new process, and the harness
//! predicts exactly which. Another driver changes the memory under a region from kernel mode,
//! which only secures without `USER_MODE_ONLY` refuse: past such a secure, the region's copies
//! fault where the pages now deny them.
//!
//! # The invariants, checked after every operation
//!
//! 1. **No secured range is freed or made more restrictive than its secure allows**: for every
//!    secure standing (a region a driver holds, one a drop had to abandon, or a copy inherited
//!    by a forked child) that no kernel-mode change went past (`USER_MODE_ONLY`), each page of its page-rounded range is committed, not a guard page,
//!    and readable (`ReadOnly`) or writable (`ReadWrite`); with `NO_CHANGE`, no page of the
//!    allocation that was committed when it was made has changed protection (a guard page's
//!    one-shot fault aside). A user `free` or `decommit` of an allocation with a secure standing
//!    is refused; without one it succeeds. A kernel-mode one is refused exactly when a secure
//!    without `USER_MODE_ONLY` stands there; a kernel-mode free takes the others with the
//!    allocation.
//! 2. **Every successful secure is unsecured exactly once, and only where the kernel allows**:
//!    the model's `secure_count` of each live process equals the secures the harness knows to
//!    stand there (a drop in the securing process at `APC_LEVEL` or below takes away exactly
//!    one; a drop anywhere else leaves it standing; exit takes them all), an exited process has
//!    none, and each process has exactly one driver reference per region of it.
//! 3. **No unsecure runs in a wrong context**: the misuses the model records, per process and in
//!    its global list, are exactly the predicted ones: `Abandoned` for each drop the crate could
//!    not unsecure (wrong process, System, `DISPATCH_LEVEL`), nothing else (a drop in the
//!    context of a process that has exited is none: the kernel returns there, WRK mapview.c
//!    `MiUnsecureVirtualMemory`);
//!    and `mmsecure::abandoned_secures()` grew by exactly the predicted abandons. An unsecure in
//!    the wrong process, a second unsecure, a secure or copy above `APC_LEVEL`: each of those
//!    stops the model (a bug check), which aborts the binary and so fails the run.
//! 4. **The bytes read equal what was last written**: the harness keeps a copy of every
//!    allocation's bytes, updated by every write (driver or user) and every commit (which zeroes
//!    newly committed pages). Since operations run one at a time, every user write is known, so
//!    each read must equal the copy exactly; the concurrent case, where only "no user thread
//!    wrote" makes the bytes predictable, is `tests/stress.rs`'s.
//! 5. **`EPROCESS` values are reused only once the object is gone**: a new process (created or
//!    forked) never gets the value of a process that a `Process` value, a region or an attach
//!    still holds; once the harness has let go of every one of them, the next new process gets
//!    that value back, the most recently freed first.
//!
//! Around them, every outcome of the safe API is predicted: a secure succeeds exactly when the
//! documented rules say it must (range inside one allocation, every page committed with the
//! access asked, no `EXCLUSIVE` conflict, the process alive, the IRQL at most `APC_LEVEL`), and
//! fails with the right [`Error`] otherwise; copies fail exactly when out of bounds, not
//! writable, above `APC_LEVEL` ([`Error::IrqlTooHigh`]), in the wrong process
//! ([`Error::WrongProcess`]), or with a fault ([`Error::Fault`]): an access violation
//! (0xC0000005) in the context of their process after it exited (its address space is gone), or,
//! where a kernel-mode change went past a `USER_MODE_ONLY` secure, at the first page that now
//! denies the access (0xC0000005, or 0x80000001 once for a guard page), the bytes before it
//! written; `from_raw` fails exactly when the IRQL or the process is wrong, and hands the raw
//! region back. No other fault can happen through the safe API: the secure keeps every page of
//! a region usable in its process while it stands.

use std::collections::HashMap;
use std::fmt::Write as _;
use std::sync::mpsc::{channel, Receiver, Sender};

use mmsecure::{Error, ProbeMode, RawRegion, SecureFlags, SecureRegion};
use mmsecure_sys::host::{
    self, AccessMode, MisuseKind, Process, Status, PAGE_EXECUTE, PAGE_EXECUTE_READ,
    PAGE_EXECUTE_READWRITE, PAGE_EXECUTE_WRITECOPY, PAGE_GUARD, PAGE_NOACCESS, PAGE_READONLY,
    PAGE_READWRITE, PAGE_WRITECOPY, STATUS_ACCESS_VIOLATION, STATUS_FREE_VM_NOT_AT_BASE,
    STATUS_GUARD_PAGE_VIOLATION, STATUS_INVALID_PAGE_PROTECTION, STATUS_NOT_COMMITTED,
};
use mmsecure_sys::{APC_LEVEL, DISPATCH_LEVEL};

/// The page size.
pub const PAGE: usize = host::PAGE_SIZE;
/// Pages per allocation.
pub const PAGES: usize = 4;
/// Bytes per allocation.
pub const ALLOCATION: usize = PAGES * PAGE;
/// Allocations per process.
pub const SLOTS: usize = 4;
/// Processes at the start; forks and [`Op::Create`] add more up to [`MAX_PROCESSES`].
pub const PROCESSES: usize = 2;
/// The most processes a case has at a time (a process whose object is gone makes room).
pub const MAX_PROCESSES: usize = 5;
/// Driver threads.
pub const DRIVERS: usize = 2;
/// Attaches and raised IRQLs a driver thread holds at most.
pub const MAX_FRAMES: usize = 4;

const APC: u8 = APC_LEVEL;
const DISPATCH: u8 = DISPATCH_LEVEL;
/// What a copy that touches no committed page of the current process gets.
const ACCESS_VIOLATION: Error = Error::Fault {
    code: STATUS_ACCESS_VIOLATION,
};
/// What a copy that touches a guard page gets, once.
const GUARD_PAGE: Error = Error::Fault {
    code: STATUS_GUARD_PAGE_VIOLATION,
};

/// The reservation: only its first [`RESERVED_COMMITTED`] pages start committed.
const RESERVED_SLOT: usize = 2;
const RESERVED_COMMITTED: usize = 2;
/// The read-only allocation.
const READ_ONLY_SLOT: usize = 3;

/// What a user thread may set with `VirtualProtect` (guard pages included).
pub const PROTECTIONS: [u32; 8] = [
    PAGE_NOACCESS,
    PAGE_READONLY,
    PAGE_READWRITE,
    PAGE_EXECUTE,
    PAGE_EXECUTE_READ,
    PAGE_EXECUTE_READWRITE,
    PAGE_READWRITE | PAGE_GUARD,
    PAGE_READONLY | PAGE_GUARD,
];

/// What another driver may set from kernel mode past a `USER_MODE_ONLY` secure
/// ([`Op::Kernel`]): every protection a user could set, including the ones that can be read but
/// not written (`PAGE_READONLY`, `PAGE_EXECUTE_READ`, a read-only guard page), where a driver's
/// write is an access violation.
const KERNEL_PROTECTIONS: [u32; 8] = [
    PAGE_NOACCESS,
    PAGE_READONLY,
    PAGE_READWRITE,
    PAGE_EXECUTE,
    PAGE_EXECUTE_READ,
    PAGE_EXECUTE_READWRITE,
    PAGE_READWRITE | PAGE_GUARD,
    PAGE_READONLY | PAGE_GUARD,
];

/// One operation. Numbers are taken modulo what they index (a process, a slot, a driver's
/// regions), so every value of every field means something.
///
/// Driver operations run in the driver thread's context (see the module docs): the most recent
/// [`Op::Attach`], else the region's own process; the highest [`Op::Raise`]d IRQL.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Op {
    /// A driver thread secures part of an allocation: `SecureRegion::new` when the flags are
    /// empty, `with_any_flags` with `USER_MODE_ONLY`, `with_flags` otherwise. `flags`: the low four bits are the `MM_SECURE_*` flags;
    /// `0xF0` and above also sets the unknown bit `0x10`. While the driver is attached to a
    /// process, the allocation is that process's (`process` is ignored); attached to System,
    /// the kernel refuses.
    Secure {
        /// Which driver thread.
        driver: u8,
        /// Which process (modulo those that exist).
        process: u8,
        /// Which allocation.
        slot: u8,
        /// Where in the allocation the range starts (modulo an allocation and a page, so it can
        /// start past the end).
        offset: u16,
        /// How long it is (modulo an allocation and a page, plus one: zero is possible).
        len: u16,
        /// `ProbeMode::ReadWrite` rather than `ReadOnly`.
        read_write: bool,
        /// Raw flags; see above.
        flags: u8,
        /// At least `APC_LEVEL`.
        apc: bool,
    },
    /// A driver thread drops one of its regions: it unsecures in the region's process at
    /// `APC_LEVEL` or below, and abandons the secure anywhere else.
    Drop {
        /// Which driver thread.
        driver: u8,
        /// Which of its regions.
        pick: u8,
        /// At least `APC_LEVEL`.
        apc: bool,
    },
    /// A driver thread copies bytes out of one of its regions.
    Read {
        /// Which driver thread.
        driver: u8,
        /// Which of its regions.
        pick: u8,
        /// Offset (modulo the region's length plus 9; `u16::MAX` is an offset that overflows).
        offset: u16,
        /// Length (modulo the region's length plus 9).
        len: u16,
    },
    /// A driver thread copies a `u32` out of one of its regions.
    ReadValue {
        /// Which driver thread.
        driver: u8,
        /// Which of its regions.
        pick: u8,
        /// Offset, as in `Read`.
        offset: u16,
    },
    /// A driver thread copies bytes into one of its regions.
    Write {
        /// Which driver thread.
        driver: u8,
        /// Which of its regions.
        pick: u8,
        /// Offset, as in `Read`.
        offset: u16,
        /// Length, as in `Read`.
        len: u16,
        /// The first byte written; each next one is one more.
        byte: u8,
    },
    /// A driver thread reads one of its regions from another process' context (or none),
    /// whatever it is attached to, at its IRQL.
    ReadElsewhere {
        /// Which driver thread.
        driver: u8,
        /// Which of its regions.
        pick: u8,
        /// Which process to attach to; the region's own means no process at all (System).
        process: u8,
    },
    /// A driver thread takes one of its regions apart (`into_raw`) and the other driver thread
    /// rebuilds it (`from_raw`) in its context: a pended IRP finished elsewhere. Refused (wrong
    /// process, IRQL), the raw region comes back: with `retry` the other thread rebuilds it
    /// again attached to the region's process at `PASSIVE_LEVEL`, else it drops the raw region
    /// where it is (abandoned).
    HandOff {
        /// Which driver thread gives the region away.
        driver: u8,
        /// Which of its regions.
        pick: u8,
        /// Rebuild in the right context after a refusal, rather than drop the raw region.
        retry: bool,
    },
    /// A driver thread attaches to a process (`KeStackAttachProcess`), or to none (System),
    /// until [`Op::Detach`]. A process whose last `Process` value went cannot be attached to.
    Attach {
        /// Which driver thread.
        driver: u8,
        /// Which process, modulo those that exist plus one: the last value is System.
        process: u8,
    },
    /// A driver thread undoes its most recent attach (`KeUnstackDetachProcess`).
    Detach {
        /// Which driver thread.
        driver: u8,
    },
    /// A driver thread raises its IRQL (`KeRaiseIrql`) until [`Op::Lower`].
    Raise {
        /// Which driver thread.
        driver: u8,
        /// To `DISPATCH_LEVEL` rather than `APC_LEVEL`.
        dispatch: bool,
    },
    /// A driver thread undoes its most recent raise (`KeLowerIrql`).
    Lower {
        /// Which driver thread.
        driver: u8,
    },
    /// A user thread changes the protection of some pages (guard pages included).
    Protect {
        /// Which process.
        process: u8,
        /// Which allocation.
        slot: u8,
        /// First page (modulo the pages of an allocation).
        page: u8,
        /// How many pages (1 or 2).
        pages: u8,
        /// Index into [`PROTECTIONS`].
        protect: u8,
    },
    /// A user thread commits pages (`VirtualAlloc(MEM_COMMIT)`).
    Commit {
        /// Which process.
        process: u8,
        /// Which allocation.
        slot: u8,
        /// First page.
        page: u8,
        /// How many pages (1 or 2).
        pages: u8,
        /// Index into [`PROTECTIONS`].
        protect: u8,
    },
    /// A user thread decommits pages (`VirtualFree(MEM_DECOMMIT)`).
    Decommit {
        /// Which process.
        process: u8,
        /// Which allocation.
        slot: u8,
        /// First page.
        page: u8,
        /// How many pages (1 or 2); 3 modulo 4 is a size of 0, which at the base decommits the
        /// whole allocation past every secure but `NO_CHANGE` (WRK freevm.c L813-L821, protect.c
        /// L2679; issue #22).
        pages: u8,
    },
    /// A user thread frees an allocation (`VirtualFree(MEM_RELEASE)`).
    Free {
        /// Which process.
        process: u8,
        /// Which allocation.
        slot: u8,
    },
    /// A user thread allocates again in a freed slot.
    Allocate {
        /// Which process.
        process: u8,
        /// Which allocation.
        slot: u8,
    },
    /// Another driver changes the memory under a region from kernel mode
    /// (`ZwProtectVirtualMemory`, `ZwFreeVirtualMemory`): only secures without `USER_MODE_ONLY`
    /// refuse it. Past such a secure the pages change under the region, and its copies fault
    /// exactly where the pages now deny them (`STATUS_ACCESS_VIOLATION`, or
    /// `STATUS_GUARD_PAGE_VIOLATION` once).
    Kernel {
        /// Which region (of either driver thread): its process and allocation are changed.
        pick: u8,
        /// The first page changed: the region's first page, or (odd) the next one.
        page: u8,
        /// How many pages (1 or 2).
        pages: u8,
        /// For a protection change, an index into [`KERNEL_PROTECTIONS`].
        protect: u8,
        /// Modulo 4: make guard pages (0), change the protection (1), decommit the pages (2),
        /// free the allocation (3).
        what: u8,
    },
    /// A user thread writes bytes.
    UserWrite {
        /// Which process.
        process: u8,
        /// Which allocation.
        slot: u8,
        /// Where (modulo an allocation).
        offset: u16,
        /// How many bytes (modulo a page, plus one).
        len: u16,
        /// The first byte written; each next one is one more.
        byte: u8,
    },
    /// A user process forks: the child gets copies of its allocations and of its secures made
    /// without `NO_INHERIT`.
    Fork {
        /// Which process.
        process: u8,
    },
    /// A process exits. `how` modulo 3: 0, the driver first drops that process' regions (as a
    /// process-notify routine would, in the process' context, at `PASSIVE_LEVEL`); 1, it learns
    /// of the exit afterwards and forgets them (`into_raw`, then `RawRegion::leak`), since
    /// exit dropped the secures; 2, the regions stay, to be copied and dropped later.
    Exit {
        /// Which process.
        process: u8,
        /// See above.
        how: u8,
    },
    /// The user's last `Process` value of an exited process goes (its last handle closed). The
    /// object stays while a region holds a reference on it or a driver thread is attached to
    /// it; then it is freed, and its `EPROCESS` value goes to the next new process.
    Release {
        /// Which process.
        process: u8,
    },
    /// A new process starts, with the four allocations every process has.
    Create,
    /// A driver thread drops one of its context guards out of order, then undoes the rest in
    /// the reverse order (a driver whose guards went out of scope in the wrong order). `which`
    /// picks, modulo their number, among the frames with a later frame of their kind (an attach
    /// with a later attach, a raise with a later raise); with none, nothing happens. The harness
    /// predicts from its context model where the model stops ([`Stop`]) and ends the sequence
    /// there without making the drop ([`run`]); [`replay_stop`] makes it, in a child process.
    /// Where it predicts no stop (an IRQL guard whose level to lower to is no higher than the
    /// current one at every step), the driver thread makes the drops, which must return, and its
    /// context is then empty.
    DropOutOfOrder {
        /// Which driver thread.
        driver: u8,
        /// Which frame.
        which: u8,
    },
}

/// Where a sequence stops, as the harness predicts: the model's bug check for an
/// [`Op::DropOutOfOrder`] (rule 27 of its table), the kernel dead.
#[derive(Clone, Debug, PartialEq, Eq)]
#[allow(dead_code)]
pub struct Stop {
    /// The step of the drop.
    pub step: usize,
    /// How the model's bug-check message must begin.
    pub message: String,
}

/// How often each kind of outcome happened in a run: to show the operations did something.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Stats {
    /// Secures that succeeded.
    pub secured: usize,
    /// Secures the kernel refused (`Error::Refused`).
    pub refused: usize,
    /// Secures the crate refused itself (zero length, unknown flags, IRQL).
    pub rejected: usize,
    /// Copies (either way) that succeeded.
    pub copied: usize,
    /// Copies refused or faulted (out of bounds, not writable, wrong process, IRQL, fault).
    pub copy_errors: usize,
    /// Regions handed from one driver thread to the other.
    pub handed_off: usize,
    /// User operations the model refused because a secure stood in the way.
    pub user_refused: usize,
    /// Forks.
    pub forks: usize,
    /// Exits.
    pub exits: usize,
    /// Copies and `from_raw` calls refused with `Error::WrongProcess`.
    pub wrong_process: usize,
    /// Secures, copies and `from_raw` calls refused with `Error::IrqlTooHigh`.
    pub irql_too_high: usize,
    /// Copies that faulted with `STATUS_ACCESS_VIOLATION`.
    pub access_violations: usize,
    /// `from_raw` calls refused (the raw region handed back).
    pub raw_refused: usize,
    /// Drops (of regions or raw regions) that left their secure standing: counted by
    /// `mmsecure::abandoned_secures` and recorded as `Abandoned`.
    pub abandoned: usize,
    /// Drops in the context of their process after it exited (the kernel returns; no misuse).
    pub after_exit: usize,
    /// Attaches and raises to `DISPATCH_LEVEL` made by driver threads.
    pub attaches: usize,
    /// Raises to `DISPATCH_LEVEL`.
    pub dispatch_raises: usize,
    /// Exited processes whose last `Process` value went.
    pub released: usize,
    /// Process objects freed (their `EPROCESS` value free for reuse).
    pub freed: usize,
    /// New processes (created or forked) that got a freed `EPROCESS` value back.
    pub reused: usize,
    /// Processes created.
    pub created: usize,
    /// Kernel-mode changes made past a `USER_MODE_ONLY` secure.
    pub kernel_bypasses: usize,
    /// Copies that faulted with `STATUS_GUARD_PAGE_VIOLATION`.
    pub guard_faults: usize,
    /// Sequences ended at a predicted `INVALID_PROCESS_DETACH_ATTEMPT` (an attach dropped out
    /// of order).
    pub detach_stops: usize,
    /// Sequences ended at a predicted `IRQL_NOT_LESS_OR_EQUAL` (an IRQL guard dropped out of
    /// order, a later one then lowering to a higher level).
    pub irql_stops: usize,
}

impl std::ops::AddAssign for Stats {
    fn add_assign(&mut self, other: Stats) {
        let Stats {
            secured,
            refused,
            rejected,
            copied,
            copy_errors,
            handed_off,
            user_refused,
            forks,
            exits,
            wrong_process,
            irql_too_high,
            access_violations,
            raw_refused,
            abandoned,
            after_exit,
            attaches,
            dispatch_raises,
            released,
            freed,
            reused,
            created,
            kernel_bypasses,
            guard_faults,
            detach_stops,
            irql_stops,
        } = other;
        self.secured += secured;
        self.refused += refused;
        self.rejected += rejected;
        self.copied += copied;
        self.copy_errors += copy_errors;
        self.handed_off += handed_off;
        self.user_refused += user_refused;
        self.forks += forks;
        self.exits += exits;
        self.wrong_process += wrong_process;
        self.irql_too_high += irql_too_high;
        self.access_violations += access_violations;
        self.raw_refused += raw_refused;
        self.abandoned += abandoned;
        self.after_exit += after_exit;
        self.attaches += attaches;
        self.dispatch_raises += dispatch_raises;
        self.released += released;
        self.freed += freed;
        self.reused += reused;
        self.created += created;
        self.kernel_bypasses += kernel_bypasses;
        self.guard_faults += guard_faults;
        self.detach_stops += detach_stops;
        self.irql_stops += irql_stops;
    }
}

/// Runs `ops` and checks the invariants after each; at the end, drops every region and checks
/// that nothing stays secured. `threads`: real driver threads (else the driver threads' work
/// runs on this one, which is faster and otherwise the same).
///
/// The harness predicts which `EPROCESS` value each new process gets, and counts the model's
/// misuse records and abandoned secures, which are global to the binary: nothing else may
/// create or drop processes, or misuse the model, while it runs (the property test holds a
/// lock around its tests; libFuzzer runs one input at a time).
pub fn run(ops: &[Op], threads: bool) -> Result<Stats, String> {
    run_to_stop(ops, threads, false).map(|(stats, _)| stats)
}

// The fuzz target calls only `run`, which ends at a stop without reading it.
#[allow(dead_code)]
/// [`run`], and where the sequence stopped, if it did: at the first [`Op::DropOutOfOrder`] for
/// which the harness predicts a bug check. The drop is not made, the rest of the sequence not
/// run; the regions are dropped and checked at the end as usual.
pub fn run_with_stop(ops: &[Op], threads: bool) -> Result<(Stats, Option<Stop>), String> {
    run_to_stop(ops, threads, false)
}

#[allow(dead_code)]
/// Runs `ops` as [`run_with_stop`] does up to the predicted [`Stop`], and there makes the
/// drop for real: the driver thread builds real guards for its context, in order, drops the one
/// chosen, and undoes the rest in reverse, which stops the binary as the model's bug check.
/// Returns only if no stop was predicted or the model did not stop (an error either way). For a
/// child process ([`mmsecure_sys::host::assert_bug_check`]).
pub fn replay_stop(ops: &[Op], threads: bool) -> String {
    match run_to_stop(ops, threads, true) {
        Ok(_) => "no stop was predicted".into(),
        Err(e) => e,
    }
}

fn run_to_stop(ops: &[Op], threads: bool, fatal: bool) -> Result<(Stats, Option<Stop>), String> {
    // The first flagged secure looks MmSecureVirtualMemoryEx up, which needs PASSIVE_LEVEL.
    if !mmsecure::secure_ex_available() {
        return Err("the host backend has no MmSecureVirtualMemoryEx".into());
    }
    if !threads {
        let mut drivers = Drivers::Inline((0..DRIVERS).map(|_| Driver::default()).collect());
        return Case::new(fatal)?.run(ops, &mut drivers);
    }
    std::thread::scope(|scope| {
        let mut links = Vec::new();
        let mut threads = Vec::new();
        for _ in 0..DRIVERS {
            let (commands, inbox) = channel::<Command>();
            let (outbox, replies) = channel::<Reply>();
            threads.push(scope.spawn(move || {
                let mut driver = Driver::default();
                for command in inbox {
                    if outbox.send(driver.handle(command)).is_err() {
                        break;
                    }
                }
            }));
            links.push((commands, replies));
        }
        let mut drivers = Drivers::Threads(links);
        let result = Case::new(fatal).and_then(|case| case.run(ops, &mut drivers));
        // Closing the channels ends the threads. Join each: the scope alone waits for their
        // closures only, not for their thread-locals' destructors, which LeakSanitizer (under
        // cargo fuzz) would then report as leaks.
        drop(drivers);
        for thread in threads {
            thread
                .join()
                .map_err(|_| "a driver thread panicked".to_string())?;
        }
        result
    })
}

// ---------------------------------------------------------------------------------------------
// Driver threads

/// What a driver thread is asked to do. Regions are named by the coordinator's ids; `home` is
/// the process a region belongs to (the driver attaches to it when it is attached to nothing
/// else).
enum Command {
    Secure {
        id: u64,
        /// The process the secure is made in, if one (not System).
        home: Option<Process>,
        address: usize,
        len: usize,
        mode: ProbeMode,
        flags: SecureFlags,
        apc: bool,
    },
    Drop {
        id: u64,
        apc: bool,
        /// In the region's process at `PASSIVE_LEVEL`, whatever the thread's context.
        clean: bool,
    },
    Read {
        id: u64,
        offset: usize,
        len: usize,
    },
    ReadValue {
        id: u64,
        offset: usize,
    },
    Write {
        id: u64,
        offset: usize,
        data: Vec<u8>,
    },
    ReadElsewhere {
        id: u64,
        elsewhere: Option<Process>,
    },
    TakeRaw {
        id: u64,
    },
    Adopt {
        id: u64,
        raw: RawRegion,
        home: Process,
        retry: bool,
    },
    Forget {
        id: u64,
    },
    Attach(Option<Process>),
    Detach,
    Raise(u8),
    Lower,
    /// Undo every attach and raise.
    Reset,
    /// Make real guards for the context, drop the one at this index, undo the rest in reverse.
    DropOutOfOrder(usize),
}

/// A driver thread's answer.
enum Reply {
    Done(Result<(), Error>),
    Bytes(Result<Vec<u8>, Error>),
    Value(Result<u32, Error>),
    Raw(Option<(RawRegion, Process)>),
    /// `from_raw` in the thread's context, and, if that was refused and a retry asked for, in
    /// the region's process at `PASSIVE_LEVEL`.
    Adopted {
        first: Result<(), Error>,
        retried: Option<Result<(), Error>>,
    },
    /// The region named is not this thread's (a harness bug).
    Missing,
}

/// One entry of a driver thread's context.
enum Held {
    /// Attached to a process, or to none (System).
    Attach(Option<Process>),
    Raise(u8),
}

/// A driver thread's regions, each with its process, and its context.
#[derive(Default)]
struct Driver {
    regions: Vec<(u64, SecureRegion, Process)>,
    context: Vec<Held>,
}

/// The attach and the raised IRQL a call runs under, undone when dropped.
type Entered = (Option<host::Attach>, Option<host::Irql>);

impl Driver {
    fn take(&mut self, id: u64) -> Option<(SecureRegion, Process)> {
        let at = self.regions.iter().position(|(mine, ..)| *mine == id)?;
        let (_, region, process) = self.regions.remove(at);
        Some((region, process))
    }

    fn find(&self, id: u64) -> Option<&(u64, SecureRegion, Process)> {
        self.regions.iter().find(|(mine, ..)| *mine == id)
    }

    fn irql(&self) -> u8 {
        self.context
            .iter()
            .filter_map(|held| match held {
                Held::Raise(level) => Some(*level),
                Held::Attach(_) => None,
            })
            .max()
            .unwrap_or(0)
    }

    /// Enters this thread's context for a call about a region of `home`: the most recent
    /// attach (none: System), else `home`; the highest IRQL raised, at least `APC_LEVEL` with
    /// `apc`. The thread's real context is rebuilt for each call, so that the inline driver
    /// threads, which share the coordinator's thread, each keep their own.
    fn enter(&self, home: Option<&Process>, apc: bool) -> Entered {
        let attached = self.context.iter().rev().find_map(|held| match held {
            Held::Attach(process) => Some(process),
            Held::Raise(_) => None,
        });
        let attach = match attached {
            Some(process) => process.as_ref().map(Process::attach),
            None => home.map(Process::attach),
        };
        let level = self.irql().max(if apc { APC } else { 0 });
        (attach, (level > 0).then(|| host::raise_irql(level)))
    }

    fn forget_last(&mut self, attach: bool) {
        let at = self
            .context
            .iter()
            .rposition(|held| matches!(held, Held::Attach(_)) == attach);
        if let Some(at) = at {
            self.context.remove(at);
        }
    }

    fn handle(&mut self, command: Command) -> Reply {
        match command {
            Command::Secure {
                id,
                home,
                address,
                len,
                mode,
                flags,
                apc,
            } => {
                let made = {
                    let _in = self.enter(home.as_ref(), apc);
                    if flags.is_empty() {
                        SecureRegion::new(address as *const u8, len, mode)
                    } else if flags.contains(SecureFlags::USER_MODE_ONLY) {
                        // SAFETY: the harness's other driver keeps the promise: it frees no
                        // allocation from kernel mode while a region's USER_MODE_ONLY secure
                        // stands there (`Case::free`).
                        unsafe {
                            SecureRegion::with_any_flags(address as *const u8, len, mode, flags)
                        }
                    } else {
                        SecureRegion::with_flags(address as *const u8, len, mode, flags)
                    }
                };
                match (made, home) {
                    (Ok(region), Some(home)) => {
                        self.regions.push((id, region, home));
                        Reply::Done(Ok(()))
                    }
                    // Secured in System, which has no user memory: a model bug.
                    (Ok(region), None) => {
                        region.into_raw().leak();
                        Reply::Missing
                    }
                    (Err(error), _) => Reply::Done(Err(error)),
                }
            }
            Command::Drop { id, apc, clean } => match self.take(id) {
                Some((region, home)) => {
                    let _in = if clean {
                        (Some(home.attach()), None)
                    } else {
                        self.enter(Some(&home), apc)
                    };
                    drop(region);
                    Reply::Done(Ok(()))
                }
                None => Reply::Missing,
            },
            Command::Read { id, offset, len } => match self.find(id) {
                Some((_, region, home)) => {
                    let _in = self.enter(Some(home), false);
                    let mut out = vec![0u8; len];
                    Reply::Bytes(region.read_slice(offset, &mut out).map(|()| out))
                }
                None => Reply::Missing,
            },
            Command::ReadValue { id, offset } => match self.find(id) {
                Some((_, region, home)) => {
                    let _in = self.enter(Some(home), false);
                    Reply::Value(region.read::<u32>(offset))
                }
                None => Reply::Missing,
            },
            Command::Write { id, offset, data } => match self.find(id) {
                Some((_, region, home)) => {
                    let _in = self.enter(Some(home), false);
                    Reply::Done(region.write_slice(offset, &data))
                }
                None => Reply::Missing,
            },
            Command::ReadElsewhere { id, elsewhere } => match self.find(id) {
                Some((_, region, _)) => {
                    let _in = elsewhere.as_ref().map(Process::attach);
                    let level = self.irql();
                    let _irql = (level > 0).then(|| host::raise_irql(level));
                    let mut out = [0u8; 1];
                    Reply::Done(region.read_slice(0, &mut out))
                }
                None => Reply::Missing,
            },
            Command::TakeRaw { id } => Reply::Raw(
                self.take(id)
                    .map(|(region, home)| (region.into_raw(), home)),
            ),
            Command::Adopt {
                id,
                raw,
                home,
                retry,
            } => {
                let entered = self.enter(Some(&home), false);
                // `raw` came from `into_raw` on the other driver thread, which no longer has it.
                let refused = match SecureRegion::from_raw(raw) {
                    Ok(region) => {
                        drop(entered);
                        self.regions.push((id, region, home));
                        return Reply::Adopted {
                            first: Ok(()),
                            retried: None,
                        };
                    }
                    Err(refused) => refused,
                };
                let first = Err(refused.error());
                let raw = refused.into_raw();
                if !retry {
                    // Released where it is, as a region would be: abandoned.
                    drop(raw);
                    return Reply::Adopted {
                        first,
                        retried: None,
                    };
                }
                drop(entered);
                let again = {
                    let _in = home.attach();
                    SecureRegion::from_raw(raw)
                };
                let retried = match again {
                    Ok(region) => {
                        self.regions.push((id, region, home));
                        Ok(())
                    }
                    Err(refused) => {
                        let error = refused.error();
                        refused.into_raw().leak();
                        Err(error)
                    }
                };
                Reply::Adopted {
                    first,
                    retried: Some(retried),
                }
            }
            Command::Forget { id } => match self.take(id) {
                Some((region, _)) => {
                    region.into_raw().leak();
                    Reply::Done(Ok(()))
                }
                None => Reply::Missing,
            },
            Command::Attach(process) => {
                self.context.push(Held::Attach(process));
                Reply::Done(Ok(()))
            }
            Command::Detach => {
                self.forget_last(true);
                Reply::Done(Ok(()))
            }
            Command::Raise(level) => {
                self.context.push(Held::Raise(level));
                Reply::Done(Ok(()))
            }
            Command::Lower => {
                self.forget_last(false);
                Reply::Done(Ok(()))
            }
            Command::Reset => {
                self.context.clear();
                Reply::Done(Ok(()))
            }
            Command::DropOutOfOrder(at) => {
                // An attach to System stands in as one to a process of its own: the model's
                // order check counts attaches, whatever their process.
                let stand_ins: Vec<Process> = self.context.iter().map(|_| Process::new()).collect();
                let mut guards: Vec<Entered> = Vec::new();
                for (held, stand_in) in self.context.iter().zip(&stand_ins) {
                    guards.push(match held {
                        Held::Attach(process) => {
                            (Some(process.as_ref().unwrap_or(stand_in).attach()), None)
                        }
                        // The highest IRQL raised, as `enter` has it.
                        Held::Raise(level) => (
                            None,
                            Some(host::raise_irql((*level).max(host::current_irql()))),
                        ),
                    });
                }
                drop(guards.remove(at));
                while let Some(guard) = guards.pop() {
                    drop(guard);
                }
                // The model let it pass: the thread's context is undone.
                self.context.clear();
                Reply::Done(Ok(()))
            }
        }
    }
}

impl Drop for Driver {
    /// A case that failed midway leaves regions behind: give them up (their processes are
    /// dropped with the case) rather than release them from no process context.
    fn drop(&mut self) {
        for (_, region, _) in self.regions.drain(..) {
            region.into_raw().leak();
        }
    }
}

/// The driver threads: real ones behind channels, or their state kept on this thread.
enum Drivers {
    Inline(Vec<Driver>),
    Threads(Vec<(Sender<Command>, Receiver<Reply>)>),
}

impl Drivers {
    fn call(&mut self, driver: usize, command: Command) -> Result<Reply, String> {
        let reply = match self {
            Drivers::Inline(drivers) => drivers[driver].handle(command),
            Drivers::Threads(links) => {
                let (commands, replies) = &links[driver];
                commands
                    .send(command)
                    .map_err(|_| format!("driver thread {driver} is gone (it panicked)"))?;
                replies
                    .recv()
                    .map_err(|_| format!("driver thread {driver} is gone (it panicked)"))?
            }
        };
        match reply {
            Reply::Missing => Err(format!("driver thread {driver} lost a region")),
            reply => Ok(reply),
        }
    }

    fn done(&mut self, driver: usize, command: Command) -> Result<Result<(), Error>, String> {
        match self.call(driver, command)? {
            Reply::Done(result) => Ok(result),
            _ => Err("unexpected reply".into()),
        }
    }
}

// ---------------------------------------------------------------------------------------------
// The coordinator: user threads, expectations, invariants

/// A region a driver thread holds, as the coordinator knows it.
#[derive(Clone, Debug)]
struct Region {
    id: u64,
    driver: usize,
    process: usize,
    /// The allocation's base and the region's start in it.
    base: usize,
    offset: usize,
    len: usize,
    mode: ProbeMode,
}

/// A secure standing in a process: a region's, or one no region has any more (a copy inherited
/// through a fork, or a secure a drop abandoned).
#[derive(Clone, Debug)]
struct Standing {
    /// The region, or `None` when only the process's exit ends it.
    region: Option<u64>,
    slot: usize,
    /// Page indices `first..end` in the allocation.
    first: usize,
    end: usize,
    mode: ProbeMode,
    flags: SecureFlags,
    /// With `NO_CHANGE`: the allocation's protections when it was made.
    snapshot: Option<Vec<Option<u32>>>,
    /// A `USER_MODE_ONLY` secure whose allocation a kernel-mode change reached, or any secure
    /// but `NO_CHANGE` whose allocation a user decommitted with a size of 0: it still stands, but
    /// promises nothing about the pages any more.
    bypassed: bool,
}

/// Where a driver thread runs: a process (by index) or none.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Place {
    System,
    World(usize),
}

/// One entry of a driver thread's context, as the coordinator knows it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Frame {
    Attach(Place),
    Raise(u8),
}

/// A misuse record, without the handle (which the harness does not see).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct Recorded {
    kind: MisuseKind,
    process: Option<u64>,
    owner: Option<u64>,
}

fn recorded(misuse: &host::Misuse) -> Recorded {
    Recorded {
        kind: misuse.kind,
        process: misuse.pid,
        owner: misuse.owner_pid,
    }
}

struct World {
    /// The user's handle on the process; `None` once released.
    process: Option<Process>,
    id: u64,
    eprocess: usize,
    /// Each slot's allocation base (the last one, once freed: the model keeps its bytes, so no
    /// other allocation is made there while the process lives).
    bases: [usize; SLOTS],
    /// Whether each slot is allocated.
    live: [bool; SLOTS],
    standing: Vec<Standing>,
    exited: bool,
    /// Released, and nothing holds the object any more: the model has freed it.
    freed: bool,
    /// The misuses the model must have recorded against this process, in order.
    misuses: Vec<Recorded>,
}

impl World {
    fn new(process: Process, bases: [usize; SLOTS], exited: bool) -> World {
        World {
            id: process.id(),
            eprocess: process.eprocess() as usize,
            process: Some(process),
            bases,
            live: [true; SLOTS],
            standing: Vec::new(),
            exited,
            freed: false,
            misuses: Vec::new(),
        }
    }

    /// The base of `slot` if it is allocated and the process alive.
    fn base(&self, slot: usize) -> Option<usize> {
        (self.live[slot] && !self.exited).then_some(self.bases[slot])
    }

    /// Whether a region's `USER_MODE_ONLY` secure stands on `slot`: made with `with_any_flags`,
    /// whose caller promised that no kernel-mode free of the allocation comes while it stands
    /// (the drop would bug check).
    fn promised_no_kernel_free(&self, slot: usize) -> bool {
        self.standing.iter().any(|s| {
            s.slot == slot && s.region.is_some() && s.flags.contains(SecureFlags::USER_MODE_ONLY)
        })
    }

    /// Whether a secure that refuses `mode`'s changes stands on `slot`.
    fn secured_for(&self, slot: usize, mode: AccessMode) -> bool {
        self.standing.iter().any(|s| {
            s.slot == slot
                && (mode == AccessMode::User || !s.flags.contains(SecureFlags::USER_MODE_ONLY))
        })
    }

    /// Whether a decommit of pages `first..end` of `slot` asked from `mode` is refused: a secure
    /// that applies to `mode` covers one of them, or has `NO_CHANGE` (which covers the whole
    /// allocation).
    fn decommit_refused(&self, slot: usize, first: usize, end: usize, mode: AccessMode) -> bool {
        self.standing.iter().any(|s| {
            s.slot == slot
                && (mode == AccessMode::User || !s.flags.contains(SecureFlags::USER_MODE_ONLY))
                && (s.flags.contains(SecureFlags::NO_CHANGE) || (s.first < end && first < s.end))
        })
    }

    /// A kernel-mode change of `slot` went through: the `USER_MODE_ONLY` secures there no
    /// longer promise anything about the pages. Whether there were any.
    fn bypass(&mut self, slot: usize) -> bool {
        let mut any = false;
        let passed =
            |s: &&mut Standing| s.slot == slot && s.flags.contains(SecureFlags::USER_MODE_ONLY);
        for standing in self.standing.iter_mut().filter(passed) {
            standing.bypassed = true;
            any = true;
        }
        any
    }

    /// The user's handle, for an operation on a process that has not exited (so is not
    /// released).
    fn user(&self) -> Result<&Process, String> {
        self.process
            .as_ref()
            .ok_or_else(|| "a released process is used".to_string())
    }
}

struct Case {
    worlds: Vec<World>,
    regions: Vec<Region>,
    /// Each driver thread's context.
    frames: Vec<Vec<Frame>>,
    /// Every allocation's bytes, by base (forked children share their parent's).
    bytes: HashMap<usize, Vec<u8>>,
    next_id: u64,
    stats: Stats,
    /// The misuses the model must have recorded in its global list since the case began.
    misuses: Vec<Recorded>,
    misuses_before: usize,
    /// `mmsecure::abandoned_secures()` when the case began, and the abandons predicted since.
    abandoned_before: usize,
    abandoned: usize,
    /// `EPROCESS` values of the process objects freed during the case and not yet handed out
    /// again, the most recently freed last, each with the step that freed it.
    free_eprocesses: Vec<(usize, usize)>,
    step: usize,
    /// Make the predicted fatal drop ([`replay_stop`]) rather than end the sequence there.
    fatal: bool,
    /// Where the sequence stopped.
    stop: Option<Stop>,
}

fn readable(protect: u32) -> bool {
    protect & PAGE_GUARD == 0
        && matches!(
            protect,
            PAGE_READONLY
                | PAGE_READWRITE
                | PAGE_WRITECOPY
                | PAGE_EXECUTE_READ
                | PAGE_EXECUTE_READWRITE
                | PAGE_EXECUTE_WRITECOPY
        )
}

fn writable(protect: u32) -> bool {
    protect & PAGE_GUARD == 0
        && matches!(
            protect,
            PAGE_READWRITE | PAGE_WRITECOPY | PAGE_EXECUTE_READWRITE | PAGE_EXECUTE_WRITECOPY
        )
}

/// Whether a standing secure with `mode` lets its pages have `protect`: as [`allows`], but a
/// read-only secure also lets them go execute-only (`MmReadWrite[MM_EXECUTE]` is 10, WRK
/// protect.c L2720; issue #22), though its probe and the copies do not read such pages.
fn kept(mode: ProbeMode, protect: Option<u32>) -> bool {
    allows(mode, protect) || (mode == ProbeMode::ReadOnly && protect == Some(PAGE_EXECUTE))
}

fn allows(mode: ProbeMode, protect: Option<u32>) -> bool {
    match (mode, protect) {
        (ProbeMode::ReadOnly, Some(protect)) => readable(protect),
        (ProbeMode::ReadWrite, Some(protect)) => writable(protect),
        (_, None) => false,
    }
}

/// The raw flags an `Op::Secure` asks for.
fn raw_flags(flags: u8) -> u32 {
    u32::from(flags & 0xF) | if flags >= 0xF0 { 0x10 } else { 0 }
}

/// An access offset: modulo `limit`, or one that overflows `usize` for `u16::MAX`.
fn access_offset(offset: u16, limit: usize) -> usize {
    if offset == u16::MAX {
        usize::MAX - 1
    } else {
        usize::from(offset) % limit
    }
}

/// `len` bytes counting up from `byte`.
fn pattern(byte: u8, len: usize) -> Vec<u8> {
    (0..len).map(|i| byte.wrapping_add(i as u8)).collect()
}

/// The IRQL error of an operation that allows `APC_LEVEL` at most.
fn irql_too_high(irql: u8) -> Error {
    Error::IrqlTooHigh { irql, max: APC }
}

impl Case {
    fn new(fatal: bool) -> Result<Case, String> {
        let mut case = Case {
            worlds: Vec::new(),
            regions: Vec::new(),
            frames: vec![Vec::new(); DRIVERS],
            bytes: HashMap::new(),
            next_id: 1,
            stats: Stats::default(),
            misuses: Vec::new(),
            misuses_before: host::misuses().len(),
            abandoned_before: mmsecure::abandoned_secures(),
            abandoned: 0,
            free_eprocesses: Vec::new(),
            step: 0,
            fatal,
            stop: None,
        };
        for _ in 0..PROCESSES {
            let world = case.create()?;
            case.worlds.push(world);
        }
        Ok(case)
    }

    /// A new process with the four allocations, its `EPROCESS` value checked.
    fn create(&mut self) -> Result<World, String> {
        let process = Process::new();
        self.new_eprocess(process.eprocess() as usize)?;
        let mut bases = [0; SLOTS];
        for (slot, base) in bases.iter_mut().enumerate() {
            *base = self.allocate(&process, slot)?;
        }
        Ok(World::new(process, bases, false))
    }

    /// Where a new process goes: in place of one whose object is gone, or at the end while
    /// there is room.
    fn room(&self) -> Option<usize> {
        self.worlds
            .iter()
            .position(|world| world.freed)
            .or_else(|| (self.worlds.len() < MAX_PROCESSES).then_some(self.worlds.len()))
    }

    fn place(&mut self, at: usize, world: World) {
        if at == self.worlds.len() {
            self.worlds.push(world);
        } else {
            self.worlds[at] = world;
        }
    }

    /// Invariant 5 for a new process's `EPROCESS` value: never one still held; the most
    /// recently freed one if the case freed any.
    fn new_eprocess(&mut self, eprocess: usize) -> Result<(), String> {
        if let Some(held) = self
            .worlds
            .iter()
            .position(|world| !world.freed && world.eprocess == eprocess)
        {
            return Err(format!(
                "a new process got EPROCESS {eprocess:#x}, still process {held}'s"
            ));
        }
        let Some(&(_, step)) = self.free_eprocesses.last() else {
            return Ok(());
        };
        // Objects freed in one step may be freed in any order.
        let found = self
            .free_eprocesses
            .iter()
            .rposition(|(value, freed)| *freed == step && *value == eprocess);
        match found {
            Some(at) => {
                self.free_eprocesses.remove(at);
                self.stats.reused += 1;
                Ok(())
            }
            None => Err(format!(
                "a new process got EPROCESS {eprocess:#x}, not the one freed last: {:x?}",
                self.free_eprocesses
            )),
        }
    }

    /// Marks the process objects the harness no longer holds in any way as freed, as the model
    /// must have freed them.
    fn settle(&mut self) {
        for index in 0..self.worlds.len() {
            let world = &self.worlds[index];
            if world.freed || world.process.is_some() {
                continue;
            }
            let held = self.regions.iter().any(|region| region.process == index)
                || self
                    .frames
                    .iter()
                    .flatten()
                    .any(|frame| *frame == Frame::Attach(Place::World(index)));
            if !held {
                let world = &mut self.worlds[index];
                world.freed = true;
                self.free_eprocesses.push((world.eprocess, self.step));
                self.stats.freed += 1;
            }
        }
    }

    /// Makes slot `slot`'s kind of allocation in `process`.
    fn allocate(&mut self, process: &Process, slot: usize) -> Result<usize, String> {
        let made = match slot {
            RESERVED_SLOT => process.reserve(ALLOCATION).and_then(|base| {
                process
                    .commit(base, RESERVED_COMMITTED * PAGE, PAGE_READWRITE)
                    .map(|()| base)
            }),
            READ_ONLY_SLOT => process.allocate(ALLOCATION, PAGE_READONLY),
            _ => process.allocate(ALLOCATION, PAGE_READWRITE),
        };
        let base = made.map_err(|status| format!("cannot allocate: {status:?}"))? as usize;
        self.bytes.insert(base, vec![0; ALLOCATION]);
        Ok(base)
    }

    fn protections(&self, process: usize, base: usize) -> Vec<Option<u32>> {
        let user = self.worlds[process].process.as_ref();
        (0..PAGES)
            .map(|page| user.and_then(|user| user.protection((base + page * PAGE) as *const u8)))
            .collect()
    }

    fn run(mut self, ops: &[Op], drivers: &mut Drivers) -> Result<(Stats, Option<Stop>), String> {
        let mut log = String::new();
        for (step, op) in ops.iter().enumerate() {
            self.step = step;
            let _ = writeln!(log, "{step}: {op:?}");
            self.apply(*op, drivers)
                .and_then(|()| {
                    self.settle();
                    self.check()
                })
                .map_err(|e| format!("step {step}, {op:?}: {e}\n{log}"))?;
            if self.stop.is_some() {
                break;
            }
        }
        self.step = ops.len();
        self.finish(drivers)
            .map_err(|e| format!("at the end: {e}\n{log}"))?;
        Ok((self.stats, self.stop))
    }

    fn region_of(&self, driver: u8, pick: u8) -> Option<(usize, usize)> {
        let driver = usize::from(driver) % DRIVERS;
        let mine: Vec<usize> = (0..self.regions.len())
            .filter(|at| self.regions[*at].driver == driver)
            .collect();
        if mine.is_empty() {
            return None;
        }
        Some((driver, mine[usize::from(pick) % mine.len()]))
    }

    /// Where a driver thread's calls about a region of process `home` run, and at what IRQL.
    fn context(&self, driver: usize, home: usize) -> (Place, u8) {
        (
            self.attached(driver).unwrap_or(Place::World(home)),
            self.irql(driver),
        )
    }

    fn attached(&self, driver: usize) -> Option<Place> {
        self.frames[driver]
            .iter()
            .rev()
            .find_map(|frame| match frame {
                Frame::Attach(place) => Some(*place),
                Frame::Raise(_) => None,
            })
    }

    fn irql(&self, driver: usize) -> u8 {
        self.frames[driver]
            .iter()
            .filter_map(|frame| match frame {
                Frame::Raise(level) => Some(*level),
                Frame::Attach(_) => None,
            })
            .max()
            .unwrap_or(0)
    }

    fn pid(&self, place: Place) -> Option<u64> {
        match place {
            Place::System => None,
            Place::World(index) => Some(self.worlds[index].id),
        }
    }

    /// A misuse the model must record: globally, against `owner`, and against the process the
    /// call ran in.
    fn expect_misuse(&mut self, kind: MisuseKind, current: Place, owner: usize) {
        let misuse = Recorded {
            kind,
            process: self.pid(current),
            owner: Some(self.worlds[owner].id),
        };
        self.misuses.push(misuse);
        self.worlds[owner].misuses.push(misuse);
        if let Place::World(current) = current {
            if current != owner {
                self.worlds[current].misuses.push(misuse);
            }
        }
    }

    /// What releasing `region` (a drop of it or of its raw region) in `place` at `irql` must do:
    /// unsecure in its process at `APC_LEVEL` or below (where the process has exited, the kernel
    /// returns, and that is no misuse); anywhere else, abandon the secure, which stands until
    /// the exit.
    fn expect_release(&mut self, region: &Region, place: Place, irql: u8) {
        let home = region.process;
        if irql <= APC && place == Place::World(home) {
            if self.worlds[home].exited {
                self.stats.after_exit += 1;
            }
            self.worlds[home]
                .standing
                .retain(|s| s.region != Some(region.id));
        } else {
            self.abandoned += 1;
            self.stats.abandoned += 1;
            self.expect_misuse(MisuseKind::Abandoned, place, home);
            for standing in &mut self.worlds[home].standing {
                if standing.region == Some(region.id) {
                    standing.region = None;
                }
            }
        }
    }

    /// Counts an error a copy or `from_raw` got, by kind.
    fn count_error(&mut self, error: &Error) {
        match error {
            Error::WrongProcess => self.stats.wrong_process += 1,
            Error::IrqlTooHigh { .. } => self.stats.irql_too_high += 1,
            error if *error == ACCESS_VIOLATION => self.stats.access_violations += 1,
            error if *error == GUARD_PAGE => self.stats.guard_faults += 1,
            _ => {}
        }
    }

    /// What a copy of `len` bytes at `offset` of `region` by `driver` must get, short of the
    /// bytes: the crate's checks in order (bounds, IRQL, process), then the model's pages.
    ///
    /// A fault comes with the bytes copied before it.
    fn copy_outcome(
        &self,
        region: &Region,
        driver: usize,
        offset: usize,
        len: usize,
        write: bool,
    ) -> Result<(), (Error, usize)> {
        Case::bounds(region, offset, len).map_err(|e| (e, 0))?;
        let (place, irql) = self.context(driver, region.process);
        if irql > APC {
            return Err((irql_too_high(irql), 0));
        }
        if place != Place::World(region.process) {
            return Err((Error::WrongProcess, 0));
        }
        if len == 0 {
            return Ok(());
        }
        let world = &self.worlds[region.process];
        // The securing process has exited: its address space is gone, and a secure no longer
        // keeps anything there.
        let Some(user) = world.process.as_ref().filter(|_| !world.exited) else {
            return Err((ACCESS_VIOLATION, 0));
        };
        // The copy faults at the first page that now denies it, as a forward copy touches them.
        // A standing secure does not make that impossible: a kernel-mode change may have gone
        // past a USER_MODE_ONLY secure (or freed its allocation), and a user may make the pages
        // of a read-only secure execute-only (WRK protect.c L2720; issue #22), which the model's
        // copy does not read.
        let start = region.base + region.offset + offset;
        let end = start + len;
        let mut page = start / PAGE * PAGE;
        while page < end {
            let done = page.max(start) - start;
            match user.protection(page as *const u8) {
                Some(protect) if protect & PAGE_GUARD != 0 => return Err((GUARD_PAGE, done)),
                Some(protect)
                    if if write {
                        writable(protect)
                    } else {
                        readable(protect)
                    } => {}
                _ => return Err((ACCESS_VIOLATION, done)),
            }
            page += PAGE;
        }
        Ok(())
    }

    fn apply(&mut self, op: Op, drivers: &mut Drivers) -> Result<(), String> {
        match op {
            Op::Secure {
                driver,
                process,
                slot,
                offset,
                len,
                read_write,
                flags,
                apc,
            } => self.secure(
                drivers,
                usize::from(driver) % DRIVERS,
                usize::from(process) % self.worlds.len(),
                usize::from(slot) % SLOTS,
                usize::from(offset) % ALLOCATION,
                usize::from(len) % (ALLOCATION + PAGE + 1),
                if read_write {
                    ProbeMode::ReadWrite
                } else {
                    ProbeMode::ReadOnly
                },
                raw_flags(flags),
                apc,
            ),
            Op::Drop { driver, pick, apc } => match self.region_of(driver, pick) {
                Some((driver, at)) => self.drop_region(drivers, driver, at, apc, false),
                None => Ok(()),
            },
            Op::Read {
                driver,
                pick,
                offset,
                len,
            } => match self.region_of(driver, pick) {
                Some((driver, at)) => self.read(drivers, driver, at, offset, len),
                None => Ok(()),
            },
            Op::ReadValue {
                driver,
                pick,
                offset,
            } => match self.region_of(driver, pick) {
                Some((driver, at)) => self.read_value(drivers, driver, at, offset),
                None => Ok(()),
            },
            Op::Write {
                driver,
                pick,
                offset,
                len,
                byte,
            } => match self.region_of(driver, pick) {
                Some((driver, at)) => self.write(drivers, driver, at, offset, len, byte),
                None => Ok(()),
            },
            Op::ReadElsewhere {
                driver,
                pick,
                process,
            } => match self.region_of(driver, pick) {
                Some((driver, at)) => {
                    let other = usize::from(process) % self.worlds.len();
                    let region = &self.regions[at];
                    let elsewhere = if other == region.process {
                        None
                    } else {
                        self.worlds[other].process.clone()
                    };
                    let command = Command::ReadElsewhere {
                        id: region.id,
                        elsewhere,
                    };
                    let got = drivers.done(driver, command)?;
                    let irql = self.irql(driver);
                    let expected = if irql > APC {
                        irql_too_high(irql)
                    } else {
                        Error::WrongProcess
                    };
                    self.stats.copy_errors += 1;
                    self.count_error(&expected);
                    expect_eq("read from another context", got, Err(expected))
                }
                None => Ok(()),
            },
            Op::HandOff {
                driver,
                pick,
                retry,
            } => match self.region_of(driver, pick) {
                Some((from, at)) => self.hand_off(drivers, from, at, retry),
                None => Ok(()),
            },
            Op::Attach { driver, process } => {
                let driver = usize::from(driver) % DRIVERS;
                let index = usize::from(process) % (self.worlds.len() + 1);
                if self.frames[driver].len() >= MAX_FRAMES {
                    return Ok(());
                }
                let (place, process) = if index == self.worlds.len() {
                    (Place::System, None)
                } else {
                    match &self.worlds[index].process {
                        Some(process) => (Place::World(index), Some(process.clone())),
                        None => return Ok(()),
                    }
                };
                expect_eq(
                    "attach",
                    drivers.done(driver, Command::Attach(process))?,
                    Ok(()),
                )?;
                self.frames[driver].push(Frame::Attach(place));
                self.stats.attaches += 1;
                Ok(())
            }
            Op::Raise { driver, dispatch } => {
                let driver = usize::from(driver) % DRIVERS;
                if self.frames[driver].len() >= MAX_FRAMES {
                    return Ok(());
                }
                let level = if dispatch { DISPATCH } else { APC };
                expect_eq(
                    "raise",
                    drivers.done(driver, Command::Raise(level))?,
                    Ok(()),
                )?;
                self.frames[driver].push(Frame::Raise(level));
                self.stats.dispatch_raises += usize::from(dispatch);
                Ok(())
            }
            Op::DropOutOfOrder { driver, which } => {
                let driver = usize::from(driver) % DRIVERS;
                let Some((at, message)) = out_of_order_stop(&self.frames[driver], which) else {
                    return Ok(());
                };
                let Some(message) = message else {
                    // No bug check predicted: the drops are made here, and must return.
                    expect_eq(
                        "drop out of order",
                        drivers.done(driver, Command::DropOutOfOrder(at))?,
                        Ok(()),
                    )?;
                    self.frames[driver].clear();
                    return Ok(());
                };
                if self.fatal {
                    let _ = drivers.done(driver, Command::DropOutOfOrder(at))?;
                    return Err(format!("the model did not stop; predicted: {message}"));
                }
                if matches!(self.frames[driver][at], Frame::Attach(_)) {
                    self.stats.detach_stops += 1;
                } else {
                    self.stats.irql_stops += 1;
                }
                self.stop = Some(Stop {
                    step: self.step,
                    message,
                });
                Ok(())
            }
            Op::Detach { driver } | Op::Lower { driver } => {
                let driver = usize::from(driver) % DRIVERS;
                let attach = matches!(op, Op::Detach { .. });
                let at = self.frames[driver]
                    .iter()
                    .rposition(|frame| matches!(frame, Frame::Attach(_)) == attach);
                let Some(at) = at else {
                    return Ok(());
                };
                let command = if attach {
                    Command::Detach
                } else {
                    Command::Lower
                };
                expect_eq("detach or lower", drivers.done(driver, command)?, Ok(()))?;
                self.frames[driver].remove(at);
                Ok(())
            }
            Op::Protect {
                process,
                slot,
                page,
                pages,
                protect,
            } => {
                let protect = PROTECTIONS[usize::from(protect) % PROTECTIONS.len()];
                self.protect(process, slot, page, pages, protect, AccessMode::User)
            }
            Op::Commit {
                process,
                slot,
                page,
                pages,
                protect,
            } => {
                let protect = PROTECTIONS[usize::from(protect) % PROTECTIONS.len()];
                self.protect_or_commit(process, slot, page, pages, protect, None)
            }
            Op::Decommit {
                process,
                slot,
                page,
                pages,
            } if pages % 4 == 3 => self.decommit_all(process, slot, page),
            Op::Decommit {
                process,
                slot,
                page,
                pages,
            } => self.decommit(process, slot, page, pages, AccessMode::User),
            Op::Free { process, slot } => self.free(process, slot, AccessMode::User),
            Op::Kernel {
                pick,
                page,
                pages,
                protect,
                what,
            } => {
                if self.regions.is_empty() {
                    return Ok(());
                }
                let region = &self.regions[usize::from(pick) % self.regions.len()];
                let world = &self.worlds[region.process];
                let Some(slot) = (0..SLOTS).find(|slot| world.base(*slot) == Some(region.base))
                else {
                    return Ok(());
                };
                // The indices `user_pages` takes.
                let (process, slot) = (region.process as u8, slot as u8);
                let page = ((region.offset / PAGE + usize::from(page % 2)) % PAGES) as u8;
                match what % 4 {
                    0 => {
                        let guard = PAGE_READWRITE | PAGE_GUARD;
                        self.protect(process, slot, page, pages, guard, AccessMode::Kernel)
                    }
                    1 => {
                        let protect =
                            KERNEL_PROTECTIONS[usize::from(protect) % KERNEL_PROTECTIONS.len()];
                        self.protect(process, slot, page, pages, protect, AccessMode::Kernel)
                    }
                    2 => self.decommit(process, slot, page, pages, AccessMode::Kernel),
                    _ => self.free(process, slot, AccessMode::Kernel),
                }
            }
            Op::Allocate { process, slot } => {
                let (process, slot) = (
                    usize::from(process) % self.worlds.len(),
                    usize::from(slot) % SLOTS,
                );
                let world = &self.worlds[process];
                if world.exited || world.live[slot] {
                    return Ok(());
                }
                let owner = world.user()?.clone();
                let base = self.allocate(&owner, slot)?;
                let world = &mut self.worlds[process];
                world.bases[slot] = base;
                world.live[slot] = true;
                Ok(())
            }
            Op::UserWrite {
                process,
                slot,
                offset,
                len,
                byte,
            } => {
                let process = usize::from(process) % self.worlds.len();
                let slot = usize::from(slot) % SLOTS;
                let world = &self.worlds[process];
                let Some(base) = world.base(slot) else {
                    return Ok(());
                };
                let offset = usize::from(offset) % ALLOCATION;
                let data = pattern(byte, (usize::from(len) % PAGE + 1).min(ALLOCATION - offset));
                if world
                    .user()?
                    .write((base + offset) as *const u8, &data)
                    .is_ok()
                {
                    self.bytes.get_mut(&base).ok_or("no bytes")?[offset..offset + data.len()]
                        .copy_from_slice(&data);
                }
                Ok(())
            }
            Op::Fork { process } => {
                let Some(at) = self.room() else {
                    return Ok(());
                };
                let parent = &self.worlds[usize::from(process) % self.worlds.len()];
                let Some(user) = &parent.process else {
                    return Ok(());
                };
                let mut child = World::new(user.fork(), parent.bases, parent.exited);
                child.live = parent.live;
                // The inherited copies; a fork of an exited process is born exited.
                child.standing = parent
                    .standing
                    .iter()
                    .filter(|s| !s.flags.contains(SecureFlags::NO_INHERIT))
                    .map(|s| Standing {
                        region: None,
                        ..s.clone()
                    })
                    .collect();
                let born_exited = child.user()?.has_exited();
                expect_eq("child exited", born_exited, child.exited)?;
                self.new_eprocess(child.eprocess)?;
                self.place(at, child);
                self.stats.forks += 1;
                Ok(())
            }
            Op::Create => {
                let Some(at) = self.room() else {
                    return Ok(());
                };
                let world = self.create()?;
                self.place(at, world);
                self.stats.created += 1;
                Ok(())
            }
            Op::Exit { process, how } => {
                let process = usize::from(process) % self.worlds.len();
                if self.worlds[process].exited {
                    return Ok(());
                }
                let mine: Vec<usize> = (0..self.regions.len())
                    .filter(|at| self.regions[*at].process == process)
                    .collect();
                match how % 3 {
                    0 => {
                        // Highest index first, so the indices left stay valid.
                        for at in mine.into_iter().rev() {
                            let driver = self.regions[at].driver;
                            self.drop_region(drivers, driver, at, false, true)?;
                        }
                        self.worlds[process].user()?.exit();
                    }
                    1 => {
                        self.worlds[process].user()?.exit();
                        for at in mine.into_iter().rev() {
                            self.forget(drivers, at)?;
                        }
                    }
                    _ => self.worlds[process].user()?.exit(),
                }
                let world = &mut self.worlds[process];
                world.exited = true;
                world.standing.clear();
                self.stats.exits += 1;
                Ok(())
            }
            Op::Release { process } => {
                let process = usize::from(process) % self.worlds.len();
                let world = &mut self.worlds[process];
                if !world.exited || world.process.is_none() {
                    return Ok(());
                }
                world.process = None;
                self.stats.released += 1;
                Ok(())
            }
        }
    }

    /// Whether a secure of pages `first..end` of `slot` with `flags` must succeed in `process`.
    fn secure_must_succeed(
        &self,
        process: usize,
        slot: usize,
        span: Option<(usize, usize)>,
        mode: ProbeMode,
        flags: SecureFlags,
    ) -> bool {
        let world = &self.worlds[process];
        let (Some(base), Some((first, end))) = (world.base(slot), span) else {
            return false;
        };
        let protections = self.protections(process, base);
        let accessible = protections[first..end].iter().all(|p| allows(mode, *p));
        let on_slot = world.standing.iter().filter(|s| s.slot == slot);
        let blocked = on_slot
            .clone()
            .any(|s| s.flags.contains(SecureFlags::EXCLUSIVE))
            || (flags.contains(SecureFlags::EXCLUSIVE) && on_slot.count() > 0);
        accessible && !blocked
    }

    #[allow(clippy::too_many_arguments)]
    fn secure(
        &mut self,
        drivers: &mut Drivers,
        driver: usize,
        process: usize,
        slot: usize,
        offset: usize,
        len: usize,
        mode: ProbeMode,
        raw_flags: u32,
        apc: bool,
    ) -> Result<(), String> {
        // Attached elsewhere, the driver secures there.
        let place = self.attached(driver).unwrap_or(Place::World(process));
        let irql = self.irql(driver).max(if apc { APC } else { 0 });
        let process = match place {
            Place::World(index) => index,
            Place::System => process,
        };
        let home = match place {
            Place::World(index) => self.worlds[index].process.clone(),
            Place::System => None,
        };
        let base = self.worlds[process].bases[slot];
        let address = base + offset;
        // The pages of the allocation the range covers, if it lies inside it.
        let span = (offset + len <= ALLOCATION && len > 0)
            .then(|| (offset / PAGE, (offset + len - 1) / PAGE + 1));
        let flags = SecureFlags::from_bits_retain(raw_flags);
        let expected = if raw_flags & !0xF != 0 {
            Err(Error::UnknownFlags(raw_flags & !0xF))
        } else if len == 0 {
            Err(Error::ZeroLength)
        } else if irql > APC {
            Err(irql_too_high(irql))
        } else if place != Place::System
            && self.secure_must_succeed(process, slot, span, mode, flags)
        {
            Ok(())
        } else {
            Err(Error::Refused)
        };
        let id = self.next_id;
        self.next_id += 1;
        let command = Command::Secure {
            id,
            home,
            address,
            len,
            mode,
            flags,
            apc,
        };
        let got = drivers.done(driver, command)?;
        match got {
            Ok(()) => self.stats.secured += 1,
            Err(Error::Refused) => self.stats.refused += 1,
            Err(error) => {
                self.count_error(&error);
                self.stats.rejected += 1;
            }
        }
        expect_eq("secure", got, expected)?;
        if got.is_ok() {
            let (first, end) = span.ok_or("secured a range outside the allocation")?;
            let snapshot = flags
                .contains(SecureFlags::NO_CHANGE)
                .then(|| self.protections(process, base));
            self.worlds[process].standing.push(Standing {
                region: Some(id),
                slot,
                first,
                end,
                mode,
                flags,
                snapshot,
                bypassed: false,
            });
            self.regions.push(Region {
                id,
                driver,
                process,
                base,
                offset,
                len,
                mode,
            });
        }
        Ok(())
    }

    /// Drops a region: in the driver's context, or (`clean`) in its process at `PASSIVE_LEVEL`.
    fn drop_region(
        &mut self,
        drivers: &mut Drivers,
        driver: usize,
        at: usize,
        apc: bool,
        clean: bool,
    ) -> Result<(), String> {
        let region = self.regions.remove(at);
        let (place, irql) = if clean {
            (Place::World(region.process), 0)
        } else {
            let (place, irql) = self.context(driver, region.process);
            (place, irql.max(if apc { APC } else { 0 }))
        };
        let command = Command::Drop {
            id: region.id,
            apc,
            clean,
        };
        let dropped = drivers.done(driver, command)?;
        expect_eq("drop", dropped, Ok(()))?;
        self.expect_release(&region, place, irql);
        Ok(())
    }

    /// Gives a region up (`into_raw`, then `RawRegion::leak`): for one whose process exited.
    fn forget(&mut self, drivers: &mut Drivers, at: usize) -> Result<(), String> {
        let region = self.regions.remove(at);
        let forgotten = drivers.done(region.driver, Command::Forget { id: region.id })?;
        expect_eq("forget", forgotten, Ok(()))?;
        self.worlds[region.process]
            .standing
            .retain(|s| s.region != Some(region.id));
        Ok(())
    }

    fn hand_off(
        &mut self,
        drivers: &mut Drivers,
        from: usize,
        at: usize,
        retry: bool,
    ) -> Result<(), String> {
        let to = (from + 1) % DRIVERS;
        let region = self.regions[at].clone();
        let (raw, home) = match drivers.call(from, Command::TakeRaw { id: region.id })? {
            Reply::Raw(Some(taken)) => taken,
            _ => return Err("into_raw gave nothing".into()),
        };
        let command = Command::Adopt {
            id: region.id,
            raw,
            home,
            retry,
        };
        let Reply::Adopted { first, retried } = drivers.call(to, command)? else {
            return Err("unexpected reply".into());
        };
        let (place, irql) = self.context(to, region.process);
        let expected = if irql > APC {
            Err(irql_too_high(irql))
        } else if place != Place::World(region.process) {
            Err(Error::WrongProcess)
        } else {
            Ok(())
        };
        expect_eq("from_raw of into_raw", first, expected)?;
        self.stats.handed_off += 1;
        match first {
            Ok(()) => {
                expect_eq("no retry", retried, None)?;
                self.regions[at].driver = to;
            }
            Err(error) => {
                self.stats.raw_refused += 1;
                self.count_error(&error);
                if retry {
                    expect_eq("from_raw in the right context", retried, Some(Ok(())))?;
                    self.regions[at].driver = to;
                } else {
                    expect_eq("no retry", retried, None)?;
                    self.regions.remove(at);
                    self.expect_release(&region, place, irql);
                }
            }
        }
        Ok(())
    }

    /// What the bytes `offset..offset + len` of a region must be.
    fn expected_bytes(&self, region: &Region, offset: usize, len: usize) -> Result<&[u8], String> {
        let start = region.offset + offset;
        Ok(&self.bytes.get(&region.base).ok_or("no bytes")?[start..start + len])
    }

    fn bounds(region: &Region, offset: usize, len: usize) -> Result<(), Error> {
        match offset.checked_add(len) {
            Some(end) if end <= region.len => Ok(()),
            _ => Err(Error::OutOfBounds {
                offset,
                len,
                region_len: region.len,
            }),
        }
    }

    /// Counts a copy's outcome.
    fn count_copy<T>(&mut self, got: &Result<T, Error>) {
        match got {
            Ok(_) => self.stats.copied += 1,
            Err(error) => {
                self.stats.copy_errors += 1;
                self.count_error(error);
            }
        }
    }

    fn read(
        &mut self,
        drivers: &mut Drivers,
        driver: usize,
        at: usize,
        offset: u16,
        len: u16,
    ) -> Result<(), String> {
        let region = self.regions[at].clone();
        let limit = region.len + 9;
        let (offset, len) = (access_offset(offset, limit), usize::from(len) % limit);
        // Predicted before the copy, which clears a guard page it touches.
        let expected = self
            .copy_outcome(&region, driver, offset, len, false)
            .map_err(|(error, _)| error);
        let command = Command::Read {
            id: region.id,
            offset,
            len,
        };
        let Reply::Bytes(got) = drivers.call(driver, command)? else {
            return Err("unexpected reply".into());
        };
        self.count_copy(&got);
        match (got, expected) {
            (Ok(bytes), Ok(())) => {
                let want = self.expected_bytes(&region, offset, len)?;
                if bytes != want {
                    return Err(format!(
                        "read {len} bytes at {offset} of {region:?}: got {:?}, last written {:?}",
                        Head(&bytes),
                        Head(want)
                    ));
                }
                Ok(())
            }
            (got, expected) => expect_eq("read", got.map(|_| ()), expected),
        }
    }

    fn read_value(
        &mut self,
        drivers: &mut Drivers,
        driver: usize,
        at: usize,
        offset: u16,
    ) -> Result<(), String> {
        let region = self.regions[at].clone();
        let offset = access_offset(offset, region.len + 9);
        let expected = match self.copy_outcome(&region, driver, offset, 4, false) {
            Ok(()) => {
                let bytes = self.expected_bytes(&region, offset, 4)?;
                Ok(u32::from_ne_bytes([bytes[0], bytes[1], bytes[2], bytes[3]]))
            }
            Err((error, _)) => Err(error),
        };
        let Reply::Value(got) = drivers.call(
            driver,
            Command::ReadValue {
                id: region.id,
                offset,
            },
        )?
        else {
            return Err("unexpected reply".into());
        };
        self.count_copy(&got);
        expect_eq("read_value", got, expected)
    }

    fn write(
        &mut self,
        drivers: &mut Drivers,
        driver: usize,
        at: usize,
        offset: u16,
        len: u16,
        byte: u8,
    ) -> Result<(), String> {
        let region = self.regions[at].clone();
        let limit = region.len + 9;
        let (offset, len) = (access_offset(offset, limit), usize::from(len) % limit);
        let data = pattern(byte, len);
        let (expected, written) = if region.mode == ProbeMode::ReadOnly {
            (Err(Error::NotWritable), 0)
        } else {
            match self.copy_outcome(&region, driver, offset, len, true) {
                Ok(()) => (Ok(()), len),
                // The bytes before a faulting page are written.
                Err((error, done)) => (Err(error), done),
            }
        };
        let command = Command::Write {
            id: region.id,
            offset,
            data: data.clone(),
        };
        let got = drivers.done(driver, command)?;
        self.count_copy(&got);
        expect_eq("write", got, expected)?;
        if written > 0 {
            let start = region.offset + offset;
            self.bytes.get_mut(&region.base).ok_or("no bytes")?[start..start + written]
                .copy_from_slice(&data[..written]);
        }
        Ok(())
    }

    /// The process, allocation base and pages `first..end` (inside the allocation) of a user
    /// operation, if the process is alive and the slot allocated.
    fn user_pages(
        &self,
        process: u8,
        slot: u8,
        page: u8,
        pages: u8,
    ) -> Option<(usize, usize, usize, usize, usize)> {
        let process = usize::from(process) % self.worlds.len();
        let slot = usize::from(slot) % SLOTS;
        let base = self.worlds[process].base(slot)?;
        let first = usize::from(page) % PAGES;
        let end = (first + usize::from(pages) % 2 + 1).min(PAGES);
        Some((process, slot, base, first, end))
    }

    fn protect(
        &mut self,
        process: u8,
        slot: u8,
        page: u8,
        pages: u8,
        protect: u32,
        mode: AccessMode,
    ) -> Result<(), String> {
        self.protect_or_commit(process, slot, page, pages, protect, Some(mode))
    }

    /// A protection change from `mode` (`Some`), or a user's commit (`None`).
    fn protect_or_commit(
        &mut self,
        process: u8,
        slot: u8,
        page: u8,
        pages: u8,
        protect: u32,
        mode: Option<AccessMode>,
    ) -> Result<(), String> {
        let Some((process, slot, base, first, end)) = self.user_pages(process, slot, page, pages)
        else {
            return Ok(());
        };
        let commit = mode.is_none();
        let mode = mode.unwrap_or(AccessMode::User);
        let secured = self.worlds[process].secured_for(slot, mode);
        let before = self.protections(process, base);
        let user = self.worlds[process].user()?;
        let address = (base + first * PAGE) as *mut u8;
        let len = (end - first) * PAGE;
        let result = if commit {
            user.commit(address, len, protect)
        } else {
            user.protect(address, len, protect, mode).map(|_| ())
        };
        let uncommitted = before[first..end].contains(&None);
        match result {
            Ok(()) if commit => {
                // Newly committed pages read as zero.
                let bytes = self.bytes.get_mut(&base).ok_or("no bytes")?;
                for page in (first..end).filter(|page| before[*page].is_none()) {
                    bytes[page * PAGE..(page + 1) * PAGE].fill(0);
                }
                // A commit writes its protection into pages nobody touched with no secure check
                // (WRK allocvm.c L1956, L1980; issue #22), `NO_CHANGE` included: what it did to
                // the allocation is the new baseline. (Secured pages were touched by the probe,
                // so the per-page check above still holds.)
                let now = self.protections(process, base);
                for standing in self.worlds[process].standing.iter_mut() {
                    if standing.slot == slot && standing.snapshot.is_some() {
                        standing.snapshot = Some(now.clone());
                    }
                }
                Ok(())
            }
            Ok(()) => {
                if mode == AccessMode::Kernel && self.worlds[process].bypass(slot) {
                    self.stats.kernel_bypasses += 1;
                }
                Ok(())
            }
            Err(Status(STATUS_INVALID_PAGE_PROTECTION)) if secured => {
                self.stats.user_refused += 1;
                Ok(())
            }
            // Protecting uncommitted pages fails whatever stands.
            Err(Status(STATUS_NOT_COMMITTED)) if !commit && uncommitted => Ok(()),
            Err(status) => Err(format!(
                "refused with {status:?}; secured: {secured}, pages before: {:x?}",
                &before[first..end]
            )),
        }
    }

    fn decommit(
        &mut self,
        process: u8,
        slot: u8,
        page: u8,
        pages: u8,
        mode: AccessMode,
    ) -> Result<(), String> {
        let Some((process, slot, base, first, end)) = self.user_pages(process, slot, page, pages)
        else {
            return Ok(());
        };
        let result = self.worlds[process].user()?.decommit(
            (base + first * PAGE) as *mut u8,
            (end - first) * PAGE,
            mode,
        );
        if self.worlds[process].decommit_refused(slot, first, end, mode) {
            self.stats.user_refused += 1;
            expect_eq(
                "decommit of secured pages",
                result,
                Err(Status(STATUS_INVALID_PAGE_PROTECTION)),
            )
        } else {
            expect_eq("decommit of pages no secure covers", result, Ok(()))?;
            if mode == AccessMode::Kernel && self.worlds[process].bypass(slot) {
                self.stats.kernel_bypasses += 1;
            }
            Ok(())
        }
    }

    /// A user's `MEM_DECOMMIT` of size 0 at `page`: at the base's page it decommits the whole
    /// allocation, refused only by a `NO_CHANGE` secure; elsewhere `STATUS_FREE_VM_NOT_AT_BASE`.
    /// The secures it went past stand on decommitted pages: they promise nothing more (as past a
    /// kernel-mode change), so they are marked bypassed.
    fn decommit_all(&mut self, process: u8, slot: u8, page: u8) -> Result<(), String> {
        let Some((process, slot, base, first, _)) = self.user_pages(process, slot, page, 0) else {
            return Ok(());
        };
        let result = self.worlds[process].user()?.decommit(
            (base + first * PAGE) as *mut u8,
            0,
            AccessMode::User,
        );
        let world = &mut self.worlds[process];
        let no_change = world
            .standing
            .iter()
            .any(|s| s.slot == slot && s.flags.contains(SecureFlags::NO_CHANGE));
        if first != 0 {
            expect_eq(
                "decommit of size 0 off the base",
                result,
                Err(Status(STATUS_FREE_VM_NOT_AT_BASE)),
            )
        } else if no_change {
            self.stats.user_refused += 1;
            expect_eq(
                "decommit of size 0 under NO_CHANGE",
                result,
                Err(Status(STATUS_INVALID_PAGE_PROTECTION)),
            )
        } else {
            expect_eq("decommit of size 0 at the base", result, Ok(()))?;
            for standing in world.standing.iter_mut().filter(|s| s.slot == slot) {
                standing.bypassed = true;
            }
            Ok(())
        }
    }

    fn free(&mut self, process: u8, slot: u8, mode: AccessMode) -> Result<(), String> {
        let (process, slot) = (
            usize::from(process) % self.worlds.len(),
            usize::from(slot) % SLOTS,
        );
        let world = &self.worlds[process];
        let Some(base) = world.base(slot) else {
            return Ok(());
        };
        if mode == AccessMode::Kernel && world.promised_no_kernel_free(slot) {
            // The other driver keeps `with_any_flags`' promise (issue #22): no free.
            return Ok(());
        }
        let result = world.user()?.free(base as *mut u8, mode);
        if world.secured_for(slot, mode) {
            self.stats.user_refused += 1;
            expect_eq(
                "free of a secured allocation",
                result,
                Err(Status(STATUS_INVALID_PAGE_PROTECTION)),
            )
        } else {
            expect_eq("free with nothing secured", result, Ok(()))?;
            let world = &mut self.worlds[process];
            world.live[slot] = false;
            // A kernel-mode free takes the USER_MODE_ONLY secures with the allocation: only
            // ones no region holds (abandoned, or a fork's), as promised above.
            let before = world.standing.len();
            world.standing.retain(|s| s.slot != slot);
            if world.standing.len() != before {
                self.stats.kernel_bypasses += 1;
            }
            Ok(())
        }
    }

    /// The invariants (module docs), on the model's state now.
    fn check(&self) -> Result<(), String> {
        let abandoned = mmsecure::abandoned_secures().wrapping_sub(self.abandoned_before);
        if abandoned != self.abandoned {
            return Err(format!(
                "abandoned_secures() grew by {abandoned}, {} abandons expected",
                self.abandoned
            ));
        }
        for (index, world) in self.worlds.iter().enumerate() {
            // A released process can no longer be asked; the global record covers it.
            let Some(process) = &world.process else {
                continue;
            };
            let misuses: Vec<Recorded> = process.misuses().iter().map(recorded).collect();
            if misuses != world.misuses {
                return Err(format!(
                    "process {index}: misuses recorded {misuses:?}, expected {:?}",
                    world.misuses
                ));
            }
            let regions = self.regions.iter().filter(|r| r.process == index).count();
            if process.driver_references() != regions {
                return Err(format!(
                    "process {index}: {} driver references, {regions} regions",
                    process.driver_references()
                ));
            }
            let standing = if world.exited {
                0
            } else {
                world.standing.len()
            };
            if process.secure_count() != standing {
                return Err(format!(
                    "process {index}: the model has {} secures, {standing} stand",
                    process.secure_count()
                ));
            }
            if world.exited {
                continue;
            }
            for secure in world.standing.iter().filter(|s| !s.bypassed) {
                let base = world
                    .base(secure.slot)
                    .ok_or_else(|| format!("process {index}: secured slot freed: {secure:?}"))?;
                let now = self.protections(index, base);
                for (page, protect) in now.iter().enumerate().take(secure.end).skip(secure.first) {
                    if !kept(secure.mode, *protect) {
                        return Err(format!(
                            "process {index}: page {page} is {protect:x?} under {secure:x?}"
                        ));
                    }
                }
                if let Some(snapshot) = &secure.snapshot {
                    for (page, (then, now)) in snapshot.iter().zip(&now).enumerate() {
                        let unguard = |p: Option<u32>| p.map(|p| p & !PAGE_GUARD);
                        if then.is_some() && unguard(*then) != unguard(*now) {
                            return Err(format!(
                                "process {index}: NO_CHANGE page {page} went {then:x?} -> \
                                 {now:x?} under {secure:x?}"
                            ));
                        }
                    }
                }
            }
        }
        Ok(())
    }

    /// Undoes every driver thread's attaches and raises; reads (16 bytes at most) and drops every
    /// region in its process at `PASSIVE_LEVEL` (where the process exited, the read is an access
    /// violation, and the drop is no misuse); then nothing is secured
    /// but what forked children inherited and drops abandoned, every other allocation can be
    /// freed, and the model's global misuse record holds exactly the predicted misuses.
    fn finish(&mut self, drivers: &mut Drivers) -> Result<(), String> {
        for driver in 0..DRIVERS {
            expect_eq("reset", drivers.done(driver, Command::Reset)?, Ok(()))?;
            self.frames[driver].clear();
        }
        while let Some(region) = self.regions.last() {
            let (driver, at) = (region.driver, self.regions.len() - 1);
            // The request completes: a last copy out (an access violation where the process
            // exited), then the drop.
            self.read(drivers, driver, at, 0, 16)?;
            self.drop_region(drivers, driver, at, false, true)?;
        }
        self.settle();
        self.check()?;
        for index in 0..self.worlds.len() {
            if self.worlds[index]
                .standing
                .iter()
                .any(|s| s.region.is_some())
            {
                return Err(format!("process {index}: a dropped region still stands"));
            }
            if self.worlds[index].exited {
                continue;
            }
            // Refused where a fork's inherited copy or an abandoned secure stands, done
            // everywhere else.
            for slot in 0..SLOTS {
                self.free(index as u8, slot as u8, AccessMode::User)?;
            }
            let world = &mut self.worlds[index];
            world.user()?.exit();
            world.exited = true;
            world.standing.clear();
        }
        self.check()?;
        let all = host::misuses();
        let since: Vec<Recorded> = all
            .get(self.misuses_before..)
            .unwrap_or_default()
            .iter()
            .map(recorded)
            .collect();
        if since != self.misuses {
            return Err(format!(
                "the model's global record has {since:?}, expected {:?}",
                self.misuses
            ));
        }
        Ok(())
    }
}

/// `Err` naming `what` unless `got == expected`.
/// For [`Op::DropOutOfOrder`] on a driver thread with context `frames`: the frame dropped
/// (`which` modulo the frames with a later frame of their kind; `None` if no frame has a later
/// one of its kind) and how the model's bug check begins (`None` if the drops make none).
///
/// Rule 27 of the model's table (`mmsecure-sys/src/host/thread.rs`): attaches are numbered from
/// 1 in order; dropping number `mine` while `latest` stands stops at once as
/// `INVALID_PROCESS_DETACH_ATTEMPT`. An IRQL guard lowers to the IRQL before its raise (the
/// highest raised before it): dropping one early lowers past the later ones, and the first
/// later one then undone whose level to lower to is above the current one stops as
/// `IRQL_NOT_LESS_OR_EQUAL`; attaches undone on the way are in order.
fn out_of_order_stop(frames: &[Frame], which: u8) -> Option<(usize, Option<String>)> {
    let is_attach = |frame: &Frame| matches!(frame, Frame::Attach(_));
    let candidates: Vec<usize> = (0..frames.len())
        .filter(|at| {
            frames[at + 1..]
                .iter()
                .any(|later| is_attach(later) == is_attach(&frames[*at]))
        })
        .collect();
    if candidates.is_empty() {
        return None;
    }
    let at = candidates[usize::from(which) % candidates.len()];
    if is_attach(&frames[at]) {
        let mine = frames[..=at].iter().filter(|f| is_attach(f)).count();
        let latest = frames.iter().filter(|f| is_attach(f)).count();
        return Some((
            at,
            Some(format!(
                "INVALID_PROCESS_DETACH_ATTEMPT (bug check 0x6): KeUnstackDetachProcess of \
                 attach number {mine} of this thread while attach number {latest} is the latest"
            )),
        ));
    }
    // Each raise's level to lower back to: the IRQL before it.
    let mut irql = 0;
    let mut previous = vec![0; frames.len()];
    for (frame, previous) in frames.iter().zip(&mut previous) {
        if let Frame::Raise(level) = frame {
            *previous = irql;
            irql = irql.max(*level);
        }
    }
    irql = previous[at];
    for later in (0..frames.len()).rev().filter(|later| *later != at) {
        if is_attach(&frames[later]) {
            continue;
        }
        if previous[later] > irql {
            return Some((
                at,
                Some(format!(
                    "IRQL_NOT_LESS_OR_EQUAL (bug check 0xA): KeLowerIrql to IRQL {} ({}) at \
                     IRQL {irql} ({})",
                    previous[later],
                    irql_name(previous[later]),
                    irql_name(irql),
                )),
            ));
        }
        irql = previous[later];
    }
    Some((at, None))
}

fn irql_name(irql: u8) -> &'static str {
    match irql {
        0 => "PASSIVE_LEVEL",
        APC => "APC_LEVEL",
        _ => "DISPATCH_LEVEL",
    }
}

fn expect_eq<T: PartialEq + std::fmt::Debug>(
    what: &str,
    got: T,
    expected: T,
) -> Result<(), String> {
    if got == expected {
        Ok(())
    } else {
        Err(format!("{what}: got {got:?}, expected {expected:?}"))
    }
}

/// The first bytes of a long buffer, for messages.
struct Head<'a>(&'a [u8]);

impl std::fmt::Debug for Head<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let shown = self.0.len().min(24);
        write!(f, "{:?}", &self.0[..shown])?;
        if self.0.len() > shown {
            write!(f, "… ({} bytes)", self.0.len())?;
        }
        Ok(())
    }
}
