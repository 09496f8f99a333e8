//! Host backend: simulated user memory is real memory the model owns, so a driver's raw copies
//! touch real bytes, and a driver bug is never host undefined behaviour.

mod common;

use common::PAGE;
use mmsecure_sys::host::{
    AccessMode, Process, Status, PAGE_GUARD, PAGE_NOACCESS, PAGE_READONLY, PAGE_READWRITE,
    PAGE_WRITECOPY, STATUS_ACCESS_VIOLATION, STATUS_GUARD_PAGE_VIOLATION,
};
use mmsecure_sys::{MmSecureVirtualMemory, MmUnsecureVirtualMemory, SIZE_T};

#[test]
fn allocations_are_zeroed_page_aligned_real_memory() {
    let process = Process::new();
    let buffer = process.allocate(3 * PAGE - 10, PAGE_READWRITE).unwrap();
    assert_eq!(buffer as usize % PAGE, 0);
    // Rounded up to whole pages.
    assert_eq!(
        process.protection(buffer.wrapping_add(3 * PAGE - 1)),
        Some(PAGE_READWRITE)
    );
    let mut bytes = vec![0xAAu8; 3 * PAGE];
    // SAFETY: the model owns 3 committed pages at `buffer`; nothing else writes them now.
    unsafe { core::ptr::copy_nonoverlapping(buffer, bytes.as_mut_ptr(), bytes.len()) };
    assert!(bytes.iter().all(|b| *b == 0));
}

#[test]
fn driver_copies_and_user_writes_see_the_same_bytes() {
    let process = Process::new();
    let _in = process.attach();
    let buffer = process.allocate(PAGE, PAGE_READWRITE).unwrap();
    process.write(buffer.wrapping_add(5), b"from user").unwrap();
    // SAFETY: the model checks every argument.
    let handle = unsafe { MmSecureVirtualMemory(buffer.cast(), PAGE as SIZE_T, PAGE_READWRITE) };
    let mut seen = [0u8; 9];
    // SAFETY: secured read-write in the current process: committed, model-owned memory.
    unsafe { core::ptr::copy_nonoverlapping(buffer.wrapping_add(5), seen.as_mut_ptr(), 9) };
    assert_eq!(&seen, b"from user");
    // SAFETY: as above.
    unsafe { core::ptr::copy_nonoverlapping(b"driver".as_ptr(), buffer.wrapping_add(100), 6) };
    let mut out = [0u8; 6];
    process.read(buffer.wrapping_add(100), &mut out).unwrap();
    assert_eq!(&out, b"driver");
    // SAFETY: a live handle of this process.
    unsafe { MmUnsecureVirtualMemory(handle) };
}

#[test]
fn user_reads_and_writes_need_the_access() {
    let process = Process::new();
    let pages = process.allocate(3 * PAGE, PAGE_READWRITE).unwrap();
    let page = |i: usize| pages.wrapping_add(i * PAGE);
    process
        .protect(page(1), PAGE, PAGE_READONLY, AccessMode::User)
        .unwrap();
    process
        .protect(page(2), PAGE, PAGE_NOACCESS, AccessMode::User)
        .unwrap();
    let violation = Err(Status(STATUS_ACCESS_VIOLATION));
    assert_eq!(process.write(page(1), b"x"), violation);
    // A write that starts writable and runs into a read-only page fails.
    assert_eq!(process.write(page(1).wrapping_sub(2), b"xyz"), violation);
    assert!(process.read(page(1), &mut [0u8; 4]).is_ok());
    assert_eq!(process.read(page(2), &mut [0u8; 1]), violation);
    // Outside any allocation, and past its end.
    assert_eq!(
        process.read(pages.wrapping_add(3 * PAGE), &mut [0u8; 1]),
        violation
    );
    let local = [0u8; 4];
    assert_eq!(process.read(local.as_ptr(), &mut [0u8; 4]), violation);
    // Empty accesses always succeed.
    assert!(process.write(page(2), b"").is_ok());
}

#[test]
fn a_guard_page_faults_once_then_is_an_ordinary_page() {
    let process = Process::new();
    let page = process.allocate(PAGE, PAGE_READWRITE | PAGE_GUARD).unwrap();
    assert_eq!(process.protection(page), Some(PAGE_READWRITE | PAGE_GUARD));
    assert_eq!(
        process.read(page, &mut [0u8; 1]),
        Err(Status(STATUS_GUARD_PAGE_VIOLATION))
    );
    assert_eq!(process.protection(page), Some(PAGE_READWRITE));
    assert!(process.write(page, b"ok").is_ok());
}

#[test]
fn a_write_to_a_copy_on_write_page_makes_it_read_write() {
    let process = Process::new();
    let view = process.map_view(PAGE, PAGE_WRITECOPY).unwrap();
    process.write(view, b"mine").unwrap();
    assert_eq!(process.protection(view), Some(PAGE_READWRITE));
    // Private memory cannot be copy-on-write.
    assert!(process.allocate(PAGE, PAGE_WRITECOPY).is_err());
}

#[test]
fn recommitted_pages_read_as_zero() {
    let process = Process::new();
    let pages = process.allocate(2 * PAGE, PAGE_READWRITE).unwrap();
    process.write(pages.wrapping_add(PAGE), b"stale").unwrap();
    process
        .decommit(pages.wrapping_add(PAGE), PAGE, AccessMode::User)
        .unwrap();
    process
        .commit(pages.wrapping_add(PAGE), PAGE, PAGE_READWRITE)
        .unwrap();
    let mut out = [1u8; 5];
    process.read(pages.wrapping_add(PAGE), &mut out).unwrap();
    assert_eq!(out, [0; 5]);
}

#[test]
fn freed_and_exited_memory_stays_owned_by_the_model() {
    let process = Process::new();
    let freed = process.allocate(PAGE, PAGE_READWRITE).unwrap();
    let kept = process.allocate(PAGE, PAGE_READWRITE).unwrap();
    process.write(freed, b"old").unwrap();
    process.write(kept, b"kept").unwrap();
    process.free(freed, AccessMode::User).unwrap();
    process.exit();
    // A buggy driver that kept the pointers still reads the model's memory, not the host's
    // reused heap: the stale bytes are there. (The model reports the bug elsewhere: the range is
    // not secured, not committed, not this process' any more.)
    let mut out = [0u8; 3];
    // SAFETY: the model keeps freed and exited memory alive while `process` exists.
    unsafe { core::ptr::copy_nonoverlapping(freed, out.as_mut_ptr(), 3) };
    assert_eq!(&out, b"old");
    // And new allocations never reuse an address the process still holds.
    let other = Process::new();
    let fresh = other.allocate(PAGE, PAGE_READWRITE).unwrap();
    assert!(fresh != freed && fresh != kept);
}

#[test]
fn a_forked_child_shares_the_parents_bytes() {
    // The documented limit of the model: same addresses, same bytes.
    let parent = Process::new();
    let page = parent.allocate(PAGE, PAGE_READWRITE).unwrap();
    parent.write(page, b"before").unwrap();
    let child = parent.fork();
    let mut out = [0u8; 6];
    child.read(page, &mut out).unwrap();
    assert_eq!(&out, b"before");
    child.write(page, b"after!").unwrap();
    parent.read(page, &mut out).unwrap();
    assert_eq!(&out, b"after!");
    // Freeing in the parent leaves the child's allocation (and bytes) in place.
    parent.free(page, AccessMode::User).unwrap();
    child.read(page, &mut out).unwrap();
    assert_eq!(&out, b"after!");
}
