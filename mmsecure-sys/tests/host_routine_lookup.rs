//! Host backend, rule by rule: `MmGetSystemRoutineAddress` on the default (current) Windows
//! build. (Older builds are in `host_before_1809.rs`, alone, as the build is global.)

mod common;

use common::{lookup, unsecure, PAGE};
use mmsecure_sys::host::{self, Process, PAGE_READWRITE};
use mmsecure_sys::{
    IoGetCurrentProcess, MmGetSystemRoutineAddress, MmSecureVirtualMemory, MmSecureVirtualMemoryEx,
    MmUnsecureVirtualMemory, MM_SECURE_NO_CHANGE, PFN_MM_SECURE_VIRTUAL_MEMORY_EX, PVOID,
    UNICODE_STRING,
};

#[test]
fn the_default_build_has_the_ex_routine() {
    assert!(host::windows_build() >= host::FIRST_BUILD_WITH_SECURE_EX);
}

#[test]
fn finds_each_routine_the_model_defines_at_its_own_address() {
    let expected: [(&str, usize); 5] = [
        (
            "MmSecureVirtualMemory",
            MmSecureVirtualMemory as *const () as usize,
        ),
        (
            "MmSecureVirtualMemoryEx",
            MmSecureVirtualMemoryEx as *const () as usize,
        ),
        (
            "MmUnsecureVirtualMemory",
            MmUnsecureVirtualMemory as *const () as usize,
        ),
        (
            "MmGetSystemRoutineAddress",
            MmGetSystemRoutineAddress as *const () as usize,
        ),
        (
            "IoGetCurrentProcess",
            IoGetCurrentProcess as *const () as usize,
        ),
    ];
    for (name, address) in expected {
        assert_eq!(lookup(name) as usize, address, "{name}");
    }
}

#[test]
fn returns_null_for_other_names() {
    for name in [
        "",
        "mmsecurevirtualmemoryex", // the lookup is case-sensitive
        "MmSecureVirtualMemoryE",
        "MmSecureVirtualMemoryExx",
        "KeGetCurrentIrql", // inline in the x64 headers, not an export
        "NtAllocateVirtualMemory",
    ] {
        assert!(lookup(name).is_null(), "{name:?}");
    }
}

#[test]
fn reads_exactly_length_bytes() {
    // The buffer says more than Length: only Length bytes (in bytes, not characters) count.
    let mut units: Vec<u16> = "MmSecureVirtualMemoryEx".encode_utf16().collect();
    let short = ("MmSecureVirtualMemory".len() * 2) as u16;
    let mut string = UNICODE_STRING {
        Length: short,
        MaximumLength: (units.len() * 2) as u16,
        Buffer: units.as_mut_ptr(),
    };
    // SAFETY: a valid UNICODE_STRING over `units`.
    let found = unsafe { MmGetSystemRoutineAddress(&mut string) };
    assert_eq!(found as usize, MmSecureVirtualMemory as *const () as usize);
    // An odd byte length is not a UTF-16 string.
    string.Length = short + 1;
    // SAFETY: as above.
    assert!(unsafe { MmGetSystemRoutineAddress(&mut string) }.is_null());
    // A NULL string pointer.
    // SAFETY: the model answers NULL for a NULL pointer.
    assert!(unsafe { MmGetSystemRoutineAddress(core::ptr::null_mut()) }.is_null());
}

#[test]
fn the_found_ex_routine_secures_when_called_through_its_address() {
    let found = lookup("MmSecureVirtualMemoryEx");
    assert!(!found.is_null());
    // SAFETY: the model answered this name with MmSecureVirtualMemoryEx itself.
    let routine = unsafe { core::mem::transmute::<PVOID, PFN_MM_SECURE_VIRTUAL_MEMORY_EX>(found) };
    let process = Process::new();
    let _in = process.attach();
    let page = process.allocate(PAGE, PAGE_READWRITE).unwrap();
    // SAFETY: the model checks every argument.
    let handle = unsafe {
        routine(
            page.cast(),
            PAGE as u64,
            PAGE_READWRITE,
            MM_SECURE_NO_CHANGE,
        )
    };
    assert!(!handle.is_null());
    assert!(process
        .protect(page, PAGE, PAGE_READWRITE, host::AccessMode::User)
        .is_err());
    unsecure(handle);
    assert!(process.misuses().is_empty());
}
