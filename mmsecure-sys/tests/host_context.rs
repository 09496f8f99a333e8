//! Host backend, rule by rule: process context, exit, handles, and the misuse record.

mod common;

use common::{secure, secure_ex, stopped_child, try_secure, unsecure, PAGE};
use mmsecure_sys::host::{
    self, AccessMode, Process, Status, PAGE_NOACCESS, PAGE_READONLY, PAGE_READWRITE,
    STATUS_PROCESS_IS_TERMINATING,
};
use mmsecure_sys::{IoGetCurrentProcess, HANDLE, MM_SECURE_NO_CHANGE, MM_SECURE_USER_MODE_ONLY};

fn current_process() -> mmsecure_sys::PEPROCESS {
    // SAFETY: the model answers from a thread-local.
    unsafe { IoGetCurrentProcess() }
}

/// A secure of a new process's page, made attached, and the process.
fn secured_elsewhere() -> (Process, HANDLE) {
    let owner = Process::new();
    let buffer = owner.allocate(PAGE, PAGE_READWRITE).unwrap();
    let handle = {
        let _in = owner.attach();
        secure(buffer, PAGE, PAGE_READWRITE)
    };
    (owner, handle)
}

#[test]
fn unsecure_in_another_process_is_a_memory_management_bug_check() {
    let stderr = stopped_child(
        "unsecure_in_another_process_is_a_memory_management_bug_check",
        || {
            let (owner, handle) = secured_elsewhere();
            let other = Process::new();
            let _in = other.attach();
            unsecure(handle);
            drop(owner);
        },
    );
    assert!(
        stderr.contains("MEMORY_MANAGEMENT (bug check 0x1A"),
        "{stderr}"
    );
    assert!(stderr.contains("a handle issued in process"), "{stderr}");
}

#[test]
fn unsecure_in_the_right_process_after_a_stop_elsewhere_would_have_worked() {
    // The bug check above is about the context, not the handle: attached, the same handle works.
    let (owner, handle) = secured_elsewhere();
    let _in = owner.attach();
    unsecure(handle);
    assert_eq!(owner.secure_count(), 0);
    assert!(owner.misuses().is_empty());
}

/// WRK mapview.c, `MiUnsecureVirtualMemory`, L6730-L6736: with the address space deleted
/// (`PS_PROCESS_FLAGS_VM_DELETED`) the routine unlocks and returns.
#[test]
fn unsecure_after_exit_returns_and_is_no_misuse_even_in_strict_mode() {
    let process = Process::new();
    process.set_strict(true); // a recorded misuse would stop the binary here
    let _in = process.attach();
    let buffer = process.allocate(PAGE, PAGE_READWRITE).unwrap();
    let handle = secure(buffer, PAGE, PAGE_READWRITE);
    process.exit();
    unsecure(handle);
    assert_eq!(process.secure_count(), 0);
    assert!(process.misuses().is_empty());
    assert!(!host::misuses().iter().any(|m| m.handle == handle as usize));
}

#[test]
fn unsecure_of_an_exited_owners_handle_from_a_live_process_is_a_bug_check() {
    let stderr = stopped_child(
        "unsecure_of_an_exited_owners_handle_from_a_live_process_is_a_bug_check",
        || {
            let (owner, handle) = secured_elsewhere();
            owner.exit();
            let other = Process::new();
            let _in = other.attach();
            unsecure(handle);
        },
    );
    assert!(
        stderr.contains("MEMORY_MANAGEMENT (bug check 0x1A"),
        "{stderr}"
    );
}

#[test]
fn unsecure_in_the_system_process_is_a_bug_check() {
    let stderr = stopped_child("unsecure_in_the_system_process_is_a_bug_check", || {
        let (_owner, handle) = secured_elsewhere();
        // No attach: the System process.
        unsecure(handle);
    });
    assert!(
        stderr.contains("MEMORY_MANAGEMENT (bug check 0x1A"),
        "{stderr}"
    );
    assert!(stderr.contains("System process"), "{stderr}");
}

#[test]
fn a_second_unsecure_of_one_handle_is_a_bug_check() {
    let stderr = stopped_child("a_second_unsecure_of_one_handle_is_a_bug_check", || {
        let (owner, handle) = secured_elsewhere();
        let _in = owner.attach();
        unsecure(handle);
        unsecure(handle);
    });
    assert!(
        stderr.contains("MEMORY_MANAGEMENT (bug check 0x1A"),
        "{stderr}"
    );
    assert!(stderr.contains("unsecured already"), "{stderr}");
}

/// Unsecures a handle no secure ever had, in a fresh process, in a child process (which must
/// stop with the 0x1A bug check).
fn made_up_handle_stops(test: &str, handle: usize) {
    let stderr = stopped_child(test, || {
        let process = Process::new();
        let _in = process.attach();
        unsecure(handle as HANDLE);
    });
    assert!(
        stderr.contains("MEMORY_MANAGEMENT (bug check 0x1A"),
        "{stderr}"
    );
}

#[test]
fn unsecure_of_a_null_handle_is_a_bug_check() {
    made_up_handle_stops("unsecure_of_a_null_handle_is_a_bug_check", 0);
}

#[test]
fn unsecure_of_an_address_is_a_bug_check() {
    made_up_handle_stops("unsecure_of_an_address_is_a_bug_check", 0x7FF0_0000_1000);
}

#[test]
fn unsecure_of_a_made_up_tagged_handle_is_a_bug_check() {
    made_up_handle_stops(
        "unsecure_of_a_made_up_tagged_handle_is_a_bug_check",
        0x5EC0_0000_0000_0001,
    );
}

#[test]
fn process_exit_drops_every_secure_and_refuses_nothing() {
    let process = Process::new();
    let _in = process.attach();
    let buffer = process.allocate(2 * PAGE, PAGE_READWRITE).unwrap();
    let view = process.map_view(PAGE, PAGE_READONLY).unwrap();
    secure(buffer, PAGE, PAGE_READWRITE);
    secure_ex(
        buffer.wrapping_add(PAGE),
        PAGE,
        PAGE_READONLY,
        MM_SECURE_NO_CHANGE | MM_SECURE_USER_MODE_ONLY,
    );
    secure(view, PAGE, PAGE_READONLY);
    assert_eq!(process.secure_count(), 3);

    process.exit();
    assert!(process.has_exited());
    assert_eq!(process.secure_count(), 0);
    assert_eq!(process.protection(buffer), None);
    assert_eq!(process.protection(view), None);
    // No address space any more: everything else fails as the process is gone.
    let gone = Err(Status(STATUS_PROCESS_IS_TERMINATING));
    assert_eq!(process.allocate(PAGE, PAGE_READWRITE).map(|_| ()), gone);
    assert_eq!(
        process
            .protect(buffer, PAGE, PAGE_NOACCESS, AccessMode::User)
            .map(|_| ()),
        gone
    );
    assert_eq!(process.free(buffer, AccessMode::User), gone);
    assert_eq!(process.write(buffer, b"x"), gone);
    process.exit(); // twice is harmless
    assert!(process.misuses().is_empty());
}

#[test]
fn handles_are_non_null_and_not_addresses() {
    let process = Process::new();
    let _in = process.attach();
    let buffer = process.allocate(PAGE, PAGE_READWRITE).unwrap();
    let handles: Vec<HANDLE> = (0..64)
        .map(|i| secure(buffer.wrapping_add(i), 1, PAGE_READONLY))
        .collect();
    for (i, handle) in handles.iter().enumerate() {
        let value = *handle as usize;
        assert_ne!(value, 0);
        assert!(!(buffer as usize..buffer as usize + PAGE).contains(&value));
        if usize::BITS == 64 {
            // Not canonical: bits 47..64 are not all equal, so no x86-64 / AArch64 address.
            let top = value >> 47;
            assert!(top != 0 && top != 0x1_FFFF, "{value:#x}");
        }
        assert!(!handles[..i].contains(handle), "handles are distinct");
    }
    for handle in handles {
        unsecure(handle);
    }
    assert!(process.misuses().is_empty());
}

#[test]
fn a_handle_is_meaningless_in_another_process() {
    // Two processes securing the same way get different handles.
    let a = Process::new();
    let b = Process::new();
    let in_a = a.attach();
    let buffer_a = a.allocate(PAGE, PAGE_READWRITE).unwrap();
    let handle_a = secure(buffer_a, PAGE, PAGE_READWRITE);
    drop(in_a);
    let in_b = b.attach();
    let buffer_b = b.allocate(PAGE, PAGE_READWRITE).unwrap();
    let handle_b = secure(buffer_b, PAGE, PAGE_READWRITE);
    assert_ne!(handle_a, handle_b);
    unsecure(handle_b);
    assert_eq!(b.secure_count(), 0);
    drop(in_b);
    let _in_a = a.attach();
    unsecure(handle_a);
    assert_eq!(a.secure_count(), 0);
}

#[test]
fn attach_nests_and_restores_the_previous_process() {
    let system = current_process();
    let a = Process::new();
    let b = Process::new();
    assert_ne!(system, a.eprocess());
    assert!(
        system as usize > host::HIGHEST_USER_ADDRESS,
        "kernel-looking"
    );
    {
        let _in_a = a.attach();
        assert_eq!(current_process(), a.eprocess());
        {
            let _in_b = b.attach();
            assert_eq!(current_process(), b.eprocess());
            let _in_a_again = a.attach();
            assert_eq!(current_process(), a.eprocess());
        }
        assert_eq!(current_process(), a.eprocess());
    }
    assert_eq!(current_process(), system);
}

#[test]
fn context_is_per_thread() {
    let process = Process::new();
    let _in = process.attach();
    let buffer = process.allocate(PAGE, PAGE_READWRITE).unwrap() as usize;
    let eprocess = process.eprocess() as usize;
    let worker = process.clone();
    std::thread::spawn(move || {
        // A new thread starts in no process.
        assert_ne!(current_process() as usize, eprocess);
        assert!(try_secure(buffer as *const u8, PAGE, PAGE_READWRITE).is_null());
        // Attached, it secures; the handle can go back to another thread of the process.
        let _in = worker.attach();
        secure(buffer as *mut u8, PAGE, PAGE_READWRITE) as usize
    })
    .join()
    .map(|handle| unsecure(handle as HANDLE))
    .unwrap();
    assert_eq!(process.secure_count(), 0);
    assert!(process.misuses().is_empty());
}

fn reference(object: mmsecure_sys::PEPROCESS) {
    // SAFETY: the model checks the pointer; a stale one stops the binary.
    unsafe { mmsecure_sys::ObfReferenceObject(object.cast()) };
}

fn dereference(object: mmsecure_sys::PEPROCESS) {
    // SAFETY: as above; a missing reference stops the binary.
    unsafe { mmsecure_sys::ObfDereferenceObject(object.cast()) };
}

/// A worker holds a `PEPROCESS` and a reference of its own, no `Process`: it attaches by the
/// pointer, works, detaches, then dereferences (issue #22).
#[test]
fn a_worker_attaches_by_pointer_with_a_reference_of_its_own() {
    let process = Process::new();
    let buffer = process.allocate(PAGE, PAGE_READWRITE).unwrap() as usize;
    let eprocess = process.eprocess();
    reference(eprocess);
    process.exit();
    drop(process); // the user's last handle: only the worker's reference keeps the object
    let eprocess = eprocess as usize;
    std::thread::spawn(move || {
        let eprocess = eprocess as mmsecure_sys::PEPROCESS;
        let attached = host::attach_eprocess(eprocess);
        assert_eq!(current_process(), eprocess);
        // Exited: securing there fails, as in the kernel.
        assert!(try_secure(buffer as *const u8, PAGE, PAGE_READWRITE).is_null());
        drop(attached);
        dereference(eprocess); // the last reference, after the detach: the object goes
    })
    .join()
    .unwrap();
}

#[test]
fn the_last_reference_dropped_while_attached_by_pointer_stops_the_caller() {
    let stderr = stopped_child(
        "the_last_reference_dropped_while_attached_by_pointer_stops_the_caller",
        || {
            let process = Process::new();
            let eprocess = process.eprocess();
            reference(eprocess);
            drop(process);
            let _attached = host::attach_eprocess(eprocess);
            dereference(eprocess); // before the detach: the object would be freed under it
        },
    );
    assert!(
        stderr.contains("drops the last reference on a process object while a thread is attached"),
        "{stderr}"
    );
}

#[test]
fn a_reference_dropped_while_attached_by_pointer_is_fine_if_another_stays() {
    let process = Process::new();
    let eprocess = process.eprocess();
    reference(eprocess);
    {
        let _attached = host::attach_eprocess(eprocess);
        dereference(eprocess); // the user's `process` still holds the object
    }
    assert_eq!(process.driver_references(), 0);
}

#[test]
fn attaching_by_a_stale_pointer_stops_the_caller() {
    let stderr = stopped_child("attaching_by_a_stale_pointer_stops_the_caller", || {
        let process = Process::new();
        let stale = process.eprocess();
        drop(process); // the object is freed; nothing has its value yet
        let _attached = host::attach_eprocess(stale);
    });
    assert!(stderr.contains("on no live process object"), "{stderr}");
}
