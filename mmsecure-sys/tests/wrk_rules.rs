//! Host backend against the Windows Research Kernel, rule by rule: one test per WRK rule the
//! model implements, each naming the file (`base/ntos/mm/...` in GitHub `killvxk/WRK_Modify`),
//! the function and the line that decide it. Where the model is stricter than WRK (a Microsoft
//! document or a modern build says more), the test says so; the rule table in
//! `mmsecure-sys/src/host/mod.rs` gives the reading taken.
//!
//! The three tests named `hole_*` are issue #22's: WRK lets a user do them, the model used to
//! refuse them, and each fails on the model before that issue.

mod common;

use common::{protect, secure, try_secure, unsecure, PAGE, REFUSED};
use mmsecure_sys::host::{
    AccessMode, Attach, Process, Status, HIGHEST_USER_ADDRESS, PAGE_EXECUTE, PAGE_EXECUTE_READ,
    PAGE_EXECUTE_READWRITE, PAGE_GUARD, PAGE_NOACCESS, PAGE_READONLY, PAGE_READWRITE,
    PAGE_WRITECOPY, STATUS_ACCESS_VIOLATION, STATUS_FREE_VM_NOT_AT_BASE,
    STATUS_GUARD_PAGE_VIOLATION,
};
use mmsecure_sys::status::STATUS_SUCCESS;
use mmsecure_sys::{copy_guarded, NTSTATUS};

/// MiSecureVirtualMemory's large path starts at 64 KiB (mapview.c L6125).
const LARGE: usize = 64 * 1024;

/// A fresh process, attached on this thread, with an allocation of `len` bytes committed with
/// `protect`.
fn attached(len: usize, protect: u32) -> (Process, Attach, *mut u8) {
    let process = Process::new();
    let attach = process.attach();
    let buffer = process.allocate(len, protect).unwrap();
    (process, attach, buffer)
}

/// A guarded read of one byte at `address` in the current process.
fn read_byte(address: *const u8) -> NTSTATUS {
    let mut byte = 0u8;
    // SAFETY: the destination is a local byte; the source is model memory, which the guarded
    // copy checks page by page and never faults on for real.
    unsafe { copy_guarded(&mut byte, address, 1) }
}

// --- mapview.c, MiSecureVirtualMemory: the arguments --------------------------------------

#[test]
fn secure_refuses_zero_size_wrap_and_the_top_of_user_space() {
    // L6093: `Address + Size > MM_HIGHEST_USER_ADDRESS || Address + Size <= Address`: the
    // second half rejects a zero size (and a wrap), the first a range ending at the highest
    // user address itself.
    let (process, _in, buffer) = attached(PAGE, PAGE_READWRITE);
    assert!(try_secure(buffer, 0, PAGE_READWRITE).is_null());
    assert!(try_secure(buffer, usize::MAX, PAGE_READONLY).is_null());
    let top = HIGHEST_USER_ADDRESS as *const u8;
    assert!(try_secure(top, 1, PAGE_READONLY).is_null());
    assert_eq!(process.secure_count(), 0);
}

#[test]
fn secure_needs_the_range_inside_one_allocation() {
    // L6441-L6450 (the long way) and L6152-L6155 (the large path): NULL unless the range's
    // first and last VPN are inside the one VAD holding its start.
    let (process, _in, buffer) = attached(2 * PAGE, PAGE_READWRITE);
    assert!(try_secure(buffer, 3 * PAGE, PAGE_READONLY).is_null());
    let large = process.allocate(LARGE, PAGE_READWRITE).unwrap();
    assert!(try_secure(large, LARGE + 1, PAGE_READWRITE).is_null());
    assert_eq!(process.secure_count(), 0);
}

#[test]
fn secure_is_recorded_page_rounded() {
    // L6461-L6463: start rounded down, end rounded up to the page; protect.c's
    // MiCheckSecuredVad then compares page ranges (L2707-L2708).
    let (process, _in, buffer) = attached(3 * PAGE, PAGE_READWRITE);
    let handle = secure(buffer.wrapping_add(PAGE + 1), 1, PAGE_READWRITE);
    assert_eq!(
        protect(&process, buffer, PAGE, PAGE_READONLY, AccessMode::User),
        Ok(())
    );
    assert_eq!(
        protect(
            &process,
            buffer.wrapping_add(PAGE),
            PAGE,
            PAGE_READONLY,
            AccessMode::User
        ),
        REFUSED
    );
    unsecure(handle);
}

// --- mapview.c, MiSecureVirtualMemory: the probe (the long way, L6381-L6419) ---------------

#[test]
fn probe_read_only_needs_every_page_readable() {
    // L6400-L6409: one volatile read per page; an access violation returns NULL (L6414-L6418).
    let (process, _in, buffer) = attached(2 * PAGE, PAGE_READONLY);
    let handle = secure(buffer, 2 * PAGE, PAGE_READONLY);
    unsecure(handle);
    process
        .protect(
            buffer.wrapping_add(PAGE),
            PAGE,
            PAGE_NOACCESS,
            AccessMode::User,
        )
        .unwrap();
    assert!(try_secure(buffer, 2 * PAGE, PAGE_READONLY).is_null());
}

#[test]
fn probe_read_write_needs_every_page_writable() {
    // L6411: ProbeForWrite (ex/probe.c L116-L119: read and write back one byte per page).
    let (process, _in, buffer) = attached(2 * PAGE, PAGE_READONLY);
    assert!(try_secure(buffer, 2 * PAGE, PAGE_READWRITE).is_null());
    process
        .protect(buffer, 2 * PAGE, PAGE_READWRITE, AccessMode::User)
        .unwrap();
    let handle = secure(buffer, 2 * PAGE, PAGE_READWRITE);
    unsecure(handle);
}

#[test]
fn probe_faults_on_no_access_pages() {
    // L6405-L6406 / L6411: a no-access page faults either way.
    let (_process, _in, buffer) = attached(PAGE, PAGE_NOACCESS);
    assert!(try_secure(buffer, PAGE, PAGE_READONLY).is_null());
    assert!(try_secure(buffer, PAGE, PAGE_READWRITE).is_null());
}

#[test]
fn probe_faults_on_a_guard_page_and_takes_its_guard() {
    // L6405-L6411 under try: the access to a guard page raises STATUS_GUARD_PAGE_VIOLATION,
    // caught at L6414 (NULL). The fault is a real one: the guard is gone afterwards, so the
    // same secure succeeds the second time.
    let (process, _in, buffer) = attached(PAGE, PAGE_READWRITE);
    process
        .protect(buffer, PAGE, PAGE_READWRITE | PAGE_GUARD, AccessMode::User)
        .unwrap();
    assert!(try_secure(buffer, PAGE, PAGE_READONLY).is_null());
    assert_eq!(process.protection(buffer), Some(PAGE_READWRITE));
    let handle = secure(buffer, PAGE, PAGE_READONLY);
    unsecure(handle);
}

#[test]
fn probe_of_execute_only_pages_is_refused_by_the_stricter_reading() {
    // L6406 reads the page; x86 hardware lets it, Microsoft documents reads of PAGE_EXECUTE as
    // faulting. The model takes the stricter reading (rule 2): NULL.
    let (process, _in, buffer) = attached(PAGE, PAGE_EXECUTE);
    assert!(try_secure(buffer, PAGE, PAGE_READONLY).is_null());
    let readable = process.allocate(PAGE, PAGE_EXECUTE_READ).unwrap();
    let handle = secure(readable, PAGE, PAGE_READONLY);
    unsecure(handle);
}

#[test]
fn probe_for_write_breaks_copy_on_write() {
    // L6411, ProbeForWrite (ex/probe.c L117): the write-back makes a copy-on-write page a
    // private read-write page before the secure is recorded.
    let process = Process::new();
    let _in = process.attach();
    let view = process.map_view(PAGE, PAGE_WRITECOPY).unwrap();
    let handle = secure(view, PAGE, PAGE_READWRITE);
    assert_eq!(process.protection(view), Some(PAGE_READWRITE));
    unsecure(handle);
    let read_only = process.map_view(PAGE, PAGE_WRITECOPY).unwrap();
    let handle = secure(read_only, PAGE, PAGE_READONLY);
    assert_eq!(process.protection(read_only), Some(PAGE_WRITECOPY));
    unsecure(handle);
}

// --- mapview.c, MiSecureVirtualMemory: the large path (L6125-L6378) -------------------------

#[test]
fn large_untouched_secure_probes_nothing_and_touched_goes_the_long_way() {
    // L6125: Size >= 64 KiB; L6138/L6142: private, committed with the VAD; L6372: every PTE
    // zero, else L6374 goes the long way (which probes and faults on the guard page).
    let (process, _in, buffer) = attached(LARGE, PAGE_READWRITE);
    let handle = secure(buffer, LARGE, PAGE_READWRITE);
    unsecure(handle);
    let guarded = process.allocate(LARGE, PAGE_READWRITE).unwrap();
    process
        .protect(guarded, PAGE, PAGE_READWRITE | PAGE_GUARD, AccessMode::User)
        .unwrap();
    assert!(try_secure(guarded, LARGE, PAGE_READWRITE).is_null());
    // A reservation committed later has no MemCommit: the long way, which faults on the
    // reserved page.
    let reserved = process.reserve(2 * LARGE).unwrap();
    process.commit(reserved, LARGE, PAGE_READWRITE).unwrap();
    assert!(try_secure(reserved, LARGE + PAGE, PAGE_READWRITE).is_null());
}

#[test]
fn large_path_takes_the_allocations_protection_for_read_only() {
    // L6161-L6164: for a read-only probe any VAD protection up to MM_EXECUTE_WRITECOPY passes,
    // execute-only included; nothing is probed, so the secure stands over pages the model's
    // copy cannot read (small, the long way refuses them: rule 2).
    let (process, _in, buffer) = attached(LARGE, PAGE_EXECUTE);
    let handle = secure(buffer, LARGE, PAGE_READONLY);
    assert_eq!(read_byte(buffer), STATUS_ACCESS_VIOLATION);
    unsecure(handle);
    assert!(try_secure(buffer, PAGE, PAGE_READONLY).is_null());
    // L6167-L6171: for read-write only read-write and execute-read-write.
    let read_only = process.allocate(LARGE, PAGE_READONLY).unwrap();
    assert!(try_secure(read_only, LARGE, PAGE_READWRITE).is_null());
}

#[test]
fn hole_commit_over_a_large_untouched_secure_makes_it_no_access() {
    // Issue #22, hole 1. mapview.c L6125-L6378: the 64 KiB secure of untouched pages probes
    // nothing, so their PTEs stay zero. allocvm.c, NtAllocateVirtualMemory, L1956-L1980: a
    // zero PTE gets MEM_COMMIT's protection written in with no secure check. The secured range
    // is then no-access and a copy from it faults.
    let (process, _in, buffer) = attached(LARGE, PAGE_READWRITE);
    let handle = secure(buffer, LARGE, PAGE_READWRITE);
    assert_eq!(process.commit(buffer, LARGE, PAGE_NOACCESS), Ok(()));
    assert_eq!(process.protection(buffer), Some(PAGE_NOACCESS));
    assert_eq!(read_byte(buffer), STATUS_ACCESS_VIOLATION);
    // VirtualProtect still checks (protect.c L545 calls MiCheckSecuredVad).
    assert_eq!(
        protect(&process, buffer, PAGE, PAGE_READWRITE, AccessMode::User),
        Ok(())
    );
    assert_eq!(
        protect(&process, buffer, PAGE, PAGE_NOACCESS, AccessMode::User),
        REFUSED
    );
    unsecure(handle);
}

#[test]
fn commit_over_touched_secured_pages_is_checked_and_its_status_ignored() {
    // allocvm.c L2001-L2029: a non-zero PTE whose protection differs sets ChangeProtection;
    // L2091-L2103 runs MiProtectVirtualMemory over the range, which the secure refuses, and
    // returns the commit's own STATUS_SUCCESS. A touched page keeps its protection.
    let (process, _in, buffer) = attached(LARGE, PAGE_READWRITE);
    process.write(buffer, b"touched").unwrap();
    let handle = secure(buffer, LARGE, PAGE_READWRITE);
    assert_eq!(process.commit(buffer, LARGE, PAGE_NOACCESS), Ok(()));
    assert_eq!(process.protection(buffer), Some(PAGE_READWRITE));
    assert_eq!(read_byte(buffer), STATUS_SUCCESS);
    unsecure(handle);
}

// --- protect.c, MiCheckSecuredVad (L2638-L2773), from NtProtectVirtualMemory (L545) --------

#[test]
fn protect_refuses_guard_pages_under_either_secure() {
    // L2714-L2717 (and L2749 for several secures): MI_IS_GUARD refuses before the table.
    let (process, _in, buffer) = attached(PAGE, PAGE_READWRITE);
    for probe in [PAGE_READONLY, PAGE_READWRITE] {
        let handle = secure(buffer, PAGE, probe);
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
        unsecure(handle);
    }
}

#[test]
fn protect_follows_the_mm_read_write_table() {
    // L2720 / L2726: a read-only secure refuses `MmReadWrite[mask] < 10`, a read-write one
    // `< 11`; acceschk.c L42: no access 1; read-only, execute, execute-read 10; read-write,
    // execute-read-write 11.
    let table = [
        (PAGE_NOACCESS, true, true),
        (PAGE_READONLY, false, true),
        (PAGE_EXECUTE, false, true),
        (PAGE_EXECUTE_READ, false, true),
        (PAGE_READWRITE, false, false),
        (PAGE_EXECUTE_READWRITE, false, false),
    ];
    for (new, refused_read_only, refused_read_write) in table {
        for (probe, refused) in [
            (PAGE_READONLY, refused_read_only),
            (PAGE_READWRITE, refused_read_write),
        ] {
            let (process, _in, buffer) = attached(PAGE, PAGE_READWRITE);
            let handle = secure(buffer, PAGE, probe);
            let got = protect(&process, buffer, PAGE, new, AccessMode::User);
            let expected = if refused { REFUSED } else { Ok(()) };
            assert_eq!(got, expected, "{new:#x} under {probe:#x}");
            unsecure(handle);
        }
    }
}

#[test]
fn hole_read_only_secure_lets_pages_go_execute_only() {
    // Issue #22, hole 3. L2720: a read-only secure refuses MmReadWrite[mask] < 10, and
    // acceschk.c L42 has MmReadWrite[MM_EXECUTE] = 10. The change passes; x86/x64 hardware
    // still reads the pages, the model's copy does not (rule 2's stricter reading).
    let (process, _in, buffer) = attached(PAGE, PAGE_READONLY);
    let handle = secure(buffer, PAGE, PAGE_READONLY);
    assert_eq!(
        protect(&process, buffer, PAGE, PAGE_EXECUTE, AccessMode::User),
        Ok(())
    );
    assert_eq!(read_byte(buffer), STATUS_ACCESS_VIOLATION);
    assert_eq!(
        protect(&process, buffer, PAGE, PAGE_NOACCESS, AccessMode::User),
        REFUSED
    );
    unsecure(handle);
}

// --- freevm.c, NtFreeVirtualMemory --------------------------------------------------------

#[test]
fn decommit_is_checked_against_the_secured_range_only() {
    // L333-L336: MiCheckSecuredVad with the caller's range and MM_SECURE_DELETE_CHECK (which
    // L2702 turns into no access, refused by every secure); pages beside the secure go.
    let (process, _in, buffer) = attached(3 * PAGE, PAGE_READWRITE);
    let handle = secure(buffer.wrapping_add(PAGE), PAGE, PAGE_READONLY);
    assert_eq!(
        process.decommit(buffer.wrapping_add(PAGE), PAGE, AccessMode::User),
        REFUSED
    );
    assert_eq!(process.decommit(buffer, PAGE, AccessMode::User), Ok(()));
    unsecure(handle);
}

#[test]
fn hole_decommit_of_size_zero_at_the_base_takes_the_secured_pages() {
    // Issue #22, hole 2. L333-L336 checks the secures with size 0; protect.c L2679 makes End
    // = Base - 1, which no secure overlaps (L2707-L2708). Then L813-L821 widens size 0 to the
    // whole VAD: the secured pages are decommitted and a copy from them faults.
    let (process, _in, buffer) = attached(2 * PAGE, PAGE_READWRITE);
    let handle = secure(buffer.wrapping_add(PAGE), PAGE, PAGE_READWRITE);
    assert_eq!(process.decommit(buffer, 0, AccessMode::User), Ok(()));
    assert_eq!(process.protection(buffer.wrapping_add(PAGE)), None);
    assert_eq!(
        read_byte(buffer.wrapping_add(PAGE)),
        STATUS_ACCESS_VIOLATION
    );
    // Anywhere but the base's page it is STATUS_FREE_VM_NOT_AT_BASE (L816-L819).
    process.commit(buffer, 2 * PAGE, PAGE_READWRITE).unwrap();
    assert_eq!(
        process.decommit(buffer.wrapping_add(PAGE), 0, AccessMode::User),
        Err(Status(STATUS_FREE_VM_NOT_AT_BASE))
    );
    unsecure(handle);
}

#[test]
fn release_is_checked_against_the_whole_allocation() {
    // L315-L329: MEM_RELEASE checks MiCheckSecuredVad over the whole VAD, so a secure of one
    // page keeps the allocation.
    let (process, _in, buffer) = attached(3 * PAGE, PAGE_READWRITE);
    let handle = secure(buffer.wrapping_add(2 * PAGE), 1, PAGE_READONLY);
    assert_eq!(process.free(buffer, AccessMode::User), REFUSED);
    unsecure(handle);
    assert_eq!(process.free(buffer, AccessMode::User), Ok(()));
}

// --- umapview.c, MiUnmapViewOfSection -----------------------------------------------------

#[test]
fn unmap_of_a_secured_view_is_refused() {
    // umapview.c, MiUnmapViewOfSection L199-L216: a secured VAD (NoChange) is checked over the
    // whole view with MM_SECURE_DELETE_CHECK, which every secure refuses.
    let process = Process::new();
    let _in = process.attach();
    let view = process.map_view(2 * PAGE, PAGE_READWRITE).unwrap();
    let handle = secure(view, 1, PAGE_READONLY);
    assert_eq!(
        process.unmap_view(view.wrapping_add(PAGE), AccessMode::User),
        REFUSED
    );
    unsecure(handle);
    assert_eq!(process.unmap_view(view, AccessMode::User), Ok(()));
}

// --- procsup.c, MmCleanProcessAddressSpace; forksup.c, MiCloneProcessAddressSpace ----------

#[test]
fn exit_drops_every_secure_and_refuses_nothing() {
    // procsup.c, MmCleanProcessAddressSpace (L2570): removes every VAD (MiRemoveVad, L2743)
    // and deletes its addresses, with no secure check; the secure entries go with them.
    let process = Process::new();
    let buffer = process.allocate(PAGE, PAGE_READWRITE).unwrap();
    let handle = {
        let _in = process.attach();
        secure(buffer, PAGE, PAGE_READWRITE)
    };
    assert!(!handle.is_null());
    process.exit();
    assert_eq!(process.secure_count(), 0);
    assert_eq!(process.protection(buffer), None);
}

#[test]
fn fork_copies_pages_and_the_child_keeps_inherited_secures() {
    // forksup.c, MiCloneProcessAddressSpace (L72) copies the VADs and their pages; WRK clears
    // the copies' secures (L850-L862: "secured only in this process, not in the new one").
    // Modern documents imply inheritance without MM_SECURE_NO_INHERIT: the model keeps them,
    // the reading worse for the driver (rule 12).
    let parent = Process::new();
    let buffer = parent.allocate(PAGE, PAGE_READWRITE).unwrap();
    let handle = {
        let _in = parent.attach();
        secure(buffer, PAGE, PAGE_READWRITE)
    };
    let child = parent.fork();
    assert_eq!(child.secure_count(), 1);
    assert_eq!(child.protection(buffer), Some(PAGE_READWRITE));
    assert_eq!(
        protect(&child, buffer, PAGE, PAGE_READONLY, AccessMode::User),
        REFUSED
    );
    child.exit();
    let _in = parent.attach();
    unsecure(handle);
}

// --- mapview.c L6481-L6486: the pool ------------------------------------------------------

#[test]
fn pool_exhaustion_makes_a_valid_secure_return_null() {
    // ExAllocatePoolWithTag(NonPagedPool, sizeof(MMVAD_LONG)) returning NULL: Return1.
    let (process, _in, buffer) = attached(PAGE, PAGE_READWRITE);
    process.fail_pool_allocations(1);
    assert!(try_secure(buffer, PAGE, PAGE_READWRITE).is_null());
    assert_eq!(process.secure_count(), 0);
    let handle = secure(buffer, PAGE, PAGE_READWRITE);
    unsecure(handle);
}

#[test]
fn guarded_copy_raises_the_guard_page_violation_once() {
    // Not mm's rule but the MMU's, which the probe above relies on: a guard page faults with
    // STATUS_GUARD_PAGE_VIOLATION once and loses its guard.
    let (process, _in, buffer) = attached(PAGE, PAGE_READWRITE);
    process
        .protect(buffer, PAGE, PAGE_READWRITE | PAGE_GUARD, AccessMode::User)
        .unwrap();
    assert_eq!(read_byte(buffer), STATUS_GUARD_PAGE_VIOLATION);
    assert_eq!(read_byte(buffer), STATUS_SUCCESS);
}
