//! A secure + unsecure three ways, each a function of its own, for `cargo xtask bench
//! --disasm-check` to count what the wrappers add on their success path (issue #21): the raw
//! routines as C drivers call them, [`SecureRegion::new`] + drop, and [`SecureRegion::scope`].
//! `#[no_mangle]` gives the check exact names to find in the link map.

use mmsecure::sys::{MmSecureVirtualMemory, MmUnsecureVirtualMemory, PAGE_READONLY, PVOID, SIZE_T};
use mmsecure::{ProbeMode, SecureRegion};

/// `MmSecureVirtualMemory` + `MmUnsecureVirtualMemory`, with nothing around them; `true` if the
/// secure was made.
#[no_mangle]
#[inline(never)]
pub extern "C" fn sample_raw_pair(user: *const u8, len: usize) -> bool {
    // SAFETY: the routine validates the range itself and returns NULL for what it will not
    // secure; it dereferences nothing.
    let handle = unsafe { MmSecureVirtualMemory(user as PVOID, len as SIZE_T, PAGE_READONLY) };
    if handle.is_null() {
        return false;
    }
    // SAFETY: the handle was just returned in this process context, at the same IRQL, and is
    // unsecured once.
    unsafe { MmUnsecureVirtualMemory(handle) };
    true
}

/// [`SecureRegion::new`], dropped at once.
#[no_mangle]
#[inline(never)]
pub extern "C" fn sample_region_pair(user: *const u8, len: usize) -> bool {
    SecureRegion::new(user, len, ProbeMode::ReadOnly).is_ok()
}

/// [`SecureRegion::scope`] with an empty body.
#[no_mangle]
#[inline(never)]
pub extern "C" fn sample_scoped_pair(user: *const u8, len: usize) -> bool {
    SecureRegion::scope(user, len, ProbeMode::ReadOnly, |_| ()).is_ok()
}
