//! [`UserBuffer`]: user-mode memory the driver allocates in the current process, standing in for
//! the buffer a user program would hand it.

use core::ptr;

use mmsecure::sys::{PAGE_READWRITE, PVOID, SIZE_T, ULONG};

use crate::ntoskrnl::{
    ZwAllocateVirtualMemory, ZwFreeVirtualMemory, ZwProtectVirtualMemory, MEM_COMMIT, MEM_RELEASE,
    MEM_RESERVE, NTSTATUS, NT_CURRENT_PROCESS, STATUS_SUCCESS,
};

/// Committed read-write memory in the user part of the current process's address space, freed
/// when dropped.
///
/// In DriverEntry the current process is the System process on Windows and `winedevice.exe`
/// under Wine; both have a user address space that `ZwAllocateVirtualMemory` can allocate in.
pub struct UserBuffer {
    base: PVOID,
    len: usize,
}

impl UserBuffer {
    /// Allocates `len` bytes (rounded up to pages by the kernel), or returns the kernel's status.
    pub fn allocate(len: usize) -> Result<UserBuffer, NTSTATUS> {
        let mut base: PVOID = ptr::null_mut();
        let mut size = len as SIZE_T;
        // SAFETY: `base` and `size` are valid locals the routine writes the allocation into; the
        // current-process pseudo-handle needs no reference counting.
        let status = unsafe {
            ZwAllocateVirtualMemory(
                NT_CURRENT_PROCESS,
                &mut base,
                0,
                &mut size,
                MEM_COMMIT | MEM_RESERVE,
                PAGE_READWRITE,
            )
        };
        if status == STATUS_SUCCESS && !base.is_null() {
            Ok(UserBuffer { base, len })
        } else {
            Err(status)
        }
    }

    /// The first byte.
    pub fn as_ptr(&self) -> *const u8 {
        self.base as *const u8
    }

    /// The first byte, for writing. Only through raw pointers: user memory is never a reference.
    pub fn as_mut_ptr(&self) -> *mut u8 {
        self.base.cast()
    }

    /// Changes the protection of the whole buffer (as a user program could with
    /// `VirtualProtect`), or returns the kernel's status.
    pub fn protect(&self, protect: ULONG) -> Result<(), NTSTATUS> {
        let mut base = self.base;
        let mut size = self.len as SIZE_T;
        let mut old: ULONG = 0;
        // SAFETY: `base` and `size` name this buffer's own allocation in the current process;
        // the three locals outlive the call, which writes the rounded range and old protection.
        let status = unsafe {
            ZwProtectVirtualMemory(NT_CURRENT_PROCESS, &mut base, &mut size, protect, &mut old)
        };
        if status == STATUS_SUCCESS {
            Ok(())
        } else {
            Err(status)
        }
    }

    /// Changes the protection of the pages of `offset..offset + len` of the buffer, or returns
    /// the kernel's status.
    pub fn protect_range(&self, offset: usize, len: usize, protect: ULONG) -> Result<(), NTSTATUS> {
        let mut base: PVOID = self.base.cast::<u8>().wrapping_add(offset).cast();
        let mut size = len as SIZE_T;
        let mut old: ULONG = 0;
        // SAFETY: as in `protect`; the range lies inside this buffer's allocation (the callers
        // pass ranges inside `len`).
        let status = unsafe {
            ZwProtectVirtualMemory(NT_CURRENT_PROCESS, &mut base, &mut size, protect, &mut old)
        };
        if status == STATUS_SUCCESS {
            Ok(())
        } else {
            Err(status)
        }
    }

    /// The length asked for.
    pub fn len(&self) -> usize {
        self.len
    }

    /// Sets every byte of the buffer to `byte`.
    pub fn set_all(&self, byte: u8) {
        // SAFETY: `base` is committed read-write memory of at least `self.len` bytes in the
        // current process, allocated by this value and not yet freed.
        unsafe { ptr::write_bytes(self.base.cast::<u8>(), byte, self.len) };
    }

    /// Copies `data` to the start of the buffer, as the user program would fill it. No reference
    /// into the buffer is formed: user memory can change under the driver at any time.
    pub fn fill(&self, data: &[u8]) {
        let n = data.len().min(self.len);
        // SAFETY: `base` is committed read-write memory of at least `self.len >= n` bytes in the
        // current process, allocated by this value and not yet freed; `data` is driver memory,
        // disjoint from it.
        unsafe { ptr::copy_nonoverlapping(data.as_ptr(), self.base.cast::<u8>(), n) };
    }
}

impl Drop for UserBuffer {
    fn drop(&mut self) {
        let mut base = self.base;
        let mut size: SIZE_T = 0;
        // SAFETY: `base` is the start of an allocation this value made in the current process
        // and has not freed; MEM_RELEASE with size 0 releases the whole allocation.
        // The status is ignored: there is nothing a driver can do about a failed free here.
        let _ =
            unsafe { ZwFreeVirtualMemory(NT_CURRENT_PROCESS, &mut base, &mut size, MEM_RELEASE) };
    }
}
