//! ARM64 (issue #16): the assembly shim that secures under `call_guarded`, and the counter the
//! timings read. Built and linked for `aarch64-pc-windows-msvc` and checked structurally by
//! `cargo xtask driver --check --target aarch64-pc-windows-msvc`; never run (no ARM64 Windows
//! machine here, and Wine's ARM64 build does not start under qemu-user).

use core::ffi::c_void;

// Secures the range in the `SecureCall` that x0 points to with `MmSecureVirtualMemory`
// (`PAGE_READONLY`) and stores the handle, as the x64 shim does. Assembly for the same reason:
// an exception may pass through it (Wine's stub raises), which is undefined behaviour through a
// Rust `extern "C"` frame and needs the frame described to the unwinder. The frame is chained
// (fp, lr) and keeps the context in x19, a nonvolatile register, which it saves and restores;
// the unwind codes say so (`save_fplr_x`, `save_reg`, `set_fp`). 32 bytes keep SP 16-aligned.
core::arch::global_asm!(
    ".text",
    ".p2align 2",
    ".globl sample_secure_in_guard",
    "sample_secure_in_guard:",
    ".seh_proc sample_secure_in_guard",
    "    stp x29, x30, [sp, #-32]!",
    ".seh_save_fplr_x 32",
    "    str x19, [sp, #16]",
    ".seh_save_reg x19, 16",
    "    mov x29, sp",
    ".seh_set_fp",
    ".seh_endprologue",
    "    mov x19, x0",
    "    ldr x1, [x0, #8]",
    // PAGE_READONLY (pinned by the static assertion in guard.rs).
    "    mov w2, #2",
    "    ldr x0, [x0]",
    "    bl MmSecureVirtualMemory",
    "    str x0, [x19, #16]",
    ".seh_startepilogue",
    "    ldr x19, [sp, #16]",
    ".seh_save_reg x19, 16",
    "    ldp x29, x30, [sp], #32",
    ".seh_save_fplr_x 32",
    ".seh_endepilogue",
    "    ret",
    ".seh_endproc",
);

extern "C" {
    /// The assembly above: `context` is a `*mut SecureCall`.
    pub(super) fn sample_secure_in_guard(context: *mut c_void);
}

/// The generic timer's virtual count (`CNTVCT_EL0`), after an `isb` so that it is not read early.
/// It counts at `CNTFRQ_EL0` (a fixed frequency, tens of MHz on current devices), not at the CPU
/// clock, so ARM64 tick counts are not comparable with x86_64's `rdtsc` ones. Readable at EL1
/// always, and from user mode where the kernel allows it (Windows does: its user-mode
/// `QueryPerformanceCounter` reads it).
pub(super) fn ticks() -> u64 {
    let count: u64;
    // SAFETY: `isb` and a read of the virtual counter have no effect beyond the register written.
    unsafe {
        core::arch::asm!(
            "isb",
            "mrs {}, cntvct_el0",
            out(reg) count,
            options(nomem, nostack, preserves_flags)
        );
    }
    count
}
