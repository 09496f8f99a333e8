//! Host backend, rule by rule: what a standing secure refuses a user (or a driver acting for
//! one), with `STATUS_INVALID_PAGE_PROTECTION`, and that unsecuring gives it all back.

mod common;

use common::{protect, secure, secure_ex, unsecure, PAGE, REFUSED};
use mmsecure_sys::host::{
    AccessMode, Process, PAGE_EXECUTE, PAGE_EXECUTE_READ, PAGE_EXECUTE_READWRITE, PAGE_GUARD,
    PAGE_NOACCESS, PAGE_READONLY, PAGE_READWRITE, PAGE_WRITECOPY,
};
use mmsecure_sys::MM_SECURE_NO_CHANGE;

#[test]
fn read_write_secure_refuses_no_access_and_read_only() {
    let process = Process::new();
    let _in = process.attach();
    let buffer = process.allocate(PAGE, PAGE_READWRITE).unwrap();
    let handle = secure(buffer, PAGE, PAGE_READWRITE);
    for refused in [
        PAGE_NOACCESS,
        PAGE_READONLY,
        PAGE_EXECUTE,
        PAGE_EXECUTE_READ,
    ] {
        assert_eq!(
            protect(&process, buffer, PAGE, refused, AccessMode::User),
            REFUSED,
            "{refused:#x}"
        );
        assert_eq!(process.protection(buffer), Some(PAGE_READWRITE));
    }
    // Anything still writable is allowed.
    assert_eq!(
        process.protect(buffer, PAGE, PAGE_EXECUTE_READWRITE, AccessMode::User),
        Ok(PAGE_READWRITE)
    );
    assert_eq!(
        process.protect(buffer, PAGE, PAGE_READWRITE, AccessMode::User),
        Ok(PAGE_EXECUTE_READWRITE)
    );
    unsecure(handle);
}

#[test]
fn read_only_secure_refuses_no_access_but_allows_read_write() {
    let process = Process::new();
    let _in = process.attach();
    let buffer = process.allocate(PAGE, PAGE_READONLY).unwrap();
    let handle = secure(buffer, PAGE, PAGE_READONLY);
    assert_eq!(
        protect(&process, buffer, PAGE, PAGE_NOACCESS, AccessMode::User),
        REFUSED
    );
    // Execute-only passes: `MmReadWrite[MM_EXECUTE]` is 10 (protect.c L2720; issue #22's third
    // hole; before, the model refused it).
    assert_eq!(
        process.protect(buffer, PAGE, PAGE_EXECUTE, AccessMode::User),
        Ok(PAGE_READONLY)
    );
    assert_eq!(
        process.protect(buffer, PAGE, PAGE_READONLY, AccessMode::User),
        Ok(PAGE_EXECUTE)
    );
    // A read-only secure does not keep the buffer read-only.
    assert_eq!(
        process.protect(buffer, PAGE, PAGE_READWRITE, AccessMode::User),
        Ok(PAGE_READONLY)
    );
    assert_eq!(
        process.protect(buffer, PAGE, PAGE_EXECUTE_READ, AccessMode::User),
        Ok(PAGE_READWRITE)
    );
    assert_eq!(
        process.protect(buffer, PAGE, PAGE_READONLY, AccessMode::User),
        Ok(PAGE_EXECUTE_READ)
    );
    unsecure(handle);
}

#[test]
fn read_only_secure_allows_write_copy_on_a_view() {
    let process = Process::new();
    let _in = process.attach();
    let view = process.map_view(PAGE, PAGE_READONLY).unwrap();
    let handle = secure(view, PAGE, PAGE_READONLY);
    assert_eq!(
        process.protect(view, PAGE, PAGE_WRITECOPY, AccessMode::User),
        Ok(PAGE_READONLY)
    );
    assert_eq!(
        protect(&process, view, PAGE, PAGE_NOACCESS, AccessMode::User),
        REFUSED
    );
    unsecure(handle);
}

#[test]
fn guard_pages_are_refused_on_a_secured_range_for_either_probe_mode() {
    let process = Process::new();
    let _in = process.attach();
    let buffer = process.allocate(PAGE, PAGE_READWRITE).unwrap();
    for probe in [PAGE_READONLY, PAGE_READWRITE] {
        let handle = secure(buffer, PAGE, probe);
        for guard in [PAGE_READWRITE | PAGE_GUARD, PAGE_READONLY | PAGE_GUARD] {
            assert_eq!(
                protect(&process, buffer, PAGE, guard, AccessMode::User),
                REFUSED
            );
            assert_eq!(
                protect(&process, buffer, PAGE, guard, AccessMode::Kernel),
                REFUSED
            );
        }
        unsecure(handle);
    }
    assert!(protect(
        &process,
        buffer,
        PAGE,
        PAGE_READWRITE | PAGE_GUARD,
        AccessMode::User
    )
    .is_ok());
}

#[test]
fn secure_is_page_rounded() {
    let process = Process::new();
    let _in = process.attach();
    let pages = process.allocate(4 * PAGE, PAGE_READWRITE).unwrap();
    let page = |i: usize| pages.wrapping_add(i * PAGE);

    // Ten bytes inside page 1 secure all of page 1 and nothing else.
    let handle = secure(page(1).wrapping_add(100), 10, PAGE_READWRITE);
    assert_eq!(
        protect(&process, page(1), PAGE, PAGE_READONLY, AccessMode::User),
        REFUSED
    );
    assert_eq!(
        protect(
            &process,
            page(1).wrapping_add(PAGE - 1),
            1,
            PAGE_READONLY,
            AccessMode::User
        ),
        REFUSED
    );
    assert!(protect(&process, page(0), PAGE, PAGE_READONLY, AccessMode::User).is_ok());
    assert!(protect(&process, page(2), PAGE, PAGE_READONLY, AccessMode::User).is_ok());
    unsecure(handle);

    // Two bytes across the boundary of pages 2 and 3 secure both (page 2 is read-only now, so
    // probe read-only).
    let handle = secure(page(3).wrapping_sub(1), 2, PAGE_READONLY);
    assert_eq!(
        protect(&process, page(2), PAGE, PAGE_NOACCESS, AccessMode::User),
        REFUSED
    );
    assert_eq!(
        protect(&process, page(3), PAGE, PAGE_NOACCESS, AccessMode::User),
        REFUSED
    );
    assert!(protect(&process, page(1), PAGE, PAGE_NOACCESS, AccessMode::User).is_ok());
    unsecure(handle);
}

#[test]
fn protection_changes_beside_the_secured_pages_are_allowed() {
    let process = Process::new();
    let _in = process.attach();
    let pages = process.allocate(3 * PAGE, PAGE_READWRITE).unwrap();
    let handle = secure(pages.wrapping_add(PAGE), PAGE, PAGE_READWRITE);
    assert!(protect(&process, pages, PAGE, PAGE_NOACCESS, AccessMode::User).is_ok());
    assert!(protect(
        &process,
        pages.wrapping_add(2 * PAGE),
        PAGE,
        PAGE_READONLY | PAGE_GUARD,
        AccessMode::User
    )
    .is_ok());
    // A change that covers secured and unsecured pages is refused as a whole.
    assert_eq!(
        protect(&process, pages, 3 * PAGE, PAGE_READONLY, AccessMode::User),
        REFUSED
    );
    assert_eq!(process.protection(pages), Some(PAGE_NOACCESS));
    unsecure(handle);
}

#[test]
fn decommit_of_secured_pages_is_refused_and_of_other_pages_allowed() {
    // WRK checks a decommit against the secured range only.
    let process = Process::new();
    let _in = process.attach();
    let pages = process.allocate(4 * PAGE, PAGE_READWRITE).unwrap();
    let handle = secure(pages.wrapping_add(PAGE), PAGE, PAGE_READONLY);
    for (offset, len) in [(PAGE, PAGE), (0, 2 * PAGE), (PAGE + 100, 1), (0, 4 * PAGE)] {
        for mode in [AccessMode::User, AccessMode::Kernel] {
            assert_eq!(
                process.decommit(pages.wrapping_add(offset), len, mode),
                REFUSED,
                "{offset:#x}+{len:#x}"
            );
        }
    }
    assert_eq!(process.protection(pages), Some(PAGE_READWRITE));
    assert!(process.decommit(pages, PAGE, AccessMode::User).is_ok());
    assert!(process
        .decommit(pages.wrapping_add(2 * PAGE), 2 * PAGE, AccessMode::User)
        .is_ok());
    assert_eq!(process.protection(pages), None);
    assert_eq!(
        process.protection(pages.wrapping_add(PAGE)),
        Some(PAGE_READWRITE)
    );
    // The freed pages do not make the allocation freeable.
    assert_eq!(process.free(pages, AccessMode::User), REFUSED);
    unsecure(handle);
    assert!(process
        .decommit(pages.wrapping_add(PAGE), PAGE, AccessMode::User)
        .is_ok());
}

#[test]
fn no_change_refuses_a_decommit_anywhere_in_the_allocation() {
    let process = Process::new();
    let _in = process.attach();
    let pages = process.allocate(4 * PAGE, PAGE_READWRITE).unwrap();
    let handle = secure_ex(pages, PAGE, PAGE_READONLY, MM_SECURE_NO_CHANGE);
    assert_eq!(
        process.decommit(pages.wrapping_add(3 * PAGE), PAGE, AccessMode::User),
        REFUSED
    );
    unsecure(handle);
}

#[test]
fn free_of_a_secured_allocation_is_refused() {
    let process = Process::new();
    let _in = process.attach();
    let pages = process.allocate(2 * PAGE, PAGE_READWRITE).unwrap();
    // A secure on the last page alone still pins the whole allocation against MEM_RELEASE.
    let handle = secure(pages.wrapping_add(PAGE), 1, PAGE_READONLY);
    assert_eq!(process.free(pages, AccessMode::User), REFUSED);
    assert_eq!(process.free(pages, AccessMode::Kernel), REFUSED);
    assert_eq!(process.protection(pages), Some(PAGE_READWRITE));
    unsecure(handle);
    assert!(process.free(pages, AccessMode::User).is_ok());
    assert_eq!(process.protection(pages), None);
}

#[test]
fn unmap_of_a_secured_view_is_refused() {
    let process = Process::new();
    let _in = process.attach();
    let view = process.map_view(2 * PAGE, PAGE_READWRITE).unwrap();
    let handle = secure(view, PAGE, PAGE_READWRITE);
    assert_eq!(
        process.unmap_view(view.wrapping_add(PAGE), AccessMode::User),
        REFUSED
    );
    assert_eq!(process.unmap_view(view, AccessMode::Kernel), REFUSED);
    unsecure(handle);
    assert!(process.unmap_view(view, AccessMode::User).is_ok());
    assert_eq!(process.protection(view), None);
}

#[test]
fn committing_over_touched_secured_pages_leaves_them_as_they_were() {
    // allocvm.c, NtAllocateVirtualMemory: the reserved page gets its PTE written (L1956-L1980);
    // the secured page, probed (so touched), differs, so the range goes through
    // MiProtectVirtualMemory (L2091-L2103), which the secure refuses, and whose status the
    // commit ignores. Before issue #22 the model failed the whole commit.
    let process = Process::new();
    let _in = process.attach();
    let reserved = process.reserve(2 * PAGE).unwrap();
    process.commit(reserved, PAGE, PAGE_READWRITE).unwrap();
    let handle = secure(reserved, PAGE, PAGE_READWRITE);
    assert_eq!(process.commit(reserved, 2 * PAGE, PAGE_READONLY), Ok(()));
    assert_eq!(process.protection(reserved), Some(PAGE_READWRITE));
    assert_eq!(
        process.protection(reserved.wrapping_add(PAGE)),
        Some(PAGE_READONLY)
    );
    unsecure(handle);
}

#[test]
fn unsecure_restores_everything_the_secure_refused() {
    let process = Process::new();
    let _in = process.attach();
    let buffer = process.allocate(2 * PAGE, PAGE_READWRITE).unwrap();
    let handle = secure(buffer, 2 * PAGE, PAGE_READWRITE);
    assert_eq!(
        protect(&process, buffer, PAGE, PAGE_READONLY, AccessMode::User),
        REFUSED
    );
    assert_eq!(
        protect(
            &process,
            buffer,
            PAGE,
            PAGE_READWRITE | PAGE_GUARD,
            AccessMode::User
        ),
        REFUSED
    );
    assert_eq!(process.decommit(buffer, PAGE, AccessMode::User), REFUSED);
    assert_eq!(process.free(buffer, AccessMode::User), REFUSED);
    unsecure(handle);
    assert_eq!(process.secure_count(), 0);
    assert!(protect(&process, buffer, PAGE, PAGE_READONLY, AccessMode::User).is_ok());
    assert!(protect(
        &process,
        buffer,
        PAGE,
        PAGE_READWRITE | PAGE_GUARD,
        AccessMode::User
    )
    .is_ok());
    assert!(process
        .decommit(buffer.wrapping_add(PAGE), PAGE, AccessMode::User)
        .is_ok());
    assert!(process.free(buffer, AccessMode::User).is_ok());
    assert!(process.misuses().is_empty());
}

#[test]
fn several_secures_on_one_allocation_are_independent() {
    let process = Process::new();
    let _in = process.attach();
    let pages = process.allocate(3 * PAGE, PAGE_READWRITE).unwrap();
    let page = |i: usize| pages.wrapping_add(i * PAGE);
    let first = secure(page(0), PAGE, PAGE_READWRITE);
    let second = secure(page(1), PAGE, PAGE_READONLY);
    let overlapping = secure(page(0), 2 * PAGE, PAGE_READONLY);
    assert_eq!(process.secure_count(), 3);
    assert_ne!(first, overlapping);

    unsecure(first);
    // Page 0 still has the overlapping read-only secure: read-only now allowed, no-access not.
    assert!(protect(&process, page(0), PAGE, PAGE_READONLY, AccessMode::User).is_ok());
    assert_eq!(
        protect(&process, page(0), PAGE, PAGE_NOACCESS, AccessMode::User),
        REFUSED
    );
    unsecure(overlapping);
    assert!(protect(&process, page(0), PAGE, PAGE_NOACCESS, AccessMode::User).is_ok());
    assert_eq!(
        protect(&process, page(1), PAGE, PAGE_NOACCESS, AccessMode::User),
        REFUSED
    );
    assert_eq!(process.free(pages, AccessMode::User), REFUSED);
    unsecure(second);
    assert!(process.free(pages, AccessMode::User).is_ok());
    assert!(process.misuses().is_empty());
}

#[test]
fn the_same_range_can_be_secured_twice_and_each_handle_unsecures_its_own() {
    let process = Process::new();
    let _in = process.attach();
    let buffer = process.allocate(PAGE, PAGE_READWRITE).unwrap();
    let a = secure(buffer, PAGE, PAGE_READWRITE);
    let b = secure(buffer, PAGE, PAGE_READWRITE);
    assert_ne!(a, b);
    unsecure(a);
    assert_eq!(
        protect(&process, buffer, PAGE, PAGE_READONLY, AccessMode::User),
        REFUSED
    );
    unsecure(b);
    assert!(protect(&process, buffer, PAGE, PAGE_READONLY, AccessMode::User).is_ok());
    assert!(process.misuses().is_empty());
}

#[test]
fn kernel_mode_requests_are_refused_too_without_user_mode_only() {
    let process = Process::new();
    let _in = process.attach();
    let buffer = process.allocate(PAGE, PAGE_READWRITE).unwrap();
    let handle = secure(buffer, PAGE, PAGE_READWRITE);
    assert_eq!(
        protect(&process, buffer, PAGE, PAGE_READONLY, AccessMode::Kernel),
        REFUSED
    );
    assert_eq!(process.free(buffer, AccessMode::Kernel), REFUSED);
    unsecure(handle);
}

#[test]
fn secures_are_per_allocation() {
    let process = Process::new();
    let _in = process.attach();
    let secured = process.allocate(PAGE, PAGE_READWRITE).unwrap();
    let other = process.allocate(PAGE, PAGE_READWRITE).unwrap();
    let handle = secure(secured, PAGE, PAGE_READWRITE);
    assert!(protect(&process, other, PAGE, PAGE_NOACCESS, AccessMode::User).is_ok());
    assert!(process.free(other, AccessMode::User).is_ok());
    unsecure(handle);
}
