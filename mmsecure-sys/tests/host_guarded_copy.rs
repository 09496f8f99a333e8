//! Host backend, rule by rule: the guarded copy checks the current process's pages, as the MMU
//! and the exception handler do on Windows. A byte the current process does not have committed
//! with the access raises `STATUS_ACCESS_VIOLATION`; a guard page raises
//! `STATUS_GUARD_PAGE_VIOLATION` once; touching user memory at `DISPATCH_LEVEL` is a bug check.
//! The bytes before the faulting one are copied, the rest not.

mod common;

use common::{stopped_child, PAGE};
use mmsecure_sys::host::{
    self, AccessMode, Process, PAGE_GUARD, PAGE_NOACCESS, PAGE_READONLY, PAGE_READWRITE,
    STATUS_ACCESS_VIOLATION, STATUS_GUARD_PAGE_VIOLATION,
};
use mmsecure_sys::status::STATUS_SUCCESS;
use mmsecure_sys::{copy_guarded, DISPATCH_LEVEL, NTSTATUS};

/// A process with `pages` read-write pages filled with `fill`.
fn process_with(pages: usize, fill: u8) -> (Process, *mut u8) {
    let process = Process::new();
    let buffer = process.allocate(pages * PAGE, PAGE_READWRITE).unwrap();
    process.write(buffer, &vec![fill; pages * PAGE]).unwrap();
    (process, buffer)
}

/// A guarded copy of `len` bytes from user memory at `src` into a zeroed local buffer.
fn read(src: *const u8, len: usize) -> (NTSTATUS, Vec<u8>) {
    let mut out = vec![0u8; len];
    // SAFETY: `out` is this test's own; `src` is user memory of the model, which may fault: the
    // guarded copy reports it.
    let status = unsafe { copy_guarded(out.as_mut_ptr(), src, len) };
    (status, out)
}

/// A guarded copy of `data` into user memory at `dst`.
fn write(dst: *mut u8, data: &[u8]) -> NTSTATUS {
    // SAFETY: as in `read`, the other way.
    unsafe { copy_guarded(dst, data.as_ptr(), data.len()) }
}

#[test]
fn committed_readable_memory_of_the_current_process_copies() {
    let (process, buffer) = process_with(2, 7);
    let _in = process.attach();
    let (status, out) = read(buffer, 2 * PAGE);
    assert_eq!(status, STATUS_SUCCESS);
    assert!(out.iter().all(|b| *b == 7));
    assert_eq!(write(buffer, &[9; 100]), STATUS_SUCCESS);
}

#[test]
fn a_no_access_page_is_an_access_violation_after_the_bytes_before_it() {
    let (process, buffer) = process_with(2, 7);
    process
        .protect(
            buffer.wrapping_add(PAGE),
            PAGE,
            PAGE_NOACCESS,
            AccessMode::User,
        )
        .unwrap();
    let _in = process.attach();
    let (status, out) = read(buffer.wrapping_add(PAGE - 16), 32);
    assert_eq!(status, STATUS_ACCESS_VIOLATION);
    assert_eq!(&out[..16], &[7; 16]);
    assert_eq!(&out[16..], &[0; 16]);
}

#[test]
fn a_write_to_a_read_only_page_is_an_access_violation() {
    let (process, buffer) = process_with(1, 7);
    process
        .protect(buffer, PAGE, PAGE_READONLY, AccessMode::User)
        .unwrap();
    let _in = process.attach();
    assert_eq!(read(buffer, 8).0, STATUS_SUCCESS);
    assert_eq!(write(buffer, &[1; 8]), STATUS_ACCESS_VIOLATION);
    let mut seen = [0u8; 8];
    process.read(buffer, &mut seen).unwrap();
    assert_eq!(seen, [7; 8], "nothing was written");
}

#[test]
fn freed_and_decommitted_memory_is_an_access_violation() {
    let (process, buffer) = process_with(2, 7);
    let _in = process.attach();
    process
        .decommit(buffer.wrapping_add(PAGE), PAGE, AccessMode::User)
        .unwrap();
    assert_eq!(
        read(buffer.wrapping_add(PAGE), 1).0,
        STATUS_ACCESS_VIOLATION
    );
    process.free(buffer, AccessMode::User).unwrap();
    assert_eq!(read(buffer, 1).0, STATUS_ACCESS_VIOLATION);
    assert_eq!(write(buffer, &[1]), STATUS_ACCESS_VIOLATION);
}

#[test]
fn another_processs_memory_is_an_access_violation() {
    let (owner, buffer) = process_with(1, 7);
    let other = Process::new();
    {
        let _in = other.attach();
        assert_eq!(read(buffer, 8).0, STATUS_ACCESS_VIOLATION);
        assert_eq!(write(buffer, &[1; 8]), STATUS_ACCESS_VIOLATION);
    }
    // In no process at all (System), no user memory exists.
    assert_eq!(read(buffer, 8).0, STATUS_ACCESS_VIOLATION);
    let _in = owner.attach();
    assert_eq!(read(buffer, 8).0, STATUS_SUCCESS);
}

#[test]
fn an_exited_processs_memory_is_an_access_violation() {
    let (process, buffer) = process_with(1, 7);
    let _in = process.attach();
    process.exit();
    assert_eq!(read(buffer, 8).0, STATUS_ACCESS_VIOLATION);
}

#[test]
fn a_guard_page_faults_once_and_then_copies() {
    let (process, buffer) = process_with(1, 7);
    process
        .protect(buffer, PAGE, PAGE_READWRITE | PAGE_GUARD, AccessMode::User)
        .unwrap();
    let _in = process.attach();
    let (status, out) = read(buffer, 8);
    assert_eq!(status, STATUS_GUARD_PAGE_VIOLATION);
    assert_eq!(out, [0; 8]);
    assert_eq!(
        process.protection(buffer),
        Some(PAGE_READWRITE),
        "guard cleared"
    );
    let (status, out) = read(buffer, 8);
    assert_eq!(status, STATUS_SUCCESS);
    assert_eq!(out, [7; 8]);
}

#[test]
fn a_change_after_a_successful_copy_is_seen_by_the_next_one() {
    // The model remembers a successful check; any change to an address space must undo that.
    let (process, buffer) = process_with(1, 7);
    let _in = process.attach();
    assert_eq!(read(buffer, 8).0, STATUS_SUCCESS);
    process
        .protect(buffer, PAGE, PAGE_NOACCESS, AccessMode::User)
        .unwrap();
    assert_eq!(read(buffer, 8).0, STATUS_ACCESS_VIOLATION);
    process
        .protect(buffer, PAGE, PAGE_READWRITE, AccessMode::User)
        .unwrap();
    assert_eq!(read(buffer, 8).0, STATUS_SUCCESS);
    // And a change of context too.
    let other = Process::new();
    let _there = other.attach();
    assert_eq!(read(buffer, 8).0, STATUS_ACCESS_VIOLATION);
}

#[test]
fn the_drivers_own_memory_is_not_checked() {
    let src = [5u8; 64];
    let mut dst = [0u8; 64];
    let _raised = host::raise_irql(DISPATCH_LEVEL);
    // SAFETY: both are this test's own arrays of 64 bytes.
    let status = unsafe { copy_guarded(dst.as_mut_ptr(), src.as_ptr(), 64) };
    assert_eq!(status, STATUS_SUCCESS);
    assert_eq!(dst, src);
}

#[test]
fn user_memory_at_dispatch_level_is_irql_not_less_or_equal() {
    let stderr = stopped_child(
        "user_memory_at_dispatch_level_is_irql_not_less_or_equal",
        || {
            let (process, buffer) = process_with(1, 7);
            let _in = process.attach();
            let _raised = host::raise_irql(DISPATCH_LEVEL);
            read(buffer, 8);
        },
    );
    assert!(
        stderr.contains("IRQL_NOT_LESS_OR_EQUAL (bug check 0xA)"),
        "{stderr}"
    );
    assert!(
        stderr.contains("guarded copy touched user memory"),
        "{stderr}"
    );
}

#[test]
fn a_fault_stops_the_copy_before_anything_later_is_touched() {
    // A forward copy stops at its first faulting byte: a guard page later in the copy, on
    // either side, keeps its guard, and nothing after the fault is written.
    let (process, source) = process_with(1, 7);
    let destination = process.allocate(PAGE, PAGE_READWRITE).unwrap();
    for (protect_source, expected) in [
        (PAGE_READWRITE | PAGE_GUARD, STATUS_GUARD_PAGE_VIOLATION),
        (PAGE_NOACCESS, STATUS_ACCESS_VIOLATION),
    ] {
        process
            .protect(source, PAGE, protect_source, AccessMode::User)
            .unwrap();
        process
            .protect(
                destination,
                PAGE,
                PAGE_READWRITE | PAGE_GUARD,
                AccessMode::User,
            )
            .unwrap();
        let _in = process.attach();
        // SAFETY: both are user memory of the attached process, which may fault: the guarded
        // copy reports it.
        let status = unsafe { copy_guarded(destination, source, 16) };
        assert_eq!(status, expected);
        assert_eq!(
            process.protection(destination),
            Some(PAGE_READWRITE | PAGE_GUARD),
            "the destination was never reached"
        );
        process
            .protect(source, PAGE, PAGE_READWRITE, AccessMode::User)
            .unwrap();
    }
}
