//! The part of the exception guard that is the same on x64 and ARM64 Windows: the declarations
//! of the assembly functions (`seh.rs`, `seh_aarch64.rs`), `RtlUnwindEx`, the language-specific
//! handler their unwind data names, and the guarded copy and call over them.

use core::ffi::c_void;
use core::ptr;

use crate::NTSTATUS;

extern "C" {
    /// The assembly copy (`seh.rs`, `seh_aarch64.rs`): returns 0, or the code of an exception raised during the copy.
    fn mmsecure_sys_copy_guarded(dst: *mut u8, src: *const u8, len: usize) -> NTSTATUS;
    /// Where the copy resumes after a caught exception. Only its address is used.
    fn mmsecure_sys_copy_guarded_landing();
    /// The assembly call: returns 0, or the code of an exception raised during the call.
    fn mmsecure_sys_call_guarded(
        f: unsafe extern "C" fn(*mut c_void),
        context: *mut c_void,
    ) -> NTSTATUS;
    /// Where the call resumes after a caught exception. Only its address is used.
    fn mmsecure_sys_call_guarded_landing();
}

// Declared here by hand, not generated: `RtlUnwindEx` is in winnt.h (user mode's header), which
// mingw-w64's ntddk.h does not include, and its real parameter types (`CONTEXT`,
// `UNWIND_HISTORY_TABLE`) are large architecture-specific structures this crate only passes
// through. ntoskrnl.exe exports it (and mingw-w64's libntoskrnl.a lists it, as does Wine).
extern "system" {
    /// `RtlUnwindEx`: unwinds to `target_frame` and resumes at `target_ip` with the return
    /// register (RAX on x64, X0 on ARM64) =
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

/// The start of `EXCEPTION_RECORD` (winnt.h); the handler reads only these two fields, and only
/// through the pointer the dispatcher passes.
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
    // function with the stack pointer at its body; `landing` is the label there where its
    // epilogue starts, which needs nothing but that stack pointer. The record and context are the
    // dispatcher's. The code travels as the return value (RAX on x64, X0 on ARM64),
    // zero-extended: the landing returns its low 32 bits.
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
    // RtlUnwindEx does not return: it resumes at the landing label, discarding this handler's
    // frame and the dispatcher's (this frame holds nothing to drop). When it cannot unwind, it
    // raises an exception of its own (in the kernel, a bug check follows) rather than return.
    // The value below only completes the handler's signature.
    EXCEPTION_CONTINUE_SEARCH
}

/// Copies `len` bytes from `src` to `dst` with one `rep movsb`, and returns `STATUS_SUCCESS` (0);
/// or, when an exception is raised during the copy (an access violation, an in-page error),
/// returns its code with the bytes before the faulting one copied.
///
/// # Safety
///
/// See [`crate::copy_guarded`].
#[inline]
pub(crate) unsafe fn copy_guarded(dst: *mut u8, src: *const u8, len: usize) -> NTSTATUS {
    // SAFETY: the caller vouches for the ranges; the assembly function follows the Windows x64
    // calling convention and preserves every nonvolatile register, also when it returns a code.
    unsafe { mmsecure_sys_copy_guarded(dst, src, len) }
}

/// [`copy_guarded`] with `src` in user memory: on Windows the copy needs nothing more, since a
/// user address the current process has not mapped faults and the guard catches it.
///
/// # Safety
///
/// See [`crate::copy_from_user`].
#[inline(always)]
pub(crate) unsafe fn copy_from_user(dst: *mut u8, src: *const u8, len: usize) -> NTSTATUS {
    // SAFETY: the caller's contract, which is `copy_guarded`'s with the user side named.
    unsafe { copy_guarded(dst, src, len) }
}

/// [`copy_guarded`] with `dst` in user memory, as [`copy_from_user`].
///
/// # Safety
///
/// See [`crate::copy_to_user`].
#[inline(always)]
pub(crate) unsafe fn copy_to_user(dst: *mut u8, src: *const u8, len: usize) -> NTSTATUS {
    // SAFETY: the caller's contract, which is `copy_guarded`'s with the user side named.
    unsafe { copy_guarded(dst, src, len) }
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
    // SAFETY: the caller vouches for `f(context)`; the assembly function calls it with the
    // Windows x64 convention (home space, 16-byte aligned stack).
    unsafe { mmsecure_sys_call_guarded(f, context) }
}
