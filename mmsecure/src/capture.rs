//! Captures of the structures that point into user memory, done once and checked: a
//! `UNICODE_STRING` ([`capture_unicode_string`]).
//!
//! A `UNICODE_STRING` in a request is three fields in user memory pointing at a fourth range.
//! Drivers get its capture wrong in the same few ways: they read `Length` to check it and read it
//! again to copy (a double fetch), trust `Buffer` without checking it is a user address, forget
//! that `Length` counts bytes (odd, or above `MaximumLength`), or read the 64-bit layout from a
//! 32-bit process. This module reads the structure once, checks the copy, probes `Buffer` as a
//! user range aligned to 2, and copies `Length` bytes once.

use crate::span::copy_in;
use crate::user_slice::check_probe;
use crate::{read_user, Error, UserPtr};

/// The layout of a structure the user passed, by the bitness of the process that made the
/// request: a 64-bit process's requests use [`Native`](Self::Native), a 32-bit (WOW64)
/// process's on 64-bit Windows use [`Wow64`](Self::Wow64), whose pointers are 32 bits.
///
/// A dispatch routine learns which from `IoIs32bitProcess(Irp)` (TRUE: `Wow64`), called in the
/// requester's context; a driver that accepts no 32-bit callers refuses them there instead.
///
/// | ABI | `UNICODE_STRING` size | `Length` | `MaximumLength` | `Buffer` |
/// |---|---|---|---|---|
/// | `Native` (64-bit) | 16 | `u16` at 0 | `u16` at 2 | `u64` at 8 |
/// | `Wow64` (`UNICODE_STRING32`) | 8 | `u16` at 0 | `u16` at 2 | `u32` at 4 |
///
/// ```
/// use mmsecure::UserAbi;
///
/// assert_eq!(UserAbi::Native.unicode_string_len(), 16);
/// assert_eq!(UserAbi::Wow64.unicode_string_len(), 8);
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum UserAbi {
    /// A 64-bit process: 16 bytes, `Buffer` a 64-bit pointer at offset 8. mmsecure builds for
    /// 64-bit Windows only (x64; ARM64 is checked structurally), where this is the driver's own
    /// layout; on a 32-bit host the model uses the same 64-bit layout.
    Native,
    /// A 32-bit process on 64-bit Windows (`IoIs32bitProcess` is TRUE).
    Wow64,
}

impl UserAbi {
    /// The size of a `UNICODE_STRING` in this layout, in bytes.
    ///
    /// ```
    /// assert_eq!(mmsecure::UserAbi::Wow64.unicode_string_len(), 8);
    /// ```
    #[must_use]
    pub const fn unicode_string_len(self) -> usize {
        match self {
            UserAbi::Native => 16,
            UserAbi::Wow64 => 8,
        }
    }
}

/// Captures the `UNICODE_STRING` at `address` (laid out as `abi` says) into `out`, and returns
/// the captured characters: `Length / 2` UTF-16 units, not NUL-terminated (a `UNICODE_STRING`
/// need not be).
///
/// The structure is read once, with one guarded copy; its copy is checked: `Length` even and at
/// most `MaximumLength` ([`Error::BadUnicodeString`]), and at most `out.len()` units
/// ([`Error::StringTooLong`]). `Buffer` is probed as a user range of `Length` bytes aligned to 2
/// (as `ProbeForRead(Buffer, Length, sizeof(WCHAR))`: [`Error::Misaligned`],
/// [`Error::NotUserRange`], ...) and its `Length` bytes are copied once. A zero `Length` returns
/// an empty string without touching `Buffer`. What the user changes after the structure was
/// read does not matter: only the copy is used.
///
/// No secure and no process reference: the capture runs in the caller's context, at
/// `APC_LEVEL` or below ([`Error::IrqlTooHigh`]). Missing memory is [`Error::Fault`].
///
/// ```
/// use mmsecure::{capture_unicode_string, Error, UserAbi};
/// use mmsecure::host::{Process, PAGE_READWRITE};
///
/// let process = Process::new();
/// let _in_process = process.attach();
/// let page = process.allocate(4096, PAGE_READWRITE).unwrap();
/// let text = page.wrapping_add(64);
/// let units: Vec<u8> = "dev".encode_utf16().flat_map(|u| u.to_ne_bytes()).collect();
/// process.write(text, &units).unwrap();
/// // UNICODE_STRING { Length: 6, MaximumLength: 8, Buffer: text }
/// let mut header = [0u8; 16];
/// header[0..2].copy_from_slice(&6u16.to_ne_bytes());
/// header[2..4].copy_from_slice(&8u16.to_ne_bytes());
/// header[8..16].copy_from_slice(&(text as u64).to_ne_bytes());
/// process.write(page, &header).unwrap();
///
/// let mut name = [0u16; 32];
/// let name = capture_unicode_string(page, UserAbi::Native, &mut name)?;
/// assert_eq!(String::from_utf16(name).unwrap(), "dev");
/// # Ok::<(), Error>(())
/// ```
pub fn capture_unicode_string(
    address: impl Into<UserPtr>,
    abi: UserAbi,
    out: &mut [u16],
) -> Result<&[u16], Error> {
    let (units, buffer) = read_unicode_string(address.into(), abi)?;
    let out = out.get_mut(..units).ok_or(Error::StringTooLong(units))?;
    check_probe(buffer, units * 2, 2)?;
    // SAFETY: a probed user range (or none: a length of 0 touches nothing) of the current
    // process (this call's context), at the IRQL `read_user` checked in `read_unicode_string`
    // (same thread, an instant ago); `out` is the driver's own memory of exactly `units * 2`
    // bytes.
    unsafe { copy_in(out.as_mut_ptr().cast(), buffer, units * 2) }?;
    Ok(out)
}

/// [`capture_unicode_string`] into a new `Vec<u16>` of the string's length, for a string of at
/// most `max_units` UTF-16 units ([`Error::StringTooLong`] above, checked before anything is
/// allocated). Feature `alloc`; an allocation that fails is [`Error::NoMemory`].
///
/// ```
/// use mmsecure::{capture_unicode_string_vec, Error, UserAbi};
/// use mmsecure::host::{Process, PAGE_READWRITE};
///
/// let process = Process::new();
/// let _in_process = process.attach();
/// let page = process.allocate(4096, PAGE_READWRITE).unwrap();
/// // Length 7: odd, not a whole number of UTF-16 units.
/// let mut header = [0u8; 16];
/// header[0..2].copy_from_slice(&7u16.to_ne_bytes());
/// header[2..4].copy_from_slice(&8u16.to_ne_bytes());
/// process.write(page, &header).unwrap();
/// assert_eq!(capture_unicode_string_vec(page, UserAbi::Native, 256), Err(Error::BadUnicodeString));
/// ```
#[cfg(feature = "alloc")]
#[cfg_attr(docsrs, doc(cfg(feature = "alloc")))]
pub fn capture_unicode_string_vec(
    address: impl Into<UserPtr>,
    abi: UserAbi,
    max_units: usize,
) -> Result<alloc::vec::Vec<u16>, Error> {
    let (units, buffer) = read_unicode_string(address.into(), abi)?;
    if units > max_units {
        return Err(Error::StringTooLong(units));
    }
    check_probe(buffer, units * 2, 2)?;
    let mut out = alloc::vec::Vec::<u16>::new();
    out.try_reserve_exact(units).map_err(|_| Error::NoMemory)?;
    // SAFETY: as in `capture_unicode_string`; `try_reserve_exact` made room for `units` units of
    // the driver's own memory.
    unsafe { copy_in(out.as_mut_ptr().cast(), buffer, units * 2) }?;
    // SAFETY: the copy succeeded, so the first `units` units are initialized, within capacity.
    unsafe { out.set_len(units) };
    Ok(out)
}

/// Reads the structure once and checks its copy: the string's length in units and `Buffer`.
fn read_unicode_string(address: UserPtr, abi: UserAbi) -> Result<(usize, usize), Error> {
    let (length, maximum, buffer) = match abi {
        UserAbi::Native => {
            let raw: [u8; 16] = read_user(address)?;
            let buffer = u64::from_ne_bytes([
                raw[8], raw[9], raw[10], raw[11], raw[12], raw[13], raw[14], raw[15],
            ]);
            (
                u16::from_ne_bytes([raw[0], raw[1]]),
                u16::from_ne_bytes([raw[2], raw[3]]),
                usize::try_from(buffer).map_err(|_| Error::NotUserRange)?,
            )
        }
        UserAbi::Wow64 => {
            let raw: [u8; 8] = read_user(address)?;
            let buffer = u32::from_ne_bytes([raw[4], raw[5], raw[6], raw[7]]);
            (
                u16::from_ne_bytes([raw[0], raw[1]]),
                u16::from_ne_bytes([raw[2], raw[3]]),
                buffer as usize,
            )
        }
    };
    if length % 2 != 0 || length > maximum {
        return Err(Error::BadUnicodeString);
    }
    Ok((usize::from(length) / 2, buffer))
}
