//! The host backend: an in-process model of the Windows memory manager's secure semantics, so
//! that code calling `MmSecureVirtualMemory` and friends builds, runs and is tested as an
//! ordinary program: off Windows, and on Windows with the crate's `host` feature (a driver's
//! tests; see the guide's `docs/testing.md`).
//!
//! There, this module defines every routine the crate declares (`MmSecureVirtualMemory`,
//! `MmSecureVirtualMemoryEx`, `MmUnsecureVirtualMemory`, `MmGetSystemRoutineAddress`,
//! `IoGetCurrentProcess`) under its own unmangled name, so the very declarations a driver calls
//! on Windows link to the model. `KeGetCurrentIrql` (inline in the headers) is a plain function.
//!
//! The model has:
//!
//! - simulated user processes ([`Process`]), each with an address space of allocations
//!   (reserve, commit, a protection per page, mapped views), backed by real, zeroed,
//!   page-aligned memory the model owns, so a driver's copies touch real bytes;
//! - per thread, a current process ([`Process::attach`], like `KeStackAttachProcess`; none means
//!   the System process, which has no user memory) and a current IRQL ([`raise_irql`]);
//! - the user-mode operations a driver races against ([`Process::protect`],
//!   [`Process::decommit`], [`Process::free`], [`Process::unmap_view`], [`Process::fork`],
//!   [`Process::exit`], ...), which is where a secure's refusals show;
//! - process objects: `EPROCESS` values reference counted (`ObfReferenceObject`,
//!   `ObfDereferenceObject`, every [`Process`] value) and reused once freed;
//! - a record of misuse ([`Misuse`]) that the kernel would tolerate silently;
//! - the Windows build ([`set_windows_build`]) `MmGetSystemRoutineAddress` answers by;
//! - a double-fetch detector ([`Process::double_fetches`], [`Process::begin_request`]): the
//!   model sees every guarded read of user memory and reports bytes a driver read twice within
//!   one request;
//! - a guarded copy ([`copy_guarded`](crate::copy_guarded)) that checks the current process's
//!   pages as the MMU would and returns the exception's code as the Windows one does, faults a
//!   test injects into pages ([`Process::inject_fault`]), and raises ([`raise_exception`]) that
//!   [`call_guarded`](crate::call_guarded) catches.
//!
//! ```
//! use mmsecure_sys::host::{AccessMode, Process, PAGE_READONLY, PAGE_READWRITE, PAGE_SIZE};
//! use mmsecure_sys::{MmSecureVirtualMemory, MmUnsecureVirtualMemory};
//!
//! // A user process hands the driver a buffer.
//! let app = Process::new();
//! let buffer = app.allocate(2 * PAGE_SIZE, PAGE_READWRITE).unwrap();
//! app.write(buffer, b"request").unwrap();
//!
//! // The driver runs in the app's context (it is called on the app's thread, or attaches).
//! let _in_app = app.attach();
//! // SAFETY: the routine validates the range itself; it returns NULL if it will not secure it.
//! let handle = unsafe { MmSecureVirtualMemory(buffer.cast(), 2 * PAGE_SIZE as u64, PAGE_READWRITE) };
//! assert!(!handle.is_null());
//!
//! // The user can no longer free the buffer or make it read-only...
//! assert!(app.free(buffer, AccessMode::User).is_err());
//! assert!(app.protect(buffer, PAGE_SIZE, PAGE_READONLY, AccessMode::User).is_err());
//! // ...but can still change its bytes: copy once, validate the copy.
//! app.write(buffer, b"REQUEST").unwrap();
//! let mut copy = [0u8; 7];
//! // SAFETY: the range is secured read-write in the current process, so it is committed and
//! // readable; the model's memory is real.
//! unsafe { core::ptr::copy_nonoverlapping(buffer, copy.as_mut_ptr(), 7) };
//! assert_eq!(&copy, b"REQUEST");
//!
//! // SAFETY: the handle is live and this thread is in the process that secured it.
//! unsafe { MmUnsecureVirtualMemory(handle) };
//! assert!(app.free(buffer, AccessMode::User).is_ok());
//! assert!(app.misuses().is_empty());
//! ```
//!
//! # The rules, and where each comes from
//!
//! Sources: **DOCS** Microsoft's reference pages for the three routines; **HEADER** the WDK's
//! `ntddk.h`; **WRK** the Windows Research Kernel's `base/ntos/mm`; **DECOMP** a decompiled
//! modern build (weak provenance). Where they disagree, the model takes the **stricter** reading
//! and says so.
//!
//! | # | Rule | Source | Where sources disagree |
//! |---|---|---|---|
//! | 1 | A secure routine returns NULL, never raises, for: zero size; `Address + Size` wrapping or above [`HIGHEST_USER_ADDRESS`]; a range not inside one allocation; pages not committed; pages without the access `ProbeMode` asks; a thread in no process (System) or in an exited one. | WRK, DOCS | WRK mapview.c `MiSecureVirtualMemory`: L6093 (`Address + Size > MM_HIGHEST_USER_ADDRESS` or `Address + Size <= Address`: a zero size and a wrap are rejected, and so is a range ending at the highest user address itself); L6152-L6155, L6441-L6450 (one VAD); L6398-L6419 (the probe faults on uncommitted or inaccessible pages: NULL). The System process has no user VAD (`MiLocateAddress` finds none: NULL); an exited process: no WRK line (its VADs are gone), NULL taken. *Changed in issue #22*: the table said WRK accepts a zero size, which L6093 refutes; the end check was one byte kinder than L6093. |
//! | 2 | `PAGE_READONLY` needs every page readable; `PAGE_READWRITE` needs every page writable. A guard page is neither: the probe faults on it, and the fault takes its guard off (a second secure gets past it). `PAGE_EXECUTE` is not readable. A read-write probe writes each page: a copy-on-write page becomes private read-write. | WRK, DOCS | WRK mapview.c L6400-L6411: one read per page (read-only) or `ProbeForWrite` (ex/probe.c L116-L119, a read and a write back per page) under `try`, NULL on any fault (L6414-L6418); a guard page raises `STATUS_GUARD_PAGE_VIOLATION` and loses the guard (acceschk.c `MiAccessCheck` L160-L242). x86 reads execute-only pages (`MmReadWrite[MM_EXECUTE]` = 10, acceschk.c L42, L152); Microsoft documents such reads as faulting: the model takes **not readable**, for the probe and the copy. *Changed in issue #22*: the table said WRK treats guard pages by their base access; and the probe now consumes the guard and breaks copy-on-write as a real access does. |
//! | 3 | A `ProbeMode` other than `PAGE_READONLY` / `PAGE_READWRITE` gives NULL. | DECOMP (Ex), WRK | WRK mapview.c L6099 (`Probe = (ProbeMode == PAGE_READONLY)`) and L6400/L6410 treat every mode but `PAGE_READONLY` as read-write: the model **refuses** them, for both routines. |
//! | 4 | A secure of 64 KiB or more of private memory committed with its allocation, whose protection suits the probe and whose pages nobody has touched (no access, protection change, decommit or probe the model saw), is made **without a probe**: its pages stay untouched (see rule 24). Every other secure probes every page (rule 2). | WRK | WRK mapview.c `MiSecureVirtualMemory` L6125 (`Size >= 64 * 1024`), L6138/L6142 (`MemCommit`, private), L6157-L6171 (the VAD's protection: not no-access; read-only accepts up to `MM_EXECUTE_WRITECOPY`, execute-only included; read-write needs read-write or execute-read-write), L6372-L6375 (one non-zero PTE: the long way). A driver's raw-pointer access makes a page resident on Windows but is invisible to the model: such pages stay untouched, the reading worse for the driver. *Changed in issue #22*: the model always probed. Nothing is made resident either way. |
//! | 5 | `MmSecureVirtualMemoryEx` gives NULL if `Flags` has a bit outside `0xF`. | DECOMP, HEADER | No WRK source (WRK has no Ex routine). |
//! | 6 | The secure covers whole pages: start rounded down, end rounded up. | WRK | WRK mapview.c L6461-L6463; compared by page in protect.c L2707-L2708. |
//! | 7 | While a secure stands, a protection change overlapping its pages is refused with `STATUS_INVALID_PAGE_PROTECTION` if the new protection is a guard page, or below the probe mode's entry of WRK's `MmReadWrite` table: `PAGE_READWRITE` refuses no-access, read-only, execute, execute-read; `PAGE_READONLY` refuses no-access only, and allows execute-only (the pages are then unreadable to the model's copy). | DOCS, WRK | WRK protect.c `MiCheckSecuredVad` (called from `NtProtectVirtualMemory`, L545): L2714 (guard), L2720 (read-only: `MmReadWrite[mask] < 10`), L2726 (read-write: `< 11`); acceschk.c L42 (the table). DOCS list only `PAGE_NOACCESS`/`PAGE_READONLY`. *Changed in issue #22*: the model refused `PAGE_EXECUTE` under a read-only secure, kinder than WRK (issue #22's third hole). |
//! | 8 | Freeing an allocation (MEM_RELEASE) or unmapping a view while any secure stands anywhere on it, and decommitting pages a secure covers (any page of the allocation with `NO_CHANGE`), is refused with `STATUS_INVALID_PAGE_PROTECTION`; other pages of the allocation may be decommitted, and a decommit of size 0 is rule 25's. | WRK, DOCS | WRK freevm.c `NtFreeVirtualMemory` L315-L329 (MEM_RELEASE: the whole VAD), L333-L336 (MEM_DECOMMIT: the caller's range), umapview.c `MiUnmapViewOfSection` L199-L216 (the whole view); `MM_SECURE_DELETE_CHECK` is a change to no access (protect.c L2702), which every secure refuses. DOCS say the range cannot be "freed". *Changed in issue #12*: the model refused a decommit anywhere in the allocation; it now follows WRK. |
//! | 9 | `MM_SECURE_NO_CHANGE`: every protection change is refused, even to the same protection. | DOCS, HEADER | No WRK source (an Ex flag; WRK's `NoChange` VAD bit is set by every secure and means only "secured"). DOCS say "on the supplied view": the model applies it to the **whole allocation**, not only the secured pages; a commit over untouched pages (rule 24) passes it too, the reading worse for the driver. |
//! | 10 | `MM_SECURE_EXCLUSIVE`: NULL if any other secure stands on the allocation. | DOCS | No WRK source (an Ex flag). Whether a later plain secure may join an exclusive one is not documented; the kernel pins the VAD for it: the model **refuses** any later secure on that allocation. |
//! | 11 | `MM_SECURE_USER_MODE_ONLY`: the secure refuses only what [`AccessMode::User`] asks; kernel-mode changes and frees pass it. A kernel-mode free or unmap that passes such secures takes them with the allocation; unsecuring one afterwards stops the caller as `MEMORY_MANAGEMENT` (0x1A) would. | DOCS, HEADER, DECOMP | What happens to secures of an allocation removed from kernel mode is undocumented and not in WRK (no such flag); decompiled code suggests bug check 0x1A (weak provenance): the model takes that, the strict reading. *Changed in issue #22*: the model dropped them quietly, and the unsecure did nothing. |
//! | 12 | `MM_SECURE_NO_INHERIT`: a forked child's copy of the allocation is not secured; without it, the child's copy stays secured until the child exits. | DOCS | WRK forksup.c `MiCloneProcessAddressSpace` L850-L862 strips every secure from the child's VADs; modern DOCS imply inheritance: the model **inherits** without the flag. |
//! | 13 | One allocation holds any number of secures, each independent: unsecuring one leaves the others in force. | WRK | WRK mapview.c L6472-L6637 (one secure in the long VAD, more in a list), protect.c L2705-L2768 (each checked), mapview.c `MiUnsecureVirtualMemory` L6680 (removes one entry). |
//! | 14 | `MmUnsecureVirtualMemory` in the securing process restores everything its secure refused. | DOCS, WRK | WRK mapview.c `MiUnsecureVirtualMemory` L6680-L6810 (the entry goes; with the last one the VAD's `NoChange` is cleared, L6757-L6763, L6792-L6802). |
//! | 15 | `MmUnsecureVirtualMemory` with a handle that names no live secure of the current process (another process's handle, one unsecured already, a made-up value) or in the System process stops the caller as the bug check `MEMORY_MANAGEMENT` (0x1A) would. In a process that has exited it returns and records nothing: WRK mapview.c, `MiUnsecureVirtualMemory`, L6730-L6736 (`PS_PROCESS_FLAGS_VM_DELETED`: return). *Changed in issue #22*: it was a [`Misuse`] (`AfterExit`), which a pended-IRP worker racing the exit could not avoid. | DOCS, DECOMP, WRK | Modern builds bug check (DECOMP, weak provenance); WRK (mapview.c `MiUnsecureVirtualMemory`: returns when the address space is deleted, L6730-L6736, else decodes the handle, L6739-L6745) dereferences the handle under the wrong lock and frees a pool entry (a double unsecure is a double free): both fatal, so the model bug checks. *Changed in issue #12*: before, the model did nothing and recorded a misuse, kinder than either kernel. |
//! | 16 | Process exit drops all of its secures and refuses nothing. | WRK, DOCS | WRK procsup.c `MmCleanProcessAddressSpace` L2570: every VAD removed (`MiRemoveVad`, L2743) with no secure check. |
//! | 17 | Handles are opaque, never NULL, never an address (bits 52..64 are `0x5EC`, which no canonical address has), scrambled with a per-process cookie: meaningless in another process, where unsecuring one is rule 15's bug check. | DECOMP | No WRK source for the scrambling: WRK's handle is the secure entry's address or the long VAD's flags' address with the low bit set (mapview.c L6558, L6614, L6637). |
//! | 18 | Above `APC_LEVEL`, the secure routines stop the caller as the bug check `IRQL_NOT_LESS_OR_EQUAL` (0xA) would; `MmGetSystemRoutineAddress` does so above `PASSIVE_LEVEL`. | HEADER (`_IRQL_requires_max_`), DOCS | WRK mapview.c L6091 `PAGED_CODE()` (an assertion in checked builds only); the bug check has no WRK source: the modern one is taken. |
//! | 19 | `MmGetSystemRoutineAddress` finds the routines the model defines by their UTF-16 name (case-sensitive); before build 17763 (Windows 10 1809) not `MmSecureVirtualMemoryEx`. | HEADER (`NTDDI_WIN10_RS5`), DOCS | No WRK source. |
//! | 20 | Securing stops no user write to the bytes, makes nothing resident. | DOCS, WRK | WRK: no secure path locks a page; the large path (rule 4) does not even fault them in. |
//! | 21 | An `EPROCESS` is a counted object: every [`Process`] value and every `ObfReferenceObject` count; `ObfDereferenceObject` without a reference, or either routine on a pointer that names no live process object, stops the caller as `REFERENCE_BY_POINTER` (0x18) would; both need IRQL <= `DISPATCH_LEVEL`. When the last reference of both kinds is gone the object is freed, and the next new process gets its value, the most recently freed first: a pointer kept without a reference then names another process. No two live objects share a value. | WRK (object manager, not mm; no line the model follows), DOCS (`ObReferenceObject`) | Windows reuses the pool memory of a freed object at some point; the model reuses it at once, the stricter reading. *New in issue #12*: before, values were never reused. |
//! | 22 | The guarded copy checks each side that lies in the model's memory (user memory of any process, live or freed) against the **current** process, page by page in order: a byte not committed there with the access (read for the source, write for the destination) raises `STATUS_ACCESS_VIOLATION` (no-access, decommitted, freed, another process's, any in System or an exited process); a guard page raises `STATUS_GUARD_PAGE_VIOLATION` once and loses its guard; injected faults raise their code. The bytes before the first faulting byte are copied. The driver's own memory is not checked. | DOCS (`VirtualProtect`, guard pages), WRK (acceschk.c `MiAccessCheck` L152: a read below 10 or a write below 11 in `MmReadWrite` is an access violation; L160-L242: a guard page loses its guard and raises `STATUS_GUARD_PAGE_VIOLATION`) | Execute-only: rule 2. *New in issue #12*: before, the copy faulted only where a test injected a fault. |
//! | 23 | A guarded copy that touches user memory at IRQL >= `DISPATCH_LEVEL` stops the caller as `IRQL_NOT_LESS_OR_EQUAL` (0xA) would. | DOCS (paged memory at `DISPATCH_LEVEL`); no WRK mm line (the trap handler bug checks) | Windows bug checks only when the page is not resident; a user can make it so at will: the model treats every user page as not resident. *New in issue #12*. |
//! | 24 | A user's `MEM_COMMIT` ([`Process::commit`]) writes its protection into every page of the range that is untouched (rule 4's sense), reserved or decommitted, **with no secure check**: over a secure made by rule 4's large path it makes secured pages no-access. Touched pages whose protection differs go through rule 7's check; if it refuses, they keep their protection and the commit still succeeds. | WRK | WRK allocvm.c `NtAllocateVirtualMemory` L1941-L1991 (a zero or decommitted PTE gets `MI_WRITE_INVALID_PTE`, L1980/L1991, with no secure check), L2001-L2029 (`ChangeProtection`), L2091-L2103 (`MiProtectVirtualMemory` over the range, its status not returned). Whether modern Windows still has it is not known: the model lets the user do it (issue #22's first hole). *New in issue #22*: the model refused such a commit. |
//! | 25 | A user's `MEM_DECOMMIT` of size 0 at an allocation's base page decommits the whole allocation, secured pages included (not under `NO_CHANGE`, rule 9); size 0 elsewhere is `STATUS_FREE_VM_NOT_AT_BASE`. | WRK | WRK freevm.c `NtFreeVirtualMemory` L333-L336 checks with size 0; protect.c `MiCheckSecuredVad` L2679 (`End = Base + Size - 1`, one byte below the base) overlaps no secure (L2707-L2708); freevm.c L813-L821 then takes the whole VAD. Whether modern Windows still has it is not known: the model lets the user do it (issue #22's second hole). *New in issue #22*: the model rejected size 0. |
//! | 26 | [`Process::fail_pool_allocations`] makes the next secures that pass every check return NULL, as nonpaged pool exhaustion would. | WRK | WRK mapview.c L6481-L6486, L6576-L6580, L6601-L6605 (`ExAllocatePoolWithTag` for the long VAD or the secure entry; NULL: `Return1`). *New in issue #22*. |
//! | 27 | [`Attach`] and [`Irql`] guards must be dropped in the reverse order of their making: dropping an attach while a later one of the thread stands (or was leaked) stops the caller as `INVALID_PROCESS_DETACH_ATTEMPT` (0x6) would; an IRQL guard that would lower the IRQL to a level above the current one, as `IRQL_NOT_LESS_OR_EQUAL` (0xA) would. | WRK, DOCS | WRK ke/procobj.c `KeUnstackDetachProcess` L719-L724 bug checks 0x6 when the thread is not attached; the check that the `KAPC_STATE` is the latest has no WRK line (DOCS for bug check 0x6): taken. WRK inc/amd64.h `KeLowerIrql` L3186 only asserts; Driver Verifier bug checks 0xC4: the model stops the caller, naming 0xA. *New in issue #22*: both were accepted. |
//! | 28 | An attach by pointer ([`attach_eprocess`], `KeStackAttachProcess` as a worker calls it) takes no reference on the process. Dropping the last reference on the object while such an attach stands stops the caller, and so does an attach by a pointer that names no live object. | DOCS (`KeStackAttachProcess`, `ObDereferenceObject`) | No bug check of its own: Windows frees the `EPROCESS` under the attached thread and the detach uses freed memory; the model stops at the dereference, the earliest point. Attaches by [`Process::attach`] count as references (a test holds the `Process`). *New in issue #22*. |
//!
//! # Limits of the model
//!
//! - **Bug checks abort.** The routines are `extern "C"` and cannot unwind, so where the kernel
//!   would bug check (rules 15, 18, 21, 23, 27, strict-mode misuse, calling the Ex routine on a
//!   build without it), the model writes a message naming the bug check straight to the
//!   process's stderr (so it shows under `cargo test`'s output capture too) and aborts the
//!   binary. A test that expects one runs the code in a child process: [`assert_bug_check`].
//! - **Fork shares bytes.** The host cannot map two copies at one address: a forked child's
//!   allocations are at the parent's addresses over the parent's bytes. Its allocations,
//!   protections and secures are its own.
//! - **Memory is never returned early.** Freed allocations and an exited process' memory stay
//!   owned by the model until the last handle to every process mapping them is dropped, so a
//!   driver that copies from freed user memory with a raw pointer reads stale bytes instead of
//!   host memory in other use. The guarded copy checks pages (rule 22); a raw pointer access
//!   outside it is not checked against the model's protections: the host has no MMU to ask.
//! - **A raise returns.** [`raise_exception`] cannot unwind the `extern "C"` function that calls
//!   it; it records the code for the enclosing [`call_guarded`](crate::call_guarded) and returns.
//! - Large pages, AWE, working sets and paging are not modelled; in-page errors only as injected
//!   faults.

use std::sync::{Mutex, MutexGuard, RwLock, RwLockReadGuard, RwLockWriteGuard};

mod access;
mod attach_by_pointer;
mod bug_check;
mod fetch;
pub(crate) mod guard;
mod memory;
mod misuse;
mod object;
mod process;
mod protection;
mod routines;
mod secure;
mod slice_request;
mod status;
mod thread;
mod vad;
mod version;

pub use access::AccessMode;
pub use attach_by_pointer::{attach_eprocess, AttachByPointer};
pub use bug_check::{assert_bug_check, BUG_CHECK_CHILD_VAR, CHILD_RUNNER_VAR};
pub use fetch::{DoubleFetch, Fetch, RequestScope, MAX_FINDINGS};
pub use guard::raise_exception;
pub(crate) use misuse::abandoned;
pub use misuse::{misuses, Misuse, MisuseKind};
pub use process::Process;
pub use protection::{
    PAGE_EXECUTE, PAGE_EXECUTE_READ, PAGE_EXECUTE_READWRITE, PAGE_EXECUTE_WRITECOPY, PAGE_GUARD,
    PAGE_NOACCESS, PAGE_READONLY, PAGE_READWRITE, PAGE_WRITECOPY,
};
pub use routines::MmHighestUserAddress;
pub(crate) use slice_request::{request_begin, request_end, request_retain};
pub use status::{
    Status, STATUS_ACCESS_VIOLATION, STATUS_CONFLICTING_ADDRESSES, STATUS_FREE_VM_NOT_AT_BASE,
    STATUS_GUARD_PAGE_VIOLATION, STATUS_INVALID_PAGE_PROTECTION, STATUS_INVALID_PARAMETER,
    STATUS_IN_PAGE_ERROR, STATUS_MEMORY_NOT_ALLOCATED, STATUS_NOT_COMMITTED,
    STATUS_NOT_MAPPED_VIEW, STATUS_NO_MEMORY, STATUS_PROCESS_IS_TERMINATING,
    STATUS_UNABLE_TO_DELETE_SECTION,
};
pub use thread::{current_irql, raise_irql, Attach, Irql, KeGetCurrentIrql};
pub use version::{
    set_windows_build, windows_build, DEFAULT_WINDOWS_BUILD, FIRST_BUILD_WITH_SECURE_EX,
};

/// The page size of x64 and ARM64 Windows.
pub const PAGE_SIZE: usize = 4096;

/// The highest user-mode address (`MM_HIGHEST_USER_ADDRESS`) of 64-bit Windows 8.1 and later.
/// The model never hands out memory above it, and securing anything above it gives NULL.
#[cfg(target_pointer_width = "64")]
pub const HIGHEST_USER_ADDRESS: usize = 0x7FFF_FFFE_FFFF;

/// The highest user-mode address of 32-bit Windows without /3GB.
#[cfg(target_pointer_width = "32")]
pub const HIGHEST_USER_ADDRESS: usize = 0x7FFE_FFFF;

/// Locks a model mutex. A panic while one was held (a failed assertion in a test thread) leaves
/// the model's state consistent, since no operation panics halfway; so poisoning is ignored.
pub(crate) fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}

/// Reads a model `RwLock`, ignoring poisoning for the same reason as [`lock`].
pub(crate) fn lock_read<T>(rwlock: &RwLock<T>) -> RwLockReadGuard<'_, T> {
    rwlock
        .read()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}

/// Writes a model `RwLock`, ignoring poisoning for the same reason as [`lock`].
pub(crate) fn lock_write<T>(rwlock: &RwLock<T>) -> RwLockWriteGuard<'_, T> {
    rwlock
        .write()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}
