//! Behaviour of `SecureRegion` on the host backend: constructors, drop, copies, raw parts.

use mmsecure::{Error, ProbeMode, SecureFlags, SecureRegion, UserPtr};
use mmsecure_sys::host::{self, AccessMode, Process, PAGE_NOACCESS, PAGE_READONLY, PAGE_READWRITE};
use std::sync::atomic::{AtomicBool, Ordering};

const PAGE: usize = host::PAGE_SIZE;

/// A fresh process, attached on this thread, with `pages` pages of read-write memory.
fn process_with_buffer(pages: usize) -> (Process, host::Attach, *mut u8) {
    let process = Process::new();
    let attach = process.attach();
    let buffer = process.allocate(pages * PAGE, PAGE_READWRITE).unwrap();
    (process, attach, buffer)
}

#[test]
fn secures_the_range_and_drop_unsecures_it() {
    let (process, _in, buffer) = process_with_buffer(2);
    let region = SecureRegion::new(buffer, 2 * PAGE, ProbeMode::ReadWrite).unwrap();
    assert_eq!(process.secure_count(), 1);
    assert_eq!(region.address(), UserPtr::from(buffer));
    assert_eq!(region.len(), 2 * PAGE);
    assert_eq!(region.mode(), ProbeMode::ReadWrite);
    assert_eq!(region.eprocess(), process.eprocess());
    drop(region);
    assert_eq!(process.secure_count(), 0);
    assert!(process.misuses().is_empty());
}

#[test]
fn refuses_user_downgrade_and_free_while_secured_and_allows_them_after_drop() {
    let (process, _in, buffer) = process_with_buffer(1);
    let region = SecureRegion::new(buffer, PAGE, ProbeMode::ReadWrite).unwrap();
    let refused = process
        .protect(buffer, PAGE, PAGE_READONLY, AccessMode::User)
        .unwrap_err();
    assert_eq!(refused.0, host::STATUS_INVALID_PAGE_PROTECTION);
    assert_eq!(
        process.free(buffer, AccessMode::User).unwrap_err().0,
        host::STATUS_INVALID_PAGE_PROTECTION
    );
    drop(region);
    assert_eq!(
        process.protect(buffer, PAGE, PAGE_READONLY, AccessMode::User),
        Ok(PAGE_READWRITE)
    );
    assert!(process.free(buffer, AccessMode::User).is_ok());
}

#[test]
fn read_only_secure_refuses_no_access_but_allows_read_write() {
    let (process, _in, buffer) = process_with_buffer(1);
    process
        .protect(buffer, PAGE, PAGE_READONLY, AccessMode::User)
        .unwrap();
    let _region = SecureRegion::new(buffer, PAGE, ProbeMode::ReadOnly).unwrap();
    assert!(process
        .protect(buffer, PAGE, PAGE_NOACCESS, AccessMode::User)
        .is_err());
    assert!(process
        .protect(buffer, PAGE, PAGE_READWRITE, AccessMode::User)
        .is_ok());
}

#[test]
fn kernel_refusal_is_refused() {
    let (process, _in, buffer) = process_with_buffer(1);
    process
        .protect(buffer, PAGE, PAGE_READONLY, AccessMode::User)
        .unwrap();
    assert_eq!(
        SecureRegion::new(buffer, PAGE, ProbeMode::ReadWrite).unwrap_err(),
        Error::Refused
    );
    // Past the end of the allocation.
    assert_eq!(
        SecureRegion::new(buffer, PAGE + 1, ProbeMode::ReadOnly).unwrap_err(),
        Error::Refused
    );
    // Memory the process never allocated.
    let stranger = [0u8; 16];
    assert_eq!(
        SecureRegion::new(stranger.as_ptr(), 16, ProbeMode::ReadOnly).unwrap_err(),
        Error::Refused
    );
}

/// Runs `f` at DISPATCH_LEVEL, where any kernel routine of the model stops the caller as a bug
/// check would: an error returned from in there was decided without calling the kernel.
fn without_kernel<T>(f: impl FnOnce() -> T) -> T {
    let _raised = host::raise_irql(mmsecure_sys::DISPATCH_LEVEL);
    f()
}

#[test]
fn bad_ranges_are_refused_before_the_kernel_is_called() {
    let (_process, _in, buffer) = process_with_buffer(1);
    let cases: [(*const u8, usize, Error); 6] = [
        (core::ptr::null(), 16, Error::NullAddress),
        (buffer, 0, Error::ZeroLength),
        (usize::MAX as *const u8, 2, Error::Overflow),
        ((usize::MAX - 15) as *const u8, 32, Error::Overflow),
        (
            0xFFFF_F800_0000_0000usize as *const u8,
            16,
            Error::NotUserRange,
        ),
        (
            mmsecure::highest_user_address() as *const u8,
            2,
            Error::NotUserRange,
        ),
    ];
    for (address, len, expected) in cases {
        for mode in [ProbeMode::ReadOnly, ProbeMode::ReadWrite] {
            assert_eq!(
                without_kernel(|| SecureRegion::new(address, len, mode)).unwrap_err(),
                expected
            );
            assert_eq!(
                without_kernel(|| SecureRegion::with_flags(
                    address,
                    len,
                    mode,
                    SecureFlags::NO_CHANGE
                ))
                .unwrap_err(),
                expected
            );
        }
    }
}

#[test]
fn unknown_flag_bits_never_reach_the_kernel() {
    let (_process, _in, buffer) = process_with_buffer(1);
    let flags = SecureFlags::from_bits_retain(0x30 | SecureFlags::NO_CHANGE.bits());
    let err = without_kernel(|| SecureRegion::with_flags(buffer, PAGE, ProbeMode::ReadOnly, flags))
        .unwrap_err();
    assert_eq!(err, Error::UnknownFlags(0x30));
}

/// Issue #22: with `USER_MODE_ONLY` a kernel-mode free takes the secure, and the drop bug
/// checks, so the safe constructor refuses the flag, before the kernel, with its own error.
#[test]
fn with_flags_refuses_user_mode_only_before_the_kernel() {
    let (process, _in, buffer) = process_with_buffer(1);
    for flags in [
        SecureFlags::USER_MODE_ONLY,
        SecureFlags::USER_MODE_ONLY | SecureFlags::NO_CHANGE,
        SecureFlags::all(),
    ] {
        let err =
            without_kernel(|| SecureRegion::with_flags(buffer, PAGE, ProbeMode::ReadWrite, flags))
                .unwrap_err();
        assert_eq!(err, Error::UnsafeFlags(0x4));
        assert_eq!(
            err.to_ntstatus(),
            mmsecure::status::STATUS_INVALID_PARAMETER
        );
        assert!(err.to_string().contains("with_any_flags"), "{err}");
    }
    // Unknown bits are the first thing wrong.
    let unknown = SecureFlags::from_bits_retain(0x10 | SecureFlags::USER_MODE_ONLY.bits());
    assert_eq!(
        without_kernel(|| SecureRegion::with_flags(buffer, PAGE, ProbeMode::ReadWrite, unknown))
            .unwrap_err(),
        Error::UnknownFlags(0x10)
    );
    // SAFETY: as with `USER_MODE_ONLY`: no kernel-mode free comes (an unknown bit is refused
    // before anything anyway).
    let unknown = without_kernel(|| unsafe {
        SecureRegion::with_any_flags(buffer, PAGE, ProbeMode::ReadWrite, unknown)
    });
    assert_eq!(unknown.unwrap_err(), Error::UnknownFlags(0x10));
    assert_eq!(process.secure_count(), 0);
}

/// The strict reading (issue #22): the kernel-mode free took the `USER_MODE_ONLY` secure with the
/// allocation; the drop's `MmUnsecureVirtualMemory` finds none, and the model stops the caller
/// as `MEMORY_MANAGEMENT` (0x1A). This is what `with_any_flags`'s promise rules out. Not under
/// Miri: the bug check is seen from a child process, which Miri cannot start.
#[test]
#[cfg_attr(miri, ignore)]
fn a_drop_after_a_kernel_mode_free_took_a_user_mode_only_secure_is_a_bug_check() {
    let message = host::assert_bug_check(
        "a_drop_after_a_kernel_mode_free_took_a_user_mode_only_secure_is_a_bug_check",
        || {
            let (process, _in, buffer) = process_with_buffer(1);
            let flags = SecureFlags::USER_MODE_ONLY;
            // SAFETY: broken on purpose by the free below; on the host model what follows is
            // the model's bug check, a clean abort in a child process, which this test expects.
            let region =
                unsafe { SecureRegion::with_any_flags(buffer, PAGE, ProbeMode::ReadWrite, flags) }
                    .unwrap();
            process.free(buffer, AccessMode::Kernel).unwrap(); // another driver's free passes
            drop(region);
        },
    );
    assert!(
        message.starts_with("MEMORY_MANAGEMENT (bug check 0x1A"),
        "{message}"
    );
}

#[test]
fn highest_user_address_matches_the_host_backend() {
    assert_eq!(mmsecure::highest_user_address(), host::HIGHEST_USER_ADDRESS);
}

#[test]
fn copies_move_real_bytes_in_and_out() {
    let (process, _in, buffer) = process_with_buffer(3);
    let pattern: Vec<u8> = (0..3 * PAGE).map(|i| (i * 7 % 251) as u8).collect();
    process.write(buffer, &pattern).unwrap();
    let region = SecureRegion::new(buffer, 3 * PAGE, ProbeMode::ReadWrite).unwrap();

    let mut copy = vec![0u8; 3 * PAGE];
    region.read_slice(0, &mut copy).unwrap();
    assert_eq!(copy, pattern);

    let mut middle = [0u8; 100];
    region.read_slice(PAGE - 50, &mut middle).unwrap();
    assert_eq!(&middle[..], &pattern[PAGE - 50..PAGE + 50]);

    region.write_slice(PAGE + 1, b"driver wrote this").unwrap();
    let mut seen = [0u8; 17];
    process
        .read(buffer.wrapping_add(PAGE + 1), &mut seen)
        .unwrap();
    assert_eq!(&seen, b"driver wrote this");

    region.write(8, &0xDEAD_BEEF_u32).unwrap();
    assert_eq!(region.read::<u32>(8).unwrap(), 0xDEAD_BEEF);
    let mut raw = [0u8; 4];
    process.read(buffer.wrapping_add(8), &mut raw).unwrap();
    assert_eq!(u32::from_ne_bytes(raw), 0xDEAD_BEEF);
}

#[test]
fn accesses_outside_the_region_are_out_of_bounds() {
    let (_process, _in, buffer) = process_with_buffer(1);
    let region = SecureRegion::new(buffer, 64, ProbeMode::ReadWrite).unwrap();
    let mut out = [0u8; 8];
    let oob = |offset, len| Error::OutOfBounds {
        offset,
        len,
        region_len: 64,
    };
    assert_eq!(region.read_slice(57, &mut out), Err(oob(57, 8)));
    assert_eq!(
        region.read_slice(usize::MAX - 3, &mut out),
        Err(oob(usize::MAX - 3, 8))
    );
    assert_eq!(region.write_slice(60, &[0; 5]), Err(oob(60, 5)));
    assert_eq!(region.read::<u64>(57), Err(oob(57, 8)));
    assert_eq!(region.write(usize::MAX, &1u16), Err(oob(usize::MAX, 2)));
    // The last byte, and an empty access at the very end, are inside.
    assert_eq!(region.read_slice(56, &mut out), Ok(()));
    assert_eq!(region.read_slice(64, &mut []), Ok(()));
}

#[test]
fn writes_to_a_read_only_region_are_refused() {
    let (process, _in, buffer) = process_with_buffer(1);
    let region = SecureRegion::new(buffer, PAGE, ProbeMode::ReadOnly).unwrap();
    assert_eq!(region.write_slice(0, b"x"), Err(Error::NotWritable));
    assert_eq!(region.write(0, &1u8), Err(Error::NotWritable));
    let mut first = [1u8];
    process.read(buffer, &mut first).unwrap();
    assert_eq!(first, [0]);
}

#[test]
fn copies_from_another_process_context_are_refused() {
    let (process, attach, buffer) = process_with_buffer(1);
    let region = SecureRegion::new(buffer, PAGE, ProbeMode::ReadWrite).unwrap();
    let other = Process::new();
    {
        let _there = other.attach();
        let mut out = [0u8; 4];
        assert_eq!(region.read_slice(0, &mut out), Err(Error::WrongProcess));
        assert_eq!(region.write_slice(0, &out), Err(Error::WrongProcess));
    }
    drop(region);
    drop(attach);
    assert!(process.misuses().is_empty());
}

#[test]
fn raw_parts_keep_the_secure_until_rebuilt_and_dropped() {
    let (process, _in, buffer) = process_with_buffer(1);
    let raw = SecureRegion::new(buffer, PAGE, ProbeMode::ReadWrite)
        .unwrap()
        .into_raw();
    assert_eq!(process.secure_count(), 1);
    assert!(process.free(buffer, AccessMode::User).is_err());
    // A raw region can travel to another thread (to finish a pended IRP there).
    let raw = std::thread::spawn(move || raw).join().unwrap();
    let region = SecureRegion::from_raw(raw).unwrap();
    assert_eq!(
        (region.address(), region.len()),
        (UserPtr::from(buffer), PAGE)
    );
    drop(region);
    assert_eq!(process.secure_count(), 0);
    assert!(process.free(buffer, AccessMode::User).is_ok());
}

#[test]
fn a_dropped_raw_region_is_released_like_a_region() {
    let (process, _in, buffer) = process_with_buffer(1);
    let raw = SecureRegion::new(buffer, PAGE, ProbeMode::ReadWrite)
        .unwrap()
        .into_raw();
    assert_eq!(process.driver_references(), 1);
    drop(raw);
    assert_eq!(process.secure_count(), 0);
    assert_eq!(process.driver_references(), 0);
    assert!(process.misuses().is_empty());
}

#[test]
fn exclusive_fails_beside_another_secure() {
    let (_process, _in, buffer) = process_with_buffer(2);
    let first = SecureRegion::new(buffer, PAGE, ProbeMode::ReadOnly).unwrap();
    let second_page = buffer.wrapping_add(PAGE);
    assert_eq!(
        SecureRegion::with_flags(
            second_page,
            PAGE,
            ProbeMode::ReadOnly,
            SecureFlags::EXCLUSIVE
        )
        .unwrap_err(),
        Error::Refused
    );
    drop(first);
    assert!(SecureRegion::with_flags(
        second_page,
        PAGE,
        ProbeMode::ReadOnly,
        SecureFlags::EXCLUSIVE
    )
    .is_ok());
}

#[test]
fn no_change_refuses_every_protection_change() {
    let (process, _in, buffer) = process_with_buffer(1);
    let region =
        SecureRegion::with_flags(buffer, PAGE, ProbeMode::ReadOnly, SecureFlags::NO_CHANGE)
            .unwrap();
    for protect in [PAGE_READONLY, PAGE_READWRITE, PAGE_NOACCESS] {
        assert!(
            process
                .protect(buffer, PAGE, protect, AccessMode::User)
                .is_err(),
            "{protect:#x}"
        );
        assert!(
            process
                .protect(buffer, PAGE, protect, AccessMode::Kernel)
                .is_err(),
            "{protect:#x}"
        );
    }
    drop(region);
    assert!(process
        .protect(buffer, PAGE, PAGE_READONLY, AccessMode::User)
        .is_ok());
}

#[test]
fn user_mode_only_lets_kernel_mode_changes_pass() {
    let (process, _in, buffer) = process_with_buffer(1);
    // SAFETY: nothing here frees or unmaps the buffer from kernel mode.
    let _region = unsafe {
        SecureRegion::with_any_flags(
            buffer,
            PAGE,
            ProbeMode::ReadWrite,
            SecureFlags::USER_MODE_ONLY,
        )
    }
    .unwrap();
    assert!(process
        .protect(buffer, PAGE, PAGE_READONLY, AccessMode::User)
        .is_err());
    assert!(process
        .protect(buffer, PAGE, PAGE_READONLY, AccessMode::Kernel)
        .is_ok());
}

#[test]
fn no_inherit_leaves_a_forked_child_unsecured() {
    let (process, _in, buffer) = process_with_buffer(2);
    let second = buffer.wrapping_add(PAGE);
    let _inherited = SecureRegion::new(buffer, PAGE, ProbeMode::ReadWrite).unwrap();
    let _not_inherited =
        SecureRegion::with_flags(second, PAGE, ProbeMode::ReadWrite, SecureFlags::NO_INHERIT)
            .unwrap();
    let child = process.fork();
    assert!(child
        .protect(buffer, PAGE, PAGE_READONLY, AccessMode::User)
        .is_err());
    assert!(child
        .protect(second, PAGE, PAGE_READONLY, AccessMode::User)
        .is_ok());
}

#[test]
fn process_exit_drops_the_secure_and_a_late_drop_is_no_misuse() {
    let (process, _in, buffer) = process_with_buffer(1);
    let region = SecureRegion::new(buffer, PAGE, ProbeMode::ReadWrite).unwrap();
    process.exit();
    assert!(process.has_exited());
    assert_eq!(process.secure_count(), 0);
    let abandoned = mmsecure::abandoned_secures();
    drop(region); // MmUnsecureVirtualMemory returns: the address space is gone (WRK)
    assert!(process.misuses().is_empty());
    assert_eq!(mmsecure::abandoned_secures(), abandoned);
    assert_eq!(process.driver_references(), 0);
}

/// A pended-IRP worker cannot close the race with the requester's exit: it attaches, rebuilds
/// and drops, and the exit may come first. The kernel returns from the late unsecure (WRK
/// mapview.c, `MiUnsecureVirtualMemory`, L6730-L6736), so strict mode must not stop it.
#[test]
fn a_pended_worker_that_drops_after_the_exit_is_no_misuse_in_strict_mode() {
    let (process, in_process, buffer) = process_with_buffer(1);
    process.set_strict(true);
    let raw = SecureRegion::new(buffer, PAGE, ProbeMode::ReadWrite)
        .unwrap()
        .into_raw();
    drop(in_process);
    process.exit(); // the requester exits while the IRP is pended
    let worker = process.clone();
    std::thread::spawn(move || {
        let _attached = worker.attach(); // KeStackAttachProcess, with the raw region's reference
        let region = SecureRegion::from_raw(raw).expect("attached, at PASSIVE_LEVEL");
        let mut byte = [0u8; 1];
        assert!(matches!(
            region.read_slice(0, &mut byte),
            Err(Error::Fault { .. })
        ));
        drop(region);
    })
    .join()
    .unwrap();
    assert!(process.misuses().is_empty());
    assert_eq!(process.driver_references(), 0);
}

#[test]
fn reads_while_a_user_thread_writes_see_only_written_bytes() {
    // Miri runs this (the data-race check of the portable copy) about 10 000 times slower: one
    // page and a few reads there still race every copy against the writer.
    let (pages, reads) = if cfg!(miri) { (1, 3) } else { (16, 200) };
    let (process, _in, buffer) = process_with_buffer(pages);
    let len = pages * PAGE;
    let region = SecureRegion::new(buffer, len, ProbeMode::ReadOnly).unwrap();
    let stop = AtomicBool::new(false);
    let user = process.clone();
    let address = UserPtr::from(buffer); // a number: Send, unlike the pointer
    std::thread::scope(|scope| {
        scope.spawn(|| {
            let _in = user.attach();
            let mut fill = 1u8;
            while !stop.load(Ordering::Relaxed) {
                user.write(address, &vec![fill; len]).unwrap();
                fill = fill % 200 + 1;
            }
        });
        let mut copy = vec![0u8; len];
        for _ in 0..reads {
            region.read_slice(0, &mut copy).unwrap();
            // Each byte is one the user wrote (or the initial zero): torn across bytes, never
            // invented.
            assert!(copy.iter().all(|b| *b <= 200));
        }
        stop.store(true, Ordering::Relaxed);
    });
}
