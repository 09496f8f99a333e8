//! Every bad input the safe API can be handed, and what it gets: one test per row of the table in
//! `docs/reliability.md`.
//!
//! Each input must get its own error: never a panic, never a silent success, and never a call to
//! the kernel when the crate can tell by itself. Two ways to see that:
//!
//! - **Decided by the crate**: the call runs at `DISPATCH_LEVEL`, where every secure routine of
//!   the host model stops the binary as the kernel's bug check would. An error returned from in
//!   there was decided without the kernel.
//! - **Decided by the kernel** (the crate cannot know what is allocated): the call runs normally
//!   and must be `Error::Refused`, and the model must show that nothing happened: no secure
//!   standing, no misuse recorded, the allocation still free to go.
//!
//! `tests/region.rs` holds the behaviour of good inputs and a first pass over some of these; the
//! rows here go through every constructor (`new`, `with_flags` with no flags and with each flag)
//! and both probe modes.

use mmsecure::{Error, ProbeMode, SecureFlags, SecureRegion};
use mmsecure_sys::host::{
    self, AccessMode, Process, PAGE_EXECUTE, PAGE_EXECUTE_READ, PAGE_GUARD, PAGE_NOACCESS,
    PAGE_READONLY, PAGE_READWRITE,
};
use mmsecure_sys::DISPATCH_LEVEL;

const PAGE: usize = host::PAGE_SIZE;
const HIGHEST_USER_ADDRESS: usize = host::HIGHEST_USER_ADDRESS;
const MODES: [ProbeMode; 2] = [ProbeMode::ReadOnly, ProbeMode::ReadWrite];

/// Every way to ask for a secure: `new`, and `with_flags` with no flag, each flag, and all
/// (`with_any_flags` where they hold `USER_MODE_ONLY`, which `with_flags` refuses).
const FLAGS: [Option<SecureFlags>; 7] = [
    None,
    Some(SecureFlags::empty()),
    Some(SecureFlags::EXCLUSIVE),
    Some(SecureFlags::NO_CHANGE),
    Some(SecureFlags::USER_MODE_ONLY),
    Some(SecureFlags::NO_INHERIT),
    Some(SecureFlags::all()),
];

/// Runs `f` at `DISPATCH_LEVEL`, where a call to any secure routine of the model stops the binary:
/// what returns from in here was decided without the kernel.
fn without_kernel<T>(f: impl FnOnce() -> T) -> T {
    let _raised = host::raise_irql(DISPATCH_LEVEL);
    f()
}

fn secure(
    address: *const u8,
    len: usize,
    mode: ProbeMode,
    flags: Option<SecureFlags>,
) -> Result<SecureRegion, Error> {
    match flags {
        None => SecureRegion::new(address, len, mode),
        // SAFETY: nothing in these tests frees or unmaps memory from kernel mode.
        Some(flags) if flags.contains(SecureFlags::USER_MODE_ONLY) => unsafe {
            SecureRegion::with_any_flags(address, len, mode, flags)
        },
        Some(flags) => SecureRegion::with_flags(address, len, mode, flags),
    }
}

/// Asks for `address..address + len` in every way, with the kernel out of reach, and expects
/// `expected` from each.
fn refused_without_kernel(address: *const u8, len: usize, expected: Error) {
    for mode in MODES {
        for flags in FLAGS {
            let got = without_kernel(|| secure(address, len, mode, flags)).map(|r| r.into_raw());
            assert_eq!(
                got,
                Err(expected),
                "{address:p} + {len:#x}, {mode:?}, {flags:?}"
            );
        }
    }
}

/// Asks for `address..address + len` in `process` in every way with the given modes, and expects
/// the kernel's refusal and nothing left behind.
fn refused_by_kernel(process: &Process, address: *const u8, len: usize, modes: &[ProbeMode]) {
    for &mode in modes {
        for flags in FLAGS {
            let got = secure(address, len, mode, flags).map(|r| r.into_raw());
            assert_eq!(
                got,
                Err(Error::Refused),
                "{address:p} + {len:#x}, {mode:?}, {flags:?}"
            );
            assert_eq!(process.secure_count(), 0, "a refused secure stands");
        }
    }
    assert!(process.misuses().is_empty(), "{:?}", process.misuses());
}

/// A fresh process, attached on this thread.
fn attached() -> (Process, host::Attach) {
    let process = Process::new();
    let attach = process.attach();
    (process, attach)
}

// --- Decided by the crate ---------------------------------------------------------------------

#[test]
fn null_address_is_refused_without_the_kernel() {
    let (process, _in) = attached();
    for len in [1, PAGE, usize::MAX] {
        refused_without_kernel(core::ptr::null(), len, Error::NullAddress);
    }
    assert_eq!(process.secure_count(), 0);
}

#[test]
fn zero_length_is_refused_without_the_kernel() {
    let (process, _in) = attached();
    let buffer = process.allocate(PAGE, PAGE_READWRITE).unwrap();
    for address in [buffer as *const u8, HIGHEST_USER_ADDRESS as *const u8] {
        refused_without_kernel(address, 0, Error::ZeroLength);
    }
    assert_eq!(process.secure_count(), 0);
}

#[test]
fn address_plus_length_overflow_is_refused_without_the_kernel() {
    let (process, _in) = attached();
    let buffer = process.allocate(PAGE, PAGE_READWRITE).unwrap();
    for (address, len) in [
        (usize::MAX, 2),
        (usize::MAX - 15, 17),
        (buffer as usize, usize::MAX),
        (2, usize::MAX),
    ] {
        refused_without_kernel(address as *const u8, len, Error::Overflow);
    }
    assert_eq!(process.secure_count(), 0);
}

#[test]
fn end_beyond_the_user_range_is_refused_without_the_kernel() {
    let (process, _in) = attached();
    let buffer = process.allocate(PAGE, PAGE_READWRITE).unwrap();
    for (address, len) in [
        (HIGHEST_USER_ADDRESS, 2),
        (HIGHEST_USER_ADDRESS - 15, 17),
        (buffer as usize, HIGHEST_USER_ADDRESS),
        // Starts in user space, ends just above it: one byte too many.
        (1, HIGHEST_USER_ADDRESS + 1),
    ] {
        refused_without_kernel(address as *const u8, len, Error::NotUserRange);
    }
    assert_eq!(process.secure_count(), 0);
}

#[test]
fn last_user_byte_passes_the_crate_and_the_kernel_refuses_it() {
    // The boundary: one byte at the highest user address is a user range, so the crate passes it
    // on, and the kernel refuses it because nothing is allocated there.
    let (process, _in) = attached();
    refused_by_kernel(&process, HIGHEST_USER_ADDRESS as *const u8, 1, &MODES);
    refused_by_kernel(&process, 1 as *const u8, HIGHEST_USER_ADDRESS, &MODES);
}

#[test]
fn kernel_address_is_refused_without_the_kernel() {
    let (process, _in) = attached();
    for address in [
        HIGHEST_USER_ADDRESS + 1,
        0x8000_0000_0000,            // first non-canonical address
        0xFFFF_8000_0000_0000,       // start of the kernel half
        0xFFFF_F800_0000_0000,       // typical kernel pool
        process.eprocess() as usize, // the process object itself
        usize::MAX,
    ] {
        refused_without_kernel(address as *const u8, 1, Error::NotUserRange);
    }
    assert_eq!(process.secure_count(), 0);
}

#[test]
fn unknown_flag_bits_from_a_raw_value_are_refused_without_the_kernel() {
    let (process, _in) = attached();
    let buffer = process.allocate(PAGE, PAGE_READWRITE).unwrap();
    for raw in [
        0x10,
        0x20,
        0x1F,
        0x12,
        0x100,
        0x8000_0000,
        0xFFFF_FFF0,
        u32::MAX,
    ] {
        let unknown = raw & !0xF;
        assert_eq!(
            without_kernel(|| SecureFlags::from_raw(raw)),
            Err(Error::UnknownFlags(unknown))
        );
        // A value made past the check (`from_bits_retain`) is refused by the constructor.
        let flags = SecureFlags::from_bits_retain(raw);
        for mode in MODES {
            let got = without_kernel(|| SecureRegion::with_flags(buffer, PAGE, mode, flags));
            assert_eq!(
                got.map(|r| r.into_raw()),
                Err(Error::UnknownFlags(unknown)),
                "{raw:#x}"
            );
        }
    }
    assert_eq!(process.secure_count(), 0);
}

#[test]
fn unknown_raw_probe_mode_is_refused_without_the_kernel() {
    let (process, _in) = attached();
    let others = [
        0,
        PAGE_NOACCESS,
        0x03,
        PAGE_EXECUTE,
        PAGE_EXECUTE_READ,
        0x08, // PAGE_WRITECOPY
        PAGE_READONLY | PAGE_GUARD,
        PAGE_READWRITE | PAGE_GUARD,
        PAGE_READWRITE | 0x200, // PAGE_NOCACHE
        u32::MAX,
    ];
    for raw in others {
        assert_eq!(
            without_kernel(|| ProbeMode::from_raw(raw)),
            Err(Error::UnknownProbeMode(raw))
        );
        assert_eq!(
            without_kernel(|| ProbeMode::try_from(raw)),
            Err(Error::UnknownProbeMode(raw))
        );
    }
    // Only a `ProbeMode` reaches a constructor, so no unknown mode can reach the kernel.
    assert_eq!(process.secure_count(), 0);
}

/// A process with a read-write page whose bytes are 0x11, and a region over bytes 1..65 of it.
fn region_of_64(mode: ProbeMode) -> (Process, host::Attach, *mut u8, SecureRegion) {
    let (process, attach) = attached();
    let page = process.allocate(PAGE, PAGE_READWRITE).unwrap();
    process.write(page, &[0x11; PAGE]).unwrap();
    let region = SecureRegion::new(page.wrapping_add(1), 64, mode).unwrap();
    (process, attach, page, region)
}

#[test]
fn access_past_the_end_or_at_an_overflowing_offset_is_out_of_bounds() {
    let (process, _in, page, region) = region_of_64(ProbeMode::ReadWrite);
    let oob = |offset, len| Error::OutOfBounds {
        offset,
        len,
        region_len: 64,
    };
    // The memory past the region is allocated and secured (whole pages are), but it is not the
    // region's: refused all the same.
    let cases: [(usize, usize); 8] = [
        (64, 1),
        (65, 0),
        (63, 2),
        (0, 65),
        (usize::MAX, 1),
        (usize::MAX, 0),
        (usize::MAX - 63, 64),
        (1, usize::MAX),
    ];
    for (offset, len) in cases {
        // Reads: `out` stays as it was.
        if len <= 65 {
            let mut out = vec![0xEE; len];
            let got = without_kernel(|| region.read_slice(offset, &mut out));
            assert_eq!(got, Err(oob(offset, len)));
            assert!(out.iter().all(|b| *b == 0xEE), "read wrote into `out`");
            let data = vec![0x22; len];
            assert_eq!(
                without_kernel(|| region.write_slice(offset, &data)),
                Err(oob(offset, len))
            );
        }
    }
    for offset in [61, 64, usize::MAX - 2, usize::MAX] {
        assert_eq!(region.read::<u32>(offset), Err(oob(offset, 4)));
        assert_eq!(region.write(offset, &0u32), Err(oob(offset, 4)));
    }
    assert_eq!(
        region.read::<[u8; 1024]>(0),
        Err(oob(0, 1024)),
        "a value larger than the region"
    );
    // User memory is untouched.
    let mut bytes = [0u8; PAGE];
    process.read(page, &mut bytes).unwrap();
    assert!(bytes.iter().all(|b| *b == 0x11), "a refused write wrote");
    // The edges that are inside.
    assert_eq!(region.read_slice(64, &mut []), Ok(()));
    assert_eq!(region.read::<u32>(60).map(|_| ()), Ok(()));
}

#[test]
fn write_to_a_read_only_region_is_refused() {
    let (process, _in, page, region) = region_of_64(ProbeMode::ReadOnly);
    for (offset, data) in [
        (0, &[0x22u8; 64][..]),
        (10, &[0x22][..]),
        (0, &[][..]),
        (100, &[0x22][..]),
    ] {
        assert_eq!(
            without_kernel(|| region.write_slice(offset, data)),
            Err(Error::NotWritable)
        );
    }
    assert_eq!(region.write(0, &1u64), Err(Error::NotWritable));
    // Still refused once the user has made the page writable: a read-only secure does not
    // promise it stays so.
    process
        .protect(page, PAGE, PAGE_READWRITE, AccessMode::User)
        .unwrap();
    assert_eq!(region.write_slice(0, &[0x22]), Err(Error::NotWritable));
    let mut bytes = [0u8; PAGE];
    process.read(page, &mut bytes).unwrap();
    assert!(bytes.iter().all(|b| *b == 0x11), "a refused write wrote");
    let mut out = [0u8; 64];
    assert_eq!(region.read_slice(0, &mut out), Ok(()));
    assert_eq!(out, [0x11; 64]);
}

#[test]
fn from_raw_in_a_wrong_context_is_refused_and_hands_the_raw_region_back() {
    // A `RawRegion` cannot be forged or copied (private fields, no Clone): the only bad input
    // left is the context it is rebuilt in.
    let (process, attach) = attached();
    let page = process.allocate(PAGE, PAGE_READWRITE).unwrap();
    let mut raw = SecureRegion::new(page, PAGE, ProbeMode::ReadWrite)
        .unwrap()
        .into_raw();
    drop(attach);
    let other = Process::new();
    // Each entry enters its context and returns what keeps it entered.
    type Enter<'a> = Box<dyn Fn() -> Box<dyn std::any::Any> + 'a>;
    let contexts: [(&str, Enter<'_>, Error); 3] = [
        (
            "another process",
            Box::new(|| Box::new(other.attach())),
            Error::WrongProcess,
        ),
        (
            "the System process",
            Box::new(|| Box::new(())),
            Error::WrongProcess,
        ),
        (
            "DISPATCH_LEVEL",
            Box::new(|| Box::new((process.attach(), host::raise_irql(DISPATCH_LEVEL)))),
            Error::IrqlTooHigh { irql: 2, max: 1 },
        ),
    ];
    for (name, enter, expected) in &contexts {
        let _context = enter();
        let refused = SecureRegion::from_raw(raw).unwrap_err();
        assert_eq!(refused.error(), *expected, "{name}");
        raw = refused.into_raw();
    }
    // Nothing was unsecured, nothing recorded: the secure stands, and unsecures once when
    // rebuilt and dropped in its process.
    assert_eq!(process.secure_count(), 1);
    assert!(process.misuses().is_empty());
    assert!(process.free(page, AccessMode::User).is_err());
    let _in = process.attach();
    drop(SecureRegion::from_raw(raw).unwrap());
    assert_eq!(process.secure_count(), 0);
    assert!(process.misuses().is_empty());
    assert_eq!(process.free(page, AccessMode::User), Ok(()));
}

// --- Decided by the kernel --------------------------------------------------------------------

#[test]
fn range_spanning_two_allocations_is_refused_by_the_kernel() {
    let (process, _in) = attached();
    let a = process.allocate(PAGE, PAGE_READWRITE).unwrap() as usize;
    let b = process.allocate(PAGE, PAGE_READWRITE).unwrap() as usize;
    let (low, high) = (a.min(b), a.max(b));
    // From the last bytes of the lower allocation into the higher one, and the whole of both.
    refused_by_kernel(&process, (low + PAGE - 8) as *const u8, high - low, &MODES);
    refused_by_kernel(&process, low as *const u8, high + PAGE - low, &MODES);
    // One byte past an allocation's end is already outside it.
    refused_by_kernel(&process, low as *const u8, PAGE + 1, &MODES);
    for base in [a, b] {
        assert_eq!(process.free(base as *mut u8, AccessMode::User), Ok(()));
    }
}

#[test]
fn uncommitted_pages_are_refused_by_the_kernel() {
    let (process, _in) = attached();
    let reserved = process.reserve(3 * PAGE).unwrap();
    // Reserved, never committed.
    refused_by_kernel(&process, reserved, PAGE, &MODES);
    refused_by_kernel(&process, reserved.wrapping_add(100), 8, &MODES);
    // Committed first page, reserved second: a range over both.
    process.commit(reserved, PAGE, PAGE_READWRITE).unwrap();
    refused_by_kernel(&process, reserved.wrapping_add(PAGE - 4), 8, &MODES);
    // Committed, then decommitted.
    process.decommit(reserved, PAGE, AccessMode::User).unwrap();
    refused_by_kernel(&process, reserved, 16, &MODES);
    assert_eq!(process.free(reserved, AccessMode::User), Ok(()));
}

#[test]
fn guard_page_is_refused_by_the_kernel() {
    // WRK mapview.c, MiSecureVirtualMemory: the probe faults on the guard page (L6405-L6411)
    // and returns NULL (L6414-L6418); the fault takes the guard off, so each attempt below
    // re-arms it first (issue #22: before, the model kept the guard).
    let (process, _in) = attached();
    let pages = process.allocate(3 * PAGE, PAGE_READWRITE).unwrap();
    let guard = pages.wrapping_add(PAGE);
    for mode in MODES {
        for flags in FLAGS {
            // The guard page alone, and a range with it in the middle.
            for (address, len) in [(guard, 1), (pages, 3 * PAGE)] {
                process
                    .protect(guard, PAGE, PAGE_READWRITE | PAGE_GUARD, AccessMode::User)
                    .unwrap();
                let got = secure(address, len, mode, flags).map(|r| r.into_raw());
                assert_eq!(got, Err(Error::Refused), "{address:p}+{len:#x} {mode:?}");
                assert_eq!(process.protection(guard), Some(PAGE_READWRITE));
                assert_eq!(process.secure_count(), 0, "a refused secure stands");
            }
        }
    }
    assert!(process.misuses().is_empty(), "{:?}", process.misuses());
    // The pages beside the guard page can be secured.
    process
        .protect(guard, PAGE, PAGE_READWRITE | PAGE_GUARD, AccessMode::User)
        .unwrap();
    let beside = SecureRegion::new(pages.wrapping_add(2 * PAGE), PAGE, ProbeMode::ReadWrite);
    assert!(beside.is_ok());
}

#[test]
fn read_only_allocation_secured_read_write_is_refused_by_the_kernel() {
    let (process, _in) = attached();
    let page = process.allocate(PAGE, PAGE_READONLY).unwrap();
    refused_by_kernel(&process, page, PAGE, &[ProbeMode::ReadWrite]);
    let executable = process.allocate(PAGE, PAGE_EXECUTE_READ).unwrap();
    refused_by_kernel(&process, executable, 16, &[ProbeMode::ReadWrite]);
    // The same memory secured read-only is fine.
    assert!(SecureRegion::new(page, PAGE, ProbeMode::ReadOnly).is_ok());
    assert!(SecureRegion::new(executable, 16, ProbeMode::ReadOnly).is_ok());
}

#[test]
fn no_access_and_execute_only_pages_are_refused_by_the_kernel() {
    let (process, _in) = attached();
    let none = process.allocate(PAGE, PAGE_NOACCESS).unwrap();
    refused_by_kernel(&process, none, PAGE, &MODES);
    let execute = process.allocate(PAGE, PAGE_EXECUTE).unwrap();
    refused_by_kernel(&process, execute, PAGE, &MODES);
}

#[test]
fn freed_memory_and_memory_never_allocated_are_refused_by_the_kernel() {
    let (process, _in) = attached();
    let page = process.allocate(PAGE, PAGE_READWRITE).unwrap();
    assert_eq!(process.free(page, AccessMode::User), Ok(()));
    refused_by_kernel(&process, page, PAGE, &MODES);
    // A user-range address the process never allocated (the test's own stack).
    let stranger = [0u8; 64];
    refused_by_kernel(&process, stranger.as_ptr(), 64, &MODES);
}

#[test]
fn securing_with_no_process_or_an_exited_one_is_refused_by_the_kernel() {
    let owner = Process::new();
    let page = owner.allocate(PAGE, PAGE_READWRITE).unwrap();
    // No process attached: the System process, which has no user memory.
    for mode in MODES {
        for flags in FLAGS {
            let got = secure(page, PAGE, mode, flags).map(|r| r.into_raw());
            assert_eq!(got, Err(Error::Refused));
        }
    }
    assert_eq!(owner.secure_count(), 0);
    // Attached to a process that has exited.
    let _in = owner.attach();
    owner.exit();
    refused_by_kernel(&owner, page, PAGE, &MODES);
    assert!(host::misuses()
        .iter()
        .all(|m| m.owner_pid != Some(owner.id()) && m.pid != Some(owner.id())));
}
