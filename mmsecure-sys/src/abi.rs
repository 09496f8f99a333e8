//! Compile-time pins of the ABI: every constant's value and the size and alignment of every
//! type that crosses into the kernel. A regenerated `bindings.rs` that changes any of them (a new
//! header, a bindgen upgrade, a `ctypes` mistake) stops the build here, on every target.
//!
//! Values are those of the WDK's `ntddk.h`/`wdm.h`/`winnt.h`; sizes are those of Windows' LLP64
//! model, which the host backend must reproduce on a 64-bit Linux (where C `long` is 8 bytes).

use core::mem::{align_of, size_of};

use static_assertions::{assert_type_eq_all, const_assert_eq};

use crate::ctypes::c_void;
use crate::*;

// Page protections, as `ProbeMode`.
const_assert_eq!(PAGE_READONLY, 0x02);
const_assert_eq!(PAGE_READWRITE, 0x04);

// IRQLs (x64 and arm64 alike).
const_assert_eq!(PASSIVE_LEVEL, 0);
const_assert_eq!(APC_LEVEL, 1);
const_assert_eq!(DISPATCH_LEVEL, 2);

// MmSecureVirtualMemoryEx's `Flags`: four distinct bits, 0xF together.
const_assert_eq!(MM_SECURE_EXCLUSIVE, 0x1);
const_assert_eq!(MM_SECURE_NO_CHANGE, 0x2);
const_assert_eq!(MM_SECURE_USER_MODE_ONLY, 0x4);
const_assert_eq!(MM_SECURE_NO_INHERIT, 0x8);

// The constants are `u32`, the type of the `ULONG` parameters they are passed as.
assert_type_eq_all!(ULONG, u32);
const_assert_eq!(size_of::<ULONG>(), 4); // LLP64: 4 on every Windows target, and here too.
const_assert_eq!(align_of::<ULONG>(), 4);
const _: ULONG = PAGE_READONLY;
const _: ULONG = MM_SECURE_NO_INHERIT;

// Pointers and pointer-sized integers.
assert_type_eq_all!(PVOID, HANDLE, *mut c_void);
assert_type_eq_all!(SIZE_T, ULONG_PTR, u64);
const_assert_eq!(size_of::<HANDLE>(), size_of::<usize>());
const_assert_eq!(align_of::<HANDLE>(), align_of::<usize>());
const_assert_eq!(size_of::<PVOID>(), size_of::<usize>());
const_assert_eq!(align_of::<PVOID>(), align_of::<usize>());
const_assert_eq!(size_of::<PEPROCESS>(), size_of::<usize>());
const_assert_eq!(size_of::<PUNICODE_STRING>(), size_of::<usize>());
// `SIZE_T` is `ULONG_PTR`, `unsigned __int64` on 64-bit Windows: the crate targets 64-bit
// Windows (x64, arm64) and 64-bit hosts, where that is `usize`'s size.
const_assert_eq!(size_of::<SIZE_T>(), 8);
const_assert_eq!(size_of::<SIZE_T>(), size_of::<usize>());
const_assert_eq!(align_of::<SIZE_T>(), align_of::<usize>());

// Small integers.
assert_type_eq_all!(KIRQL, UCHAR, u8);
assert_type_eq_all!(USHORT, u16);
assert_type_eq_all!(WCHAR, u16); // wchar_t is 16 bits on Windows (UTF-16 code unit)
const_assert_eq!(size_of::<KIRQL>(), 1);
const_assert_eq!(size_of::<WCHAR>(), 2);

// NTSTATUS is a LONG: 32 bits and signed (errors are negative) on every target.
assert_type_eq_all!(NTSTATUS, LONG, i32);

// UNICODE_STRING: two USHORTs, then the buffer pointer at pointer alignment.
assert_type_eq_all!(UNICODE_STRING, _UNICODE_STRING);
assert_type_eq_all!(PUNICODE_STRING, *mut UNICODE_STRING);
const_assert_eq!(size_of::<UNICODE_STRING>(), 2 * size_of::<usize>());
const_assert_eq!(align_of::<UNICODE_STRING>(), align_of::<usize>());
#[cfg(target_pointer_width = "64")]
const_assert_eq!(size_of::<UNICODE_STRING>(), 16);
