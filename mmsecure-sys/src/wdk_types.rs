//! The C types from wdk-sys (feature `wdk-sys`, Windows targets only), so that a driver built on
//! windows-drivers-rs passes its own `UNICODE_STRING`s and `PEPROCESS`es to these routines.
//! `bindings.rs` is the same file either way: it names its types through `crate::types`, which is
//! this module instead of the generated `types.rs`.
//!
//! The generated types are still compiled here, privately, and every type is checked against them
//! at compile time: the very same Rust type where both sides are aliases of one primitive type,
//! the same size, alignment and field offsets where wdk-sys has a struct of its own.
//!
//! **This module cannot be built on Linux, nor on docs.rs**: wdk-sys generates its bindings while
//! it builds, from an installed WDK, and its build script (wdk-build) refuses non-Windows hosts.
//! It also needs the Rust version wdk-sys needs (newer than this crate's 1.63), and a driver
//! package configured for wdk-build (`[package.metadata.wdk.driver-model]`), without which
//! wdk-sys exports no types. Off Windows the feature does nothing: the dependency is Windows-only.

// wdk-sys needs a far newer Rust than this crate's MSRV; so may this module (`offset_of!`).
#![allow(clippy::incompatible_msrv)]

use core::mem::{align_of, offset_of, size_of};

use static_assertions::{assert_type_eq_all, const_assert_eq};

pub use wdk_sys::{
    _UNICODE_STRING, HANDLE, KIRQL, LONG, NTSTATUS, PEPROCESS, PUNICODE_STRING, PVOID, SIZE_T,
    UCHAR, ULONG, ULONG_PTR, UNICODE_STRING, USHORT, WCHAR,
};

/// What `cargo xtask codegen` made from ntddk.h, compiled only to be compared with wdk-sys's.
#[allow(
    dead_code,
    non_camel_case_types,
    non_snake_case,
    missing_docs,
    clippy::all,
    clippy::undocumented_unsafe_blocks,
    clippy::multiple_unsafe_ops_per_block
)]
#[path = "types.rs"]
mod generated;

// Aliases of one primitive type on both sides (`*mut c_void`, u64, u32, u16, u8): identical.
assert_type_eq_all!(HANDLE, generated::HANDLE);
assert_type_eq_all!(PVOID, generated::PVOID);
assert_type_eq_all!(SIZE_T, generated::SIZE_T);
assert_type_eq_all!(ULONG_PTR, generated::ULONG_PTR);
assert_type_eq_all!(ULONG, generated::ULONG);
assert_type_eq_all!(UCHAR, generated::UCHAR);
assert_type_eq_all!(USHORT, generated::USHORT);
assert_type_eq_all!(WCHAR, generated::WCHAR);
assert_type_eq_all!(KIRQL, generated::KIRQL);
assert_type_eq_all!(LONG, generated::LONG);
assert_type_eq_all!(NTSTATUS, generated::NTSTATUS);

// UNICODE_STRING is wdk-sys's own struct: the same layout, field by field, and the same field
// types (USHORT, USHORT, a pointer to WCHAR: PWCH in the WDK, PWSTR in mingw-w64).
assert_type_eq_all!(UNICODE_STRING, _UNICODE_STRING);
assert_type_eq_all!(PUNICODE_STRING, *mut UNICODE_STRING);
const_assert_eq!(
    size_of::<UNICODE_STRING>(),
    size_of::<generated::UNICODE_STRING>()
);
const_assert_eq!(
    align_of::<UNICODE_STRING>(),
    align_of::<generated::UNICODE_STRING>()
);
const_assert_eq!(
    offset_of!(UNICODE_STRING, Length),
    offset_of!(generated::UNICODE_STRING, Length)
);
const_assert_eq!(
    offset_of!(UNICODE_STRING, MaximumLength),
    offset_of!(generated::UNICODE_STRING, MaximumLength)
);
const_assert_eq!(
    offset_of!(UNICODE_STRING, Buffer),
    offset_of!(generated::UNICODE_STRING, Buffer)
);
const _: fn(&UNICODE_STRING) -> (USHORT, USHORT, *mut WCHAR) =
    |s| (s.Length, s.MaximumLength, s.Buffer);

// PEPROCESS: wdk-sys includes ntifs.h before ntddk.h, which makes it `struct _KPROCESS *`;
// ntddk.h alone (and mingw-w64) makes it `struct _EPROCESS *`. Opaque pointers both.
const_assert_eq!(size_of::<PEPROCESS>(), size_of::<generated::PEPROCESS>());
const_assert_eq!(align_of::<PEPROCESS>(), align_of::<generated::PEPROCESS>());
