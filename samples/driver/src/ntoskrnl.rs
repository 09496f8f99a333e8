//! The kernel routines, types and constants this driver uses beyond what `mmsecure-sys` declares.
//!
//! `mmsecure-sys` declares only what `mmsecure` needs; a driver brings its own declarations for
//! everything else, as here (`NTSTATUS` and the statuses are `mmsecure`'s). Every routine in the
//! extern block is also listed in `ntoskrnl.def`, from which `cargo xtask driver` makes the
//! import library.

use mmsecure::sys::ctypes::c_char;
use mmsecure::sys::{HANDLE, PVOID, SIZE_T, ULONG, ULONG_PTR, UNICODE_STRING};

pub use mmsecure::status::STATUS_SUCCESS;
pub use mmsecure::NTSTATUS;

/// `RTL_REGISTRY_SERVICES`: a path relative to
/// `\Registry\Machine\System\CurrentControlSet\Services`.
pub const RTL_REGISTRY_SERVICES: ULONG = 1;

/// `REG_SZ`: a NUL-terminated UTF-16 string.
pub const REG_SZ: ULONG = 1;

/// `REG_DWORD`: a 32-bit number.
pub const REG_DWORD: ULONG = 4;

/// `MEM_COMMIT`.
pub const MEM_COMMIT: ULONG = 0x1000;

/// `MEM_RESERVE`.
pub const MEM_RESERVE: ULONG = 0x2000;

/// `MEM_RELEASE`.
pub const MEM_RELEASE: ULONG = 0x8000;

/// `PAGE_NOACCESS`: any access to the page faults.
pub const PAGE_NOACCESS: ULONG = 0x01;

/// `NtCurrentProcess()`: the pseudo-handle of the current process.
pub const NT_CURRENT_PROCESS: HANDLE = -1isize as HANDLE;

/// `PDRIVER_UNLOAD`.
pub type DriverUnload = unsafe extern "system" fn(driver: *mut DriverObject);

/// `DRIVER_OBJECT` (wdm.h), as laid out on x64 and ARM64 (both LLP64 with 8-byte pointers). The
/// driver only sets `driver_unload`; the other fields are spelled out so that it lands at the
/// header's offset (0x68).
#[repr(C)]
pub struct DriverObject {
    /// `Type`.
    pub object_type: i16,
    /// `Size`.
    pub size: i16,
    /// `DeviceObject`.
    pub device_object: PVOID,
    /// `Flags`.
    pub flags: ULONG,
    /// `DriverStart`.
    pub driver_start: PVOID,
    /// `DriverSize`.
    pub driver_size: ULONG,
    /// `DriverSection`.
    pub driver_section: PVOID,
    /// `DriverExtension`.
    pub driver_extension: PVOID,
    /// `DriverName`.
    pub driver_name: UNICODE_STRING,
    /// `HardwareDatabase`.
    pub hardware_database: *mut UNICODE_STRING,
    /// `FastIoDispatch`.
    pub fast_io_dispatch: PVOID,
    /// `DriverInit`.
    pub driver_init: PVOID,
    /// `DriverStartIo`.
    pub driver_start_io: PVOID,
    /// `DriverUnload`: called before the driver is unloaded; without it the driver cannot be
    /// stopped.
    pub driver_unload: Option<DriverUnload>,
    /// `MajorFunction[IRP_MJ_MAXIMUM_FUNCTION + 1]`.
    pub major_function: [PVOID; 28],
}

// wdm.h's DRIVER_OBJECT is 0x150 bytes on x64 with DriverUnload at 0x68 and MajorFunction right
// after it; a size that matches with the fields above puts both where the kernel reads them.
#[cfg(target_pointer_width = "64")]
const _: () = assert!(core::mem::size_of::<DriverObject>() == 0x150);

extern "C" {
    /// `DbgPrint`: prints to the kernel debugger (filtered by default on Windows Vista and later;
    /// shown under Wine with `WINEDEBUG=warn+debugstr`).
    pub fn DbgPrint(format: *const c_char, ...) -> ULONG;
}

extern "system" {
    /// `KeBugCheckEx`: stops the system with a bug check.
    pub fn KeBugCheckEx(
        code: ULONG,
        parameter1: ULONG_PTR,
        parameter2: ULONG_PTR,
        parameter3: ULONG_PTR,
        parameter4: ULONG_PTR,
    ) -> !;

    /// `RtlWriteRegistryValue`: writes one value under a key named relative to `relative_to`.
    pub fn RtlWriteRegistryValue(
        relative_to: ULONG,
        path: *const u16,
        value_name: *const u16,
        value_type: ULONG,
        value_data: PVOID,
        value_length: ULONG,
    ) -> NTSTATUS;

    /// `ZwAllocateVirtualMemory`: reserves and commits memory in a process's user address space.
    pub fn ZwAllocateVirtualMemory(
        process: HANDLE,
        base_address: *mut PVOID,
        zero_bits: ULONG_PTR,
        region_size: *mut SIZE_T,
        allocation_type: ULONG,
        protect: ULONG,
    ) -> NTSTATUS;

    /// `ZwProtectVirtualMemory`: changes the protection of pages in a process's user address
    /// space (rounded out to pages; `base_address` and `region_size` come back rounded).
    pub fn ZwProtectVirtualMemory(
        process: HANDLE,
        base_address: *mut PVOID,
        region_size: *mut SIZE_T,
        new_protect: ULONG,
        old_protect: *mut ULONG,
    ) -> NTSTATUS;

    /// `ZwFreeVirtualMemory`: releases memory that `ZwAllocateVirtualMemory` reserved.
    pub fn ZwFreeVirtualMemory(
        process: HANDLE,
        base_address: *mut PVOID,
        region_size: *mut SIZE_T,
        free_type: ULONG,
    ) -> NTSTATUS;
}
