//! ARM64 Windows: `KeGetCurrentIrql` is an import, because that is what `wdm.h` makes it there.
//!
//! The WDK's `wdm.h` (Microsoft's published copy: microsoft/wdkmetadata,
//! `generation/WDK/IdlHeaders/km/wdm.h`, SDK 10.0.26100) has an inline version only for x64,
//! and only under `NT_INLINE_GET_CURRENT_IRQL` (`return (KIRQL)ReadCR8();`). For ARM64 it
//! declares, in the section `#if defined(_ARM64_) && !defined(MIDL_PASS)` headed "Platform
//! specific kernel functions to raise and lower IRQL":
//!
//! ```c
//! _IRQL_requires_max_(HIGH_LEVEL)
//! _IRQL_saves_
//! NTHALAPI
//! KIRQL
//! KeGetCurrentIrql (
//!     VOID
//!     );
//! ```
//!
//! and `NTHALAPI` is `DECLSPEC_IMPORT` for a driver (`#if !defined(_NTHALDLL_) &&
//! !defined(_BLDR_) && !defined(_NTHALLIB_)`): an import from the HAL, `hal.dll`, which is also
//! how the same header declares it for x86 ("On x86 this function resides in the HAL"). The
//! header's ARM64 section does define `KIPCR()` (TPIDR_EL1 with the low 12 bits masked) and reads
//! the processor index inline with `__readx18dword(0x9a4)`, but it reads no IRQL from the PCR:
//! the PCR's layout is not part of the interface, the export is. So this crate imports it, as a
//! C driver built with the WDK does, and reads nothing from the PCR itself.
//!
//! `NTAPI` is the default (AAPCS64) convention on ARM64, Rust's `"system"` there. The import
//! library: the WDK's `hal.lib` for ARM64 in a WDK build; `cargo xtask driver --target
//! aarch64-pc-windows-msvc` makes one from a `.def` file with `llvm-dlltool -m arm64`.

use crate::KIRQL;

#[link(name = "hal")]
extern "system" {
    /// Returns the current IRQL: `KeGetCurrentIrql`, exported by the HAL on ARM64 (wdm.h:
    /// `NTHALAPI`). Callable at any IRQL (`_IRQL_requires_max_(HIGH_LEVEL)`).
    pub fn KeGetCurrentIrql() -> KIRQL;
}
