//! Every call this crate makes into the kernel (or the host backend), each in one place.

use core::ffi::c_void;
use core::sync::atomic::{AtomicPtr, Ordering};

use mmsecure_sys as sys;

use crate::Error;

/// The current IRQL.
#[inline]
pub(crate) fn irql() -> u8 {
    // SAFETY: drivers run in kernel mode, where reading the IRQL is always allowed; off Windows
    // the host backend answers from its per-thread model.
    unsafe { sys::KeGetCurrentIrql() }
}

/// The process whose address space is current on this thread.
/// `Err(Error::IrqlTooHigh)` above `max`, read at run time in every build.
#[inline]
pub(crate) fn require_irql(max: u8) -> Result<(), Error> {
    let irql = irql();
    if irql > max {
        return Err(Error::IrqlTooHigh { irql, max });
    }
    Ok(())
}

#[inline]
pub(crate) fn current_process() -> sys::PEPROCESS {
    // SAFETY: `IoGetCurrentProcess` takes nothing and may be called at any IRQL.
    unsafe { sys::IoGetCurrentProcess() }
}

/// Whether `process`, the current process, is the process that owns this thread: the thread is
/// in its own context, not attached. The ids of two live processes differ (the kernel frees a
/// process's id only when its object is deleted), and both are live here: the thread keeps its
/// own process, and the caller is in `process`'s context.
#[inline]
pub(crate) fn is_own_process(process: sys::PEPROCESS) -> bool {
    // SAFETY: `process` is the current process, a live object while this thread runs in it;
    // the routine reads its id, at any IRQL.
    let current = unsafe { sys::PsGetProcessId(process) };
    // SAFETY: reads the current thread's own state, at any IRQL.
    current == unsafe { sys::PsGetCurrentProcessId() }
}

/// `ObfReferenceObject` on the current process, for a region or a slice made in its context: its
/// `PEPROCESS` then names this process until the matching [`dereference`].
#[inline]
pub(crate) fn reference_current() -> sys::PEPROCESS {
    let process = current_process();
    // SAFETY: the current process is a live object while this thread runs in it; callers are at
    // `DISPATCH_LEVEL` or below (they have just secured, at `APC_LEVEL` or below, or checked).
    unsafe { sys::ObfReferenceObject(process.cast()) };
    process
}

/// `ObfReferenceObject` on `process`.
///
/// # Safety
///
/// `process` names a live process object: the current process, or one the caller holds a
/// reference on; the IRQL is `DISPATCH_LEVEL` or below.
pub(crate) unsafe fn reference(process: sys::PEPROCESS) {
    // SAFETY: the caller's contract.
    unsafe { sys::ObfReferenceObject(process.cast()) };
}

/// `ObfDereferenceObject`.
///
/// # Safety
///
/// The caller holds a reference on `process` (from [`reference_current`] or [`reference`]) and
/// gives it up, at IRQL <= `DISPATCH_LEVEL`.
pub(crate) unsafe fn dereference(process: sys::PEPROCESS) {
    // SAFETY: the caller's contract.
    unsafe { sys::ObfDereferenceObject(process.cast()) };
}

/// The highest user-mode address, as the kernel exports it (`MmHighestUserAddress`), where it is
/// a user address at all: a value in the upper half of the address space, which no user address
/// can have on any 64-bit Windows (the kernel's half), is not the kernel's variable but
/// something else exported under its name (Wine 8 exports a code stub there, whose bytes read as
/// `0x9D0D8D4828EC8348`), and the 64-bit Windows 8.1 value stands in for it.
#[inline]
pub(crate) fn highest_user_address() -> usize {
    // SAFETY: the kernel sets the variable at boot and never changes it after; this only reads
    // it, by value (no reference to the `static mut` is formed). The host model's never changes.
    let exported = unsafe { sys::MmHighestUserAddress } as usize;
    if exported > KERNEL_HALF {
        FALLBACK_HIGHEST_USER_ADDRESS
    } else {
        exported
    }
}

/// The last address of the lower half of the address space: user addresses lie below it on every
/// 64-bit Windows (and every 32-bit one).
const KERNEL_HALF: usize = usize::MAX >> 1;

/// `MM_HIGHEST_USER_ADDRESS` of 64-bit Windows 8.1 and later (of 32-bit Windows without /3GB).
#[cfg(target_pointer_width = "64")]
const FALLBACK_HIGHEST_USER_ADDRESS: usize = 0x7FFF_FFFE_FFFF;
#[cfg(target_pointer_width = "32")]
const FALLBACK_HIGHEST_USER_ADDRESS: usize = 0x7FFE_FFFF;

/// `MmSecureVirtualMemory` on a range that passed `user_range::check`.
pub(crate) fn secure(address: usize, len: usize, mode: u32) -> sys::HANDLE {
    // SAFETY: the routine validates the range itself and returns NULL for anything it will not
    // secure; it dereferences nothing the caller must vouch for.
    unsafe { sys::MmSecureVirtualMemory(address as sys::PVOID, len as sys::SIZE_T, mode) }
}

/// `MmSecureVirtualMemoryEx` through its run-time address: [`Error::Unavailable`] where this
/// Windows lacks it, [`Error::IrqlTooHigh`] when it must still be looked up above
/// `PASSIVE_LEVEL`.
pub(crate) fn secure_ex(
    address: usize,
    len: usize,
    mode: u32,
    flags: u32,
) -> Result<sys::HANDLE, Error> {
    let routine = secure_ex_routine()?.ok_or(Error::Unavailable)?;
    // SAFETY: as for `secure`; `routine` is the kernel's own `MmSecureVirtualMemoryEx`.
    Ok(unsafe { routine(address as sys::PVOID, len as sys::SIZE_T, mode, flags) })
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
/// The look-up runs at `PASSIVE_LEVEL` only (`MmGetSystemRoutineAddress`'s contract): above it,
/// with nothing cached, this is [`Error::IrqlTooHigh`] and the kernel is not called.
fn secure_ex_routine() -> Result<Option<sys::PFN_MM_SECURE_VIRTUAL_MEMORY_EX>, Error> {
    let mut found = SECURE_EX.load(Ordering::Acquire);
    if found.is_null() {
        // `MmGetSystemRoutineAddress` runs at PASSIVE_LEVEL only.
        require_irql(sys::PASSIVE_LEVEL)?;
        let mut name = SECURE_EX_NAME;
        let mut string = sys::UNICODE_STRING {
            Length: (name.len() * 2) as u16,
            MaximumLength: (name.len() * 2) as u16,
            Buffer: name.as_mut_ptr(),
        };
        // SAFETY: `string` is a valid UNICODE_STRING over `name`, which outlives the call.
        found = unsafe { sys::MmGetSystemRoutineAddress(&mut string) };
        if found.is_null() {
            return Ok(None);
        }
        SECURE_EX.store(found, Ordering::Release);
    }
    // SAFETY: the kernel answered this name with the address of `MmSecureVirtualMemoryEx`, whose
    // type `PFN_MM_SECURE_VIRTUAL_MEMORY_EX` spells; a function pointer is a data pointer's size.
    Ok(Some(unsafe {
        core::mem::transmute::<*mut c_void, sys::PFN_MM_SECURE_VIRTUAL_MEMORY_EX>(found)
    }))
}

/// Whether this Windows has `MmSecureVirtualMemoryEx`, which
/// [`SecureRegion::with_flags`](crate::SecureRegion::with_flags) needs.
///
/// The first call looks the routine up with `MmGetSystemRoutineAddress`, which must run at
/// `PASSIVE_LEVEL`; a driver that first uses flags at `APC_LEVEL` calls this from `DriverEntry`.
/// Above `PASSIVE_LEVEL`, before any look-up has found the routine, this answers `false`
/// without calling the kernel (and [`SecureRegion::with_flags`](crate::SecureRegion::with_flags)
/// returns [`Error::IrqlTooHigh`]). Off Windows the host backend answers by its configured
/// Windows build.
///
/// ```
/// // The host backend models a current Windows by default.
/// assert!(mmsecure::secure_ex_available());
/// ```
#[must_use]
pub fn secure_ex_available() -> bool {
    matches!(secure_ex_routine(), Ok(Some(_)))
}
