//! The driver's load configuration (`_load_config_used`, the PE's `IMAGE_LOAD_CONFIG_DIRECTORY64`),
//! which the EH continuation table hangs from (issue #23, `docs/exceptions.md`, "Kernel shadow
//! stacks"). x64 only: ARM64 has no CET.
//!
//! The linker fills in the `__guard_*` symbols: linked with `/guard:ehcont`, the table of EH
//! continuation targets (mmsecure-sys's landing labels) and its count, and `__guard_flags` with
//! `IMAGE_GUARD_EH_CONTINUATION_TABLE_PRESENT`; lld-link's `/guard:ehcont` also turns on Control
//! Flow Guard (`IMAGE_GUARD_CF_INSTRUMENTED`, a table of every function whose address the code
//! takes). Without `/guard`, all of them are 0. Nothing in a kernel-mode Rust toolchain provides
//! this structure: mingw-w64's CRT is not linked into a driver (`/nodefaultlib`), and Rust's
//! `core` has none. So each driver defines its own; mmsecure does not, as a second definition
//! would clash with the driver's.
//!
//! The two Control Flow Guard pointers point at no-op routines here, as the MSVC runtime's do
//! before the loader replaces them: this driver's code is not compiled with CFG checks and never
//! calls through them, but a loader that writes its check routines into an instrumented image
//! finds somewhere to write (an inference: what the kernel does with an image marked
//! CFG-instrumented whose pointers are null is not documented; test on a device).
//!
//! Offsets are those of `IMAGE_LOAD_CONFIG_DIRECTORY64` in the PE format specification ("Load
//! Configuration Layout"); `Size` is 320, the structure up to `GuardMemcpyFunctionPointer`.

core::arch::global_asm!(
    ".section .00cfg,\"dr\"",
    ".p2align 3",
    ".globl __guard_check_icall_fptr",
    "__guard_check_icall_fptr:",
    "    .quad sample_guard_check_icall_nop",
    ".globl __guard_dispatch_icall_fptr",
    "__guard_dispatch_icall_fptr:",
    "    .quad sample_guard_dispatch_icall_nop",
    ".section .rdata,\"dr\"",
    ".p2align 3",
    ".globl _load_config_used",
    "_load_config_used:",
    "    .long 320",
    // TimeDateStamp .. SEHandlerCount: nothing (no security cookie: Rust has no /GS).
    "    .fill 108, 1, 0",
    "    .quad __guard_check_icall_fptr", // 112 GuardCFCheckFunctionPointer
    "    .quad __guard_dispatch_icall_fptr", // 120 GuardCFDispatchFunctionPointer
    "    .quad __guard_fids_table",       // 128 GuardCFFunctionTable
    "    .quad __guard_fids_count",       // 136 GuardCFFunctionCount
    "    .long __guard_flags",            // 144 GuardFlags
    "    .fill 12, 1, 0",                 // 148 CodeIntegrity
    "    .quad __guard_iat_table",        // 160 GuardAddressTakenIatEntryTable
    "    .quad __guard_iat_count",        // 168 GuardAddressTakenIatEntryCount
    "    .quad __guard_longjmp_table",    // 176 GuardLongJumpTargetTable
    "    .quad __guard_longjmp_count",    // 184 GuardLongJumpTargetCount
    "    .fill 72, 1, 0",                 // 192 DynamicValueRelocTable .. VolatileMetadataPointer
    "    .quad __guard_eh_cont_table",    // 264 GuardEHContinuationTable
    "    .quad __guard_eh_cont_count",    // 272 GuardEHContinuationCount
    "    .fill 40, 1, 0",                 // 280 GuardXFG* .. GuardMemcpyFunctionPointer
    ".text",
    ".p2align 4",
    ".globl sample_guard_check_icall_nop",
    "sample_guard_check_icall_nop:",
    "    ret",
    ".globl sample_guard_dispatch_icall_nop",
    "sample_guard_dispatch_icall_nop:",
    "    jmp rax",
);
