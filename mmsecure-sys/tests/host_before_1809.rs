//! Host backend: a Windows build before 10.0.17763 (1809) has no `MmSecureVirtualMemoryEx`.
//! The build is global to the binary, so this file holds one test.

use std::process::Command;

use mmsecure_sys::host::{self, Process, PAGE_READWRITE};
use mmsecure_sys::{
    MmGetSystemRoutineAddress, MmSecureVirtualMemory, MmSecureVirtualMemoryEx,
    MmUnsecureVirtualMemory, PVOID, SIZE_T, UNICODE_STRING,
};

const PAGE: usize = host::PAGE_SIZE;
const CHILD: &str = "MMSECURE_HOST_TEST_CHILD";

fn lookup(name: &str) -> PVOID {
    let mut units: Vec<u16> = name.encode_utf16().collect();
    let mut string = UNICODE_STRING {
        Length: (units.len() * 2) as u16,
        MaximumLength: (units.len() * 2) as u16,
        Buffer: units.as_mut_ptr(),
    };
    // SAFETY: `string` is a valid UNICODE_STRING over `units`, which outlives the call.
    unsafe { MmGetSystemRoutineAddress(&mut string) }
}

#[test]
fn before_build_17763_the_ex_routine_is_not_found_and_calling_it_stops_the_binary() {
    let process = Process::new();
    let _in = process.attach();
    let page = process.allocate(PAGE, PAGE_READWRITE).unwrap();
    host::set_windows_build(17134); // Windows 10 1803

    if std::env::var(CHILD).is_ok() {
        // The child: a driver that imported the routine statically calls it.
        // SAFETY: the model checks every argument; stopping here is the point.
        let _ = unsafe { MmSecureVirtualMemoryEx(page.cast(), PAGE as SIZE_T, PAGE_READWRITE, 0) };
        std::process::exit(0);
    }

    assert!(lookup("MmSecureVirtualMemoryEx").is_null());
    assert_eq!(
        lookup("MmSecureVirtualMemory") as usize,
        MmSecureVirtualMemory as *const () as usize
    );
    // The plain routine works on every build.
    // SAFETY: the model checks every argument.
    let handle = unsafe { MmSecureVirtualMemory(page.cast(), PAGE as SIZE_T, PAGE_READWRITE) };
    assert!(!handle.is_null());
    // SAFETY: a live handle of this process.
    unsafe { MmUnsecureVirtualMemory(handle) };

    let output = Command::new(std::env::current_exe().unwrap())
        .args([
            "--exact",
            "before_build_17763_the_ex_routine_is_not_found_and_calling_it_stops_the_binary",
            "--nocapture",
        ])
        .env(CHILD, "1")
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(!output.status.success(), "{stderr}");
    assert!(
        stderr.contains("Windows build 17134 has no such routine"),
        "{stderr}"
    );

    // On 1809 the lookup finds it.
    host::set_windows_build(host::FIRST_BUILD_WITH_SECURE_EX);
    assert_eq!(
        lookup("MmSecureVirtualMemoryEx") as usize,
        MmSecureVirtualMemoryEx as *const () as usize
    );
    assert!(process.misuses().is_empty());
}
