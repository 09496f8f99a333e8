//! Stand-in for the root of wdk-sys 0.5 as its bindgen configuration generates it for a WDM
//! driver: the types at the crate root, the routines in `ntddk`. The aliases chain as wdk-sys's
//! do: `HANDLE` is `PVOID`; `SIZE_T` is `ULONG_PTR`, a `u64`; `UNICODE_STRING` is
//! `_UNICODE_STRING`, whose `Buffer` is a `PWCH`; and `PEPROCESS` points to `_KPROCESS`, because
//! wdk-sys includes ntifs.h before ntddk.h.
#![no_std]
#![allow(non_camel_case_types, non_snake_case)]

pub type wchar_t = core::ffi::c_ushort;
pub type ULONG_PTR = core::ffi::c_ulonglong;
pub type SIZE_T = ULONG_PTR;
pub type PVOID = *mut core::ffi::c_void;
pub type HANDLE = PVOID;
pub type LONG = core::ffi::c_long;
pub type UCHAR = core::ffi::c_uchar;
pub type USHORT = core::ffi::c_ushort;
pub type ULONG = core::ffi::c_ulong;
pub type NTSTATUS = LONG;
pub type WCHAR = wchar_t;
pub type PWCH = *mut WCHAR;
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
pub struct _KPROCESS {
    _unused: [u8; 0],
}
pub type PEPROCESS = *mut _KPROCESS;

/// Routines of ntddk.h.
pub mod ntddk {
    use crate::*;

    extern "C" {
        pub fn IoGetCurrentProcess() -> PEPROCESS;
        pub fn MmSecureVirtualMemory(Address: PVOID, Size: SIZE_T, ProbeMode: ULONG) -> HANDLE;
        pub fn MmUnsecureVirtualMemory(SecureHandle: HANDLE);
    }
}
