//! The Windows build the model pretends to be, which decides what `MmGetSystemRoutineAddress`
//! finds.

use core::sync::atomic::{AtomicU32, Ordering};

/// Windows 10 1809 (10.0.17763), the first with `MmSecureVirtualMemoryEx` (HEADER: under
/// `NTDDI_WIN10_RS5`).
pub const FIRST_BUILD_WITH_SECURE_EX: u32 = 17763;

/// The build modelled unless a test says otherwise: Windows 11 23H2.
pub const DEFAULT_WINDOWS_BUILD: u32 = 22631;

static BUILD: AtomicU32 = AtomicU32::new(DEFAULT_WINDOWS_BUILD);

/// Sets the Windows build the model runs as, for every thread of this binary.
///
/// Below [`FIRST_BUILD_WITH_SECURE_EX`] `MmGetSystemRoutineAddress` does not find
/// `MmSecureVirtualMemoryEx`, and calling it directly stops the binary (a driver that imports it
/// would not load there). The setting is global: a test that changes it belongs in a test file
/// of its own, as its only test.
///
/// ```
/// use mmsecure_sys::host::{set_windows_build, windows_build};
///
/// let before = windows_build();
/// set_windows_build(17134); // Windows 10 1803
/// assert_eq!(windows_build(), 17134);
/// set_windows_build(before);
/// ```
pub fn set_windows_build(build: u32) {
    BUILD.store(build, Ordering::SeqCst);
}

/// The Windows build the model runs as ([`DEFAULT_WINDOWS_BUILD`] unless set).
pub fn windows_build() -> u32 {
    BUILD.load(Ordering::SeqCst)
}
