//! Knowing whether the driver runs under Wine, from inside the driver.
//!
//! Wine's `MmSecureVirtualMemory` and `MmUnsecureVirtualMemory` are stubs that raise
//! `EXCEPTION_WINE_STUB` (0x80000100) when called; unhandled, the raise kills `winedevice.exe`
//! and the driver with it. The sample therefore skips the real secure under Wine.
//!
//! A driver cannot ask ntdll's `wine_get_version`: it imports from ntoskrnl.exe only, and
//! `MmGetSystemRoutineAddress` searches ntoskrnl.exe's and hal.dll's exports only. But Wine's own
//! ntoskrnl.exe exports Wine-only routines that its `winedevice.exe` calls, among them
//! `wine_ntoskrnl_main_loop`, and its `MmGetSystemRoutineAddress` is a `GetProcAddress` on that
//! module. Windows' ntoskrnl.exe exports nothing named `wine_*`. So the lookup finds the routine
//! exactly when the driver runs under Wine. The address is never called.

use mmsecure::sys::{MmGetSystemRoutineAddress, UNICODE_STRING};

/// Whether ntoskrnl.exe exports `wine_ntoskrnl_main_loop`, that is, whether this is Wine.
///
/// Must run at `PASSIVE_LEVEL` (DriverEntry does), as `MmGetSystemRoutineAddress` requires.
pub fn under_wine() -> bool {
    let mut name = utf16(b"wine_ntoskrnl_main_loop");
    let bytes = (name.len() * 2) as u16;
    let mut string = UNICODE_STRING {
        Length: bytes,
        MaximumLength: bytes,
        Buffer: name.as_mut_ptr(),
    };
    // SAFETY: `string` is a valid UNICODE_STRING over `name`, which outlives the call; the
    // routine only reads it and returns an address or NULL.
    let found = unsafe { MmGetSystemRoutineAddress(&mut string) };
    !found.is_null()
}

/// ASCII to UTF-16, without a terminating NUL (a UNICODE_STRING carries its length).
fn utf16<const N: usize>(ascii: &[u8; N]) -> [u16; N] {
    let mut out = [0u16; N];
    for (to, from) in out.iter_mut().zip(ascii.iter()) {
        *to = u16::from(*from);
    }
    out
}
