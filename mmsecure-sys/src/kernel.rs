//! Windows targets: what ntddk.h defines inline, so that bindgen cannot emit it.

use crate::KIRQL;

/// Returns the current IRQL, as `KeGetCurrentIrql` in `wdm.h` does on x64: by reading CR8.
///
/// # Safety
///
/// Must run in kernel mode (CPL 0): reading CR8 faults in user mode.
#[cfg(target_arch = "x86_64")]
#[allow(non_snake_case)]
#[inline]
pub unsafe fn KeGetCurrentIrql() -> KIRQL {
    let irql: u64;
    // SAFETY: the caller runs in kernel mode, where reading CR8 is allowed and has no side effect.
    unsafe {
        core::arch::asm!("mov {}, cr8", out(reg) irql, options(nomem, nostack, preserves_flags));
    }
    irql as KIRQL
}
