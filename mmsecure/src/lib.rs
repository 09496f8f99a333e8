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
//! use mmsecure_sys::host::{AccessMode, Process, PAGE_READONLY, PAGE_READWRITE};
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
//! region.read(0, &mut request)?;
//! assert_eq!(&request, b"hello");
//! drop(region);
//! assert!(process.free(buffer, AccessMode::User).is_ok()); // and now it can
//! # Ok::<(), mmsecure::Error>(())
//! ```
//!
//! # What securing guarantees
//!
//! | while a [`SecureRegion`] stands | guaranteed? |
//! |---|---|
//! | the allocation is not freed, decommitted or unmapped | yes |
//! | protection does not drop below the [`ProbeMode`] (no no-access; no read-only for `ReadWrite`) | yes |
//! | no guard pages are set on the range | yes |
//! | no protection change at all | only with [`SecureFlags::NO_CHANGE`] |
//! | the bytes do not change | **no**: the user can write them at any time; copy once, validate the copy |
//! | the pages are resident | **no**: a copy can page-fault and wait; copy below `DISPATCH_LEVEL` |
//! | a copy cannot raise | **no**: an in-page error still raises an exception (Microsoft asks for `__try/__except`); on x86_64 Windows every copy catches it and returns [`Error::Fault`], other Windows architectures do not build yet (see `docs/exceptions.md`) |
//! | it holds in another process context | **no**: copies there fail with [`Error::WrongProcess`] |
//! | it outlives the process | **no**: process exit drops every secure |
//!
//! Microsoft's own page for `MmSecureVirtualMemory` recommends that drivers not use it, because
//! every access still needs `__try/__except` for the exceptions a secure does not prevent. Where
//! the I/O manager can copy the buffer (`METHOD_BUFFERED`) or probe and lock it into an MDL
//! (`METHOD_IN_DIRECT`/`METHOD_OUT_DIRECT`), let it; the guide's [Why][guide-why] page says when
//! securing is the right tool.
//!
//! # Rules for the caller
//!
//! - Create and drop regions at IRQL <= `APC_LEVEL` (debug builds assert it).
//! - Drop a region in the context of the process that secured it (debug builds assert it), before
//!   that process exits; from another thread, attach first (`KeStackAttachProcess`).
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

#[cfg(feature = "std")]
extern crate std;

mod copy;
mod error;
mod flags;
mod kernel;
mod probe;
mod region;
mod user_range;

pub use error::Error;
pub use flags::SecureFlags;
pub use kernel::secure_ex_available;
pub use probe::ProbeMode;
pub use region::{RawRegion, SecureRegion};
pub use user_range::HIGHEST_USER_ADDRESS;

// The README (the crate's page on crates.io) runs with the doctests.
#[cfg(doctest)]
#[doc = include_str!("../README.md")]
struct ReadmeDoctests;
