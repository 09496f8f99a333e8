//! Stress: user threads flip protections (guard pages included), write bytes, try to free and
//! decommit, and fork short-lived children, while driver threads secure, copy and drop as fast as
//! they can, all at once, with the model in strict mode (a misuse stops the binary, as Driver
//! Verifier would stop the machine).
//!
//! # What must hold
//!
//! - Nothing crashes and the model records no misuse (strict mode would abort).
//! - While a driver holds a region, every page of it stays committed, not a guard page, and
//!   readable (`ReadOnly`) or writable (`ReadWrite`), however the user threads race it; under
//!   `NO_CHANGE`, no committed page of its allocation changes protection.
//! - Bytes a driver reads are only ever bytes someone wrote: the user threads write bytes with the
//!   top bit set, the drivers bytes without, fresh memory is zero.
//! - Where no user thread writes (each driver thread has one allocation per process whose bytes
//!   only it touches, though the user threads still flip its protections), the bytes a driver
//!   reads back are exactly the bytes it last wrote.
//! - At the end nothing is secured and every allocation can be freed.
//!
//! Bounded twice: `MMSECURE_STRESS_MS` milliseconds (default 2000), and a number of rounds per
//! thread, whichever comes first.

use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use mmsecure::{Error, ProbeMode, SecureFlags, SecureRegion};
use mmsecure_sys::host::{
    self, AccessMode, Process, PAGE_EXECUTE_READ, PAGE_GUARD, PAGE_NOACCESS, PAGE_READONLY,
    PAGE_READWRITE,
};
use mmsecure_sys::APC_LEVEL;

const PAGE: usize = host::PAGE_SIZE;
const PAGES: usize = 8;
const ALLOCATION: usize = PAGES * PAGE;
/// Allocations per process: the first [`SHARED`] are written by user threads too; then one
/// private to each driver thread.
const SHARED: usize = 2;
const DRIVERS: usize = 2;
const USERS: usize = 2;
const SLOTS: usize = SHARED + DRIVERS;
/// Rounds per driver thread, and per user thread, at most.
const DRIVER_ROUNDS: usize = 40_000;
const USER_ROUNDS: usize = 400_000;

const PROTECTIONS: [u32; 6] = [
    PAGE_NOACCESS,
    PAGE_READONLY,
    PAGE_READWRITE,
    PAGE_EXECUTE_READ,
    PAGE_READWRITE | PAGE_GUARD,
    PAGE_READONLY | PAGE_GUARD,
];

/// A small, fast generator (xorshift64*), one per thread, seeded apart.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }

    fn below(&mut self, n: usize) -> usize {
        (self.next() % n as u64) as usize
    }
}

/// The two processes and their allocations' bases (which change when a user frees and
/// reallocates one).
struct World {
    processes: [Process; 2],
    bases: [[AtomicUsize; SLOTS]; 2],
    /// Serialises a free with the reallocation that follows, per process.
    realloc: [Mutex<()>; 2],
    stop: AtomicBool,
    deadline: Instant,
}

impl World {
    fn base(&self, process: usize, slot: usize) -> usize {
        self.bases[process][slot].load(Ordering::SeqCst)
    }

    fn should_stop(&self) -> bool {
        self.stop.load(Ordering::Relaxed) || Instant::now() >= self.deadline
    }
}

/// What the threads did, for the report and for the checks that contention happened.
#[derive(Default, Debug)]
struct Counts {
    secured: AtomicUsize,
    refused: AtomicUsize,
    copies: AtomicUsize,
    user_changes: AtomicUsize,
    user_refused: AtomicUsize,
    frees: AtomicUsize,
    forks: AtomicUsize,
}

fn bump(counter: &AtomicUsize) {
    counter.fetch_add(1, Ordering::Relaxed);
}

fn allows(mode: ProbeMode, protect: Option<u32>) -> bool {
    let Some(protect) = protect else {
        return false;
    };
    protect & PAGE_GUARD == 0
        && match mode {
            ProbeMode::ReadOnly => {
                matches!(protect, PAGE_READONLY | PAGE_READWRITE | PAGE_EXECUTE_READ)
            }
            ProbeMode::ReadWrite => protect == PAGE_READWRITE,
        }
}

fn protections(process: &Process, base: usize) -> Vec<Option<u32>> {
    (0..PAGES)
        .map(|page| {
            process
                .protection((base + page * PAGE) as *const u8)
                .map(|p| p & !PAGE_GUARD)
        })
        .collect()
}

/// One user thread: protection flips, writes with the top bit set (shared allocations only),
/// frees and decommits (refused while secured; a freed allocation is made again), and forks.
fn user(world: &World, counts: &Counts, seed: u64) {
    let mut rng = Rng(seed);
    for _ in 0..USER_ROUNDS {
        if world.should_stop() {
            break;
        }
        let p = rng.below(2);
        let process = &world.processes[p];
        let slot = rng.below(SLOTS);
        let base = world.base(p, slot);
        let page = rng.below(PAGES);
        let pages = 1 + rng.below(3.min(PAGES - page));
        let address = (base + page * PAGE) as *mut u8;
        match rng.below(16) {
            0..=9 => {
                let protect = PROTECTIONS[rng.below(PROTECTIONS.len())];
                match process.protect(address, pages * PAGE, protect, AccessMode::User) {
                    Ok(_) => bump(&counts.user_changes),
                    Err(_) => bump(&counts.user_refused),
                }
            }
            10..=12 if slot < SHARED => {
                let byte = 0x80 | rng.next() as u8;
                let len = 1 + rng.below(pages * PAGE);
                // Fails on guard and read-only pages: that is fine.
                let _ = process.write(address, &vec![byte; len]);
            }
            13 => {
                let _held = world.realloc[p].lock().unwrap();
                if process.free(base as *mut u8, AccessMode::User).is_ok() {
                    bump(&counts.frees);
                    let new = process.allocate(ALLOCATION, PAGE_READWRITE).unwrap();
                    world.bases[p][slot].store(new as usize, Ordering::SeqCst);
                } else {
                    bump(&counts.user_refused);
                }
            }
            14 => {
                if process
                    .decommit(address, pages * PAGE, AccessMode::User)
                    .is_ok()
                {
                    // Commit again, so the allocation stays usable.
                    let _ = process.commit(address, pages * PAGE, PAGE_READWRITE);
                } else {
                    bump(&counts.user_refused);
                }
            }
            15 => {
                // A child that inherits the secures, and its exit, racing the drivers.
                let child = process.fork();
                let _ = child.protect(address, PAGE, PAGE_NOACCESS, AccessMode::User);
                child.exit();
                assert_eq!(child.secure_count(), 0);
                assert!(child.misuses().is_empty());
                bump(&counts.forks);
            }
            _ => {}
        }
    }
}

/// One driver thread: secure a random range (any mode, any flags, PASSIVE or APC), check the
/// guarantee, copy in and out, check again, drop.
fn driver(world: &World, counts: &Counts, me: usize, seed: u64) -> Result<(), String> {
    let mut rng = Rng(seed);
    let own_slot = SHARED + me;
    for round in 0..DRIVER_ROUNDS {
        if world.should_stop() {
            break;
        }
        let p = rng.below(2);
        let process = &world.processes[p];
        let _in = process.attach();
        let _irql = (rng.below(2) == 0).then(|| host::raise_irql(APC_LEVEL));
        let slot = if rng.below(2) == 0 {
            own_slot
        } else {
            rng.below(SHARED)
        };
        let base = world.base(p, slot);
        let offset = rng.below(ALLOCATION);
        let len = 1 + rng.below((ALLOCATION - offset).min(3 * PAGE));
        let mode = if rng.below(2) == 0 {
            ProbeMode::ReadOnly
        } else {
            ProbeMode::ReadWrite
        };
        let flags = SecureFlags::from_bits_retain(rng.below(16) as u32);
        let address = (base + offset) as *const u8;
        // SAFETY: these threads never free or unmap memory from kernel mode, so a
        // USER_MODE_ONLY secure cannot lose its allocation.
        let region = match unsafe { SecureRegion::with_any_flags(address, len, mode, flags) } {
            Ok(region) => region,
            Err(Error::Refused) => {
                bump(&counts.refused);
                continue;
            }
            Err(e) => return Err(format!("secure: {e}")),
        };
        bump(&counts.secured);
        let (first, end) = (offset / PAGE, (offset + len + PAGE - 1) / PAGE);
        let snapshot = flags
            .contains(SecureFlags::NO_CHANGE)
            .then(|| protections(process, base));
        let check = |when: &str| -> Result<(), String> {
            let now = protections(process, base);
            let raw: Vec<_> = (first..end)
                .map(|page| process.protection((base + page * PAGE) as *const u8))
                .collect();
            if !raw.iter().all(|p| allows(mode, *p)) {
                return Err(format!(
                    "{when}: pages {first}..{end} are {raw:x?} under a {mode:?} secure"
                ));
            }
            if let Some(snapshot) = &snapshot {
                for (then, now) in snapshot.iter().zip(&now) {
                    if then.is_some() && then != now {
                        return Err(format!("{when}: NO_CHANGE page went {then:x?} -> {now:x?}"));
                    }
                }
            }
            Ok(())
        };
        check("after securing")?;

        let mut copy = vec![0u8; len];
        region.read_slice(0, &mut copy).map_err(|e| e.to_string())?;
        bump(&counts.copies);
        if slot < SHARED {
            // Shared: any byte someone wrote; the drivers never write here.
            if let Some(bad) = copy.iter().find(|b| **b != 0 && **b & 0x80 == 0) {
                return Err(format!("read {bad:#x}, which nobody wrote"));
            }
        } else if mode == ProbeMode::ReadWrite {
            // Private to this driver: what it writes is what it reads back.
            let byte = (round % 0x7F) as u8 + 1;
            let data = vec![byte; len];
            region.write_slice(0, &data).map_err(|e| e.to_string())?;
            region.read_slice(0, &mut copy).map_err(|e| e.to_string())?;
            bump(&counts.copies);
            if copy != data {
                return Err("read back other bytes than written, with no user writing".into());
            }
        } else if let Some(bad) = copy.iter().find(|b| **b & 0x80 != 0) {
            return Err(format!("read {bad:#x}, a user byte, where no user writes"));
        }
        check("after copying")?;
        if round % 7 == 0 {
            // Across a pended IRP: taken apart and rebuilt.
            let raw = region.into_raw();
            let region = SecureRegion::from_raw(raw).map_err(|e| e.to_string())?;
            drop(region);
        } else {
            drop(region);
        }
    }
    Ok(())
}

#[test]
fn user_threads_racing_driver_threads_break_nothing() {
    let millis = std::env::var("MMSECURE_STRESS_MS")
        .ok()
        .and_then(|ms| ms.parse().ok())
        .unwrap_or(2000);
    let processes = [Process::new(), Process::new()];
    let bases: [[AtomicUsize; SLOTS]; 2] = Default::default();
    for (process, bases) in processes.iter().zip(&bases) {
        process.set_strict(true);
        // The drivers read back what they wrote, on purpose: a double fetch by design.
        process.set_double_fetch_detection(false);
        for base in bases {
            let made = process.allocate(ALLOCATION, PAGE_READWRITE).unwrap();
            base.store(made as usize, Ordering::SeqCst);
        }
    }
    let started = Instant::now();
    let world = World {
        processes,
        bases,
        realloc: Default::default(),
        stop: AtomicBool::new(false),
        deadline: started + Duration::from_millis(millis),
    };
    assert!(mmsecure::secure_ex_available()); // looked up once, at PASSIVE_LEVEL
    let counts = Counts::default();
    let results: Vec<Result<(), String>> = std::thread::scope(|scope| {
        let users: Vec<_> = (0..USERS)
            .map(|u| {
                let (world, counts) = (&world, &counts);
                scope.spawn(move || user(world, counts, 0x9E37_79B9 + u as u64))
            })
            .collect();
        let drivers: Vec<_> = (0..DRIVERS)
            .map(|d| {
                let (world, counts) = (&world, &counts);
                scope.spawn(move || {
                    let result = driver(world, counts, d, 0xD1B5_4A32 + d as u64);
                    if result.is_err() {
                        world.stop.store(true, Ordering::Relaxed);
                    }
                    result
                })
            })
            .collect();
        let results = drivers
            .into_iter()
            .map(|d| d.join().expect("a driver thread panicked"))
            .collect();
        world.stop.store(true, Ordering::Relaxed);
        for user in users {
            user.join().expect("a user thread panicked");
        }
        results
    });
    eprintln!("{:.2?}: {counts:?}", started.elapsed());
    for result in results {
        result.unwrap();
    }
    for process in &world.processes {
        assert_eq!(process.secure_count(), 0, "a secure outlived its region");
        assert!(process.misuses().is_empty());
    }
    for (p, process) in world.processes.iter().enumerate() {
        for slot in 0..SLOTS {
            let base = world.base(p, slot) as *mut u8;
            assert_eq!(process.free(base, AccessMode::User), Ok(()), "still pinned");
        }
    }
    // The race happened: secures made and refused, user changes made and refused.
    for (what, counter) in [
        ("secures", &counts.secured),
        ("refused secures", &counts.refused),
        ("copies", &counts.copies),
        ("user changes", &counts.user_changes),
        ("refused user changes", &counts.user_refused),
    ] {
        assert!(counter.load(Ordering::Relaxed) > 0, "no {what}");
    }
}

/// A long run (a fuzzing session makes hundreds of thousands of processes) must not make two
/// processes look alike: `SecureRegion` refuses copies from another process context by comparing
/// `IoGetCurrentProcess` values, so two processes with one `EPROCESS`, or one with the System
/// process', would let a copy through in the wrong context. 2^18 + 1 processes, all with ids
/// that are multiples of 4, are more than 20 bits of id can tell apart.
#[test]
fn processes_stay_distinct_over_a_long_run() {
    // SAFETY: the host model answers from a thread-local; no process is attached here, so this
    // is the System process.
    let system = unsafe { mmsecure_sys::IoGetCurrentProcess() };
    let mut seen = std::collections::HashMap::new();
    // All alive at once: no two live process objects may share an EPROCESS value, however many
    // there are (20 bits of id once ran out after 2^18 processes).
    let mut live = Vec::with_capacity((1 << 18) + 1);
    for _ in 0..(1 << 18) + 1 {
        let process = Process::new();
        let eprocess = process.eprocess();
        assert_ne!(
            eprocess,
            system,
            "process {} looks like System",
            process.id()
        );
        if let Some(other) = seen.insert(eprocess as usize, process.id()) {
            panic!("processes {other} and {} share {eprocess:p}", process.id());
        }
        live.push(process);
    }
}
