//! The host model's guarded copy and guarded call: injected faults come back as their code, and
//! nothing else changes.

use core::ffi::c_void;
use core::ptr;

use mmsecure_sys::host::{
    raise_exception, Process, PAGE_READWRITE, PAGE_SIZE, STATUS_ACCESS_VIOLATION,
    STATUS_IN_PAGE_ERROR,
};
use mmsecure_sys::status::STATUS_SUCCESS;
use mmsecure_sys::{call_guarded, copy_guarded};

/// A process with `pages` committed read-write pages filled with `fill`, and their address.
fn process_with(pages: usize, fill: u8) -> (Process, *mut u8) {
    let process = Process::new();
    let buffer = process.allocate(pages * PAGE_SIZE, PAGE_READWRITE).unwrap();
    process
        .write(buffer, &vec![fill; pages * PAGE_SIZE])
        .unwrap();
    (process, buffer)
}

/// A guarded copy of `len` bytes from `src` into a fresh zeroed vector.
fn guarded_read(src: *const u8, len: usize) -> (i32, Vec<u8>) {
    let mut out = vec![0u8; len];
    // SAFETY: `src` is committed, readable memory of the current (model) process for `len`
    // bytes, and `out` is this test's own, disjoint.
    let status = unsafe { copy_guarded(out.as_mut_ptr(), src, len) };
    (status, out)
}

#[test]
fn guarded_read_returns_the_injected_code_after_copying_the_bytes_before_the_page() {
    let (process, buffer) = process_with(3, 0xAB);
    let _in = process.attach();
    process.inject_fault(
        buffer.wrapping_add(PAGE_SIZE + 100),
        1,
        STATUS_IN_PAGE_ERROR,
    );

    // From 16 bytes before the faulting page: those 16 are copied, the rest is not.
    let (status, out) = guarded_read(buffer.wrapping_add(PAGE_SIZE - 16), 64);
    assert_eq!(status, STATUS_IN_PAGE_ERROR);
    assert!(out[..16].iter().all(|b| *b == 0xAB));
    assert!(out[16..].iter().all(|b| *b == 0));
}

#[test]
fn guarded_write_into_a_faulting_page_returns_the_code() {
    let (process, buffer) = process_with(2, 0);
    let _in = process.attach();
    process.inject_fault(buffer, PAGE_SIZE, STATUS_ACCESS_VIOLATION);
    let data = [0x5Au8; 32];
    // SAFETY: the destination is committed, writable memory of the current process; `data` is
    // ours, disjoint.
    let status = unsafe { copy_guarded(buffer, data.as_ptr(), data.len()) };
    assert_eq!(status, STATUS_ACCESS_VIOLATION);
    let mut seen = [0xFFu8; 32];
    process.read(buffer, &mut seen).unwrap();
    assert_eq!(
        seen, [0u8; 32],
        "nothing before the faulting byte, so nothing written"
    );
}

#[test]
fn pages_without_a_fault_and_other_processes_copy_normally() {
    let (faulty, buffer) = process_with(2, 1);
    faulty.inject_fault(
        buffer.wrapping_add(PAGE_SIZE),
        PAGE_SIZE,
        STATUS_IN_PAGE_ERROR,
    );
    {
        let _in = faulty.attach();
        // The first page of the faulty process is fine.
        let (status, out) = guarded_read(buffer, PAGE_SIZE);
        assert_eq!(status, STATUS_SUCCESS);
        assert!(out.iter().all(|b| *b == 1));
    }
    // Another process is unaffected, even over the same address range of its own memory.
    let (other, other_buffer) = process_with(2, 2);
    let _in = other.attach();
    let (status, out) = guarded_read(other_buffer, 2 * PAGE_SIZE);
    assert_eq!(status, STATUS_SUCCESS);
    assert!(out.iter().all(|b| *b == 2));
    // In `other`'s context, the faulty process's memory is no memory at all: an access
    // violation at the first byte, whatever was injected there.
    let (status, _) = guarded_read(buffer, 2 * PAGE_SIZE);
    assert_eq!(status, mmsecure_sys::host::STATUS_ACCESS_VIOLATION);
}

#[test]
fn clearing_the_faults_restores_the_copy() {
    let (process, buffer) = process_with(1, 9);
    let _in = process.attach();
    process.inject_fault(buffer, 1, STATUS_IN_PAGE_ERROR);
    assert_eq!(guarded_read(buffer, 8).0, STATUS_IN_PAGE_ERROR);
    process.clear_faults();
    let (status, out) = guarded_read(buffer, PAGE_SIZE);
    assert_eq!(status, STATUS_SUCCESS);
    assert!(out.iter().all(|b| *b == 9));
    // User-mode access never saw the fault.
    let mut seen = [0u8; 4];
    process.read(buffer, &mut seen).unwrap();
    assert_eq!(seen, [9; 4]);
}

#[test]
fn a_dropped_process_takes_its_faults_with_it() {
    let (process, buffer) = process_with(1, 3);
    process.inject_fault(buffer, 1, STATUS_IN_PAGE_ERROR);
    drop(process);
    // Nothing to observe but that copies elsewhere still work and nothing panics.
    let (other, other_buffer) = process_with(1, 4);
    let _in = other.attach();
    assert_eq!(guarded_read(other_buffer, 16).0, STATUS_SUCCESS);
}

unsafe extern "C" fn raise_in_page_error(context: *mut c_void) {
    raise_exception(STATUS_IN_PAGE_ERROR);
    if !context.is_null() {
        // SAFETY: the test passes a pointer to a bool, or null.
        unsafe { *context.cast::<bool>() = true };
    }
}

unsafe extern "C" fn sets_flag(context: *mut c_void) {
    // SAFETY: the test passes a pointer to a bool.
    unsafe { *context.cast::<bool>() = true };
}

#[test]
fn call_guarded_returns_what_the_callee_raised() {
    // SAFETY: the callee accepts a null context.
    let status = unsafe { call_guarded(raise_in_page_error, ptr::null_mut()) };
    assert_eq!(status, STATUS_IN_PAGE_ERROR);
    let mut ran = false;
    // SAFETY: `sets_flag` gets a pointer to a live bool.
    let status = unsafe { call_guarded(sets_flag, (&mut ran as *mut bool).cast()) };
    assert_eq!(status, STATUS_SUCCESS);
    assert!(ran);
}

unsafe extern "C" fn nested(context: *mut c_void) {
    // SAFETY: the callee accepts a null context.
    let inner = unsafe { call_guarded(raise_in_page_error, ptr::null_mut()) };
    // SAFETY: the test passes a pointer to an i32.
    unsafe { *context.cast::<i32>() = inner };
}

#[test]
fn the_innermost_call_guarded_catches_a_raise() {
    let mut inner = 0i32;
    // SAFETY: `nested` gets a pointer to a live i32.
    let outer = unsafe { call_guarded(nested, (&mut inner as *mut i32).cast()) };
    assert_eq!(inner, STATUS_IN_PAGE_ERROR);
    assert_eq!(outer, STATUS_SUCCESS);
}

#[test]
fn guarded_copies_are_exact_with_no_fault_injected() {
    let src: Vec<u8> = (0..=255u8).cycle().take(3 * PAGE_SIZE + 7).collect();
    for len in [0, 1, 15, 4096, src.len()] {
        let mut dst = vec![0u8; len];
        // SAFETY: both are this test's own vectors of at least `len` bytes.
        let status = unsafe { copy_guarded(dst.as_mut_ptr(), src.as_ptr(), len) };
        assert_eq!(status, STATUS_SUCCESS);
        assert_eq!(dst[..], src[..len]);
    }
}
