//! One call for the common case: secure, copy once, unsecure.

use core::mem::size_of;

use bytemuck::{AnyBitPattern, NoUninit};

use crate::{Error, ProbeMode, SecureRegion, UserPtr};

/// Copies a `T` from user memory at `address` in one call: secures exactly `size_of::<T>()`
/// bytes read-only, copies them once, and unsecures. For a request that is one fixed-size
/// struct; for anything read in parts, make a [`SecureRegion`] and its [`reader`](SecureRegion::reader).
///
/// The same checks as [`SecureRegion::new`] and [`SecureRegion::read_value`], in the same
/// order; a zero-sized `T` is [`Error::ZeroLength`]. A `T` larger than
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
/// assert_eq!(process.secure_count(), 0); // unsecured again
/// # Ok::<(), mmsecure::Error>(())
/// ```
#[inline]
pub fn read_user<T: AnyBitPattern>(address: impl Into<UserPtr>) -> Result<T, Error> {
    let () = crate::stack_bound::StackBound::<T>::CHECK;
    SecureRegion::new(address, size_of::<T>(), ProbeMode::ReadOnly)?.read_value(0)
}

/// Copies `out.len()` bytes from user memory at `address` into `out` in one call: secure
/// read-only, copy once, unsecure. An empty `out` is [`Error::ZeroLength`]. After a fault
/// ([`Error::Fault`]) `out` holds an exact prefix of the bytes and is unchanged after it, as after
/// [`SecureRegion::read`].
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
    SecureRegion::new(address, out.len(), ProbeMode::ReadOnly)?.read(0, out)
}

/// Copies `value` to user memory at `address` in one call: secures `size_of::<T>()` bytes
/// read-write, copies once, unsecures. A zero-sized `T` is [`Error::ZeroLength`].
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

/// Copies `data` to user memory at `address` in one call: secure read-write, copy once,
/// unsecure. An empty `data` is [`Error::ZeroLength`]. After a fault ([`Error::Fault`]) the user's
/// range holds an exact prefix of `data`, as after [`SecureRegion::write`].
///
/// ```
/// use mmsecure::{Error, UserPtr};
/// use mmsecure::host::{Process, PAGE_READONLY};
///
/// let process = Process::new();
/// let _in_process = process.attach();
/// let read_only = process.allocate(4096, PAGE_READONLY).unwrap();
/// // Read-only memory cannot be secured for writing: refused, nothing written.
/// assert_eq!(mmsecure::write_user_slice(read_only, b"x"), Err(Error::Refused));
/// assert_eq!(mmsecure::write_user_slice(UserPtr::NULL, b"x"), Err(Error::NullAddress));
/// ```
#[inline]
pub fn write_user_slice(address: impl Into<UserPtr>, data: &[u8]) -> Result<(), Error> {
    SecureRegion::new(address, data.len(), ProbeMode::ReadWrite)?.write(0, data)
}
