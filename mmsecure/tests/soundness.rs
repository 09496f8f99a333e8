//! Issue #12's holes, one test each: no sequence of safe calls, with other code attaching to
//! processes, raising the IRQL and ending processes, may unsecure in the wrong context, touch
//! user memory at `DISPATCH_LEVEL`, trust a stale `EPROCESS` or unsecure twice. Each of these
//! held in the model before #12 only in debug builds or not at all; CI runs them in release too.
//!
//! A model bug check would abort this binary: every test here passing also says that none was
//! reached.

use mmsecure::{abandoned_secures, Error, ProbeMode, SecureRegion};
use mmsecure_sys::host::{self, MisuseKind, Process, PAGE_READWRITE, STATUS_ACCESS_VIOLATION};
use mmsecure_sys::{APC_LEVEL, DISPATCH_LEVEL};

const PAGE: usize = host::PAGE_SIZE;

/// A process with one page of read-write memory secured read-write by a region made attached;
/// the thread is detached again on return.
fn secured() -> (Process, *mut u8, SecureRegion) {
    let process = Process::new();
    let page = process.allocate(PAGE, PAGE_READWRITE).unwrap();
    let _in = process.attach();
    let region = SecureRegion::new(page, PAGE, ProbeMode::ReadWrite).unwrap();
    (process, page, region)
}

fn abandoned_kinds(process: &Process) -> usize {
    process
        .misuses()
        .iter()
        .filter(|m| m.kind == MisuseKind::Abandoned)
        .count()
}

#[test]
fn a_region_holds_a_reference_on_its_process_until_dropped() {
    let (process, _page, region) = secured();
    assert_eq!(process.driver_references(), 1);
    let raw = region.into_raw();
    assert_eq!(process.driver_references(), 1, "the raw region carries it");
    let _in = process.attach();
    let region = SecureRegion::from_raw(raw).unwrap();
    assert_eq!(process.driver_references(), 1);
    drop(region);
    assert_eq!(process.driver_references(), 0);
    assert_eq!(process.secure_count(), 0);
    assert!(process.misuses().is_empty());
}

#[test]
fn a_drop_while_attached_to_another_process_does_not_unsecure_there() {
    let (process, _page, region) = secured();
    let other = Process::new();
    let before = abandoned_secures();
    {
        let _there = other.attach();
        drop(region);
    }
    // Not unsecured in `other` (the model would have stopped the binary), but left standing.
    assert!(abandoned_secures() > before);
    assert_eq!(process.secure_count(), 1);
    assert_eq!(abandoned_kinds(&process), 1);
    assert!(other
        .misuses()
        .iter()
        .all(|m| m.kind == MisuseKind::Abandoned));
    // The reference is released anyway; exit drops the secure.
    assert_eq!(process.driver_references(), 0);
    process.exit();
    assert_eq!(process.secure_count(), 0);
}

#[test]
fn a_drop_in_the_system_process_does_not_unsecure() {
    let (process, _page, region) = secured();
    drop(region); // no attach: the System process
    assert_eq!(process.secure_count(), 1);
    assert_eq!(abandoned_kinds(&process), 1);
    assert_eq!(process.driver_references(), 0);
}

#[test]
fn a_drop_at_dispatch_level_does_not_call_the_kernel() {
    let (process, _page, region) = secured();
    let _in = process.attach();
    {
        let _raised = host::raise_irql(DISPATCH_LEVEL);
        drop(region);
    }
    assert_eq!(process.secure_count(), 1);
    assert_eq!(abandoned_kinds(&process), 1);
    // ObfDereferenceObject is allowed at DISPATCH_LEVEL.
    assert_eq!(process.driver_references(), 0);
}

#[test]
fn a_drop_above_dispatch_level_keeps_the_reference_rather_than_call_the_kernel() {
    let (process, _page, region) = secured();
    let _in = process.attach();
    {
        let _raised = host::raise_irql(DISPATCH_LEVEL + 1);
        drop(region);
    }
    assert_eq!(process.secure_count(), 1);
    assert_eq!(abandoned_kinds(&process), 1);
    assert_eq!(process.driver_references(), 1, "leaked, as documented");
}

#[test]
fn a_drop_at_apc_level_in_its_process_unsecures() {
    let (process, _page, region) = secured();
    let _in = process.attach();
    let _raised = host::raise_irql(APC_LEVEL);
    drop(region);
    assert_eq!(process.secure_count(), 0);
    assert!(process.misuses().is_empty());
}

#[test]
fn copies_at_dispatch_level_are_refused_before_user_memory_is_touched() {
    let (process, _page, region) = secured();
    let _in = process.attach();
    let too_high = Error::IrqlTooHigh { irql: 2, max: 1 };
    {
        let _raised = host::raise_irql(DISPATCH_LEVEL);
        let mut out = [0u8; 8];
        // A copy of user memory at DISPATCH_LEVEL would stop this binary in the model.
        assert_eq!(region.read_slice(0, &mut out), Err(too_high));
        assert_eq!(region.write_slice(0, &out), Err(too_high));
        assert_eq!(region.read::<u64>(0), Err(too_high));
        assert_eq!(region.write(0, &1u64), Err(too_high));
        // Bounds are still checked first.
        assert!(matches!(
            region.read_slice(PAGE, &mut out),
            Err(Error::OutOfBounds { .. })
        ));
    }
    let _apc = host::raise_irql(APC_LEVEL);
    assert_eq!(region.read::<u64>(0), Ok(0));
}

#[test]
fn securing_above_apc_level_is_refused_before_the_kernel_is_called() {
    let process = Process::new();
    let page = process.allocate(PAGE, PAGE_READWRITE).unwrap();
    let _in = process.attach();
    let _raised = host::raise_irql(DISPATCH_LEVEL);
    assert_eq!(
        SecureRegion::new(page, PAGE, ProbeMode::ReadOnly).unwrap_err(),
        Error::IrqlTooHigh { irql: 2, max: 1 }
    );
    assert_eq!(process.secure_count(), 0);
}

#[test]
fn a_stale_eprocess_never_names_a_new_process_while_a_region_stands() {
    let (process, _page, region) = secured();
    let eprocess = process.eprocess();
    process.exit();
    drop(process); // the last Process value: only the region's reference is left
    let newcomers: Vec<Process> = (0..64).map(|_| Process::new()).collect();
    assert!(newcomers.iter().all(|p| p.eprocess() != eprocess));
    // In a newcomer's context the region is another process's: refused, not read.
    let _there = newcomers[0].attach();
    let mut out = [0u8; 4];
    assert_eq!(region.read_slice(0, &mut out), Err(Error::WrongProcess));
}

#[test]
fn a_copy_from_memory_the_process_no_longer_has_faults_instead_of_reading_it() {
    // A secure does not survive its process: after exit, a copy in the (exited) process's
    // context finds no memory there, and the guarded copy says so.
    let (process, _page, region) = secured();
    let _in = process.attach();
    process.exit();
    let mut out = [0u8; 4];
    assert_eq!(
        region.read_slice(0, &mut out),
        Err(Error::Fault {
            code: STATUS_ACCESS_VIOLATION
        })
    );
}
