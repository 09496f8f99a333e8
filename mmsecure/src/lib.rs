//! Secure a user-mode buffer from a Windows kernel driver, safely: a typed, `#![no_std]` API over
//! `MmSecureVirtualMemory`, `MmSecureVirtualMemoryEx` and `MmUnsecureVirtualMemory`.
//!
//! A driver that touches a user buffer races the user: another thread can free the buffer or make
//! it read-only mid-access. Securing the range makes the kernel refuse both until the range is
//! unsecured. [`SecureRegion`] owns one secure, unsecures it when dropped, and reaches the bytes
//! only by copying them, with every bound checked.
//!
//! ```
//! use mmsecure::{ProbeMode, SecureRegion};
//! use mmsecure::host::{AccessMode, Process, PAGE_READONLY, PAGE_READWRITE};
//!
//! // Off Windows, mmsecure-sys's host backend models the kernel: a user process and its buffer.
//! let process = Process::new();
//! let _in_process = process.attach();
//! let buffer = process.allocate(4096, PAGE_READWRITE).unwrap();
//! process.write(buffer, b"hello").unwrap();
//!
//! // In the driver: secure, copy once, validate the copy, drop.
//! let region = SecureRegion::new(buffer, 4096, ProbeMode::ReadWrite)?;
//! assert!(process.free(buffer, AccessMode::User).is_err()); // the user cannot free it now
//! assert!(process.protect(buffer, 4096, PAGE_READONLY, AccessMode::User).is_err());
//! let mut request = [0u8; 5];
//! region.read_slice(0, &mut request)?;
//! assert_eq!(&request, b"hello");
//! drop(region);
//! assert!(process.free(buffer, AccessMode::User).is_ok()); // and now it can
//! # Ok::<(), mmsecure::Error>(())
//! ```
//!
//! # Reading a request: cursors, typed copies, one call
//!
//! A request is usually a fixed header and a payload. [`SecureRegion::reader`] reads it front to
//! back, each byte at most once, so the header a driver checked is never read again from the
//! user's memory, where the user may have changed it (a *double fetch*; see [`Reader`]).
//! [`SecureRegion::writer`] writes a reply the same way. For a request that is one value,
//! [`read_user`] probes and copies once in one call, with no secure; a [`UserSlice`] reads a
//! request in parts the same way (a probe, guarded copies, no secure), and
//! [`capture_unicode_string`] captures a `UNICODE_STRING`. Secure a range the driver keeps using:
//! for the rest of the call with [`SecureRegion::scope`] (no process reference on the caller's
//! own thread), beyond it with [`SecureRegion::new`] (the guide's "which one do I use" table).
//!
//! ## Typed copies
//!
//! A typed read produces a `T: `[`AnyBitPattern`](bytemuck::AnyBitPattern) (any bytes make a
//! valid `T`: the user chooses them), a typed write sends a `T: `[`NoUninit`](bytemuck::NoUninit)
//! (no padding: no uninitialized kernel bytes reach the user). Both traits are bytemuck's, which
//! this crate re-exports as [`mmsecure::bytemuck`](bytemuck), with its derive macros under the
//! `derive` feature, so a driver needs no dependency of its own:
//!
//! ```toml
//! mmsecure = { version = "0.1", features = ["derive"] }
//! ```
//!
//! ```
//! use mmsecure::bytemuck::{AnyBitPattern, NoUninit};
//! use mmsecure::host::{Process, PAGE_READWRITE};
//! use mmsecure::{ProbeMode, SecureRegion};
//!
//! /// The request's header, as the user program lays it out.
//! #[derive(Clone, Copy, AnyBitPattern)]
//! #[bytemuck(crate = "mmsecure::bytemuck")] // the derive's paths go through the re-export
//! #[repr(C)]
//! struct Header {
//!     kind: u32,
//!     flags: u32,
//!     payload_len: u64,
//! }
//!
//! /// The reply: no padding, so `NoUninit` derives.
//! #[derive(Clone, Copy, NoUninit)]
//! #[bytemuck(crate = "mmsecure::bytemuck")]
//! #[repr(C)]
//! struct Reply {
//!     status: u32,
//!     written: u32,
//! }
//!
//! let process = Process::new();
//! let _in_process = process.attach();
//! let buffer = process.allocate(4096, PAGE_READWRITE).unwrap();
//! process.write(buffer, &[7, 0, 0, 0, 0, 0, 0, 0, 3, 0, 0, 0, 0, 0, 0, 0, b'a', b'b', b'c']).unwrap();
//!
//! let region = SecureRegion::new(buffer, 64, ProbeMode::ReadWrite)?;
//! let mut reader = region.reader();
//! let header: Header = reader.read()?;
//! assert_eq!((header.kind, header.flags, header.payload_len), (7, 0, 3));
//! let mut payload = [0u8; 3];
//! reader.read_slice(&mut payload)?;
//! assert_eq!(&payload, b"abc");
//! region.writer().write(&Reply { status: 0, written: 3 })?;
//! # Ok::<(), mmsecure::Error>(())
//! ```
//!
//! A typed read builds its `T` on the kernel stack, which is 24 KiB on x64 and cannot grow; a
//! `T` larger than [`MAX_TYPED_READ`] (1 KiB) does not compile, so that a 16 KiB request struct
//! cannot overflow the stack (bug check 0x7F) at run time. Read such a request with
//! [`SecureRegion::read_slice`] or [`Reader::read_slice`] into memory of the driver's own (a pool
//! allocation), and, for a `T` that is also [`NoUninit`](bytemuck::NoUninit) (bytemuck's `Pod`),
//! view it there as a `T` with [`bytemuck::from_bytes_mut`] or fill it in place through
//! [`bytemuck::bytes_of_mut`].
//!
//! Why bytemuck's traits and not traits of this crate (as the Linux kernel's `FromBytes` and
//! `AsBytes`): they are the ones the ecosystem already implements and derives, they say exactly
//! what a copy from and to user memory needs, and a second pair would need a derive macro of its
//! own. The cost is the `#[bytemuck(crate = "mmsecure::bytemuck")]` line on each derive, without
//! which the derive names a `bytemuck` crate the driver does not depend on.
//!
//! **MSRV.** This crate builds on Rust 1.63; on a compiler that old, `bytemuck`'s derive needs
//! older versions of its dependencies (the crate's README says which, and how to pin them).
//!
//! ## One dependency
//!
//! A driver names only this crate: [`PEPROCESS`] and [`NTSTATUS`] are re-exported, the raw
//! declarations are [`mmsecure::sys`](sys), and wherever the host model is the backend (off
//! Windows) it is `mmsecure::host`, for the driver's tests. Errors turn into the status to
//! complete the IRP with: [`Error::to_ntstatus`], whose table is in [`status`].
//!
//! ## A complete handler
//!
//! A `METHOD_NEITHER` IOCTL: the input and output are user addresses, read and written with
//! guarded copies and no secure, in the requester's context (where the dispatch routine runs).
//! The handler returns the status and the IRP's `Information`, the bytes written: for the warning
//! `STATUS_BUFFER_OVERFLOW` the I/O manager still returns them, for an error it returns none.
//!
//! ```
//! use mmsecure::bytemuck::{AnyBitPattern, NoUninit};
//! use mmsecure::status::{STATUS_BUFFER_OVERFLOW, STATUS_SUCCESS};
//! use mmsecure::{Error, UserPtr, UserSlice, NTSTATUS};
//!
//! #[derive(Clone, Copy, AnyBitPattern)]
//! #[bytemuck(crate = "mmsecure::bytemuck")]
//! #[repr(C)]
//! struct Query { channel: u32, _reserved: u32 }
//!
//! #[derive(Clone, Copy, NoUninit)]
//! #[bytemuck(crate = "mmsecure::bytemuck")]
//! #[repr(C)]
//! struct Answer { channel: u32, level: u32, peak: u64 }
//!
//! /// `Type3InputBuffer`/`InputBufferLength`, `UserBuffer`/`OutputBufferLength`.
//! fn query(input: UserPtr, in_len: usize, output: UserPtr, out_len: usize) -> (NTSTATUS, usize) {
//!     let answer = || -> Result<(NTSTATUS, usize), Error> {
//!         let query: Query = UserSlice::aligned(input, in_len, 4)?.reader().read()?;
//!         let answer = Answer { channel: query.channel, level: 40, peak: 99 };
//!         let written = UserSlice::new(output, out_len)?.writer().write_truncated(&answer)?;
//!         let full = written == core::mem::size_of::<Answer>();
//!         Ok((if full { STATUS_SUCCESS } else { STATUS_BUFFER_OVERFLOW }, written))
//!     };
//!     answer().unwrap_or_else(|error| (error.to_ntstatus(), 0))
//! }
//!
//! // The test side: the model plays the user process.
//! use mmsecure::host::{Process, PAGE_READWRITE};
//! use mmsecure::status::{STATUS_ACCESS_VIOLATION, STATUS_BUFFER_TOO_SMALL};
//! let process = Process::new();
//! let _in_process = process.attach();
//! let buffer = process.allocate(4096, PAGE_READWRITE).unwrap();
//! process.write(buffer, &[3, 0, 0, 0, 0, 0, 0, 0]).unwrap();
//! let reply = UserPtr::from(buffer).wrapping_add(64);
//! assert_eq!(query(buffer.into(), 8, reply, 16), (STATUS_SUCCESS, 16));
//! assert_eq!(query(buffer.into(), 8, reply, 6), (STATUS_BUFFER_OVERFLOW, 6));
//! assert_eq!(query(buffer.into(), 4, reply, 16), (STATUS_BUFFER_TOO_SMALL, 0));
//! assert_eq!(query(UserPtr::new(0x10), 8, reply, 16), (STATUS_ACCESS_VIOLATION, 0));
//! ```
//!
//! The `host` model is the backend off Windows; on a Windows dev machine, a driver's tests turn it
//! on as a dev-dependency's feature, so that the driver itself still builds for the kernel:
//!
//! ```toml
//! [dependencies]
//! mmsecure = "0.1"
//!
//! [dev-dependencies]
//! mmsecure = { version = "0.1", features = ["host"] }
//! ```
//!
//! ## A request kept: the pended lifecycle
//!
//! A range the driver keeps beyond the dispatch routine (a pended IRP) is secured:
//! [`SecureRegion::new`] in the dispatch routine, [`SecureRegion::into_raw`] to keep it (a
//! [`RawRegion`], `Send`, with a reference on the process), then in the worker, attached to
//! [`RawRegion::eprocess`] at `PASSIVE_LEVEL` or `APC_LEVEL`, [`SecureRegion::from_raw`], the
//! copies, and a drop that unsecures. If the requester exited first, [`RawRegion::leak`] releases
//! the reference without an unsecure (the exit took the secure). The guide's pattern 2 has the code.
//!
//! # What securing guarantees
//!
//! | while a [`SecureRegion`] stands | guaranteed? |
//! |---|---|
//! | the secured pages are not decommitted, and the allocation is not freed or unmapped, by a user-mode request | yes |
//! | the same against kernel-mode requests (another driver's `ZwFreeVirtualMemory`) | yes, except with [`SecureFlags::USER_MODE_ONLY`], which lets them pass; a kernel-mode free then takes the secure, and the drop bug checks, so that flag needs the `unsafe` [`SecureRegion::with_any_flags`] |
//! | protection does not drop below the [`ProbeMode`] (no no-access; no read-only for `ReadWrite`) | yes |
//! | no guard pages are set on the range | yes |
//! | no protection change at all | only with [`SecureFlags::NO_CHANGE`] |
//! | the rest of the allocation stays committed | **no**: pages outside the secured range may be decommitted |
//! | the bytes do not change | **no**: the user can write them at any time; copy once, validate the copy |
//! | the pages are resident | **no**: a copy can page-fault and wait; so every copy checks that the IRQL is `APC_LEVEL` or below ([`Error::IrqlTooHigh`]) |
//! | a copy cannot raise | **no**: an in-page error still raises an exception (Microsoft asks for `__try/__except`); on x86_64 Windows every copy catches it and returns [`Error::Fault`]; on ARM64 Windows it is built to, but never run there (see "Backends"); other Windows architectures do not build (see `docs/exceptions.md`) |
//! | it holds in another process context | **no**: copies there fail with [`Error::WrongProcess`] |
//! | it outlives the process | **no**: process exit drops every secure; copies then fault |
//!
//! Microsoft's own page for `MmSecureVirtualMemory` recommends that drivers not use it, because
//! every access still needs `__try/__except` for the exceptions a secure does not prevent. Where
//! the I/O manager can copy the buffer (`METHOD_BUFFERED`) or probe and lock it into an MDL
//! (`METHOD_IN_DIRECT`/`METHOD_OUT_DIRECT`), let it; the guide's [Why][guide-why] page says when
//! securing is the right tool.
//!
//! # What the crate guarantees
//!
//! No sequence of safe calls, whatever other code does with `KeStackAttachProcess`,
//! `KeRaiseIrql` or process exit, makes the kernel unsecure in the wrong context, call a routine
//! above its IRQL, touch user memory at `DISPATCH_LEVEL`, trust a stale `EPROCESS`, or unsecure a
//! handle twice. All of it is checked at run time, in release builds too:
//!
//! - Constructors and every copy read the IRQL and return [`Error::IrqlTooHigh`] above
//!   `APC_LEVEL` before the kernel or user memory is touched. The first flagged secure looks
//!   `MmSecureVirtualMemoryEx` up, which needs `PASSIVE_LEVEL`; call [`secure_ex_available`] from
//!   `DriverEntry` to have that done once.
//! - A region holds a reference on its process object (`ObfReferenceObject`), so its `PEPROCESS`
//!   cannot be freed and reused by another process while it stands; copies compare it with the
//!   current process ([`Error::WrongProcess`]). A [`SecureRegion::scope`] on a thread in its own
//!   process leans on the thread's reference instead.
//! - Drop unsecures only in that process's context at `APC_LEVEL` or below. Anywhere else it does
//!   not call the kernel: the secure stays until the process exits, and
//!   [`abandoned_secures`] counts it. Drop never panics.
//! - A worker that attaches to a region's process holds a [`ProcessRef`] of its own across the
//!   attach (the attach takes no reference, and the region's goes with the region).
//! - A [`RawRegion`] (for a pended IRP) is owned and cannot be copied, so a secure is rebuilt,
//!   and unsecured, at most once; [`SecureRegion::from_raw`] checks the context first and hands
//!   the raw region back on failure.
//!
//! Why checks at run time and not lifetimes (a region borrowing an attach guard): most regions
//! are made and dropped in the requester's own context, where there is no guard to borrow; the
//! attach and the IRQL belong to other code (wdk's spin locks, the caller's own
//! `KeStackAttachProcess`) that this crate cannot make hand out guards; and a region kept across
//! a pended IRP must outlive the call that made it. The checks cost a CR8 read and an
//! `IoGetCurrentProcess` per operation (see `docs/performance.md`).
//!
//! # Rules for the caller
//!
//! - Create, copy and drop at IRQL <= `APC_LEVEL`, in the context of the process that secured the
//!   range; from another thread, attach first (`KeStackAttachProcess`). Outside that, calls fail
//!   with an error and a drop leaves the secure to the process's exit: no crash, but a bug.
//! - `MmSecureVirtualMemoryEx` (any non-empty [`SecureFlags`]) needs Windows 10 1809 or later; it
//!   is looked up at run time, and [`secure_ex_available`] tells in advance.
//!
//! # Backends
//!
//! The crate calls the routines declared by `mmsecure-sys`. On Windows those are the kernel's
//! (what this page, docs.rs's Windows build, describes); on any other OS, and on Windows with the
//! `host` feature (a driver's tests: `features = ["host"]` on the dev-dependency), they are
//! `mmsecure-sys`'s host backend ([`mmsecure_sys::host`][host]), a model of the kernel's
//! behaviour in which these docs' examples run and a driver's own logic can be tested. This crate
//! does not know which one it has.
//!
//! [host]: https://docs.rs/mmsecure-sys/latest/x86_64-unknown-linux-gnu/mmsecure_sys/host/index.html
//!
//! Windows means x86_64 and ARM64 (`aarch64-pc-windows-msvc`). The ARM64 support is **built,
//! linked and checked structurally, never run on ARM64 hardware**: before shipping for ARM64,
//! test on a device that reading a [`SecureRegion`] over a user page made `PAGE_NOACCESS` returns
//! `Error::Fault { code: 0xC0000005 }` and the driver goes on (the guide's
//! [exceptions][guide-exceptions] page lists that test and the others).
//!
//! # The guide
//!
//! The repository's [`docs/`][guide] holds the long form: [why][guide-why] securing exists and
//! what it does not promise, the [rules][guide-rules] a driver must follow, [tables][guide-ref]
//! of every probe mode, flag and error, [patterns][guide-patterns] with code (a `METHOD_NEITHER`
//! IOCTL handler, a region kept across a pended IRP, a windows-drivers-rs driver, testing on
//! Linux), how [exceptions][guide-exceptions] during a copy are caught, and the
//! [architecture][guide-arch].
//!
//! # Testing your driver's logic
//!
//! The code between a dispatch routine and the user's bytes can be tested on Linux, macOS or a
//! Windows dev machine (with the `host` feature, see [testing your driver][guide-testing]) with
//! `cargo test`: the host backend (`mmsecure_sys::host`) plays the user process, including
//! the moves a hostile one makes (freeing the buffer, re-protecting it, exiting).
//! [`examples/driver_logic.rs`][driver-logic] is a complete example, and its tests run with this
//! crate's.
//!
//! [guide]: https://github.com/mmsecure/mmsecure/tree/main/docs
//! [guide-why]: https://github.com/mmsecure/mmsecure/blob/main/docs/why.md
//! [guide-rules]: https://github.com/mmsecure/mmsecure/blob/main/docs/rules.md
//! [guide-ref]: https://github.com/mmsecure/mmsecure/blob/main/docs/reference.md
//! [guide-patterns]: https://github.com/mmsecure/mmsecure/blob/main/docs/patterns.md
//! [guide-exceptions]: https://github.com/mmsecure/mmsecure/blob/main/docs/exceptions.md
//! [guide-arch]: https://github.com/mmsecure/mmsecure/blob/main/docs/architecture.md
//! [guide-testing]: https://github.com/mmsecure/mmsecure/blob/main/docs/testing.md
//! [driver-logic]: https://github.com/mmsecure/mmsecure/blob/main/mmsecure/examples/driver_logic.rs
#![no_std]
#![deny(unsafe_op_in_unsafe_fn, missing_docs)]
// docs.rs (`--cfg docsrs`, nightly): badges for items that exist with some features only.
#![cfg_attr(docsrs, feature(doc_cfg))]

#[cfg(feature = "alloc")]
extern crate alloc;
#[cfg(feature = "std")]
extern crate std;

mod capture;
mod context;
mod copy;
mod cursor_error;
mod error;
mod flags;
mod kernel;
mod probe;
mod process_ref;
mod raw;
mod reader;
mod region;
mod scope;
mod span;
mod stack_bound;
pub mod status;
mod user_copy;
mod user_range;
mod user_slice;
mod writer;

#[cfg(feature = "alloc")]
pub use capture::capture_unicode_string_vec;
pub use capture::{capture_unicode_string, UserAbi};
pub use context::abandoned_secures;
pub use cursor_error::CursorError;
pub use error::Error;
pub use flags::SecureFlags;
pub use kernel::secure_ex_available;
/// A user-mode address: a number, not a pointer the driver may follow (mmsecure-sys's, which the
/// host model takes too).
///
/// ```
/// use core::ffi::c_void;
/// use mmsecure::{ProbeMode, SecureRegion, UserPtr};
/// use mmsecure::host::{Process, PAGE_READWRITE};
///
/// let process = Process::new();
/// let _in_process = process.attach();
/// let page = process.allocate(4096, PAGE_READWRITE).unwrap();
///
/// // What an IRP gives: a PVOID. It goes straight into a read-write region.
/// let user_buffer: *mut c_void = page.cast();
/// let reply = SecureRegion::new(user_buffer, 16, ProbeMode::ReadWrite)?;
/// reply.write_slice(0, b"ok")?;
/// assert_eq!(UserPtr::from(user_buffer), reply.address());
/// let err = SecureRegion::new(UserPtr::NULL, 16, ProbeMode::ReadOnly).unwrap_err();
/// assert_eq!(err, mmsecure::Error::NullAddress);
/// # Ok::<(), mmsecure::Error>(())
/// ```
pub use mmsecure_sys::UserPtr;
pub use probe::ProbeMode;
pub use process_ref::ProcessRef;
pub use raw::{FromRawError, RawRegion};
pub use reader::Reader;
pub use region::SecureRegion;
pub use span::{CursorHold, RegionHold, SliceHold};
pub use stack_bound::MAX_TYPED_READ;
pub use user_copy::{read_user, read_user_slice, write_user, write_user_slice};
pub use user_range::highest_user_address;
pub use user_slice::UserSlice;
pub use writer::Writer;

/// The bytemuck crate, whose [`AnyBitPattern`](bytemuck::AnyBitPattern) (what a read may produce)
/// and [`NoUninit`](bytemuck::NoUninit) (what a write may send) bound this crate's typed copies.
/// Re-exported so that a driver needs no dependency of its own, at a matching version; with this
/// crate's `derive` feature its derive macros come along (see *Typed copies* above).
///
/// ```
/// let bytes = mmsecure::bytemuck::bytes_of(&0x0102_0304_u32);
/// assert_eq!(bytes.len(), 4);
/// ```
pub use bytemuck;

/// The raw declarations this crate is built on (`mmsecure-sys`), for what it does not wrap: one
/// dependency, always the version this crate was built with.
///
/// ```
/// assert_eq!(mmsecure::sys::PAGE_READWRITE, 0x04);
/// ```
pub use mmsecure_sys as sys;

/// `NTSTATUS`, the type of every status this crate returns ([`Error::to_ntstatus`],
/// [`Error::Fault`]'s code, the [`status`] constants): `i32`, the C `LONG`.
///
/// ```
/// let code: mmsecure::NTSTATUS = mmsecure::Error::Refused.to_ntstatus();
/// assert_eq!(code, mmsecure::status::STATUS_ACCESS_VIOLATION);
/// ```
pub use mmsecure_sys::NTSTATUS;

/// `PEPROCESS`, what [`SecureRegion::eprocess`] and [`RawRegion::eprocess`] return: an opaque
/// process-object pointer to compare, or to pass to `KeStackAttachProcess`.
///
/// ```
/// use mmsecure::host::{Process, PAGE_READWRITE};
/// use mmsecure::{ProbeMode, SecureRegion, PEPROCESS};
///
/// let process = Process::new();
/// let _in_process = process.attach();
/// let page = process.allocate(4096, PAGE_READWRITE).unwrap();
/// let region = SecureRegion::new(page, 16, ProbeMode::ReadOnly)?;
/// let owner: PEPROCESS = region.eprocess();
/// assert_eq!(owner, process.eprocess());
/// # Ok::<(), mmsecure::Error>(())
/// ```
pub use mmsecure_sys::PEPROCESS;

/// The host model of the kernel, the backend wherever this crate is not built for Windows:
/// simulated processes, their memory, IRQL, injected faults, misuse and double-fetch reports
/// (`mmsecure_sys::host`, re-exported so that a driver's tests need no second dependency).
///
/// ```
/// use mmsecure::host::Process;
///
/// let process = Process::new();
/// assert!(process.double_fetches().is_empty());
/// ```
#[cfg(any(not(windows), feature = "host"))]
#[cfg_attr(docsrs, doc(cfg(any(not(windows), feature = "host"))))]
pub use mmsecure_sys::host;

// The README (the crate's page on crates.io) runs with the doctests.
#[cfg(doctest)]
#[doc = include_str!("../README.md")]
struct ReadmeDoctests;

// So do the guide's runnable patterns (only under `cfg(doctest)`: the published crate does not
// ship `docs/`, and a plain build never reads it).
#[cfg(doctest)]
#[doc = include_str!("../../docs/patterns.md")]
struct PatternsDoctests;
