//! x86_64 Windows: the guarded copy and the guarded call, as assembly functions whose unwind
//! information names an exception handler, which is what `__try/__except` compiles to.
//!
//! Each function is written with `global_asm!` and the assembler's SEH directives (`.seh_proc`,
//! `.seh_pushreg`, `.seh_stackalloc`, `.seh_endprologue`, `.seh_handler NAME, @except`), so its
//! `.pdata`/`.xdata` entry carries `UNW_FLAG_EHANDLER` and a handler. When an exception is raised
//! while the function (or anything it calls) runs, the kernel's dispatcher walks the stack, reaches
//! this frame, and calls the handler. On that first (dispatch) pass the handler calls
//! `RtlUnwindEx` with this frame as the target and the function's landing label as the target
//! address: the frames above are unwound (no Rust destructor runs in them: their unwind
//! information has no handler that would run one), and execution resumes at the landing label
//! with RSP at this frame's body and RAX = the exception code, which the epilogue returns. That is
//! `__except (EXCEPTION_EXECUTE_HANDLER) { return GetExceptionCode(); }`.
//!
//! Why assembly rather than a C shim: see `docs/exceptions.md`. In short, the same source builds
//! with the GNU and the MSVC toolchains, with no C compiler, on the MSRV (1.63).

use core::arch::global_asm;

/// Faults during the copy are caught on this target.
pub(crate) const COPY_GUARDED: bool = true;

// The copy: `rsi`/`rdi` are nonvolatile in the Windows x64 ABI, so they are saved in the
// prologue (and described to the unwinder); the 40 bytes keep the frame like the call's. The
// body is the unguarded copy's one `rep movsb`. On a fault, `RtlUnwindEx` resumes at the landing
// label with RSP where the body left it and RAX = the code; the landing is the epilogue, which
// restores rsi/rdi from the stack whatever the copy left in them.
global_asm!(
    ".text",
    ".p2align 4",
    ".globl mmsecure_sys_copy_guarded",
    "mmsecure_sys_copy_guarded:",
    ".seh_proc mmsecure_sys_copy_guarded",
    "    push rsi",
    ".seh_pushreg rsi",
    "    push rdi",
    ".seh_pushreg rdi",
    "    sub rsp, 40",
    ".seh_stackalloc 40",
    ".seh_endprologue",
    "    mov rdi, rcx",
    "    mov rsi, rdx",
    "    mov rcx, r8",
    "    rep movsb",
    "    xor eax, eax",
    ".globl mmsecure_sys_copy_guarded_landing",
    "mmsecure_sys_copy_guarded_landing:",
    "    add rsp, 40",
    "    pop rdi",
    "    pop rsi",
    "    ret",
    ".seh_handler mmsecure_sys_copy_guarded_handler, @except",
    ".seh_endproc",
);

// The call: 32 bytes of home space for `f` plus 8 to align RSP to 16 at the call.
global_asm!(
    ".text",
    ".p2align 4",
    ".globl mmsecure_sys_call_guarded",
    "mmsecure_sys_call_guarded:",
    ".seh_proc mmsecure_sys_call_guarded",
    "    sub rsp, 40",
    ".seh_stackalloc 40",
    ".seh_endprologue",
    "    mov rax, rcx",
    "    mov rcx, rdx",
    "    call rax",
    "    xor eax, eax",
    ".globl mmsecure_sys_call_guarded_landing",
    "mmsecure_sys_call_guarded_landing:",
    "    add rsp, 40",
    "    ret",
    ".seh_handler mmsecure_sys_call_guarded_handler, @except",
    ".seh_endproc",
);

// The two landing labels are where `RtlUnwindEx` resumes, never a return address: under kernel
// shadow stacks (CET) the kernel may accept such a target only if the image's EH continuation
// table lists it (`docs/exceptions.md`, "Kernel shadow stacks"). The build script writes an object
// whose `.gehcont$y` section names both labels, for a driver linked with `/guard:ehcont`; this
// reference to the object's one defined symbol makes the linker load it from its archive.
extern "C" {
    /// An absolute symbol (value 0) of the build script's EH continuation object.
    static mmsecure_sys_ehcont_anchor: u8;
}

/// Keeps the reference to [`mmsecure_sys_ehcont_anchor`] in the object, so that every link of
/// this crate loads the EH continuation object.
#[used]
static EHCONT_ANCHOR: &u8 = {
    // SAFETY: only the symbol's address is taken, never read; the linker resolves it to the
    // absolute symbol the build script's object defines.
    unsafe { &mmsecure_sys_ehcont_anchor }
};

// The handler, `RtlUnwindEx` and the Rust side of the copy and the call: the same on both
// architectures.
#[path = "seh_handler.rs"]
mod handler;
pub(crate) use handler::{call_guarded, copy_from_user, copy_guarded, copy_to_user};
