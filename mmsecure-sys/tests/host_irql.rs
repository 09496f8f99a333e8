//! Host backend, rule by rule: IRQL. Above `APC_LEVEL` every secure routine stops the caller as
//! the bug check `IRQL_NOT_LESS_OR_EQUAL` would; so does a strict-mode misuse.
//!
//! The routines are `extern "C"` and cannot unwind, so the model aborts rather than panics. Each
//! such test therefore reruns itself in a child process (this same test binary, filtered to the
//! one test, with an environment variable telling it to do the deed) and checks that the child
//! died with the expected message: `host::assert_bug_check`, which a driver's own tests use too.

mod common;

use common::PAGE;
use mmsecure_sys::host::{self, Process, PAGE_READWRITE};
use mmsecure_sys::{
    KeGetCurrentIrql, MmGetSystemRoutineAddress, MmSecureVirtualMemory, MmSecureVirtualMemoryEx,
    MmUnsecureVirtualMemory, APC_LEVEL, DISPATCH_LEVEL, SIZE_T, UNICODE_STRING,
};

/// Runs `deed`, which must stop the process, in a child process (the test binary rerun for
/// `test`), and returns the bug check's message: [`host::assert_bug_check`], the supported form
/// of this file's pattern.
fn stopped_child(test: &str, deed: impl FnOnce()) -> String {
    host::assert_bug_check(test, deed)
}

/// A process with one attached page, for the deeds.
fn with_page(f: impl FnOnce(&Process, *mut u8)) {
    let process = Process::new();
    let _in = process.attach();
    let page = process.allocate(PAGE, PAGE_READWRITE).unwrap();
    f(&process, page);
}

#[test]
fn secure_above_apc_level_is_irql_not_less_or_equal() {
    let stderr = stopped_child("secure_above_apc_level_is_irql_not_less_or_equal", || {
        with_page(|_, page| {
            let _raised = host::raise_irql(DISPATCH_LEVEL);
            // SAFETY: the model checks every argument; stopping here is the point.
            let _ = unsafe { MmSecureVirtualMemory(page.cast(), PAGE as SIZE_T, PAGE_READWRITE) };
        })
    });
    assert!(stderr.contains("IRQL_NOT_LESS_OR_EQUAL"), "{stderr}");
    assert!(
        stderr.contains("MmSecureVirtualMemory called at IRQL 2"),
        "{stderr}"
    );
}

#[test]
fn secure_ex_above_apc_level_is_irql_not_less_or_equal() {
    let stderr = stopped_child(
        "secure_ex_above_apc_level_is_irql_not_less_or_equal",
        || {
            with_page(|_, page| {
                let _raised = host::raise_irql(DISPATCH_LEVEL);
                // SAFETY: as above. Bad flags would give NULL, but the IRQL check comes first.
                let _ = unsafe {
                    MmSecureVirtualMemoryEx(page.cast(), PAGE as SIZE_T, PAGE_READWRITE, 0x10)
                };
            })
        },
    );
    assert!(stderr.contains("IRQL_NOT_LESS_OR_EQUAL"), "{stderr}");
    assert!(
        stderr.contains("MmSecureVirtualMemoryEx called at IRQL 2"),
        "{stderr}"
    );
}

#[test]
fn unsecure_above_apc_level_is_irql_not_less_or_equal() {
    let stderr = stopped_child("unsecure_above_apc_level_is_irql_not_less_or_equal", || {
        with_page(|_, page| {
            // SAFETY: as above.
            let handle =
                unsafe { MmSecureVirtualMemory(page.cast(), PAGE as SIZE_T, PAGE_READWRITE) };
            let _raised = host::raise_irql(5);
            // SAFETY: a live handle; the IRQL is the point.
            unsafe { MmUnsecureVirtualMemory(handle) };
        })
    });
    assert!(stderr.contains("IRQL_NOT_LESS_OR_EQUAL"), "{stderr}");
    assert!(
        stderr.contains("MmUnsecureVirtualMemory called at IRQL 5"),
        "{stderr}"
    );
}

#[test]
fn routine_lookup_above_passive_level_is_irql_not_less_or_equal() {
    let stderr = stopped_child(
        "routine_lookup_above_passive_level_is_irql_not_less_or_equal",
        || {
            let mut name: Vec<u16> = "MmSecureVirtualMemoryEx".encode_utf16().collect();
            let mut string = UNICODE_STRING {
                Length: (name.len() * 2) as u16,
                MaximumLength: (name.len() * 2) as u16,
                Buffer: name.as_mut_ptr(),
            };
            let _raised = host::raise_irql(APC_LEVEL);
            // SAFETY: a valid UNICODE_STRING over `name`.
            let _ = unsafe { MmGetSystemRoutineAddress(&mut string) };
        },
    );
    assert!(stderr.contains("IRQL_NOT_LESS_OR_EQUAL"), "{stderr}");
    assert!(
        stderr.contains("MmGetSystemRoutineAddress called at IRQL 1"),
        "{stderr}"
    );
}

#[test]
fn strict_mode_stops_the_binary_at_the_first_misuse() {
    let stderr = stopped_child("strict_mode_stops_the_binary_at_the_first_misuse", || {
        with_page(|process, page| {
            process.set_strict(true);
            // SAFETY: as above.
            let handle =
                unsafe { MmSecureVirtualMemory(page.cast(), PAGE as SIZE_T, PAGE_READWRITE) };
            // A wrapper that could not unsecure reports the secure it leaves: the misuse.
            mmsecure_sys::report_abandoned_secure(handle, process.eprocess());
        })
    });
    assert!(stderr.contains("strict mode"), "{stderr}");
    assert!(stderr.contains("Abandoned"), "{stderr}");
}

#[test]
fn the_secure_routines_work_at_apc_level() {
    with_page(|process, page| {
        let _raised = host::raise_irql(APC_LEVEL);
        // SAFETY: the model checks every argument.
        let handle =
            unsafe { MmSecureVirtualMemoryEx(page.cast(), PAGE as SIZE_T, PAGE_READWRITE, 0) };
        assert!(!handle.is_null());
        // SAFETY: a live handle of this process.
        unsafe { MmUnsecureVirtualMemory(handle) };
        assert!(process.misuses().is_empty());
    });
}

#[test]
fn irql_is_per_thread_and_restored_by_the_guard() {
    // SAFETY: the model reads a thread-local.
    let irql = || unsafe { KeGetCurrentIrql() };
    assert_eq!(irql(), 0);
    {
        let _apc = host::raise_irql(APC_LEVEL);
        let _dispatch = host::raise_irql(DISPATCH_LEVEL);
        assert_eq!(irql(), 2);
        std::thread::spawn(move || assert_eq!(irql(), 0))
            .join()
            .unwrap();
    }
    assert_eq!(irql(), 0);
}

#[test]
#[should_panic(expected = "IRQL_NOT_GREATER_OR_EQUAL")]
fn raising_to_a_lower_irql_is_irql_not_greater_or_equal() {
    let _dispatch = host::raise_irql(DISPATCH_LEVEL);
    let _lower = host::raise_irql(APC_LEVEL);
}
