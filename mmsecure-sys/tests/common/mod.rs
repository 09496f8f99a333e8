//! Helpers over the raw FFI shared by the `host_*` tests: the host backend's page size, the
//! status a standing secure refuses with, and one-line wrappers for the secure routines.

// Each test binary compiles this module and uses a subset of it.
#![allow(dead_code)]

use mmsecure_sys::host::{self, AccessMode, Process, Status, STATUS_INVALID_PAGE_PROTECTION};
use mmsecure_sys::{
    MmGetSystemRoutineAddress, MmSecureVirtualMemory, MmSecureVirtualMemoryEx,
    MmUnsecureVirtualMemory, HANDLE, PVOID, SIZE_T, UNICODE_STRING,
};

/// The host backend's page size.
pub const PAGE: usize = host::PAGE_SIZE;

/// What [`protect`] (and the model's other user-memory operations) answer when a standing
/// secure refuses the request.
pub const REFUSED: Result<(), Status> = Err(Status(STATUS_INVALID_PAGE_PROTECTION));

/// `MmSecureVirtualMemory`, which may answer NULL.
pub fn try_secure(address: *const u8, len: usize, probe: u32) -> HANDLE {
    // SAFETY: the model checks every argument and dereferences nothing.
    unsafe { MmSecureVirtualMemory(address as PVOID, len as SIZE_T, probe) }
}

/// `MmSecureVirtualMemoryEx`, which may answer NULL.
pub fn try_secure_ex(address: *const u8, len: usize, probe: u32, flags: u32) -> HANDLE {
    // SAFETY: the model checks every argument and dereferences nothing.
    unsafe { MmSecureVirtualMemoryEx(address as PVOID, len as SIZE_T, probe, flags) }
}

/// `MmSecureVirtualMemory`, asserting that it answers a handle.
pub fn secure(address: *const u8, len: usize, probe: u32) -> HANDLE {
    let handle = try_secure(address, len, probe);
    assert!(!handle.is_null(), "secure {address:p}+{len:#x} {probe:#x}");
    handle
}

/// `MmSecureVirtualMemoryEx`, asserting that it answers a handle.
pub fn secure_ex(address: *const u8, len: usize, probe: u32, flags: u32) -> HANDLE {
    let handle = try_secure_ex(address, len, probe, flags);
    assert!(
        !handle.is_null(),
        "secure {address:p}+{len:#x} {probe:#x} flags {flags:#x}"
    );
    handle
}

/// `MmUnsecureVirtualMemory`. A handle that is not a live secure of the attached process stops
/// the binary as the kernel's bug check would, which some tests (in a child process) are about.
pub fn unsecure(handle: HANDLE) {
    // SAFETY: the model checks the handle and dereferences nothing; a wrong one (NULL, stale,
    // another process') stops the binary.
    unsafe { MmUnsecureVirtualMemory(handle) }
}

/// For a test named `test` whose `deed` must stop the binary as a bug check does: runs the deed
/// in a child process (this test binary, rerun for `test` alone) and returns the bug check's
/// message. [`host::assert_bug_check`], which also honours `MMSECURE_CHILD_RUNNER` (qemu).
pub fn stopped_child(test: &str, deed: impl FnOnce()) -> String {
    host::assert_bug_check(test, deed)
}

/// `process.protect` without the old protection.
pub fn protect(
    process: &Process,
    address: *mut u8,
    len: usize,
    protect: u32,
    mode: AccessMode,
) -> Result<(), Status> {
    process.protect(address, len, protect, mode).map(|_| ())
}

/// Looks `name` up as a driver does: a UNICODE_STRING of UTF-16 with its length in bytes.
pub fn lookup(name: &str) -> PVOID {
    let mut units: Vec<u16> = name.encode_utf16().collect();
    let mut string = UNICODE_STRING {
        Length: (units.len() * 2) as u16,
        MaximumLength: (units.len() * 2) as u16,
        Buffer: units.as_mut_ptr(),
    };
    // SAFETY: `string` is a valid UNICODE_STRING over `units`, which outlives the call.
    unsafe { MmGetSystemRoutineAddress(&mut string) }
}
