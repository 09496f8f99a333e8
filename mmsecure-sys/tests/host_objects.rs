//! Host backend, rule by rule: process objects. `EPROCESS` values are reference counted
//! (`ObfReferenceObject` / `ObfDereferenceObject`, and every `Process` value), never shared by two
//! live objects, and reused, most recently freed first, once an object is gone, as freed pool
//! memory is on Windows. Reuse is global to the binary, so the scenarios that depend on which
//! value comes next run in one test, in order; the bug checks run in child processes.

mod common;

use common::stopped_child;
use mmsecure_sys::host::Process;
use mmsecure_sys::{ObfDereferenceObject, ObfReferenceObject, PEPROCESS};

fn reference(object: PEPROCESS) -> isize {
    // SAFETY: the model checks the pointer; a stale one stops the binary (a test below).
    unsafe { ObfReferenceObject(object.cast()) as isize }
}

fn dereference(object: PEPROCESS) -> isize {
    // SAFETY: as above; a missing reference stops the binary.
    unsafe { ObfDereferenceObject(object.cast()) as isize }
}

#[test]
fn eprocess_values_are_counted_and_reused_only_once_the_object_is_gone() {
    // Freed: the next new process gets the value back.
    let first = Process::new();
    let value = first.eprocess();
    drop(first);
    let second = Process::new();
    assert_eq!(
        second.eprocess(),
        value,
        "the most recently freed value comes first"
    );

    // Referenced: the value stays the process's, even with no `Process` value left and the
    // process exited, for as long as the reference stands.
    assert_eq!(reference(value), 1);
    assert_eq!(second.driver_references(), 1);
    second.exit();
    drop(second);
    let others: Vec<Process> = (0..32).map(|_| Process::new()).collect();
    assert!(
        others.iter().all(|p| p.eprocess() != value),
        "reused while referenced"
    );
    assert_eq!(
        reference(value),
        2,
        "a kept reference still names the live object"
    );
    assert_eq!(dereference(value), 1);
    assert_eq!(dereference(value), 0);
    // Now it is gone, and the next new process gets its value.
    let third = Process::new();
    assert_eq!(third.eprocess(), value);
    assert_eq!(third.driver_references(), 0);
    drop(others);

    // Two live processes never share a value.
    let live: Vec<Process> = (0..1000).map(|_| Process::new()).collect();
    let mut values: Vec<usize> = live.iter().map(|p| p.eprocess() as usize).collect();
    values.push(third.eprocess() as usize);
    values.sort_unstable();
    values.dedup();
    assert_eq!(values.len(), 1001);
}

#[test]
fn referencing_a_freed_process_object_is_a_bug_check() {
    let stderr = stopped_child("referencing_a_freed_process_object_is_a_bug_check", || {
        let gone = Process::new();
        let stale = gone.eprocess();
        drop(gone);
        reference(stale);
    });
    assert!(
        stderr.contains("REFERENCE_BY_POINTER (bug check 0x18)"),
        "{stderr}"
    );
}

#[test]
fn dereferencing_without_a_reference_is_a_bug_check() {
    let stderr = stopped_child("dereferencing_without_a_reference_is_a_bug_check", || {
        let process = Process::new();
        reference(process.eprocess());
        dereference(process.eprocess());
        dereference(process.eprocess()); // one more than taken
    });
    assert!(
        stderr.contains("REFERENCE_BY_POINTER (bug check 0x18)"),
        "{stderr}"
    );
    assert!(stderr.contains("without a reference"), "{stderr}");
}

#[test]
fn dereferencing_the_current_process_without_a_reference_is_a_bug_check() {
    // Attached: the model's fast path for the current process checks the count too.
    let stderr = stopped_child(
        "dereferencing_the_current_process_without_a_reference_is_a_bug_check",
        || {
            let process = Process::new();
            let _in_process = process.attach();
            reference(process.eprocess());
            dereference(process.eprocess());
            dereference(process.eprocess());
        },
    );
    assert!(
        stderr.contains("REFERENCE_BY_POINTER (bug check 0x18)"),
        "{stderr}"
    );
    assert!(stderr.contains("without a reference"), "{stderr}");
}

#[test]
fn a_made_up_pointer_is_no_process_object() {
    let stderr = stopped_child("a_made_up_pointer_is_no_process_object", || {
        reference(0x1234_5000 as PEPROCESS);
    });
    assert!(
        stderr.contains("REFERENCE_BY_POINTER (bug check 0x18)"),
        "{stderr}"
    );
}
