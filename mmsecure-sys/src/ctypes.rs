//! The C types that the generated bindings name, fixed to Windows' LLP64 model.
//!
//! Windows is LLP64: `long` and `unsigned long` are 32 bits on every Windows target, while
//! `core::ffi::c_ulong` is 64 bits on a 64-bit Linux host. The bindings are compiled for both (the
//! kernel on Windows, the host backend elsewhere), so they must not follow the host's C model:
//! bindgen is told to take its C types from this module, which spells them for Windows.
//! (`core::ffi::c_*` aliases also only arrived in Rust 1.64; the MSRV is 1.63.)

#![allow(non_camel_case_types)]

/// C `void`, for pointers only.
pub use core::ffi::c_void;
/// C `char` (signed on every Windows target).
pub type c_char = i8;
/// C `signed char`.
pub type c_schar = i8;
/// C `unsigned char`.
pub type c_uchar = u8;
/// C `short`.
pub type c_short = i16;
/// C `unsigned short`.
pub type c_ushort = u16;
/// C `int`.
pub type c_int = i32;
/// C `unsigned int`.
pub type c_uint = u32;
/// C `long`: 32 bits on Windows (LLP64).
pub type c_long = i32;
/// C `unsigned long`: 32 bits on Windows (LLP64).
pub type c_ulong = u32;
/// C `long long`.
pub type c_longlong = i64;
/// C `unsigned long long`.
pub type c_ulonglong = u64;
