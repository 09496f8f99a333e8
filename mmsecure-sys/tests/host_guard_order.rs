//! Host backend: the context guards must be undone in the reverse order, as the kernel demands.
//! An out-of-order detach stops the caller as `INVALID_PROCESS_DETACH_ATTEMPT` (0x6) would, and
//! lowering the IRQL to a level above the current one as `IRQL_NOT_LESS_OR_EQUAL` (0xA) would
//! (issue #22: before, the model accepted both). Each deed runs in a child process.

use mmsecure_sys::host::{self, Process};
use mmsecure_sys::{APC_LEVEL, DISPATCH_LEVEL};

#[test]
fn detaching_out_of_order_is_invalid_process_detach_attempt() {
    let message = host::assert_bug_check(
        "detaching_out_of_order_is_invalid_process_detach_attempt",
        || {
            let first = Process::new();
            let second = Process::new();
            let outer = first.attach();
            let _inner = second.attach();
            drop(outer);
        },
    );
    assert!(
        message.starts_with("INVALID_PROCESS_DETACH_ATTEMPT (bug check 0x6)"),
        "{message}"
    );
}

#[test]
fn detaching_under_a_leaked_attach_is_invalid_process_detach_attempt() {
    let message = host::assert_bug_check(
        "detaching_under_a_leaked_attach_is_invalid_process_detach_attempt",
        || {
            let first = Process::new();
            let outer = first.attach();
            core::mem::forget(first.attach());
            drop(outer);
        },
    );
    assert!(
        message.starts_with("INVALID_PROCESS_DETACH_ATTEMPT (bug check 0x6)"),
        "{message}"
    );
}

#[test]
fn lowering_the_irql_to_a_higher_level_is_irql_not_less_or_equal() {
    let message = host::assert_bug_check(
        "lowering_the_irql_to_a_higher_level_is_irql_not_less_or_equal",
        || {
            let apc = host::raise_irql(APC_LEVEL);
            let _dispatch = host::raise_irql(DISPATCH_LEVEL);
            // Back to PASSIVE_LEVEL (a legal lowering)...
            drop(apc);
            // ...and then `_dispatch` lowers "back" to APC_LEVEL, above PASSIVE_LEVEL.
        },
    );
    assert!(
        message.starts_with("IRQL_NOT_LESS_OR_EQUAL (bug check 0xA): KeLowerIrql to IRQL 1"),
        "{message}"
    );
}

#[test]
fn guards_undone_in_order_are_fine() {
    let first = Process::new();
    let second = Process::new();
    {
        let _outer = first.attach();
        let _raised = host::raise_irql(APC_LEVEL);
        let _inner = second.attach();
        let _higher = host::raise_irql(DISPATCH_LEVEL);
        assert_eq!(host::current_irql(), DISPATCH_LEVEL);
    }
    assert_eq!(host::current_irql(), 0);
    // A guard moved to the end of a scope and dropped last is still in order.
    let outer = first.attach();
    let inner = second.attach();
    drop(inner);
    drop(outer);
}
