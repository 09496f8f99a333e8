//! Windows targets: what ntddk.h defines inline, so that bindgen cannot emit it.

#[cfg(target_arch = "x86_64")]
use crate::KIRQL;
use crate::{HANDLE, PEPROCESS, PVOID};

// ARM64: `KeGetCurrentIrql` is a HAL export there, not a register read (see the module).
#[cfg(target_arch = "aarch64")]
mod aarch64;
#[cfg(target_arch = "aarch64")]
pub use aarch64::KeGetCurrentIrql;

// A data export, which bindgen's declaration cannot import: an `extern` static is reached through
// the import address table only when rustc marks it `dllimport`, which it does for a block with a
// `#[link]` attribute (the build script's `rustc-link-lib` attaches to no block).
#[link(name = "ntoskrnl")]
extern "C" {
    /// `MmHighestUserAddress` (ntddk.h): the highest address user mode can reach on this system,
    /// set by the kernel at boot (`0x7FFFFFFEFFFF` on 64-bit Windows 8.1 and later, lower on
    /// Windows 8 and before, and possibly higher with 5-level paging). Read it; never write it.
    pub static mut MmHighestUserAddress: PVOID;
}

/// Windows: the kernel keeps nothing for a secure left standing (it goes with its process).
#[inline]
pub(crate) fn abandoned(_handle: HANDLE, _process: PEPROCESS) {}

/// Windows: the kernel has no double-fetch detector; a request is not recorded.
#[inline]
pub(crate) fn request_begin(_process: PEPROCESS, _address: usize, _len: usize) -> usize {
    0
}

/// Windows: nothing recorded.
#[inline]
pub(crate) fn request_retain(_token: usize) {}

/// Windows: nothing recorded.
#[inline]
pub(crate) fn request_end(_token: usize) {}

/// Returns the current IRQL, as `KeGetCurrentIrql` in `wdm.h` does on x64: by reading CR8.
///
/// In debug builds it first checks the privilege level (the low bits of CS, readable in any
/// mode): in user mode it panics, naming the `host` feature, rather than fault on CR8. That is
/// the easy mistake of a Windows user-mode test binary built without the feature (see the crate
/// docs); in a driver, which runs at CPL 0, the check never fires.
///
/// # Safety
///
/// Must run in kernel mode (CPL 0): reading CR8 faults in user mode.
#[cfg(target_arch = "x86_64")]
#[allow(non_snake_case)]
#[inline]
pub unsafe fn KeGetCurrentIrql() -> KIRQL {
    if cfg!(debug_assertions) && current_privilege_level() != 0 {
        user_mode_without_host_feature();
    }
    let irql: u64;
    // SAFETY: the caller runs in kernel mode, where reading CR8 is allowed and has no side effect.
    unsafe {
        core::arch::asm!("mov {}, cr8", out(reg) irql, options(nomem, nostack, preserves_flags));
    }
    irql as KIRQL
}

/// The current privilege level: 0 in kernel mode, 3 in user mode.
#[cfg(target_arch = "x86_64")]
#[inline]
fn current_privilege_level() -> u16 {
    let cs: u16;
    // SAFETY: reading the CS selector is allowed at every privilege level and has no side effect.
    unsafe {
        core::arch::asm!("mov {:x}, cs", out(reg) cs, options(nomem, nostack, preserves_flags));
    }
    cs & 3
}

/// The kernel path running in user mode: a test binary that forgot the `host` feature. Detected
/// on x64 only (CS's privilege bits); ARM64 has no such check yet.
#[cfg(target_arch = "x86_64")]
#[cold]
#[inline(never)]
fn user_mode_without_host_feature() -> ! {
    panic!(
        "mmsecure-sys: the Windows kernel path is running in user mode, where it cannot work (this \
         is a user-mode program, a test binary most likely, built without the `host` feature). \
         For tests, add `mmsecure = {{ version = \"...\", features = [\"host\"] }}` (or \
         mmsecure-sys with `host`) under [dev-dependencies]; see docs/testing.md"
    )
}
