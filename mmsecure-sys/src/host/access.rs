//! [`AccessMode`]: who asks for a protection change or a free (the kernel's `KPROCESSOR_MODE`).

/// The mode a memory operation is requested from: `PreviousMode` in the kernel.
///
/// It matters for `MM_SECURE_USER_MODE_ONLY`: such a secure refuses only what user mode asks.
///
/// ```
/// use mmsecure_sys::host::{AccessMode, Process, PAGE_READONLY, PAGE_READWRITE};
/// use mmsecure_sys::{MmSecureVirtualMemoryEx, MmUnsecureVirtualMemory, MM_SECURE_USER_MODE_ONLY};
///
/// let process = Process::new();
/// let _in = process.attach();
/// let page = process.allocate(4096, PAGE_READWRITE).unwrap();
/// // SAFETY: the model checks the range; nothing is dereferenced on the caller's behalf.
/// let handle = unsafe {
///     MmSecureVirtualMemoryEx(page.cast(), 4096, PAGE_READWRITE, MM_SECURE_USER_MODE_ONLY)
/// };
/// assert!(!handle.is_null());
/// assert!(process.protect(page, 4096, PAGE_READONLY, AccessMode::User).is_err());
/// assert!(process.protect(page, 4096, PAGE_READONLY, AccessMode::Kernel).is_ok());
/// // SAFETY: the handle is live and this thread is in its process.
/// unsafe { MmUnsecureVirtualMemory(handle) };
/// ```
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum AccessMode {
    /// Asked from user mode (`UserMode`): a user thread calling `VirtualProtect`, `VirtualFree`.
    User,
    /// Asked from kernel mode (`KernelMode`): a driver calling `ZwProtectVirtualMemory`.
    Kernel,
}
