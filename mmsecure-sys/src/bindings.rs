// PROVISIONAL: hand-written in bindgen's shape until `cargo xtask codegen` replaces it.

pub const PAGE_READONLY: u32 = 2;
pub const PAGE_READWRITE: u32 = 4;
pub const PASSIVE_LEVEL: u32 = 0;
pub const APC_LEVEL: u32 = 1;
pub const DISPATCH_LEVEL: u32 = 2;
pub const MM_SECURE_EXCLUSIVE: u32 = 1;
pub const MM_SECURE_NO_CHANGE: u32 = 2;
pub const MM_SECURE_USER_MODE_ONLY: u32 = 4;
pub const MM_SECURE_NO_INHERIT: u32 = 8;
pub type wchar_t = crate::ctypes::c_ushort;
pub type ULONG_PTR = crate::ctypes::c_ulonglong;
pub type SIZE_T = ULONG_PTR;
pub type PVOID = *mut crate::ctypes::c_void;
pub type UCHAR = crate::ctypes::c_uchar;
pub type USHORT = crate::ctypes::c_ushort;
pub type ULONG = crate::ctypes::c_ulong;
pub type WCHAR = wchar_t;
pub type PWCH = *mut WCHAR;
pub type HANDLE = *mut crate::ctypes::c_void;
pub type KIRQL = UCHAR;
#[repr(C)]
#[derive(Debug, Copy, Clone)]
pub struct _UNICODE_STRING {
    pub Length: USHORT,
    pub MaximumLength: USHORT,
    pub Buffer: PWCH,
}
pub type UNICODE_STRING = _UNICODE_STRING;
pub type PUNICODE_STRING = *mut _UNICODE_STRING;
#[repr(C)]
#[derive(Debug, Copy, Clone)]
pub struct _EPROCESS {
    _unused: [u8; 0],
}
pub type PEPROCESS = *mut _EPROCESS;
extern "C" {
    pub fn MmGetSystemRoutineAddress(SystemRoutineName: PUNICODE_STRING) -> PVOID;
}
extern "C" {
    pub fn IoGetCurrentProcess() -> PEPROCESS;
}
extern "C" {
    pub fn MmUnsecureVirtualMemory(SecureHandle: HANDLE);
}
extern "C" {
    pub fn MmSecureVirtualMemory(Address: PVOID, Size: SIZE_T, ProbeMode: ULONG) -> HANDLE;
}
extern "C" {
    pub fn MmSecureVirtualMemoryEx(
        Address: PVOID,
        Size: SIZE_T,
        ProbeMode: ULONG,
        Flags: ULONG,
    ) -> HANDLE;
}
