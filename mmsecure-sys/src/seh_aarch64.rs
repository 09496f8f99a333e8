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
use core::ffi::c_void;
use core::ptr;

use crate::NTSTATUS;

/// Faults during the copy are caught on this target (by design; never run on ARM64 hardware).
pub(crate) const COPY_GUARDED: bool = true;

// The copy: x0 = dst, x1 = src, x2 = len. Sixteen bytes at a time with a post-indexed
// `ldp`/`stp` of x3/x4, then the tail a byte at a time, all forward. Only volatile registers are
// written. On a fault, `RtlUnwindEx` resumes at the landing label with SP where the body left
// it (SP does not move in the body) and X0 = the code; the landing is the epilogue, which
// reloads fp and lr from the stack whatever the body left in the registers.
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
    "    subs x2, x2, #16",
    "    b.lo 2f",
    "1:",
    "    ldp x3, x4, [x1], #16",
    "    stp x3, x4, [x0], #16",
    "    subs x2, x2, #16",
    "    b.hs 1b",
    "2:",
    "    adds x2, x2, #16",
    "    b.eq 4f",
    "3:",
    "    ldrb w3, [x1], #1",
    "    strb w3, [x0], #1",
    "    subs x2, x2, #1",
    "    b.ne 3b",
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

extern "C" {
    /// The assembly copy above: returns 0, or the code of an exception raised during the copy.
    fn mmsecure_sys_copy_guarded(dst: *mut u8, src: *const u8, len: usize) -> NTSTATUS;
    /// Where the copy resumes after a caught exception. Only its address is used.
    fn mmsecure_sys_copy_guarded_landing();
    /// The assembly call above: returns 0, or the code of an exception raised during the call.
    fn mmsecure_sys_call_guarded(
        f: unsafe extern "C" fn(*mut c_void),
        context: *mut c_void,
    ) -> NTSTATUS;
    /// Where the call resumes after a caught exception. Only its address is used.
    fn mmsecure_sys_call_guarded_landing();
}

// Declared by hand for the reason given in `seh.rs`: winnt.h's declaration, whose `CONTEXT` and
// `UNWIND_HISTORY_TABLE` are architecture-specific structures this crate only passes through.
// ntoskrnl.exe exports it on ARM64 as on x64.
extern "system" {
    /// `RtlUnwindEx`: unwinds to `target_frame` and resumes at `target_ip` with X0 =
    /// `return_value`. Never returns to its caller when the unwind succeeds.
    fn RtlUnwindEx(
        target_frame: *mut c_void,
        target_ip: *mut c_void,
        exception_record: *mut ExceptionRecord,
        return_value: *mut c_void,
        context_record: *mut c_void,
        history_table: *mut c_void,
    );
}

/// The start of `EXCEPTION_RECORD` (winnt.h; the same on every architecture); the handler reads
/// only these two fields, and only through the pointer the dispatcher passes.
#[repr(C)]
struct ExceptionRecord {
    exception_code: u32,
    exception_flags: u32,
}

/// `EXCEPTION_UNWINDING`: the handler is called during an unwind, not to handle an exception.
const EXCEPTION_UNWINDING: u32 = 0x2;
/// `EXCEPTION_EXIT_UNWIND`: the handler is called during an exit unwind.
const EXCEPTION_EXIT_UNWIND: u32 = 0x4;
/// `ExceptionContinueSearch` (`EXCEPTION_DISPOSITION`): not handled here.
const EXCEPTION_CONTINUE_SEARCH: i32 = 1;

/// The handler of [`mmsecure_sys_copy_guarded`]'s frame (`EXCEPTION_ROUTINE`).
///
/// # Safety
///
/// Called by the exception dispatcher only, with the arguments it passes.
#[no_mangle]
unsafe extern "C" fn mmsecure_sys_copy_guarded_handler(
    record: *mut ExceptionRecord,
    establisher_frame: *mut c_void,
    context: *mut c_void,
    _dispatcher_context: *mut c_void,
) -> i32 {
    let landing = mmsecure_sys_copy_guarded_landing as unsafe extern "C" fn();
    // SAFETY: the dispatcher calls this with its own record, context and this frame.
    unsafe { handle(record, establisher_frame, context, landing as *mut c_void) }
}

/// The handler of [`mmsecure_sys_call_guarded`]'s frame (`EXCEPTION_ROUTINE`).
///
/// # Safety
///
/// Called by the exception dispatcher only, with the arguments it passes.
#[no_mangle]
unsafe extern "C" fn mmsecure_sys_call_guarded_handler(
    record: *mut ExceptionRecord,
    establisher_frame: *mut c_void,
    context: *mut c_void,
    _dispatcher_context: *mut c_void,
) -> i32 {
    let landing = mmsecure_sys_call_guarded_landing as unsafe extern "C" fn();
    // SAFETY: the dispatcher calls this with its own record, context and this frame.
    unsafe { handle(record, establisher_frame, context, landing as *mut c_void) }
}

/// What both handlers do: on the dispatch pass, unwind to `landing` in `establisher_frame` with
/// the exception code as the return value; on unwind passes (including the one this starts),
/// nothing.
///
/// # Safety
///
/// `record`, `establisher_frame` and `context` are what the dispatcher passed to a handler of the
/// function whose landing label is `landing`.
unsafe fn handle(
    record: *mut ExceptionRecord,
    establisher_frame: *mut c_void,
    context: *mut c_void,
    landing: *mut c_void,
) -> i32 {
    // SAFETY: the dispatcher's record is valid for the duration of the call; the two fields
    // read are plain integers at its start.
    let ExceptionRecord {
        exception_code: code,
        exception_flags: flags,
    } = unsafe { ptr::read(record) };
    if flags & (EXCEPTION_UNWINDING | EXCEPTION_EXIT_UNWIND) != 0 {
        return EXCEPTION_CONTINUE_SEARCH;
    }
    // SAFETY: `establisher_frame` is the dispatcher's value for the guarded function's frame,
    // which `RtlUnwindEx` compares with the frames it unwinds, so the unwind stops in that
    // function with SP at its body; `landing` is the label there where its epilogue starts,
    // which needs nothing but that SP. The record and context are the dispatcher's. The code
    // travels as the return value (X0), zero-extended: the landing returns W0.
    unsafe {
        RtlUnwindEx(
            establisher_frame,
            landing,
            record,
            code as usize as *mut c_void,
            context,
            ptr::null_mut(),
        );
    }
    // RtlUnwindEx does not return: it resumes at the landing label (see `seh.rs`). The value
    // below only completes the handler's signature.
    EXCEPTION_CONTINUE_SEARCH
}

/// Copies `len` bytes from `src` to `dst`, 16 bytes at a time and then byte by byte, and returns
/// `STATUS_SUCCESS` (0); or, when an exception is raised during the copy, returns its code with
/// the 16-byte blocks before the faulting one copied.
///
/// # Safety
///
/// See [`crate::copy_guarded`].
#[inline]
pub(crate) unsafe fn copy_guarded(dst: *mut u8, src: *const u8, len: usize) -> NTSTATUS {
    // SAFETY: the caller vouches for the ranges; the assembly function follows the ARM64
    // calling convention and preserves every nonvolatile register, also when it returns a code.
    unsafe { mmsecure_sys_copy_guarded(dst, src, len) }
}

/// Calls `f(context)` and returns `STATUS_SUCCESS` (0), or the code of an exception that `f`
/// raised and did not handle itself.
///
/// # Safety
///
/// See [`crate::call_guarded`].
#[inline]
pub(crate) unsafe fn call_guarded(
    f: unsafe extern "C" fn(*mut c_void),
    context: *mut c_void,
) -> NTSTATUS {
    // SAFETY: the caller vouches for `f(context)`; the assembly function calls it with the ARM64
    // convention (argument in x0, 16-byte aligned stack, chained frame).
    unsafe { mmsecure_sys_call_guarded(f, context) }
}
