//! `SecureRegion::scope` on the host model (issue #21): no process reference on a thread in its own
//! process, one when attached, and every check of a region's drop at the scope's end, whatever
//! unsafe code inside it did to the thread's context.

use mmsecure::{Error, ProbeMode, SecureRegion, UserPtr};
use mmsecure_sys::host::{self, MisuseKind, Process, PAGE_READWRITE};
use mmsecure_sys::{APC_LEVEL, DISPATCH_LEVEL};

const PAGE: usize = host::PAGE_SIZE;

fn buffer(process: &Process) -> UserPtr {
    UserPtr::from(process.allocate(PAGE, PAGE_READWRITE).unwrap())
}

#[test]
fn on_its_own_thread_a_scope_takes_no_reference_and_unsecures_at_the_end() {
    let app = Process::new();
    let at = buffer(&app);
    app.write(at, &[1, 2, 3, 4]).unwrap();
    let inside = app.run_thread(|| {
        SecureRegion::scope(at, PAGE, ProbeMode::ReadWrite, |region| {
            let mut bytes = [0u8; 4];
            region.read_slice(0, &mut bytes).unwrap();
            region.write_slice(0, &[9]).unwrap();
            (bytes, app.secure_count(), app.driver_references())
        })
    });
    assert_eq!(inside, Ok(([1, 2, 3, 4], 1, 0)));
    let mut first = [0u8; 1];
    app.read(at, &mut first).unwrap();
    assert_eq!(first, [9]);
    assert_eq!(app.secure_count(), 0);
    assert_eq!(app.abandoned_secures(), 0);
    assert!(app.misuses().is_empty());
}

#[test]
fn attached_a_scope_takes_a_reference_and_gives_it_up_at_the_end() {
    let app = Process::new();
    let at = buffer(&app);
    let _in_app = app.attach(); // this test thread belongs to System
    let references =
        SecureRegion::scope(at, PAGE, ProbeMode::ReadOnly, |_| app.driver_references());
    assert_eq!(references, Ok(1));
    assert_eq!(app.driver_references(), 0);
    assert_eq!(app.secure_count(), 0);
    assert!(app.misuses().is_empty());
}

#[test]
fn an_attach_left_standing_at_the_end_abandons_the_secure_there_and_touches_nothing() {
    let (app, other) = (Process::new(), Process::new());
    let at = buffer(&app);
    app.run_thread(|| {
        // Unsafe code inside the scope attaches elsewhere and hands the attach out.
        let in_other = SecureRegion::scope(at, PAGE, ProbeMode::ReadWrite, |_| other.attach());
        let in_other = in_other.unwrap();
        assert_eq!(app.secure_count(), 1); // abandoned, not unsecured in `other`
        drop(in_other);
    });
    assert_eq!(app.abandoned_secures(), 1);
    assert_eq!(app.misuses()[0].kind, MisuseKind::Abandoned);
    // The process the drop happened in sees the same report, and nothing else.
    let seen = other.misuses();
    assert_eq!(seen.len(), 1);
    assert_eq!(
        (seen[0].kind, seen[0].owner_pid),
        (MisuseKind::Abandoned, Some(app.id()))
    );
    assert_eq!(app.driver_references(), 0);
}

#[test]
fn a_raised_irql_at_the_end_abandons_the_secure_and_releases_the_reference_it_may() {
    let app = Process::new();
    let at = buffer(&app);
    app.run_thread(|| {
        let raised = SecureRegion::scope(at, PAGE, ProbeMode::ReadWrite, |_| {
            host::raise_irql(DISPATCH_LEVEL)
        });
        drop(raised.unwrap());
    });
    assert_eq!((app.secure_count(), app.abandoned_secures()), (1, 1));
    // Attached, the scope holds a reference; at DISPATCH_LEVEL it may still give it up.
    let _in_app = app.attach();
    let raised = SecureRegion::scope(at, PAGE, ProbeMode::ReadWrite, |_| {
        host::raise_irql(DISPATCH_LEVEL)
    });
    drop(raised.unwrap());
    assert_eq!((app.secure_count(), app.abandoned_secures()), (2, 2));
    assert_eq!(app.driver_references(), 0);
}

/// The case "the thread is in the securing process's context for the whole call" does not
/// cover: the scope starts in an attach made before it, unsafe code inside ends that attach,
/// lets the process go, and attaches to a new process. Without a reference the old process's
/// object would be freed and its `EPROCESS` value handed to the new one, the end-of-scope check
/// would pass, and the unsecure would run in the new process (the model stops that as bug check
/// 0x1A). With the reference the attached scope takes, the values differ and the secure is
/// abandoned.
#[test]
fn a_scope_that_ends_the_attach_it_started_in_cannot_unsecure_in_a_process_at_the_same_address() {
    let app = Process::new();
    let at = buffer(&app);
    let (stale, app_id) = (app.eprocess(), app.id());
    let attach = app.attach();
    let (newcomer, in_newcomer) = SecureRegion::scope(at, PAGE, ProbeMode::ReadWrite, move |_| {
        drop(attach);
        drop(app); // the last `Process` value: only a driver reference keeps the object now
        let newcomer = Process::new();
        let in_newcomer = newcomer.attach();
        (newcomer, in_newcomer)
    })
    .unwrap();
    assert_ne!(newcomer.eprocess(), stale);
    assert_eq!(newcomer.secure_count(), 0);
    let seen = newcomer.misuses();
    assert_eq!(seen.len(), 1);
    assert_eq!(
        (seen[0].kind, seen[0].owner_pid),
        (MisuseKind::Abandoned, Some(app_id))
    );
    drop(in_newcomer);
    // The reference went at the end of the scope: the object is gone, its value free again.
    assert_eq!(Process::new().eprocess(), stale);
}

#[test]
fn a_thread_in_the_system_process_gets_the_refusal_and_f_does_not_run() {
    let result = SecureRegion::scope(UserPtr::new(0x10_000), PAGE, ProbeMode::ReadOnly, |_| {
        unreachable!("the secure failed")
    });
    assert_eq!(result, Err(Error::Refused));
}

#[test]
fn bad_input_and_irql_are_errors_before_the_kernel_is_called() {
    let app = Process::new();
    let at = buffer(&app);
    app.run_thread(|| {
        let null = SecureRegion::scope(UserPtr::NULL, PAGE, ProbeMode::ReadOnly, |_| ());
        assert_eq!(null, Err(Error::NullAddress));
        let empty = SecureRegion::scope(at, 0, ProbeMode::ReadOnly, |_| ());
        assert_eq!(empty, Err(Error::ZeroLength));
        let _raised = host::raise_irql(DISPATCH_LEVEL);
        let high = SecureRegion::scope(at, PAGE, ProbeMode::ReadOnly, |_| ());
        assert_eq!(
            high,
            Err(Error::IrqlTooHigh {
                irql: DISPATCH_LEVEL,
                max: APC_LEVEL
            })
        );
    });
    assert_eq!(app.secure_count(), 0);
    assert!(app.misuses().is_empty());
}

#[test]
fn a_panic_inside_unwinds_through_the_unsecure() {
    let app = Process::new();
    let at = buffer(&app);
    let unwound = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        app.run_thread(|| {
            let _ = SecureRegion::scope(at, PAGE, ProbeMode::ReadOnly, |_| panic!("in the scope"));
        })
    }));
    assert!(unwound.is_err());
    assert_eq!(app.secure_count(), 0);
    assert!(app.misuses().is_empty());
}

#[test]
fn an_application_thread_attached_to_another_process_takes_a_reference() {
    let (app, other) = (Process::new(), Process::new());
    let at = buffer(&other);
    let references = app.run_thread(|| {
        let _in_other = other.attach();
        SecureRegion::scope(at, PAGE, ProbeMode::ReadOnly, |_| other.driver_references())
    });
    assert_eq!(references, Ok(1));
    assert_eq!((other.driver_references(), other.secure_count()), (0, 0));
    assert!(other.misuses().is_empty() && app.misuses().is_empty());
}

/// As the attach-ending test above, on an application thread: a check that only told System
/// threads from the others would take no reference here and unsecure in the newcomer.
#[test]
fn an_application_thread_that_ends_its_attach_inside_cannot_unsecure_at_the_same_address() {
    let app = Process::new();
    let other = Process::new();
    let at = buffer(&other);
    let (stale, other_id) = (other.eprocess() as usize, other.id());
    app.run_thread(move || {
        let attach = other.attach();
        let (newcomer, in_newcomer) =
            SecureRegion::scope(at, PAGE, ProbeMode::ReadWrite, move |_| {
                drop(attach);
                drop(other);
                let newcomer = Process::new();
                let in_newcomer = newcomer.attach();
                (newcomer, in_newcomer)
            })
            .unwrap();
        assert_ne!(newcomer.eprocess() as usize, stale);
        let seen = newcomer.misuses();
        assert_eq!(seen.len(), 1);
        assert_eq!(
            (seen[0].kind, seen[0].owner_pid),
            (MisuseKind::Abandoned, Some(other_id))
        );
        drop(in_newcomer);
    });
}

#[test]
fn attached_back_to_its_own_process_a_scope_takes_none_and_abandons_when_that_attach_ends() {
    let (app, other) = (Process::new(), Process::new());
    let at = buffer(&app);
    app.run_thread(|| {
        let in_other = other.attach();
        let back_home = app.attach();
        let references = SecureRegion::scope(at, PAGE, ProbeMode::ReadOnly, |_| {
            let references = app.driver_references();
            drop(back_home); // back in `other` at the end
            references
        });
        assert_eq!(references, Ok(0));
        drop(in_other);
    });
    assert_eq!((app.secure_count(), app.abandoned_secures()), (1, 1));
}

#[test]
fn a_panic_in_an_attached_scope_gives_up_its_reference_too() {
    let app = Process::new();
    let at = buffer(&app);
    let _in_app = app.attach();
    let unwound = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        let _ = SecureRegion::scope(at, PAGE, ProbeMode::ReadOnly, |_| panic!("in the scope"));
    }));
    assert!(unwound.is_err());
    assert_eq!((app.secure_count(), app.driver_references()), (0, 0));
    assert!(app.misuses().is_empty());
}

#[test]
fn inside_a_scope_process_ref_outlives_it_and_apc_level_still_unsecures() {
    let app = Process::new();
    let at = buffer(&app);
    let kept = app.run_thread(|| {
        SecureRegion::scope(at, PAGE, ProbeMode::ReadOnly, |region| {
            let kept = region.process_ref().unwrap();
            let raised = host::raise_irql(APC_LEVEL);
            // Nested: an inner scope over the same range, made and ended at APC_LEVEL.
            let inner = SecureRegion::scope(at, PAGE, ProbeMode::ReadOnly, |_| app.secure_count());
            assert_eq!(inner, Ok(2));
            (kept.as_ptr() as usize, raised)
        })
        .map(|(kept, raised)| {
            drop(raised);
            kept
        })
    });
    assert_eq!(kept, Ok(app.eprocess() as usize));
    // The ProcessRef was dropped on the thread; the secures ended at APC_LEVEL all the same.
    assert_eq!((app.secure_count(), app.driver_references()), (0, 0));
    assert_eq!(app.abandoned_secures(), 0);
}
