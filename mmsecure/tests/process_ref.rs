//! `ProcessRef` on the host backend: a counted reference that keeps a process object, and its
//! `EPROCESS` value, for a worker that holds no `host::Process` (issue #22).

use mmsecure::host::{self, Process, PAGE_READWRITE};
use mmsecure::{Error, ProbeMode, ProcessRef, SecureRegion};
use mmsecure_sys::DISPATCH_LEVEL;

const PAGE: usize = host::PAGE_SIZE;

/// The worker's view: every `Process` value of the requester is gone (it exited, its handles
/// closed); the worker has a raw region and a reference of its own, as pointers.
#[test]
fn a_worker_holding_a_process_ref_survives_the_process_s_other_references_being_dropped() {
    let process = Process::new();
    let page = process.allocate(PAGE, PAGE_READWRITE).unwrap();
    let (raw, keep) = {
        let _in_process = process.attach();
        let raw = SecureRegion::new(page, 64, ProbeMode::ReadWrite)
            .unwrap()
            .into_raw();
        let keep = raw.process_ref().unwrap();
        (raw, keep)
    };
    let eprocess = process.eprocess();
    assert_eq!(keep.as_ptr(), eprocess);
    assert_eq!(process.driver_references(), 2);
    process.exit();
    drop(process);

    let worker = std::thread::spawn(move || {
        let attached = host::attach_eprocess(keep.as_ptr());
        let region = SecureRegion::from_raw(raw).expect("attached, at PASSIVE_LEVEL");
        drop(region); // its reference goes, inside the attach: `keep` holds the object
        drop(attached);
        keep
    });
    let keep = worker.join().unwrap();

    // The object is still this process's: a new process cannot get its value.
    let others: Vec<Process> = (0..4).map(|_| Process::new()).collect();
    assert!(others.iter().all(|other| other.eprocess() != keep.as_ptr()));
    // The worker can still attach by it, for as long as it holds the reference.
    let attached = host::attach_eprocess(keep.as_ptr());
    assert!(keep.is_current());
    drop(attached);
    drop(keep);
}

#[test]
fn try_clone_is_a_new_reference_and_each_drop_releases_one() {
    let process = Process::new();
    let _in_process = process.attach();
    let first = ProcessRef::current().unwrap();
    let second = first.try_clone().unwrap();
    assert_eq!(first, second);
    assert_eq!(process.driver_references(), 2);
    drop(first);
    assert_eq!(process.driver_references(), 1);
    drop(second);
    assert_eq!(process.driver_references(), 0);
}

#[test]
fn above_dispatch_level_no_reference_is_taken_and_a_drop_keeps_its_own() {
    let process = Process::new();
    let _in_process = process.attach();
    let page = process.allocate(PAGE, PAGE_READWRITE).unwrap();
    let region = SecureRegion::new(page, 16, ProbeMode::ReadOnly).unwrap();
    let keep = ProcessRef::current().unwrap();
    {
        let _raised = host::raise_irql(DISPATCH_LEVEL + 1);
        let too_high = Error::IrqlTooHigh { irql: 3, max: 2 };
        assert_eq!(ProcessRef::current(), Err(too_high));
        assert_eq!(keep.try_clone(), Err(too_high));
        assert_eq!(region.process_ref(), Err(too_high));
        // No ObfDereferenceObject above its IRQL: the reference leaks, nothing stops.
        drop(keep);
    }
    assert_eq!(process.driver_references(), 2); // the region's and the leaked one
    let at_dispatch = {
        let _raised = host::raise_irql(DISPATCH_LEVEL);
        region.process_ref()
    };
    assert_eq!(at_dispatch.map(|r| r.as_ptr()), Ok(process.eprocess()));
}

#[test]
fn a_reference_in_no_process_context_is_on_the_system_process() {
    // A system thread (a work item) is in no process: its current process is System.
    let system = ProcessRef::current().unwrap();
    assert!(system.is_current());
    let process = Process::new();
    assert_ne!(system.as_ptr(), process.eprocess());
}

/// A region kept for a worker, and the requester gone: exited, its last `Process` value dropped,
/// so that the region's reference is the last one on the process object.
fn region_whose_reference_is_the_last() -> mmsecure::RawRegion {
    let process = Process::new();
    let page = process.allocate(PAGE, PAGE_READWRITE).unwrap();
    let raw = {
        let _in_process = process.attach();
        SecureRegion::new(page, 64, ProbeMode::ReadWrite)
            .unwrap()
            .into_raw()
    };
    process.exit();
    raw
}

/// `docs/rules.md` §2's recipe (issue #22): a reference of the worker's own, attach, drop,
/// detach, then the reference. The region's drop inside the attach is not the last.
#[test]
fn the_recipe_takes_its_own_reference_first_and_drops_it_after_the_detach() {
    let raw = region_whose_reference_is_the_last();
    let abandoned = mmsecure::abandoned_secures();
    std::thread::spawn(move || {
        let keep = raw.process_ref().unwrap();
        let attached = host::attach_eprocess(keep.as_ptr());
        let region = SecureRegion::from_raw(raw).expect("attached, at PASSIVE_LEVEL");
        drop(region);
        drop(attached);
        drop(keep);
    })
    .join()
    .unwrap();
    assert_eq!(mmsecure::abandoned_secures(), abandoned);
}

/// The recipe before issue #22, attach, drop, detach: the region's drop releases the last
/// reference while the worker is attached, and the process object would be freed under it.
#[test]
fn the_old_recipe_frees_the_process_inside_the_attach() {
    let message =
        host::assert_bug_check("the_old_recipe_frees_the_process_inside_the_attach", || {
            let raw = region_whose_reference_is_the_last();
            let attached = host::attach_eprocess(raw.eprocess());
            let region = SecureRegion::from_raw(raw).expect("attached, at PASSIVE_LEVEL");
            drop(region);
            drop(attached);
        });
    assert!(
        message.contains("drops the last reference on a process object while a thread is attached"),
        "{message}"
    );
}
