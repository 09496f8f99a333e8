//! The kernel routines, defined under their own names so that the declarations in `bindings.rs`
//! (the same on every target) link to them off Windows.
//!
//! Each is `#[no_mangle] unsafe extern "C"` with exactly the parameters bindgen declares.

#![allow(non_snake_case)]

use core::slice;

use super::object;
use super::process::Unsecured;
use super::secure::{self, KNOWN_FLAGS};
use super::thread::{current_eprocess, current_fast, current_process, own_pid, require_irql, stop};
use super::version::{windows_build, FIRST_BUILD_WITH_SECURE_EX};
use super::HIGHEST_USER_ADDRESS;
use crate::{
    APC_LEVEL, DISPATCH_LEVEL, HANDLE, LONG_PTR, PAGE_READONLY, PAGE_READWRITE, PASSIVE_LEVEL,
    PEPROCESS, PUNICODE_STRING, PVOID, SIZE_T, ULONG,
};

/// `MmSecureVirtualMemory`: secures `Size` bytes at `Address` in the current process against
/// being freed or made more restrictive than `ProbeMode`; returns a handle for
/// `MmUnsecureVirtualMemory`, or NULL if it will not. See the rules in the module docs.
///
/// # Safety
///
/// None on the host: the model validates the range against its own bookkeeping and dereferences
/// nothing. It is `unsafe` because the kernel's routine is. Called above `APC_LEVEL` it stops the
/// binary with `IRQL_NOT_LESS_OR_EQUAL`.
#[no_mangle]
pub unsafe extern "C" fn MmSecureVirtualMemory(
    Address: PVOID,
    Size: SIZE_T,
    ProbeMode: ULONG,
) -> HANDLE {
    require_irql("MmSecureVirtualMemory", APC_LEVEL);
    secure(Address as usize, Size, ProbeMode, 0)
}

/// `MmSecureVirtualMemoryEx`: as `MmSecureVirtualMemory`, with `MM_SECURE_*` `Flags`; NULL if
/// `Flags` has a bit outside `0xF`.
///
/// # Safety
///
/// As for [`MmSecureVirtualMemory`]. Called while the model runs a Windows build before 17763,
/// which has no such routine, it stops the binary: a driver importing it would not have loaded.
#[no_mangle]
pub unsafe extern "C" fn MmSecureVirtualMemoryEx(
    Address: PVOID,
    Size: SIZE_T,
    ProbeMode: ULONG,
    Flags: ULONG,
) -> HANDLE {
    require_irql("MmSecureVirtualMemoryEx", APC_LEVEL);
    let build = windows_build();
    if build < FIRST_BUILD_WITH_SECURE_EX {
        stop(format_args!(
            "MmSecureVirtualMemoryEx called, but Windows build {build} has no such routine (it \
             needs {FIRST_BUILD_WITH_SECURE_EX}, Windows 10 1809): a driver importing it would \
             not load; look it up with MmGetSystemRoutineAddress instead"
        ));
    }
    if Flags & !KNOWN_FLAGS != 0 {
        return core::ptr::null_mut();
    }
    secure(Address as usize, Size, ProbeMode, Flags)
}

/// The checks both secure routines make before looking at the address space, then the secure.
fn secure(address: usize, size: SIZE_T, probe: ULONG, flags: ULONG) -> HANDLE {
    let size = match usize::try_from(size) {
        Ok(size) if size > 0 => size,
        _ => return core::ptr::null_mut(),
    };
    // mapview.c, MiSecureVirtualMemory, L6093: NULL if `Address + Size` wraps or is not above
    // `Address` (a zero size, rejected above too), or lies above `MM_HIGHEST_USER_ADDRESS`: a
    // range whose last byte is that address itself is refused, one byte stricter than "the
    // last byte must be user memory".
    match address.checked_add(size) {
        Some(end) if end <= HIGHEST_USER_ADDRESS => {}
        _ => return core::ptr::null_mut(),
    }
    // WRK treats every ProbeMode but PAGE_READONLY as read-write; the model refuses unknown
    // ones (the stricter reading, as modern builds' Ex does).
    if probe != PAGE_READONLY && probe != PAGE_READWRITE {
        return core::ptr::null_mut();
    }
    match current_process() {
        Some(process) => process.secure(address, size, probe, flags) as HANDLE,
        // The System process has no user address space.
        None => core::ptr::null_mut(),
    }
}

/// `MmUnsecureVirtualMemory`: ends the secure `SecureHandle` names, in the current process.
///
/// Where the kernel would bug check, the model stops the caller with a message naming
/// `MEMORY_MANAGEMENT` (0x1A): a handle that names no live secure of the current process (a
/// handle of another process, a second unsecure of one handle, a made-up value, a
/// `MM_SECURE_USER_MODE_ONLY` secure whose allocation a kernel-mode free or unmap removed), or a
/// call in the System process. In a process that has exited it returns and records nothing, as the
/// kernel returns once the address space is deleted (WRK mapview.c, `MiUnsecureVirtualMemory`).
///
/// # Safety
///
/// None on the host: a wrong handle stops the binary, it is never dereferenced. Called above
/// `APC_LEVEL` it stops the binary with `IRQL_NOT_LESS_OR_EQUAL`.
#[no_mangle]
pub unsafe extern "C" fn MmUnsecureVirtualMemory(SecureHandle: HANDLE) {
    require_irql("MmUnsecureVirtualMemory", APC_LEVEL);
    let handle = SecureHandle as usize;
    let process = match current_process() {
        Some(process) => process,
        None => stop(format_args!(
            "MEMORY_MANAGEMENT (bug check 0x1A, 0x15000): MmUnsecureVirtualMemory({handle:#x}) \
             in the System process, which has no user address space and no secure: unsecure in \
             the context of the process that secured the range"
        )),
    };
    match process.unsecure(handle) {
        // WRK mapview.c, MiUnsecureVirtualMemory, L6730-L6736: with the address space deleted
        // (`PS_PROCESS_FLAGS_VM_DELETED`) it unlocks and returns: exit freed the secure
        // entries already. A pended-IRP worker cannot close the race with the exit, so this
        // is no misuse either (issue #22).
        Unsecured::Done | Unsecured::Exited => {}
        // No WRK source: WRK has no MM_SECURE_USER_MODE_ONLY. Modern builds decode the handle
        // and find no secure entry, which went with the allocation (DECOMP, weak provenance):
        // the strict reading, a bug check, as for any handle that names no live secure.
        Unsecured::Orphaned => stop(format_args!(
            "MEMORY_MANAGEMENT (bug check 0x1A, 0x15000): MmUnsecureVirtualMemory({handle:#x}) \
             in process {}: this MM_SECURE_USER_MODE_ONLY secure went with its allocation, \
             which a kernel-mode free or unmap removed; the kernel finds no secure to end",
            process.id()
        )),
        Unsecured::NotHere => {
            let why = match secure::owner(handle) {
                Some(owner) if owner.pid != process.id() => {
                    std::format!("a handle issued in process {}", owner.pid)
                }
                _ => std::string::String::from(
                    "a handle that names no live secure (never issued, or unsecured already)",
                ),
            };
            stop(format_args!(
                "MEMORY_MANAGEMENT (bug check 0x1A, 0x15000): MmUnsecureVirtualMemory({handle:#x}) \
                 in process {} with {why}: the kernel decodes the handle with the current \
                 process and finds no secure there",
                process.id()
            ))
        }
    }
}

/// `IoGetCurrentProcess`: the `EPROCESS` of the process this thread is attached to, or of the
/// System process. Fake addresses, never dereferenced.
///
/// # Safety
///
/// None on the host.
#[no_mangle]
pub unsafe extern "C" fn IoGetCurrentProcess() -> PEPROCESS {
    current_eprocess().unwrap_or_else(object::system_eprocess)
}

/// `PsGetCurrentProcessId`: the id of the process that owns the current thread, whatever process
/// it is attached to (WRK ps/create.c L2387-L2390: the thread's `Cid.UniqueProcess`, set from its
/// process at creation, L411). On a thread of the test binary that is System's, 4; on one that
/// [`Process::run_thread`](super::Process::run_thread) made, that process's id.
///
/// # Safety
///
/// None on the host.
#[no_mangle]
pub unsafe extern "C" fn PsGetCurrentProcessId() -> HANDLE {
    pid_handle(own_pid())
}

/// `PsGetProcessId`: the id of the process `Process` names (WRK ps/pshelper.c L158-L162, its
/// `UniqueProcessId`). An id stays the process's until its object is deleted (ps/psdelete.c
/// `PspProcessDelete` L1594-L1595 frees it there), so two live processes never share one.
///
/// # Safety
///
/// `Process` names a live process object. The model stops the binary for one that names none:
/// the kernel would read freed pool (`PAGE_FAULT_IN_NONPAGED_AREA`, 0x50, or a stale id).
#[no_mangle]
pub unsafe extern "C" fn PsGetProcessId(Process: PEPROCESS) -> HANDLE {
    // The common call, on the current process: read from the thread's context, no lock.
    let current = current_fast();
    if current.eprocess == Process as usize && current.eprocess != 0 {
        return current.pid as usize as HANDLE;
    }
    process_id_elsewhere(Process)
}

/// `PsGetProcessId` of a process other than the current one: from the object table.
#[cold]
#[inline(never)]
fn process_id_elsewhere(process: PEPROCESS) -> HANDLE {
    if process == object::system_eprocess() {
        return pid_handle(0);
    }
    match object::process_of(process) {
        Some(process) => pid_handle(process.id()),
        None => stop(format_args!(
            "PAGE_FAULT_IN_NONPAGED_AREA (bug check 0x50): PsGetProcessId({process:p}) on no live \
             process object: a stale or made-up pointer, whose memory may be freed"
        )),
    }
}

/// A process id as the kernel hands it out, a `HANDLE`: the model's 0 (System) is Windows' 4.
fn pid_handle(pid: u64) -> HANDLE {
    (if pid == 0 { 4 } else { pid }) as usize as HANDLE
}

/// `ObfReferenceObject` (behind the `ObReferenceObject` macro), for process objects: one more
/// reference on the process `Object` names, which keeps it (and its `EPROCESS` value) alive
/// until the matching [`ObfDereferenceObject`]. Returns the new count of driver references.
///
/// # Safety
///
/// None on the host. A pointer that names no live process object (a stale `PEPROCESS`, any
/// other object) stops the binary as `REFERENCE_BY_POINTER` (0x18); so does a call above
/// `DISPATCH_LEVEL` (`IRQL_NOT_LESS_OR_EQUAL`).
#[no_mangle]
pub unsafe extern "C" fn ObfReferenceObject(Object: PVOID) -> LONG_PTR {
    require_irql("ObfReferenceObject", DISPATCH_LEVEL);
    object::reference(Object.cast()) as LONG_PTR
}

/// `ObfDereferenceObject` (behind the `ObDereferenceObject` macro), for process objects: drops
/// a reference [`ObfReferenceObject`] took. When the last reference of a process that no
/// [`Process`](super::Process) value holds any more is dropped, the object is freed and its
/// `EPROCESS` value goes to the next new process. Returns the count of driver references left.
///
/// # Safety
///
/// None on the host. Dropping a reference that was never taken stops the binary as
/// `REFERENCE_BY_POINTER` (0x18); so does a call above `DISPATCH_LEVEL`
/// (`IRQL_NOT_LESS_OR_EQUAL`).
#[no_mangle]
pub unsafe extern "C" fn ObfDereferenceObject(Object: PVOID) -> LONG_PTR {
    require_irql("ObfDereferenceObject", DISPATCH_LEVEL);
    object::dereference(Object.cast()) as LONG_PTR
}

/// `MmHighestUserAddress` (ntddk.h): the highest user-mode address, as the kernel exports it.
/// The model's is [`HIGHEST_USER_ADDRESS`], that of 64-bit Windows 8.1 and later; it never hands
/// out memory above it, and securing anything above it gives NULL. Read it; never write it.
#[no_mangle]
pub static mut MmHighestUserAddress: PVOID = HIGHEST_USER_ADDRESS as PVOID;

/// The routines `MmGetSystemRoutineAddress` finds, by name. `KeGetCurrentIrql` is not among
/// them: on x64 it is inline in the headers, not an export.
fn routine_address(name: &[u16]) -> Option<PVOID> {
    let is = |routine: &str| routine.encode_utf16().eq(name.iter().copied());
    let address = if is("MmSecureVirtualMemory") {
        MmSecureVirtualMemory as *const () as usize
    } else if is("MmSecureVirtualMemoryEx") {
        if windows_build() < FIRST_BUILD_WITH_SECURE_EX {
            return None;
        }
        MmSecureVirtualMemoryEx as *const () as usize
    } else if is("MmUnsecureVirtualMemory") {
        MmUnsecureVirtualMemory as *const () as usize
    } else if is("MmGetSystemRoutineAddress") {
        MmGetSystemRoutineAddress as *const () as usize
    } else if is("IoGetCurrentProcess") {
        IoGetCurrentProcess as *const () as usize
    } else if is("PsGetCurrentProcessId") {
        PsGetCurrentProcessId as *const () as usize
    } else if is("PsGetProcessId") {
        PsGetProcessId as *const () as usize
    } else {
        return None;
    };
    Some(address as PVOID)
}

/// `MmGetSystemRoutineAddress`: the address of the routine named by the UTF-16
/// `SystemRoutineName` (`Length` in bytes; case-sensitive), among those the model defines, or
/// NULL. Below Windows build 17763 it does not find `MmSecureVirtualMemoryEx`.
///
/// # Safety
///
/// `SystemRoutineName` is NULL (the model answers NULL) or points to a valid `UNICODE_STRING`
/// whose `Buffer` holds `Length` readable bytes. Called above `PASSIVE_LEVEL` (its documented
/// limit, stricter than the secure routines') it stops the binary with `IRQL_NOT_LESS_OR_EQUAL`.
#[no_mangle]
pub unsafe extern "C" fn MmGetSystemRoutineAddress(SystemRoutineName: PUNICODE_STRING) -> PVOID {
    require_irql("MmGetSystemRoutineAddress", PASSIVE_LEVEL);
    if SystemRoutineName.is_null() {
        return core::ptr::null_mut();
    }
    // SAFETY: the caller passes a valid UNICODE_STRING; it is copied, not kept.
    let string = unsafe { *SystemRoutineName };
    let length = usize::from(string.Length);
    if length % 2 != 0 || string.Length > string.MaximumLength || string.Buffer.is_null() {
        return core::ptr::null_mut();
    }
    // SAFETY: the caller guarantees `Buffer` holds `Length` bytes, that is `length / 2` UTF-16
    // units, and it is not written during this call.
    let name = unsafe { slice::from_raw_parts(string.Buffer as *const u16, length / 2) };
    routine_address(name).unwrap_or(core::ptr::null_mut())
}
