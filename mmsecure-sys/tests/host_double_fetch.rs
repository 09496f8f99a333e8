//! The model's double-fetch detector on the raw routines: which reads belong to which request,
//! what counts as read, and the limits.

use mmsecure_sys::host::{Process, MAX_FINDINGS, PAGE_READWRITE, PAGE_SIZE, STATUS_IN_PAGE_ERROR};
use mmsecure_sys::{copy_guarded, MmSecureVirtualMemory, MmUnsecureVirtualMemory, HANDLE};

fn secure(address: *mut u8, len: usize) -> HANDLE {
    // SAFETY: the routine checks the range itself; PASSIVE_LEVEL.
    let handle = unsafe { MmSecureVirtualMemory(address.cast(), len as u64, PAGE_READWRITE) };
    assert!(!handle.is_null());
    handle
}

fn unsecure(handle: HANDLE) {
    // SAFETY: a live handle of the current process, unsecured once.
    unsafe { MmUnsecureVirtualMemory(handle) };
}

/// A guarded read of `len` bytes at `address` into a buffer of the driver's; its status.
fn read(address: *const u8, len: usize) -> i32 {
    let mut out = vec![0u8; len];
    // SAFETY: `out` is the driver's own; `address` is user memory of the current process.
    unsafe { copy_guarded(out.as_mut_ptr(), address, len) }
}

#[test]
fn reads_outside_every_secure_and_scope_are_not_tracked() {
    let process = Process::new();
    let _in = process.attach();
    let buffer = process.allocate(PAGE_SIZE, PAGE_READWRITE).unwrap();
    read(buffer, 8);
    read(buffer, 8);
    let handle = secure(buffer.wrapping_add(64), 8);
    read(buffer, 8); // beside the secure, not in it
    read(buffer, 8);
    unsecure(handle);
    assert!(process.double_fetches().is_empty());
}

#[test]
fn a_faulting_read_counts_only_the_bytes_before_the_fault() {
    let process = Process::new();
    let _in = process.attach();
    let buffer = process.allocate(2 * PAGE_SIZE, PAGE_READWRITE).unwrap();
    let handle = secure(buffer, 2 * PAGE_SIZE);
    process.inject_fault(buffer.wrapping_add(PAGE_SIZE), 1, STATUS_IN_PAGE_ERROR);
    let start = buffer.wrapping_add(PAGE_SIZE - 8);
    assert_eq!(read(start, 16), STATUS_IN_PAGE_ERROR); // read 8 bytes, then faulted
    process.clear_faults();
    assert_eq!(read(buffer.wrapping_add(PAGE_SIZE), 8), 0); // the 8 it did not read
    assert!(process.double_fetches().is_empty());
    read(start, 4); // 4 it did read
    unsecure(handle);
    let found = process.double_fetches();
    assert_eq!(found.len(), 1);
    assert_eq!((found[0].address, found[0].len), (start as usize, 4));
    assert_eq!(found[0].first.len, 8);
}

#[test]
fn an_unsecure_ends_its_request() {
    let process = Process::new();
    let _in = process.attach();
    let buffer = process.allocate(PAGE_SIZE, PAGE_READWRITE).unwrap();
    let handle = secure(buffer, 16);
    read(buffer, 16);
    unsecure(handle);
    let handle = secure(buffer, 16);
    read(buffer, 16);
    assert!(process.double_fetches().is_empty());
    read(buffer.wrapping_add(8), 8); // but within one secure's life, it counts
    unsecure(handle);
    assert_eq!(process.double_fetch_count(), 1);
}

#[test]
fn a_scope_counts_user_reads_only_and_nested_scopes_are_requests_of_their_own() {
    let process = Process::new();
    let _in = process.attach();
    let buffer = process.allocate(PAGE_SIZE, PAGE_READWRITE).unwrap();
    let outer = process.begin_request();
    let driver_memory = [0u8; 16];
    read(driver_memory.as_ptr(), 16);
    read(driver_memory.as_ptr(), 16); // the driver's own bytes: no fetch from the user
    read(buffer, 4);
    {
        let _inner = process.begin_request();
        read(buffer, 4); // a request of its own: the first read of it there
    }
    assert!(process.double_fetches().is_empty());
    read(buffer, 4); // back in the outer request
    drop(outer);
    assert_eq!(process.double_fetches().len(), 1);
}

#[test]
fn findings_are_capped_and_counted_past_the_cap() {
    let process = Process::new();
    let _in = process.attach();
    let buffer = process.allocate(PAGE_SIZE, PAGE_READWRITE).unwrap();
    let handle = secure(buffer, 8);
    for _ in 0..MAX_FINDINGS + 11 {
        read(buffer, 8);
    }
    unsecure(handle);
    assert_eq!(process.double_fetches().len(), MAX_FINDINGS);
    assert_eq!(process.double_fetch_count(), MAX_FINDINGS + 10);
}

#[test]
fn each_process_has_its_own_findings() {
    let (a, b) = (Process::new(), Process::new());
    for process in [&a, &b] {
        let _in = process.attach();
        let buffer = process.allocate(PAGE_SIZE, PAGE_READWRITE).unwrap();
        let handle = secure(buffer, 8);
        read(buffer, 8);
        if process.id() == a.id() {
            read(buffer, 8);
        }
        unsecure(handle);
    }
    assert_eq!(a.double_fetches().len(), 1);
    assert!(b.double_fetches().is_empty());
}
