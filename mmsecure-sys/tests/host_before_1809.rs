//! Host backend: a Windows build before 10.0.17763 (1809) has no `MmSecureVirtualMemoryEx`.
//! The build is global to the binary, so this file holds one test.

mod common;

use common::{lookup, secure, unsecure, PAGE};
use mmsecure_sys::host::{self, Process, PAGE_READWRITE};
use mmsecure_sys::{MmSecureVirtualMemory, MmSecureVirtualMemoryEx, SIZE_T};

#[test]
fn before_build_17763_the_ex_routine_is_not_found_and_calling_it_stops_the_binary() {
    let process = Process::new();
    let _in = process.attach();
    let page = process.allocate(PAGE, PAGE_READWRITE).unwrap();
    host::set_windows_build(17134); // Windows 10 1803

    assert!(lookup("MmSecureVirtualMemoryEx").is_null());
    assert_eq!(
        lookup("MmSecureVirtualMemory") as usize,
        MmSecureVirtualMemory as *const () as usize
    );
    // The plain routine works on every build.
    unsecure(secure(page, PAGE, PAGE_READWRITE));

    // A driver that imported the routine statically calls it: the child process stops.
    let message = host::assert_bug_check(
        "before_build_17763_the_ex_routine_is_not_found_and_calling_it_stops_the_binary",
        || {
            // SAFETY: the model checks every argument; stopping here is the point.
            let _ =
                unsafe { MmSecureVirtualMemoryEx(page.cast(), PAGE as SIZE_T, PAGE_READWRITE, 0) };
        },
    );
    assert!(
        message.contains("Windows build 17134 has no such routine"),
        "{message}"
    );

    // On 1809 the lookup finds it.
    host::set_windows_build(host::FIRST_BUILD_WITH_SECURE_EX);
    assert_eq!(
        lookup("MmSecureVirtualMemoryEx") as usize,
        MmSecureVirtualMemoryEx as *const () as usize
    );
    assert!(process.misuses().is_empty());
}
