//! Random interleavings of a driver's and a user's operations on the host backend, run against
//! the safe API and checked after every step. Shared by `tests/proptest_region.rs` (proptest picks
//! the operations) and `fuzz/fuzz_targets/region_ops.rs` (libFuzzer's bytes are decoded into
//! them).
//!
//! # The world
//!
//! Two user processes to begin with (forks add children, up to four in all), each with four
//! allocations of four pages: two read-write, one reservation with its first two pages committed
//! read-write, one read-only. Two driver threads hold [`SecureRegion`]s; the coordinating thread
//! plays the user threads. Operations run one at a time, in the order given, so every outcome is
//! predictable; the driver threads are real threads (unless `threads` is false) and each region
//! lives on the thread that made it, as a `!Send` region must.
//!
//! # The invariants, checked after every operation
//!
//! 1. **No secured range is freed or made more restrictive than its secure allows**: for every
//!    secure standing (a region a driver holds, or its copy inherited by a forked child), each
//!    page of its page-rounded range is committed, not a guard page, and readable (`ReadOnly`) or
//!    writable (`ReadWrite`); with `NO_CHANGE`, no page of the allocation that was committed when
//!    it was made has changed protection (a guard page's one-shot fault aside). A user `free` or
//!    `decommit` of an allocation with a secure standing is refused; without one it succeeds.
//! 2. **Every successful secure is unsecured exactly once**: the model's `secure_count` of each
//!    live process equals the secures the harness knows to stand there (each drop takes away
//!    exactly one; exit takes them all), and an exited process has none.
//! 3. **No misuse is recorded by the model**: no unsecure in the wrong process, after exit, with
//!    no process, or with an unknown or already-unsecured handle.
//! 4. **The bytes read equal what was last written**: the harness keeps a copy of every
//!    allocation's bytes, updated by every write (driver or user) and every commit (which zeroes
//!    newly committed pages). Since operations run one at a time, every user write is known, so
//!    each read must equal the copy exactly; the concurrent case, where only "no user thread
//!    wrote" makes the bytes predictable, is `tests/stress.rs`'s.
//!
//! Around them, every outcome of the safe API is predicted: a secure succeeds exactly when the
//! documented rules say it must (range inside one allocation, every page committed with the
//! access asked, no `EXCLUSIVE` conflict, the process alive), and fails with the right
//! [`Error`] otherwise; copies fail exactly when out of bounds, not writable or in the wrong
//! process.

use std::collections::HashMap;
use std::fmt::Write as _;
use std::sync::mpsc::{channel, Receiver, Sender};

use mmsecure::{Error, ProbeMode, RawRegion, SecureFlags, SecureRegion};
use mmsecure_sys::host::{
    self, Process, Status, PAGE_EXECUTE, PAGE_EXECUTE_READ, PAGE_EXECUTE_READWRITE,
    PAGE_EXECUTE_WRITECOPY, PAGE_GUARD, PAGE_NOACCESS, PAGE_READONLY, PAGE_READWRITE,
    PAGE_WRITECOPY, STATUS_INVALID_PAGE_PROTECTION, STATUS_NOT_COMMITTED,
};
use mmsecure_sys::APC_LEVEL;

/// The page size.
pub const PAGE: usize = host::PAGE_SIZE;
/// Pages per allocation.
pub const PAGES: usize = 4;
/// Bytes per allocation.
pub const ALLOCATION: usize = PAGES * PAGE;
/// Allocations per process.
pub const SLOTS: usize = 4;
/// Processes at the start; forks add children up to [`MAX_PROCESSES`].
pub const PROCESSES: usize = 2;
/// The most processes a case has.
pub const MAX_PROCESSES: usize = 4;
/// Driver threads.
pub const DRIVERS: usize = 2;

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

/// One operation. Numbers are taken modulo what they index (a process, a slot, a driver's
/// regions), so every value of every field means something.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Op {
    /// A driver thread secures part of an allocation: `SecureRegion::new` when the flags are
    /// empty, `with_flags` otherwise. `flags`: the low four bits are the `MM_SECURE_*` flags;
    /// `0xF0` and above also sets the unknown bit `0x10`.
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
        /// At `APC_LEVEL` rather than `PASSIVE_LEVEL`.
        apc: bool,
    },
    /// A driver thread drops one of its regions (unsecure).
    Drop {
        /// Which driver thread.
        driver: u8,
        /// Which of its regions.
        pick: u8,
        /// At `APC_LEVEL`.
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
    /// A driver thread reads one of its regions from another process' context (or none).
    ReadElsewhere {
        /// Which driver thread.
        driver: u8,
        /// Which of its regions.
        pick: u8,
        /// Which process to attach to; the region's own means no process at all (System).
        process: u8,
    },
    /// A driver thread takes one of its regions apart (`into_raw`) and the other driver thread
    /// rebuilds it (`from_raw`): a pended IRP finished elsewhere.
    HandOff {
        /// Which driver thread gives the region away.
        driver: u8,
        /// Which of its regions.
        pick: u8,
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
        /// How many pages (1 or 2).
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
    /// A process exits. With `notify`, the driver first drops that process' regions (as a
    /// process-notify routine would, in the process' context); without, it learns of the exit
    /// afterwards and forgets them (`into_raw`, never rebuilt), since exit dropped the secures.
    Exit {
        /// Which process.
        process: u8,
        /// Drop the regions before the exit, rather than forget them after.
        notify: bool,
    },
}

/// How often each kind of outcome happened in a run: to show the operations did something.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Stats {
    /// Secures that succeeded.
    pub secured: usize,
    /// Secures the kernel refused (`Error::Refused`).
    pub refused: usize,
    /// Secures the crate refused itself (zero length, unknown flags).
    pub rejected: usize,
    /// Copies (either way) that succeeded.
    pub copied: usize,
    /// Copies refused (out of bounds, not writable, wrong process).
    pub copy_errors: usize,
    /// Regions handed from one driver thread to the other.
    pub handed_off: usize,
    /// User operations the model refused because a secure stood in the way.
    pub user_refused: usize,
    /// Forks.
    pub forks: usize,
    /// Exits.
    pub exits: usize,
}

impl std::ops::AddAssign for Stats {
    fn add_assign(&mut self, other: Stats) {
        self.secured += other.secured;
        self.refused += other.refused;
        self.rejected += other.rejected;
        self.copied += other.copied;
        self.copy_errors += other.copy_errors;
        self.handed_off += other.handed_off;
        self.user_refused += other.user_refused;
        self.forks += other.forks;
        self.exits += other.exits;
    }
}

/// Runs `ops` and checks the invariants after each; at the end, drops every region and checks
/// that nothing stays secured. `threads`: real driver threads (else the driver threads' work
/// runs on this one, which is faster and otherwise the same).
pub fn run(ops: &[Op], threads: bool) -> Result<Stats, String> {
    // The first flagged secure looks MmSecureVirtualMemoryEx up, which needs PASSIVE_LEVEL.
    if !mmsecure::secure_ex_available() {
        return Err("the host backend has no MmSecureVirtualMemoryEx".into());
    }
    if !threads {
        let mut drivers = Drivers::Inline((0..DRIVERS).map(|_| Driver::default()).collect());
        return Case::new()?.run(ops, &mut drivers);
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
        let result = Case::new().and_then(|case| case.run(ops, &mut drivers));
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

/// What a driver thread is asked to do. Regions are named by the coordinator's ids.
enum Command {
    Secure {
        id: u64,
        process: Process,
        address: usize,
        len: usize,
        mode: ProbeMode,
        flags: SecureFlags,
        apc: bool,
    },
    Drop {
        id: u64,
        apc: bool,
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
        process: Process,
    },
    Forget {
        id: u64,
    },
}

/// A driver thread's answer.
enum Reply {
    Done(Result<(), Error>),
    Bytes(Result<Vec<u8>, Error>),
    Value(Result<u32, Error>),
    Raw(Option<RawRegion>),
    /// The region named is not this thread's (a harness bug).
    Missing,
}

/// A driver thread's regions, each with the process it attaches to for it.
#[derive(Default)]
struct Driver {
    regions: Vec<(u64, SecureRegion, Process)>,
}

impl Driver {
    fn take(&mut self, id: u64) -> Option<(SecureRegion, Process)> {
        let at = self.regions.iter().position(|(mine, ..)| *mine == id)?;
        let (_, region, process) = self.regions.remove(at);
        Some((region, process))
    }

    fn find(&self, id: u64) -> Option<&(u64, SecureRegion, Process)> {
        self.regions.iter().find(|(mine, ..)| *mine == id)
    }

    fn handle(&mut self, command: Command) -> Reply {
        match command {
            Command::Secure {
                id,
                process,
                address,
                len,
                mode,
                flags,
                apc,
            } => {
                let _in = process.attach();
                let _irql = apc.then(|| host::raise_irql(APC_LEVEL as u8));
                let made = if flags.is_empty() {
                    SecureRegion::new(address as *const u8, len, mode)
                } else {
                    SecureRegion::with_flags(address as *const u8, len, mode, flags)
                };
                Reply::Done(made.map(|region| self.regions.push((id, region, process.clone()))))
            }
            Command::Drop { id, apc } => match self.take(id) {
                Some((region, process)) => {
                    let _in = process.attach();
                    let _irql = apc.then(|| host::raise_irql(APC_LEVEL as u8));
                    drop(region);
                    Reply::Done(Ok(()))
                }
                None => Reply::Missing,
            },
            Command::Read { id, offset, len } => match self.find(id) {
                Some((_, region, process)) => {
                    let _in = process.attach();
                    let mut out = vec![0u8; len];
                    Reply::Bytes(region.read(offset, &mut out).map(|()| out))
                }
                None => Reply::Missing,
            },
            Command::ReadValue { id, offset } => match self.find(id) {
                Some((_, region, process)) => {
                    let _in = process.attach();
                    Reply::Value(region.read_value::<u32>(offset))
                }
                None => Reply::Missing,
            },
            Command::Write { id, offset, data } => match self.find(id) {
                Some((_, region, process)) => {
                    let _in = process.attach();
                    Reply::Done(region.write(offset, &data))
                }
                None => Reply::Missing,
            },
            Command::ReadElsewhere { id, elsewhere } => match self.find(id) {
                Some((_, region, _)) => {
                    let _in = elsewhere.as_ref().map(Process::attach);
                    let mut out = [0u8; 1];
                    Reply::Done(region.read(0, &mut out))
                }
                None => Reply::Missing,
            },
            Command::TakeRaw { id } => {
                Reply::Raw(self.take(id).map(|(region, _)| region.into_raw()))
            }
            Command::Adopt { id, raw, process } => {
                let _in = process.attach();
                // `raw` came from `into_raw` on the other driver thread, which no longer has it.
                let rebuilt = SecureRegion::from_raw(raw).map_err(Error::from);
                Reply::Done(rebuilt.map(|region| self.regions.push((id, region, process.clone()))))
            }
            Command::Forget { id } => match self.take(id) {
                Some((region, _)) => {
                    region.into_raw().abandon();
                    Reply::Done(Ok(()))
                }
                None => Reply::Missing,
            },
        }
    }
}

impl Drop for Driver {
    /// A case that failed midway leaves regions behind: forget them (their processes are
    /// dropped with the case) rather than unsecure them from no process context.
    fn drop(&mut self) {
        for (_, region, _) in self.regions.drain(..) {
            let _ = region.into_raw();
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

/// A secure standing in a process: a region's, or a copy inherited through a fork.
#[derive(Clone, Debug)]
struct Standing {
    /// The region, or `None` for an inherited copy (only the child's exit ends it).
    region: Option<u64>,
    slot: usize,
    /// Page indices `first..end` in the allocation.
    first: usize,
    end: usize,
    mode: ProbeMode,
    flags: SecureFlags,
    /// With `NO_CHANGE`: the allocation's protections when it was made.
    snapshot: Option<Vec<Option<u32>>>,
}

struct World {
    process: Process,
    /// Each slot's allocation base (the last one, once freed: the model keeps its bytes, so no
    /// other allocation is made there while the case runs).
    bases: [usize; SLOTS],
    /// Whether each slot is allocated.
    live: [bool; SLOTS],
    standing: Vec<Standing>,
    exited: bool,
}

impl World {
    /// The base of `slot` if it is allocated and the process alive.
    fn base(&self, slot: usize) -> Option<usize> {
        (self.live[slot] && !self.exited).then_some(self.bases[slot])
    }

    /// Whether a secure stands on `slot`.
    fn secured(&self, slot: usize) -> bool {
        self.standing.iter().any(|s| s.slot == slot)
    }
}

struct Case {
    worlds: Vec<World>,
    regions: Vec<Region>,
    /// Every allocation's bytes, by base (forked children share their parent's).
    bytes: HashMap<usize, Vec<u8>>,
    next_id: u64,
    stats: Stats,
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

impl Case {
    fn new() -> Result<Case, String> {
        let mut case = Case {
            worlds: Vec::new(),
            regions: Vec::new(),
            bytes: HashMap::new(),
            next_id: 1,
            stats: Stats::default(),
        };
        for _ in 0..PROCESSES {
            let process = Process::new();
            let mut bases = [0; SLOTS];
            for (slot, base) in bases.iter_mut().enumerate() {
                *base = case.allocate(&process, slot)?;
            }
            case.worlds.push(World {
                process,
                bases,
                live: [true; SLOTS],
                standing: Vec::new(),
                exited: false,
            });
        }
        Ok(case)
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
        (0..PAGES)
            .map(|page| {
                self.worlds[process]
                    .process
                    .protection((base + page * PAGE) as *const u8)
            })
            .collect()
    }

    fn run(mut self, ops: &[Op], drivers: &mut Drivers) -> Result<Stats, String> {
        let mut log = String::new();
        for (step, op) in ops.iter().enumerate() {
            let _ = writeln!(log, "{step}: {op:?}");
            self.apply(*op, drivers)
                .and_then(|()| self.check())
                .map_err(|e| format!("step {step}, {op:?}: {e}\n{log}"))?;
        }
        self.finish(drivers)
            .map_err(|e| format!("at the end: {e}\n{log}"))?;
        Ok(self.stats)
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
                Some((driver, at)) => self.drop_region(drivers, driver, at, apc),
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
                    let elsewhere =
                        (other != region.process).then(|| self.worlds[other].process.clone());
                    let command = Command::ReadElsewhere {
                        id: region.id,
                        elsewhere,
                    };
                    let got = drivers.done(driver, command)?;
                    self.stats.copy_errors += 1;
                    expect_eq("read from another context", got, Err(Error::WrongProcess))
                }
                None => Ok(()),
            },
            Op::HandOff { driver, pick } => match self.region_of(driver, pick) {
                Some((from, at)) => {
                    let to = (from + 1) % DRIVERS;
                    let id = self.regions[at].id;
                    let raw = match drivers.call(from, Command::TakeRaw { id })? {
                        Reply::Raw(Some(raw)) => raw,
                        _ => return Err("into_raw gave nothing".into()),
                    };
                    let process = self.worlds[self.regions[at].process].process.clone();
                    let adopted = drivers.done(to, Command::Adopt { id, raw, process })?;
                    expect_eq("from_raw of into_raw", adopted, Ok(()))?;
                    self.regions[at].driver = to;
                    self.stats.handed_off += 1;
                    Ok(())
                }
                None => Ok(()),
            },
            Op::Protect {
                process,
                slot,
                page,
                pages,
                protect,
            } => {
                let protect = PROTECTIONS[usize::from(protect) % PROTECTIONS.len()];
                self.protect_or_commit(process, slot, page, pages, protect, false)
            }
            Op::Commit {
                process,
                slot,
                page,
                pages,
                protect,
            } => {
                let protect = PROTECTIONS[usize::from(protect) % PROTECTIONS.len()];
                self.protect_or_commit(process, slot, page, pages, protect, true)
            }
            Op::Decommit {
                process,
                slot,
                page,
                pages,
            } => self.decommit(process, slot, page, pages),
            Op::Free { process, slot } => self.free(process, slot),
            Op::Allocate { process, slot } => {
                let (process, slot) = (
                    usize::from(process) % self.worlds.len(),
                    usize::from(slot) % SLOTS,
                );
                let world = &self.worlds[process];
                if world.exited || world.live[slot] {
                    return Ok(());
                }
                let owner = world.process.clone();
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
                    .process
                    .write((base + offset) as *const u8, &data)
                    .is_ok()
                {
                    self.bytes.get_mut(&base).ok_or("no bytes")?[offset..offset + data.len()]
                        .copy_from_slice(&data);
                }
                Ok(())
            }
            Op::Fork { process } => {
                if self.worlds.len() >= MAX_PROCESSES {
                    return Ok(());
                }
                let parent = &self.worlds[usize::from(process) % self.worlds.len()];
                let child = World {
                    process: parent.process.fork(),
                    bases: parent.bases,
                    live: parent.live,
                    // The inherited copies; a fork of an exited process is born exited.
                    standing: parent
                        .standing
                        .iter()
                        .filter(|s| !s.flags.contains(SecureFlags::NO_INHERIT))
                        .map(|s| Standing {
                            region: None,
                            ..s.clone()
                        })
                        .collect(),
                    exited: parent.exited,
                };
                expect_eq("child exited", child.process.has_exited(), child.exited)?;
                self.worlds.push(child);
                self.stats.forks += 1;
                Ok(())
            }
            Op::Exit { process, notify } => {
                let process = usize::from(process) % self.worlds.len();
                if self.worlds[process].exited {
                    return Ok(());
                }
                let mine: Vec<usize> = (0..self.regions.len())
                    .filter(|at| self.regions[*at].process == process)
                    .collect();
                if notify {
                    // Highest index first, so the indices left stay valid.
                    for at in mine.into_iter().rev() {
                        let driver = self.regions[at].driver;
                        self.drop_region(drivers, driver, at, false)?;
                    }
                    self.worlds[process].process.exit();
                } else {
                    self.worlds[process].process.exit();
                    for at in mine.into_iter().rev() {
                        let region = self.regions.remove(at);
                        let forgotten =
                            drivers.done(region.driver, Command::Forget { id: region.id })?;
                        expect_eq("forget", forgotten, Ok(()))?;
                    }
                }
                let world = &mut self.worlds[process];
                world.exited = true;
                world.standing.clear();
                self.stats.exits += 1;
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
        let owner = self.worlds[process].process.clone();
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
        } else if self.secure_must_succeed(process, slot, span, mode, flags) {
            Ok(())
        } else {
            Err(Error::Refused)
        };
        let id = self.next_id;
        self.next_id += 1;
        let command = Command::Secure {
            id,
            process: owner,
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
            Err(_) => self.stats.rejected += 1,
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

    fn drop_region(
        &mut self,
        drivers: &mut Drivers,
        driver: usize,
        at: usize,
        apc: bool,
    ) -> Result<(), String> {
        let region = self.regions.remove(at);
        let dropped = drivers.done(driver, Command::Drop { id: region.id, apc })?;
        expect_eq("drop", dropped, Ok(()))?;
        self.worlds[region.process]
            .standing
            .retain(|s| s.region != Some(region.id));
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
        let command = Command::Read {
            id: region.id,
            offset,
            len,
        };
        let Reply::Bytes(got) = drivers.call(driver, command)? else {
            return Err("unexpected reply".into());
        };
        let expected = Case::bounds(&region, offset, len);
        match (got, expected) {
            (Ok(bytes), Ok(())) => {
                self.stats.copied += 1;
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
            (got, expected) => {
                self.stats.copy_errors += 1;
                expect_eq("read", got.map(|_| ()), expected)
            }
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
        let expected = match Case::bounds(&region, offset, 4) {
            Ok(()) => {
                let bytes = self.expected_bytes(&region, offset, 4)?;
                Ok(u32::from_ne_bytes([bytes[0], bytes[1], bytes[2], bytes[3]]))
            }
            Err(e) => Err(e),
        };
        if got.is_ok() {
            self.stats.copied += 1;
        } else {
            self.stats.copy_errors += 1;
        }
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
        let expected = if region.mode == ProbeMode::ReadOnly {
            Err(Error::NotWritable)
        } else {
            Case::bounds(&region, offset, len)
        };
        let command = Command::Write {
            id: region.id,
            offset,
            data: data.clone(),
        };
        let got = drivers.done(driver, command)?;
        expect_eq("write", got, expected)?;
        if got.is_ok() {
            self.stats.copied += 1;
            let start = region.offset + offset;
            self.bytes.get_mut(&region.base).ok_or("no bytes")?[start..start + len]
                .copy_from_slice(&data);
        } else {
            self.stats.copy_errors += 1;
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

    fn protect_or_commit(
        &mut self,
        process: u8,
        slot: u8,
        page: u8,
        pages: u8,
        protect: u32,
        commit: bool,
    ) -> Result<(), String> {
        let Some((process, slot, base, first, end)) = self.user_pages(process, slot, page, pages)
        else {
            return Ok(());
        };
        let secured = self.worlds[process].secured(slot);
        let before = self.protections(process, base);
        let user = &self.worlds[process].process;
        let address = (base + first * PAGE) as *mut u8;
        let len = (end - first) * PAGE;
        let result = if commit {
            user.commit(address, len, protect)
        } else {
            user.protect(address, len, protect, host::AccessMode::User)
                .map(|_| ())
        };
        let uncommitted = before[first..end].contains(&None);
        match result {
            Ok(()) if commit => {
                // Newly committed pages read as zero.
                let bytes = self.bytes.get_mut(&base).ok_or("no bytes")?;
                for page in (first..end).filter(|page| before[*page].is_none()) {
                    bytes[page * PAGE..(page + 1) * PAGE].fill(0);
                }
                Ok(())
            }
            Ok(()) => Ok(()),
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

    fn decommit(&mut self, process: u8, slot: u8, page: u8, pages: u8) -> Result<(), String> {
        let Some((process, slot, base, first, end)) = self.user_pages(process, slot, page, pages)
        else {
            return Ok(());
        };
        let result = self.worlds[process].process.decommit(
            (base + first * PAGE) as *mut u8,
            (end - first) * PAGE,
            host::AccessMode::User,
        );
        if self.worlds[process].secured(slot) {
            self.stats.user_refused += 1;
            expect_eq(
                "decommit of a secured allocation",
                result,
                Err(Status(STATUS_INVALID_PAGE_PROTECTION)),
            )
        } else {
            expect_eq("decommit with nothing secured", result, Ok(()))
        }
    }

    fn free(&mut self, process: u8, slot: u8) -> Result<(), String> {
        let (process, slot) = (
            usize::from(process) % self.worlds.len(),
            usize::from(slot) % SLOTS,
        );
        let world = &self.worlds[process];
        let Some(base) = world.base(slot) else {
            return Ok(());
        };
        let result = world.process.free(base as *mut u8, host::AccessMode::User);
        if world.secured(slot) {
            self.stats.user_refused += 1;
            expect_eq(
                "free of a secured allocation",
                result,
                Err(Status(STATUS_INVALID_PAGE_PROTECTION)),
            )
        } else {
            expect_eq("free with nothing secured", result, Ok(()))?;
            self.worlds[process].live[slot] = false;
            Ok(())
        }
    }

    /// The invariants (module docs), on the model's state now.
    fn check(&self) -> Result<(), String> {
        for (index, world) in self.worlds.iter().enumerate() {
            let process = &world.process;
            let misuses = process.misuses();
            if !misuses.is_empty() {
                return Err(format!("process {index}: misuse recorded: {misuses:?}"));
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
            for secure in &world.standing {
                let base = world
                    .base(secure.slot)
                    .ok_or_else(|| format!("process {index}: secured slot freed: {secure:?}"))?;
                let now = self.protections(index, base);
                for (page, protect) in now.iter().enumerate().take(secure.end).skip(secure.first) {
                    if !allows(secure.mode, *protect) {
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

    /// Drops every region; then nothing is secured but what forked children inherited, and
    /// every other allocation can be freed.
    fn finish(&mut self, drivers: &mut Drivers) -> Result<(), String> {
        while let Some(region) = self.regions.last() {
            let (driver, at) = (region.driver, self.regions.len() - 1);
            self.drop_region(drivers, driver, at, false)?;
        }
        self.check()?;
        for index in 0..self.worlds.len() {
            if self.worlds[index]
                .standing
                .iter()
                .any(|s| s.region.is_some())
            {
                return Err(format!("process {index}: a dropped region still stands"));
            }
            // Refused where a fork's inherited copy stands, done everywhere else.
            for slot in 0..SLOTS {
                self.free(index as u8, slot as u8)?;
            }
            let world = &mut self.worlds[index];
            world.process.exit();
            world.exited = true;
            world.standing.clear();
        }
        self.check()?;
        let misuses = host::misuses();
        if !misuses.is_empty() {
            return Err(format!("misuse recorded outside any process: {misuses:?}"));
        }
        Ok(())
    }
}

/// `Err` naming `what` unless `got == expected`.
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
