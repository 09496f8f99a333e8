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
//!    ([`request::copy_request`]: secure, copy out, drop the secure) twice: with
//!    `SecureFlags::NO_CHANGE` (the flags path, `MmSecureVirtualMemoryEx`) and with no flags
//!    (`MmSecureVirtualMemory`); each copy is compared with the pattern;
//! 5. exercises the exception guard ([`guard`], issue #9) on that page: a guarded copy after
//!    making it `PAGE_NOACCESS` (an access violation, caught), the same copy after making it
//!    read-write again, and a guarded call into `MmSecureVirtualMemory`, which raises under Wine;
//! 6. times guarded against unguarded copies of 4 KiB and 64 KiB between two 64 KiB user
//!    buffers;
//! 7. reports that it is done and returns `STATUS_SUCCESS` whatever the steps returned (Wine
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
//! One step calls the stub on purpose, under `mmsecure_sys::call_guarded` (issue #9): the
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
#![no_std]
#![deny(unsafe_op_in_unsafe_fn, missing_docs)]
#![warn(clippy::undocumented_unsafe_blocks)]

pub mod guard;
pub mod ntoskrnl;
pub mod report;
pub mod request;
pub mod user_buffer;
pub mod wine;

use core::panic::PanicInfo;

use mmsecure::{ProbeMode, SecureFlags, SecureRegion};
use mmsecure_sys::UNICODE_STRING;

use ntoskrnl::{DriverObject, KeBugCheckEx, NTSTATUS, STATUS_SUCCESS};
use request::{copy_request, error_name, Request, REQUEST_LEN};
use user_buffer::UserBuffer;

/// The pattern the driver puts in the user buffer and expects back from each copy.
const PATTERN: Request = pattern();

const fn pattern() -> Request {
    let mut bytes = [0u8; REQUEST_LEN];
    let mut i = 0;
    while i < REQUEST_LEN {
        bytes[i] = (i as u8).wrapping_mul(37).wrapping_add(11);
        i += 1;
    }
    bytes
}

/// The driver's entry point, called once by the I/O manager when the service starts.
///
/// # Safety
///
/// Called by the kernel only, at `PASSIVE_LEVEL`, with a valid driver object.
#[no_mangle]
pub unsafe extern "system" fn DriverEntry(
    driver: *mut DriverObject,
    _registry_path: *mut UNICODE_STRING,
) -> NTSTATUS {
    report::flag("DriverEntry", true);
    // SAFETY: the kernel passes a valid driver object that the driver may set up until
    // DriverEntry returns.
    unsafe { (*driver).driver_unload = Some(driver_unload) };

    let under_wine = wine::under_wine();
    report::flag("UnderWine", under_wine);

    refuse_bad_ranges();

    let ex_available = mmsecure::secure_ex_available();
    report::flag("SecureExAvailable", ex_available);

    report::address("HighestUserAddress", mmsecure::highest_user_address());
    process_reference();

    match UserBuffer::allocate(4096) {
        Ok(buffer) => {
            report::outcome("UserBuffer", "Ok");
            buffer.fill(&PATTERN);
            // Under Wine a found Ex routine could only be a raising stub: skip it rather than
            // call it. Wine 8 has none, and this path reaches `Err(Unavailable)`.
            if under_wine && ex_available {
                report::outcome("FlagsSecureCopy", "Skipped(Wine)");
            } else {
                secure_copy("FlagsSecureCopy", &buffer, SecureFlags::NO_CHANGE);
            }
            // Wine's MmSecureVirtualMemory raises: see the crate docs.
            if under_wine {
                report::outcome("SecureCopy", "Skipped(Wine)");
            } else {
                secure_copy("SecureCopy", &buffer, SecureFlags::empty());
            }
            guard::copy_from_no_access_page(&buffer);
            guard::call_raising_stub(&buffer);
        }
        Err(status) => report::outcome("UserBuffer", Failed(status).text(&mut [0; 24])),
    }

    match (UserBuffer::allocate(65536), UserBuffer::allocate(65536)) {
        (Ok(from), Ok(to)) => guard::time_copies(&from, &to),
        (Err(status), _) | (_, Err(status)) => {
            report::outcome("TimingBuffers", Failed(status).text(&mut [0; 24]))
        }
    }

    report::flag("DriverEntryDone", true);
    STATUS_SUCCESS
}

/// The unload routine: nothing to release (every region and buffer was dropped in DriverEntry);
/// reports that it ran.
///
/// # Safety
///
/// Called by the kernel only, at `PASSIVE_LEVEL`.
unsafe extern "system" fn driver_unload(_driver: *mut DriverObject) {
    report::flag("Unloaded", true);
}

/// Hands mmsecure ranges it must refuse by itself, and reports each error.
fn refuse_bad_ranges() {
    let bad: [(&str, usize, usize); 4] = [
        ("BadNullAddress", 0, 16),
        // A user address, but nothing to secure.
        ("BadZeroLength", 0x1_0000, 0),
        // KUSER_SHARED_DATA's kernel-mode address.
        ("BadKernelAddress", 0xFFFF_F780_0000_0000, 16),
        // Ends past the top of the address space.
        ("BadOverflow", usize::MAX - 7, 16),
    ];
    for (name, address, len) in bad {
        match SecureRegion::new(address as *const u8, len, ProbeMode::ReadOnly) {
            Ok(region) => {
                // Not expected; drop what the kernel secured and say so.
                drop(region);
                report::outcome(name, "Ok");
            }
            Err(error) => report::outcome(name, error_name(error)),
        }
    }
}

/// Takes and drops a reference on the current process, as every `SecureRegion` does
/// (`ObfReferenceObject` when made, `ObfDereferenceObject` when dropped), and reports
/// `ProcessReference: Ok` once both returned. Under Wine, where no secure succeeds, this is how
/// the two imports get called. Their return values (the new counts on Windows) are not
/// reported: Wine 8's versions return nothing.
fn process_reference() {
    // SAFETY: callable at any IRQL; the current process is live while this thread runs in it.
    let process = unsafe { mmsecure_sys::IoGetCurrentProcess() };
    // SAFETY: a live process object, at PASSIVE_LEVEL.
    unsafe { mmsecure_sys::ObfReferenceObject(process.cast()) };
    // SAFETY: the reference taken just above, given up once.
    unsafe { mmsecure_sys::ObfDereferenceObject(process.cast()) };
    report::outcome("ProcessReference", "Ok");
}

/// Runs [`copy_request`] on `buffer` and reports the outcome under `name`.
fn secure_copy(name: &str, buffer: &UserBuffer, flags: SecureFlags) {
    let text = match copy_request(buffer.as_ptr(), buffer.len(), flags) {
        Ok(copy) if copy == PATTERN => "Ok",
        Ok(_) => "Mismatch",
        Err(error) => error_name(error),
    };
    report::outcome(name, text);
}

/// A failed NTSTATUS, reported as `Failed(0xC0000017)`.
struct Failed(NTSTATUS);

impl Failed {
    fn text<'a>(&self, out: &'a mut [u8; 24]) -> &'a str {
        const HEX: &[u8; 16] = b"0123456789ABCDEF";
        let prefix = b"Failed(0x";
        out[..prefix.len()].copy_from_slice(prefix);
        let status = self.0 as u32;
        for i in 0..8 {
            out[prefix.len() + i] = HEX[((status >> (28 - 4 * i)) & 0xF) as usize];
        }
        out[prefix.len() + 8] = b')';
        // Only ASCII was written.
        core::str::from_utf8(&out[..prefix.len() + 9]).unwrap_or("Failed")
    }
}

/// A panic stops the system, as any fault in kernel code would: there is no one to unwind to.
#[panic_handler]
fn panic(_info: &PanicInfo) -> ! {
    // SAFETY: KeBugCheckEx may be called at any IRQL and never returns.
    unsafe { KeBugCheckEx(BUGCHECK_RUST_PANIC, 0, 0, 0, 0) }
}

/// The bug check code of a panic: "MSEC" in ASCII, not one of Microsoft's codes.
const BUGCHECK_RUST_PANIC: u32 = 0x4D53_4543;
