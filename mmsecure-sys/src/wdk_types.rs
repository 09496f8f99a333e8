//! Conversions between windows-drivers-rs' `wdk-sys` types and this crate's (feature `wdk-sys`,
//! Windows targets only), so that a driver built on wdk-sys passes its `PEPROCESS`es and
//! `UNICODE_STRING`s to these routines and back.
//!
//! The feature adds this module and changes nothing else: [`crate::PEPROCESS`],
//! [`crate::UNICODE_STRING`] and the rest stay this crate's own types. Where wdk-sys declares the
//! same alias of the same primitive type (`HANDLE`, `PVOID`, `SIZE_T`, `ULONG`, …), the two are
//! one Rust type, checked below, and need no conversion. Where it declares a type of its own (the
//! `UNICODE_STRING` struct, the `_KPROCESS` that its `PEPROCESS` points to), [`WdkType`] converts,
//! after compile-time checks that size, alignment and field offsets agree.
//!
//! ```no_run
//! use mmsecure_sys::wdk_types::WdkType;
//!
//! // SAFETY: IRQL <= DISPATCH_LEVEL.
//! let process: wdk_sys::PEPROCESS = unsafe { wdk_sys::ntddk::IoGetCurrentProcess() };
//! let ours = mmsecure_sys::PEPROCESS::from_wdk(process);
//! assert_eq!(ours.to_wdk(), process);
//! ```
//!
//! (Not run: wdk-sys builds only on a Windows host with the WDK; see the crate's page.)

// wdk-sys needs Rust 1.85 or newer, far past this crate's MSRV, and so may this module
// (`offset_of!`, 1.77).
#![allow(clippy::incompatible_msrv)]

use core::mem::{align_of, offset_of, size_of};

use static_assertions::{assert_type_eq_all, const_assert_eq};

use crate::{PEPROCESS, PUNICODE_STRING, UNICODE_STRING};

/// A type of this crate with a counterpart of the same layout in wdk-sys that is a distinct Rust
/// type. The conversions copy or cast; they never read through a pointer.
pub trait WdkType: Sized {
    /// wdk-sys's type.
    type Wdk;

    /// This crate's value for wdk-sys's `value`.
    fn from_wdk(value: Self::Wdk) -> Self;

    /// wdk-sys's value for this one.
    fn to_wdk(self) -> Self::Wdk;
}

/// wdk-sys includes ntifs.h before ntddk.h, which makes `PEPROCESS` a `struct _KPROCESS *`;
/// ntddk.h alone (and mingw-w64's) makes it `struct _EPROCESS *`. Both are opaque pointers to the
/// same kernel object: the cast keeps the address.
impl WdkType for PEPROCESS {
    type Wdk = wdk_sys::PEPROCESS;

    fn from_wdk(value: wdk_sys::PEPROCESS) -> PEPROCESS {
        value.cast()
    }

    fn to_wdk(self) -> wdk_sys::PEPROCESS {
        self.cast()
    }
}

/// Field by field: `Length` and `MaximumLength` as they are, `Buffer` the same pointer.
impl WdkType for UNICODE_STRING {
    type Wdk = wdk_sys::UNICODE_STRING;

    fn from_wdk(value: wdk_sys::UNICODE_STRING) -> UNICODE_STRING {
        UNICODE_STRING {
            Length: value.Length,
            MaximumLength: value.MaximumLength,
            Buffer: value.Buffer,
        }
    }

    fn to_wdk(self) -> wdk_sys::UNICODE_STRING {
        wdk_sys::UNICODE_STRING {
            Length: self.Length,
            MaximumLength: self.MaximumLength,
            Buffer: self.Buffer,
        }
    }
}

/// The same address: the two structs it may point to have one layout (checked below), so either
/// side may read the string through it.
impl WdkType for PUNICODE_STRING {
    type Wdk = wdk_sys::PUNICODE_STRING;

    fn from_wdk(value: wdk_sys::PUNICODE_STRING) -> PUNICODE_STRING {
        value.cast()
    }

    fn to_wdk(self) -> wdk_sys::PUNICODE_STRING {
        self.cast()
    }
}

impl From<wdk_sys::UNICODE_STRING> for UNICODE_STRING {
    fn from(value: wdk_sys::UNICODE_STRING) -> UNICODE_STRING {
        UNICODE_STRING::from_wdk(value)
    }
}

impl From<UNICODE_STRING> for wdk_sys::UNICODE_STRING {
    fn from(value: UNICODE_STRING) -> wdk_sys::UNICODE_STRING {
        value.to_wdk()
    }
}

// Aliases of one primitive type on both sides (`*mut c_void`, u64, u32, u16, u8, i32): one type.
assert_type_eq_all!(crate::HANDLE, wdk_sys::HANDLE);
assert_type_eq_all!(crate::PVOID, wdk_sys::PVOID);
assert_type_eq_all!(crate::SIZE_T, wdk_sys::SIZE_T);
assert_type_eq_all!(crate::ULONG_PTR, wdk_sys::ULONG_PTR);
assert_type_eq_all!(crate::ULONG, wdk_sys::ULONG);
assert_type_eq_all!(crate::UCHAR, wdk_sys::UCHAR);
assert_type_eq_all!(crate::USHORT, wdk_sys::USHORT);
assert_type_eq_all!(crate::WCHAR, wdk_sys::WCHAR);
assert_type_eq_all!(crate::KIRQL, wdk_sys::KIRQL);
assert_type_eq_all!(crate::LONG, wdk_sys::LONG);
assert_type_eq_all!(crate::NTSTATUS, wdk_sys::NTSTATUS);

// UNICODE_STRING: the same layout, field by field, and fields of the same types (the WDK's
// `PWCH` and mingw-w64's `PWSTR` are both `*mut WCHAR`).
const_assert_eq!(
    size_of::<UNICODE_STRING>(),
    size_of::<wdk_sys::UNICODE_STRING>()
);
const_assert_eq!(
    align_of::<UNICODE_STRING>(),
    align_of::<wdk_sys::UNICODE_STRING>()
);
const_assert_eq!(
    offset_of!(UNICODE_STRING, Length),
    offset_of!(wdk_sys::UNICODE_STRING, Length)
);
const_assert_eq!(
    offset_of!(UNICODE_STRING, MaximumLength),
    offset_of!(wdk_sys::UNICODE_STRING, MaximumLength)
);
const_assert_eq!(
    offset_of!(UNICODE_STRING, Buffer),
    offset_of!(wdk_sys::UNICODE_STRING, Buffer)
);
assert_type_eq_all!(PUNICODE_STRING, *mut UNICODE_STRING);
assert_type_eq_all!(wdk_sys::PUNICODE_STRING, *mut wdk_sys::UNICODE_STRING);

// PEPROCESS: pointers of one size and alignment on both sides.
const_assert_eq!(size_of::<PEPROCESS>(), size_of::<wdk_sys::PEPROCESS>());
const_assert_eq!(align_of::<PEPROCESS>(), align_of::<wdk_sys::PEPROCESS>());
