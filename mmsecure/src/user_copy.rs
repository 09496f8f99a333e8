//! One call for the common case: probe, copy once under the guard. No secure.
//!
//! Each helper runs in the caller's context, synchronously: it checks the range as the probe
//! routines do ([`UserSlice`](crate::UserSlice)'s checks), the IRQL, and copies once with the
//! guarded copy. It takes no process reference: nothing outlives the call, and the process is
//! the current one throughout. A secure would add nothing to one guarded copy (a free or a
//! re-protect mid-copy is already a caught fault); secure when the driver keeps using the range
//! ([`SecureRegion`](crate::SecureRegion)).

use core::mem::{size_of, MaybeUninit};

use bytemuck::{AnyBitPattern, NoUninit};

use crate::span::{copy_in, copy_out};
use crate::user_slice::check_probe;
use crate::{context, Error, UserPtr};

/// Copies a `T` from user memory at `address` in one call: probes `size_of::<T>()` bytes (as
/// [`UserSlice::new`](crate::UserSlice::new)), checks the IRQL, copies them once under the guard.
/// For a request that is one fixed-size struct; for anything read in parts, make a
/// [`UserSlice`](crate::UserSlice) and its reader, and for a range the driver keeps, a
/// [`SecureRegion`](crate::SecureRegion).
///
/// Memory that is not there (freed, never allocated, no access) is [`Error::Fault`] with the
/// exception's code, as `memcpy` under `__try` returns it; a zero-sized `T` reads nothing and
/// succeeds. A `T` larger than
/// [`MAX_TYPED_READ`](crate::MAX_TYPED_READ) (1 KiB) does not compile: it would sit on the kernel
/// stack; read it with [`read_user_slice`] into memory of your own.
///
/// ```
/// use mmsecure::host::{Process, PAGE_READWRITE};
///
/// let process = Process::new();
/// let _in_process = process.attach();
/// let input = process.allocate(4096, PAGE_READWRITE).unwrap();
/// process.write(input, &42u64.to_ne_bytes()).unwrap();
///
/// let value: u64 = mmsecure::read_user(input)?;
/// assert_eq!(value, 42);
/// assert_eq!(process.secure_count(), 0); // no secure at all
/// # Ok::<(), mmsecure::Error>(())
/// ```
#[inline]
pub fn read_user<T: AnyBitPattern>(address: impl Into<UserPtr>) -> Result<T, Error> {
    let () = crate::stack_bound::StackBound::<T>::CHECK;
    let address = address.into().addr();
    check_probe(address, size_of::<T>(), 1)?;
    context::require_irql(context::SECURE_MAX)?;
    let mut value = MaybeUninit::<T>::uninit();
    // SAFETY: a probed user range (or none: a length of 0 touches nothing) of the current process
    // (this call's context), at a checked IRQL; `value` is a local of exactly `size_of::<T>()`
    // bytes.
    unsafe { copy_in(value.as_mut_ptr().cast::<u8>(), address, size_of::<T>()) }?;
    // SAFETY: the copy succeeded, so every byte of `value` was written, and `T: AnyBitPattern`
    // makes any bytes a valid `T`.
    Ok(unsafe { value.assume_init() })
}

/// Copies `out.len()` bytes from user memory at `address` into `out` in one call: probe, copy
/// once under the guard, as [`read_user`]. An empty `out` succeeds and touches nothing. After a
/// fault ([`Error::Fault`]) `out` holds an exact prefix of the bytes and is unchanged after it,
/// as after [`SecureRegion::read_slice`](crate::SecureRegion::read_slice).
///
/// ```
/// use mmsecure::host::{Process, PAGE_READWRITE};
///
/// let process = Process::new();
/// let _in_process = process.attach();
/// let input = process.allocate(4096, PAGE_READWRITE).unwrap();
/// process.write(input, b"name").unwrap();
///
/// let mut name = [0u8; 4];
/// mmsecure::read_user_slice(input, &mut name)?;
/// assert_eq!(&name, b"name");
/// # Ok::<(), mmsecure::Error>(())
/// ```
#[inline]
pub fn read_user_slice(address: impl Into<UserPtr>, out: &mut [u8]) -> Result<(), Error> {
    let address = address.into().addr();
    check_probe(address, out.len(), 1)?;
    context::require_irql(context::SECURE_MAX)?;
    // SAFETY: a probed user range (or none: a length of 0 touches nothing) of the current process,
    // at a checked IRQL; `out` is the driver's own memory.
    unsafe { copy_in(out.as_mut_ptr(), address, out.len()) }
}

/// Copies `value` to user memory at `address` in one call: probe `size_of::<T>()` bytes, copy
/// once under the guard, as [`read_user`]. A zero-sized `T` writes nothing and succeeds.
///
/// ```
/// use mmsecure::host::{Process, PAGE_READWRITE};
///
/// let process = Process::new();
/// let _in_process = process.attach();
/// let output = process.allocate(4096, PAGE_READWRITE).unwrap();
///
/// mmsecure::write_user(output, &7u32)?;
/// let mut seen = [0u8; 4];
/// process.read(output, &mut seen).unwrap();
/// assert_eq!(u32::from_ne_bytes(seen), 7);
/// # Ok::<(), mmsecure::Error>(())
/// ```
#[inline]
pub fn write_user<T: NoUninit>(address: impl Into<UserPtr>, value: &T) -> Result<(), Error> {
    write_user_slice(address, bytemuck::bytes_of(value))
}

/// Copies `data` to user memory at `address` in one call: probe, copy once under the guard. An
/// empty `data` succeeds and touches nothing. Memory that is not writable is [`Error::Fault`]
/// (`STATUS_ACCESS_VIOLATION`, as `ProbeForWrite` or the copy raises it). After a fault the
/// user's range holds an exact prefix of `data`, as after
/// [`SecureRegion::write_slice`](crate::SecureRegion::write_slice).
///
/// ```
/// use mmsecure::{status, Error, UserPtr};
/// use mmsecure::host::{Process, PAGE_READONLY};
///
/// let process = Process::new();
/// let _in_process = process.attach();
/// let read_only = process.allocate(4096, PAGE_READONLY).unwrap();
/// // Read-only memory: the guarded copy faults, nothing is written.
/// let fault = Error::Fault { code: status::STATUS_ACCESS_VIOLATION };
/// assert_eq!(mmsecure::write_user_slice(read_only, b"x"), Err(fault));
/// assert_eq!(mmsecure::write_user_slice(UserPtr::NULL, b"x"), Err(Error::NullAddress));
/// ```
#[inline]
pub fn write_user_slice(address: impl Into<UserPtr>, data: &[u8]) -> Result<(), Error> {
    let address = address.into().addr();
    check_probe(address, data.len(), 1)?;
    context::require_irql(context::SECURE_MAX)?;
    // SAFETY: a probed user range (or none: a length of 0 touches nothing) of the current process,
    // at a checked IRQL.
    unsafe { copy_out(address, data) }
}
