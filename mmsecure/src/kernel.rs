//! Every call this crate makes into the kernel (or the host backend), each in one place.

use core::ffi::c_void;
use core::sync::atomic::{AtomicPtr, Ordering};

use mmsecure_sys as sys;

/// The current IRQL.
pub(crate) fn irql() -> u8 {
    // SAFETY: drivers run in kernel mode, where reading the IRQL is always allowed; off Windows
    // the host backend answers from its per-thread model.
    unsafe { sys::KeGetCurrentIrql() }
}

/// Whether the current IRQL allows the secure routines (at most `APC_LEVEL`).
pub(crate) fn irql_allows_secure() -> bool {
    u32::from(irql()) <= sys::APC_LEVEL
}

/// The process whose address space is current on this thread.
pub(crate) fn current_process() -> sys::PEPROCESS {
    // SAFETY: `IoGetCurrentProcess` takes nothing and may be called at any IRQL.
    unsafe { sys::IoGetCurrentProcess() }
}

/// `MmSecureVirtualMemory` on a range that passed `user_range::check`.
pub(crate) fn secure(address: usize, len: usize, mode: u32) -> sys::HANDLE {
    // SAFETY: the routine validates the range itself and returns NULL for anything it will not
    // secure; it dereferences nothing the caller must vouch for.
    unsafe { sys::MmSecureVirtualMemory(address as sys::PVOID, len as sys::SIZE_T, mode) }
}

/// `MmSecureVirtualMemoryEx` through its run-time address, or `None` where this Windows lacks it.
pub(crate) fn secure_ex(address: usize, len: usize, mode: u32, flags: u32) -> Option<sys::HANDLE> {
    let routine = secure_ex_routine()?;
    // SAFETY: as for `secure`; `routine` is the kernel's own `MmSecureVirtualMemoryEx`.
    Some(unsafe { routine(address as sys::PVOID, len as sys::SIZE_T, mode, flags) })
}

/// `MmUnsecureVirtualMemory`.
///
/// # Safety
///
/// `handle` came from a secure routine and has not been unsecured since.
pub(crate) unsafe fn unsecure(handle: sys::HANDLE) {
    // SAFETY: the caller guarantees the handle is a live secure handle.
    unsafe { sys::MmUnsecureVirtualMemory(handle) }
}

/// The name `MmGetSystemRoutineAddress` is asked for, in UTF-16.
const SECURE_EX_NAME: [u16; 23] = utf16(b"MmSecureVirtualMemoryEx");

/// ASCII to UTF-16, at compile time.
const fn utf16<const N: usize>(ascii: &[u8; N]) -> [u16; N] {
    let mut out = [0u16; N];
    let mut i = 0;
    while i < N {
        out[i] = ascii[i] as u16;
        i += 1;
    }
    out
}

/// `MmSecureVirtualMemoryEx`'s address, once found.
static SECURE_EX: AtomicPtr<c_void> = AtomicPtr::new(core::ptr::null_mut());

/// Finds `MmSecureVirtualMemoryEx` at run time, never through a static import, so that a driver
/// using this crate still loads on Windows before 10.0.17763.
///
/// A found address is cached for good (the kernel's exports do not change while it runs), and
/// then costs one atomic load. A missing routine is not cached: on such a Windows each flagged
/// call looks again and fails, which costs one export-table search on a path that fails anyway.
fn secure_ex_routine() -> Option<sys::PFN_MM_SECURE_VIRTUAL_MEMORY_EX> {
    let mut found = SECURE_EX.load(Ordering::Acquire);
    if found.is_null() {
        debug_assert!(
            u32::from(irql()) == sys::PASSIVE_LEVEL,
            "the first flagged secure looks up MmSecureVirtualMemoryEx, which must happen at \
             PASSIVE_LEVEL: call mmsecure::secure_ex_available() from DriverEntry"
        );
        let mut name = SECURE_EX_NAME;
        let mut string = sys::UNICODE_STRING {
            Length: (name.len() * 2) as u16,
            MaximumLength: (name.len() * 2) as u16,
            Buffer: name.as_mut_ptr(),
        };
        // SAFETY: `string` is a valid UNICODE_STRING over `name`, which outlives the call.
        found = unsafe { sys::MmGetSystemRoutineAddress(&mut string) };
        if found.is_null() {
            return None;
        }
        SECURE_EX.store(found, Ordering::Release);
    }
    // SAFETY: the kernel answered this name with the address of `MmSecureVirtualMemoryEx`, whose
    // type `PFN_MM_SECURE_VIRTUAL_MEMORY_EX` spells; a function pointer is a data pointer's size.
    Some(unsafe {
        core::mem::transmute::<*mut c_void, sys::PFN_MM_SECURE_VIRTUAL_MEMORY_EX>(found)
    })
}

/// Whether this Windows has `MmSecureVirtualMemoryEx`, which
/// [`SecureRegion::with_flags`](crate::SecureRegion::with_flags) needs.
///
/// The first call looks the routine up with `MmGetSystemRoutineAddress`, which must run at
/// `PASSIVE_LEVEL`; a driver that first uses flags at `APC_LEVEL` calls this from `DriverEntry`.
/// Off Windows the host backend answers by its configured Windows build.
///
/// ```
/// // The host backend models a current Windows by default.
/// assert!(mmsecure::secure_ex_available());
/// ```
#[must_use]
pub fn secure_ex_available() -> bool {
    secure_ex_routine().is_some()
}
