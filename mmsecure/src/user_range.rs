//! The checks a user range must pass before any kernel routine sees it.

use crate::Error;

/// The highest user-mode address of the running system, as the kernel exports it
/// (`MmHighestUserAddress`, the value of `MM_HIGHEST_USER_ADDRESS`): `0x7FFFFFFEFFFF` on 64-bit
/// Windows 8.1 and later, lower on older 64-bit Windows (8 TiB of user space), and whatever a
/// future layout (5-level paging) makes it. Every range is checked against it before the kernel
/// is asked. Off Windows the host model exports the 8.1 value.
///
/// ```
/// use mmsecure::{highest_user_address, Error, ProbeMode, SecureRegion};
///
/// // A range may end on this byte, not past it: the next one is refused before the kernel is
/// // asked.
/// let past = (highest_user_address() + 1) as *const u8;
/// let err = SecureRegion::new(past, 1, ProbeMode::ReadOnly).unwrap_err();
/// assert_eq!(err, Error::NotUserRange);
/// ```
#[inline]
#[must_use]
pub fn highest_user_address() -> usize {
    crate::kernel::highest_user_address()
}

/// Checks `address .. address + len` for everything the caller can know to be wrong before the
/// kernel is asked: null, zero length, wrap-around, and any byte above the user range.
#[inline]
pub(crate) fn check(address: usize, len: usize) -> Result<(), Error> {
    if address == 0 {
        return Err(Error::NullAddress);
    }
    if len == 0 {
        return Err(Error::ZeroLength);
    }
    let last = address.checked_add(len - 1).ok_or(Error::Overflow)?;
    if last > highest_user_address() {
        return Err(Error::NotUserRange);
    }
    Ok(())
}

/// Checks that `len` bytes at `offset` fit in a region of `region_len` bytes.
pub(crate) fn check_access(offset: usize, len: usize, region_len: usize) -> Result<(), Error> {
    match offset.checked_add(len) {
        Some(end) if end <= region_len => Ok(()),
        _ => Err(Error::OutOfBounds {
            offset,
            len,
            region_len,
        }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const HIGHEST_USER_ADDRESS: usize = mmsecure_sys::host::HIGHEST_USER_ADDRESS;

    #[test]
    fn refuses_each_bad_range_with_its_own_error() {
        assert_eq!(check(0, 1), Err(Error::NullAddress));
        assert_eq!(check(0x1000, 0), Err(Error::ZeroLength));
        assert_eq!(check(usize::MAX - 3, 8), Err(Error::Overflow));
        assert_eq!(check(HIGHEST_USER_ADDRESS, 2), Err(Error::NotUserRange));
        assert_eq!(check(0xFFFF_8000_0000_0000, 1), Err(Error::NotUserRange));
    }

    #[test]
    fn accepts_a_range_ending_on_the_last_user_byte() {
        assert_eq!(check(HIGHEST_USER_ADDRESS, 1), Ok(()));
        assert_eq!(check(0x1000, HIGHEST_USER_ADDRESS - 0x1000 + 1), Ok(()));
    }

    #[test]
    fn access_bounds_include_the_end_and_catch_overflow() {
        assert_eq!(check_access(0, 16, 16), Ok(()));
        assert_eq!(check_access(16, 0, 16), Ok(()));
        assert!(check_access(15, 2, 16).is_err());
        assert!(check_access(17, 0, 16).is_err());
        assert_eq!(
            check_access(usize::MAX, 2, 16),
            Err(Error::OutOfBounds {
                offset: usize::MAX,
                len: 2,
                region_len: 16
            })
        );
    }
}
