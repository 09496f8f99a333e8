//! ARM64 Windows: the guarded copy and the guarded call, as assembly functions whose unwind data
//! names an exception handler, which is what `__try/__except` compiles to on ARM64.
//!
//! The design is the x64 one (`seh.rs`): each function is written with `global_asm!` and LLVM's
//! AArch64 COFF unwind directives (`.seh_proc`, `.seh_save_fplr_x`, `.seh_set_fp`,
//! `.seh_endprologue`, `.seh_startepilogue`/`.seh_endepilogue`, `.seh_handler NAME, @except`),
//! so that the linker gives it a `.pdata` entry pointing at an `.xdata` record with the X
//! (exception data present) bit set and our handler's RVA after the unwind codes. When an
//! exception is raised while the function (or anything it calls) runs, the dispatcher walks the
//! stack, reaches this frame and calls the handler; on that first (dispatch) pass the handler
//! calls `RtlUnwindEx` with this frame as the target and the function's landing label as the
//! target PC, and execution resumes there with SP at the function's body and X0 = the exception
//! code, which the epilogue returns.
//!
//! # Partial copies
//!
//! When the copy faults, the bytes before the faulting one have been copied and no byte from it
//! on: the same contract as x64's `rep movsb` (`crate::copy_guarded`). Why the loop keeps it:
//!
//! - A fault on normal memory (an access violation, an in-page error, a guard page) is decided
//!   per page: the page is mapped with the access, or it is not. No page is smaller than
//!   4 KiB (the smallest AArch64 translation granule, which Windows uses), and every larger page
//!   (a large page, or a 16 or 64 KiB granule) is made of whole aligned 4 KiB blocks, so two
//!   bytes of one aligned 4 KiB block fault alike.
//! - Each `ldp`/`stp` here touches 16 bytes inside one 4 KiB page of its side; where a block would
//!   cross a boundary of the source or of the destination, the loop moves single bytes until it
//!   no longer does. So every access that faults is one all of whose bytes fault: a faulting
//!   `ldp` loaded nothing (and nothing was stored for its block), a faulting `stp` stored nothing
//!   (no byte of a page that faults for writing can be written), and the bytes before it were
//!   copied by the accesses that completed.
//!
//! That a faulting store inside one unwritable page writes nothing is our reading of the MMU's
//! behaviour, not a sentence of the Arm manual; the loop's old form (a plain `ldp`/`stp` loop)
//! could leave up to 15 bytes before the faulting one uncopied, and the half of an `stp` that
//! straddled into a faulting page written. The cost is five instructions per 16 bytes, and at most
//! 15 single bytes at each boundary.
//!
//! **Never run.** This file is built, linked into the sample driver and checked structurally
//! (`cargo xtask driver --check --target aarch64-pc-windows-msvc`: the `.pdata`/`.xdata` entries,
//! the unwind codes against the prologue, the handler RVA), but no ARM64 Windows machine has run
//! it: see `docs/exceptions.md` for what a driver author must test on a device.
//!
//! # ABI facts this relies on, with their sources
//!
//! From Microsoft's "Overview of ARM64 ABI conventions"
//! (<https://learn.microsoft.com/cpp/build/arm64-windows-abi-conventions>):
//!
//! - x0-x7 carry the first eight integer arguments and x0 the integer result; x0-x17 are
//!   volatile (a callee may change them), so the copy works in x0-x4 only and saves nothing
//!   else.
//! - x19-x28 are nonvolatile, as are x29 (fp) and x30 (lr) and the low 64 bits of v8-v15 (d8-d15).
//!   Neither function writes x19-x28 or d8-d15 at all; fp and lr are saved by the prologue and
//!   restored by the epilogue, on the normal path and after a caught exception alike.
//! - x18 is the platform register: in kernel mode it points to the KPCR. Nothing here touches it.
//! - The stack stays 16-byte aligned at all times (Windows enables SP alignment checking): the
//!   one stack adjustment is the 16-byte `stp x29, x30, [sp, #-16]!`.
//! - x29 must point to the previous {x29, x30} pair on the stack (fast stack walks by ETW): the
//!   prologue chains the frame with `mov x29, sp`.
//! - Misaligned accesses to normal (cached) memory are handled by the hardware, so the copy's
//!   16-byte `ldp`/`stp` need no alignment; user memory is normal memory.
//!
//! From Microsoft's "ARM64 exception handling"
//! (<https://learn.microsoft.com/cpp/build/arm64-exception-handling>):
//!
//! - A `.pdata` record is two words: the function's start RVA, then either packed unwind data
//!   (low two bits non-zero) or the RVA of an `.xdata` record (low two bits 0). Packed data has no
//!   room for a handler, so a guarded function needs the `.xdata` form.
//! - The `.xdata` header's bit 20 (X) says exception data follows the unwind codes: the
//!   handler's RVA, then its data (none here).
//! - The unwind codes for this prologue are, in unwind order, `set_fp` (0xE1, `mov x29, sp`),
//!   `save_fplr_x` with Z = 1 (0x81, `stp x29, lr, [sp, #-16]!`) and `end` (0xE4). When an
//!   exception is taken in the body, the unwinder runs them from the first: it restores sp from
//!   x29, reloads fp and lr and pops the 16 bytes, which gives the caller's frame.
//! - Exception handlers get `(ExceptionRecord, EstablisherFrame, ContextRecord,
//!   DispatcherContext)` as on x64 (the `EXCEPTION_ROUTINE` type of winnt.h), and `RtlUnwindEx`
//!   takes the same arguments as on x64; on ARM64 it puts its `ReturnValue` in X0 of the context
//!   it resumes.

use core::arch::global_asm;

/// Faults during the copy are caught on this target (by design; never run on ARM64 hardware).
pub(crate) const COPY_GUARDED: bool = true;

// The copy: x0 = dst, x1 = src, x2 = len, all forward. Sixteen bytes at a time with a
// post-indexed `ldp`/`stp` of x3/x4 while neither the 16 source bytes nor the 16 destination
// bytes cross a 4 KiB boundary; a byte at a time (`ldrb`/`strb`) otherwise, and for the last
// fewer than 16. That keeps a faulting copy byte-exact, as `rep movsb` is on x64: faults come per
// page, and every access lies in one page of each side, so the access that faults is one whose
// every byte faults, and it changed nothing (see "Partial copies" in the module docs). Only
// volatile registers are written (x0-x5). On a fault, `RtlUnwindEx` resumes at the landing label
// with SP where the body left it (SP does not move in the body) and X0 = the code; the landing
// is the epilogue, which reloads fp and lr from the stack whatever the body left in the
// registers.
global_asm!(
    ".text",
    ".p2align 2",
    ".globl mmsecure_sys_copy_guarded",
    "mmsecure_sys_copy_guarded:",
    ".seh_proc mmsecure_sys_copy_guarded",
    "    stp x29, x30, [sp, #-16]!",
    ".seh_save_fplr_x 16",
    "    mov x29, sp",
    ".seh_set_fp",
    ".seh_endprologue",
    "    cbz x2, 4f",
    // The last offset in a page at which 16 bytes still fit: 0x1000 - 16.
    "    mov x5, #0xff0",
    "1:",
    "    cmp x2, #16",
    "    b.lo 3f",
    "    and x3, x0, #0xfff",
    "    and x4, x1, #0xfff",
    // Bytes if dst's offset in its page is above 0xff0, or else (`ls`) if src's is; `#2` (C set,
    // Z clear) makes `hi` hold when the first test already did.
    "    cmp x3, x5",
    "    ccmp x4, x5, #2, ls",
    "    b.hi 3f",
    "    ldp x3, x4, [x1], #16",
    "    stp x3, x4, [x0], #16",
    "    sub x2, x2, #16",
    "    cbnz x2, 1b",
    "    b 4f",
    "3:",
    "    ldrb w3, [x1], #1",
    "    strb w3, [x0], #1",
    "    subs x2, x2, #1",
    "    b.ne 1b",
    "4:",
    "    mov w0, #0",
    ".globl mmsecure_sys_copy_guarded_landing",
    "mmsecure_sys_copy_guarded_landing:",
    ".seh_startepilogue",
    "    ldp x29, x30, [sp], #16",
    ".seh_save_fplr_x 16",
    ".seh_endepilogue",
    "    ret",
    ".seh_handler mmsecure_sys_copy_guarded_handler, @except",
    // One word of handler data (unused): readers such as llvm-readobj 14 read one after the
    // handler's RVA, and stop with "Malformed unwind data" at the end of an object's .xdata.
    ".seh_handlerdata",
    ".long 0",
    ".text",
    ".seh_endproc",
);

// The call: x0 = f, x1 = context. `f(context)` is called with `blr`, the frame already chained
// and the stack 16-byte aligned. If `f` raises, the unwind restores every nonvolatile register
// `f` and its callees saved (their unwind data says where) before resuming at the landing.
global_asm!(
    ".text",
    ".p2align 2",
    ".globl mmsecure_sys_call_guarded",
    "mmsecure_sys_call_guarded:",
    ".seh_proc mmsecure_sys_call_guarded",
    "    stp x29, x30, [sp, #-16]!",
    ".seh_save_fplr_x 16",
    "    mov x29, sp",
    ".seh_set_fp",
    ".seh_endprologue",
    "    mov x2, x0",
    "    mov x0, x1",
    "    blr x2",
    "    mov w0, #0",
    ".globl mmsecure_sys_call_guarded_landing",
    "mmsecure_sys_call_guarded_landing:",
    ".seh_startepilogue",
    "    ldp x29, x30, [sp], #16",
    ".seh_save_fplr_x 16",
    ".seh_endepilogue",
    "    ret",
    ".seh_handler mmsecure_sys_call_guarded_handler, @except",
    // One word of handler data (unused): readers such as llvm-readobj 14 read one after the
    // handler's RVA, and stop with "Malformed unwind data" at the end of an object's .xdata.
    ".seh_handlerdata",
    ".long 0",
    ".text",
    ".seh_endproc",
);

// The handler, `RtlUnwindEx` and the Rust side of the copy and the call: the same on both
// architectures.
#[path = "seh_handler.rs"]
mod handler;
pub(crate) use handler::{call_guarded, copy_from_user, copy_guarded, copy_to_user};
