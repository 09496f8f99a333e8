//! A secure the kernel cannot make for want of pool: `MiSecureVirtualMemory` allocates its secure
//! entry with `ExAllocatePoolWithTag` and returns NULL when that fails (WRK mapview.c
//! L6481-L6486, L6576-L6580, L6601-L6605), for a request that is otherwise good. The model
//! injects it with `Process::fail_pool_allocations`; the crate reports the NULL as
//! `Error::Refused`, leaves nothing standing, and a retry can succeed.

use mmsecure::{Error, ProbeMode, SecureFlags, SecureRegion};
use mmsecure_sys::host::{self, Process, PAGE_READWRITE};

const PAGE: usize = host::PAGE_SIZE;

#[test]
fn a_valid_secure_without_pool_is_refused_and_a_retry_succeeds() {
    let process = Process::new();
    let _in = process.attach();
    let buffer = process.allocate(2 * PAGE, PAGE_READWRITE).unwrap();
    process.fail_pool_allocations(2);
    let got = SecureRegion::new(buffer, 2 * PAGE, ProbeMode::ReadWrite).map(|_| ());
    assert_eq!(got, Err(Error::Refused));
    let got = SecureRegion::with_flags(buffer, PAGE, ProbeMode::ReadOnly, SecureFlags::NO_CHANGE)
        .map(|_| ());
    assert_eq!(got, Err(Error::Refused));
    assert_eq!(process.secure_count(), 0);
    let region = SecureRegion::new(buffer, 2 * PAGE, ProbeMode::ReadWrite).unwrap();
    assert_eq!(process.secure_count(), 1);
    drop(region);
    assert!(process.misuses().is_empty());
}

#[test]
fn a_refused_request_does_not_use_up_an_injected_failure() {
    let process = Process::new();
    let _in = process.attach();
    let buffer = process.allocate(PAGE, PAGE_READWRITE).unwrap();
    process.fail_pool_allocations(1);
    // Beyond the allocation: refused before the pool is asked.
    let got = SecureRegion::new(buffer, 2 * PAGE, ProbeMode::ReadOnly).map(|_| ());
    assert_eq!(got, Err(Error::Refused));
    let got = SecureRegion::new(buffer, PAGE, ProbeMode::ReadOnly).map(|_| ());
    assert_eq!(got, Err(Error::Refused));
    assert!(SecureRegion::new(buffer, PAGE, ProbeMode::ReadOnly).is_ok());
}
