//! `host::assert_bug_check`: a bug check of the model, asserted from a test, and the message
//! reaching the parent although the child's test harness captures its output.

use std::panic::{catch_unwind, AssertUnwindSafe};

use mmsecure_sys::host::{self, Process, PAGE_READWRITE, PAGE_SIZE};
use mmsecure_sys::{MmSecureVirtualMemory, DISPATCH_LEVEL, SIZE_T};

/// The panic message of `f`, which must panic.
fn panic_message(f: impl FnOnce()) -> String {
    let payload = catch_unwind(AssertUnwindSafe(f)).unwrap_err();
    payload
        .downcast_ref::<String>()
        .cloned()
        .or_else(|| payload.downcast_ref::<&str>().map(|s| (*s).to_owned()))
        .unwrap_or_default()
}

#[test]
fn a_bug_check_in_the_child_is_returned_although_its_output_is_captured() {
    // The child runs without --nocapture: libtest captures what `eprintln!` prints, and only a
    // write straight to stderr gets the message out before the abort.
    let message = host::assert_bug_check(
        "a_bug_check_in_the_child_is_returned_although_its_output_is_captured",
        || {
            let process = Process::new();
            let _in = process.attach();
            let page = process.allocate(PAGE_SIZE, PAGE_READWRITE).unwrap();
            let _raised = host::raise_irql(DISPATCH_LEVEL);
            // SAFETY: the model checks every argument; stopping here is the point.
            let _ =
                unsafe { MmSecureVirtualMemory(page.cast(), PAGE_SIZE as SIZE_T, PAGE_READWRITE) };
        },
    );
    assert!(
        message.starts_with("IRQL_NOT_LESS_OR_EQUAL (bug check 0xA): MmSecureVirtualMemory"),
        "{message}"
    );
}

#[test]
fn a_deed_that_returns_fails_the_assertion() {
    let message = panic_message(|| {
        host::assert_bug_check("a_deed_that_returns_fails_the_assertion", || {});
    });
    assert!(message.contains("did not bug check"), "{message}");
    assert!(
        message.contains("the deed returned without a bug check"),
        "{message}"
    );
}

#[test]
fn a_panic_is_not_a_bug_check() {
    let message = panic_message(|| {
        host::assert_bug_check("a_panic_is_not_a_bug_check", || panic!("an ordinary panic"));
    });
    assert!(message.contains("did not bug check"), "{message}");
}

#[test]
fn a_wrong_test_name_is_reported_as_such() {
    let message = panic_message(|| {
        host::assert_bug_check("no_test_has_this_name", || {});
    });
    assert!(
        message.contains("ran no test named `no_test_has_this_name`"),
        "{message}"
    );
}
