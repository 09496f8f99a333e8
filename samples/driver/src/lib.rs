//! A sample Windows kernel driver that uses `mmsecure` as a driver author would, and reports what
//! every step returned.
//!
//! Built by `cargo xtask driver` (Debian's rustc 1.63 for `x86_64-pc-windows-gnu`, linked with
//! `rust-lld -flavor link` as a native-subsystem driver) into `target/driver/mmsecure_sample.sys`;
//! `cargo xtask wine` loads it as a kernel-driver service under Wine and checks the reports.
//! `cargo xtask driver --check --target aarch64-pc-windows-msvc` builds the ARM64 version
//! (rustup's toolchain, `rust-lld /machine:arm64`) and checks it structurally; it is never run
//! (issue #16; `guard/aarch64.rs` holds its assembly shim and timer).
//!
//! # What it does
//!
//! `DriverEntry`, in order:
//!
//! 1. reports that it runs, and whether it runs under Wine ([`wine::under_wine`]);
//! 2. hands mmsecure four bad ranges: a null address, a zero length, a kernel address and a range
//!    that wraps around the address space. mmsecure refuses each with its own error before any
//!    kernel routine is called;
//! 3. reports whether `MmSecureVirtualMemoryEx` exists ([`mmsecure::secure_ex_available`], a
//!    run-time lookup with `MmGetSystemRoutineAddress`, never a static import), the highest
//!    user address mmsecure checks ranges against (the kernel's exported `MmHighestUserAddress`),
//!    and takes and drops a reference on the current process as every region does
//!    (`ObfReferenceObject`, `ObfDereferenceObject`);
//! 4. allocates a page of user memory ([`user_buffer::UserBuffer`]), fills it with a known
//!    pattern as a user program would, and runs the code path a driver runs on a user's buffer
//!    ([`request::copy_request`]: secure, read a derived `#[repr(C)]` header and the payload with
//!    one reader, drop the secure) twice: with
//!    `SecureFlags::NO_CHANGE` (the flags path, `MmSecureVirtualMemoryEx`) and with no flags
//!    (`MmSecureVirtualMemory`); each copy is compared with the pattern;
//! 5. exercises the exception guard ([`guard`], issue #9) on that page: a guarded copy after
//!    making it `PAGE_NOACCESS` (an access violation, caught), the same copy after making it
//!    read-write again, and a guarded call into `MmSecureVirtualMemory`, which raises under Wine;
//! 6. checks the partial-copy contract (issue #23) on a real CPU: a guarded copy that starts 24
//!    bytes before a `PAGE_NOACCESS` page (reading) or a `PAGE_READONLY` page (writing) copies
//!    exactly those 24 bytes and touches nothing after them ([`guard::partial_copies`]);
//! 7. times guarded against unguarded copies of 4 KiB and 64 KiB between two 64 KiB user
//!    buffers;
//! 8. reports that it is done and returns `STATUS_SUCCESS` whatever the steps returned (Wine
//!    refuses any other status, and the reports carry the results).
//!
//! The unload routine reports that it ran. On Windows it runs when the service is stopped.
//!
//! # Reports
//!
//! Each step prints `mmsecure_sample: NAME: VALUE` with `DbgPrint` and writes value `NAME` under
//! `HKLM\System\CurrentControlSet\Services\mmsecure_sample` with `RtlWriteRegistryValue`
//! (`RTL_REGISTRY_SERVICES`), so the service must be named `mmsecure_sample`. Yes/no facts are
//! `REG_DWORD` 1/0; outcomes are `REG_SZ`: `Ok`, `Err(<mmsecure::Error variant>)`, `Mismatch`
//! (the copy differs from the pattern), `Skipped(Wine)`, or `Failed(0x<NTSTATUS>)`.
//!
//! | value | type | meaning |
//! |---|---|---|
//! | `DriverEntry` | dword | DriverEntry started |
//! | `UnderWine` | dword | the Wine-only export `wine_ntoskrnl_main_loop` was found |
//! | `BadNullAddress`, `BadZeroLength`, `BadKernelAddress`, `BadOverflow` | sz | what mmsecure returned for each bad range |
//! | `SecureExAvailable` | dword | `MmSecureVirtualMemoryEx` was found at run time |
//! | `UserBuffer` | sz | the user page was allocated |
//! | `FlagsSecureCopy` | sz | secure with `NO_CHANGE`, copy, drop |
//! | `SecureCopy` | sz | secure without flags, copy, drop |
//! | `GuardedCopyNoAccess` | dword | `copy_guarded` from the page made `PAGE_NOACCESS`: 0xC0000005 |
//! | `GuardedCopyRestored` | dword | the same copy once the page is read-write again: 0 |
//! | `GuardedSecureCall` | dword | `call_guarded` into `MmSecureVirtualMemory`: 0x80000100 under Wine, 0 on Windows |
//! | `PartialReadStatus`, `PartialWriteStatus` | dword | the partial copies' statuses: 0xC0000005 |
//! | `PartialReadPrefix`, `PartialWritePrefix` | dword | bytes copied before the faulting page: 24 |
//! | `PartialReadRestUntouched`, `PartialWriteRestUntouched` | dword | nothing after them changed: 1 |
//! | `Ticks4KGuarded`, `Ticks4KUnguarded`, `Ticks64KGuarded`, `Ticks64KUnguarded` | dword | time stamp counter ticks per copy, fastest of 9 runs |
//! | `DriverEntryDone` | dword | DriverEntry finished |
//! | `Unloaded` | dword | the unload routine ran |
//!
//! # Wine's raising stubs
//!
//! Wine 8's `MmSecureVirtualMemory` and `MmUnsecureVirtualMemory` are stubs that raise
//! `EXCEPTION_WINE_STUB`, which kills `winedevice.exe` when nothing handles it, and Rust has no
//! `__try`. The sample never calls them under Wine: it detects Wine in DriverEntry
//! ([`wine::under_wine`]: ntoskrnl.exe exports `wine_ntoskrnl_main_loop` there and nowhere else)
//! and then reports the no-flags secure as `Skipped(Wine)`. Everything else runs as on Windows:
//! the bad ranges never reach a kernel routine, and the flags path reaches only
//! `MmGetSystemRoutineAddress`, which finds no `MmSecureVirtualMemoryEx` in Wine 8, so
//! `SecureRegion::with_flags` returns `Err(Unavailable)`. Should a later Wine export the Ex
//! routine (as a stub or not), the sample skips the flags path too rather than call it.
//!
//! One step calls the stub on purpose, under `mmsecure::sys::call_guarded` (issue #9): the
//! exception comes back as its code, 0x80000100, and the driver goes on.
//!
//! # Release builds only
//!
//! `cargo xtask driver` builds, checks and tests the release profile, which is also what a
//! driver ships. Two things set debug builds apart:
//!
//! - mmsecure's debug assertions check the IRQL with `KeGetCurrentIrql`, which reads CR8, a
//!   privileged instruction. In a kernel that is fine. Under Wine the driver runs in user mode
//!   and the read faults; Wine's ntoskrnl.exe catches the fault in a vectored exception handler
//!   and emulates `mov reg, cr8` as 0 (`PASSIVE_LEVEL`), so a debug build happens to survive
//!   there (seen with `WINEDEBUG=trace+int`: `emulate_instruction mov cr8,rax`). Release builds
//!   compile the assertions out. `cargo xtask driver --check` decodes the driver's code and
//!   verifies that nothing in it writes CR8 (changes the IRQL); reads it counts, and allows.
//! - Debian's precompiled `core` is built to unwind, and without LTO its unwind tables name
//!   `rust_eh_personality`, which a `panic = "abort"` driver does not define: a debug build does
//!   not link as it stands. The release profile's LTO drops those tables.
//!
//! # On Windows
//!
//! The file is unsigned: load it on a test machine with test signing on, as a kernel service
//! named `mmsecure_sample` (`sc create mmsecure_sample type= kernel binPath= C:\...\mmsecure_sample.sys`,
//! `sc start`, `sc stop`), and read the values with `reg query`. There `SecureCopy` and, on
//! Windows 10 1809 and later, `FlagsSecureCopy` report `Ok`.
//!
//! # Tests
//!
//! The logic a driver author writes ([`request`]) is tested by `cargo test` against mmsecure's
//! host model, the way a driver's own tests would be: `mmsecure` is a dev-dependency with the
//! `host` feature, and the crate is `no_std` except in its test build. `cargo xtask
//! test-windows` runs these tests as a Windows program under Wine; `cargo xtask driver --check`
//! shows that the release driver still imports only from ntoskrnl.exe and has neither std nor
//! the model in it. Everything that talks to the kernel directly (the entry point, the reports,
//! the user buffer, the guard steps) is the driver's alone and is not built for tests.
#![cfg_attr(not(test), no_std)]
#![deny(unsafe_op_in_unsafe_fn, missing_docs)]
#![warn(clippy::undocumented_unsafe_blocks)]

// The seam between the driver and its tests: these modules call ntoskrnl.exe themselves.
#[cfg(not(test))]
mod entry;
#[cfg(not(test))]
pub mod guard;
#[cfg(all(not(test), target_arch = "x86_64"))]
mod load_config;
#[cfg(not(test))]
pub mod ntoskrnl;
#[cfg(not(test))]
pub mod pairs;
#[cfg(not(test))]
pub mod report;
pub mod request;
#[cfg(not(test))]
pub mod user_buffer;
#[cfg(not(test))]
pub mod wine;
