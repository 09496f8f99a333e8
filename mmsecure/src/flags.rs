//! [`SecureFlags`]: the options of `MmSecureVirtualMemoryEx`.

use crate::Error;
use mmsecure_sys::{
    MM_SECURE_EXCLUSIVE, MM_SECURE_NO_CHANGE, MM_SECURE_NO_INHERIT, MM_SECURE_USER_MODE_ONLY,
};

bitflags::bitflags! {
    /// Options of a secure made with `MmSecureVirtualMemoryEx` (Windows 10 1809 and later).
    ///
    /// | flag | raw | effect while secured |
    /// |---|---|---|
    /// | [`EXCLUSIVE`](Self::EXCLUSIVE) | 0x1 | the secure fails if any other secure stands on the same allocation |
    /// | [`NO_CHANGE`](Self::NO_CHANGE) | 0x2 | no protection change at all is allowed |
    /// | [`USER_MODE_ONLY`](Self::USER_MODE_ONLY) | 0x4 | only changes asked from user mode are refused; kernel-mode callers pass (`unsafe`: [`SecureRegion::with_any_flags`](crate::SecureRegion::with_any_flags) only) |
    /// | [`NO_INHERIT`](Self::NO_INHERIT) | 0x8 | a forked child's copy of the allocation is not secured |
    ///
    /// Unknown bits never reach the kernel: [`SecureFlags::from_raw`] refuses them, and
    /// [`SecureRegion::with_flags`](crate::SecureRegion::with_flags) refuses a value that carries
    /// them (`from_bits_retain` can make one).
    ///
    /// ```
    /// use mmsecure::SecureFlags;
    ///
    /// let flags = SecureFlags::NO_CHANGE | SecureFlags::EXCLUSIVE;
    /// assert_eq!(flags.bits(), 0x3);
    /// assert!(SecureFlags::from_raw(0x10).is_err());
    /// ```
    #[repr(transparent)]
    #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
    pub struct SecureFlags: u32 {
        /// `MM_SECURE_EXCLUSIVE`: succeed only when no other secure stands on the allocation.
        ///
        /// ```
        /// use mmsecure::{Error, ProbeMode, SecureFlags, SecureRegion};
        /// use mmsecure::host::{Process, PAGE_READWRITE};
        ///
        /// let process = Process::new();
        /// let _in_process = process.attach();
        /// let buffer = process.allocate(8192, PAGE_READWRITE).unwrap();
        /// let first = SecureRegion::new(buffer, 4096, ProbeMode::ReadOnly)?;
        /// // The other secure is on another page, but on the same allocation.
        /// let second = buffer.wrapping_add(4096);
        /// let (mode, flags) = (ProbeMode::ReadOnly, SecureFlags::EXCLUSIVE);
        /// let refused = SecureRegion::with_flags(second, 4096, mode, flags);
        /// assert_eq!(refused.unwrap_err(), Error::Refused);
        /// drop(first);
        /// assert!(SecureRegion::with_flags(second, 4096, mode, flags).is_ok());
        /// # Ok::<(), Error>(())
        /// ```
        const EXCLUSIVE = MM_SECURE_EXCLUSIVE;
        /// `MM_SECURE_NO_CHANGE`: refuse every protection change, not only restrictive ones.
        ///
        /// ```
        /// use mmsecure::{ProbeMode, SecureFlags, SecureRegion};
        /// use mmsecure::host::{AccessMode, Process, PAGE_READONLY, PAGE_READWRITE};
        ///
        /// let process = Process::new();
        /// let _in_process = process.attach();
        /// let page = process.allocate(4096, PAGE_READONLY).unwrap();
        /// let flags = SecureFlags::NO_CHANGE;
        /// let _region = SecureRegion::with_flags(page, 4096, ProbeMode::ReadOnly, flags)?;
        /// // A read-only secure alone would let the user make the page writable.
        /// assert!(process.protect(page, 4096, PAGE_READWRITE, AccessMode::User).is_err());
        /// # Ok::<(), mmsecure::Error>(())
        /// ```
        const NO_CHANGE = MM_SECURE_NO_CHANGE;
        /// `MM_SECURE_USER_MODE_ONLY`: refuse only changes asked from user mode.
        ///
        /// A kernel-mode free or unmap then removes the allocation and the secure with it, and
        /// the region's drop bug checks (`MEMORY_MANAGEMENT`): so
        /// [`SecureRegion::with_flags`](crate::SecureRegion::with_flags) refuses this flag
        /// ([`Error::UnsafeFlags`]), and the `unsafe`
        /// [`SecureRegion::with_any_flags`](crate::SecureRegion::with_any_flags) takes it with
        /// the caller's promise that no such free comes.
        ///
        /// ```
        /// use mmsecure::{ProbeMode, SecureFlags, SecureRegion};
        /// use mmsecure::host::{AccessMode, Process, PAGE_READONLY, PAGE_READWRITE};
        ///
        /// let process = Process::new();
        /// let _in_process = process.attach();
        /// let page = process.allocate(4096, PAGE_READWRITE).unwrap();
        /// let flags = SecureFlags::USER_MODE_ONLY;
        /// // SAFETY: nothing here frees or unmaps `page` from kernel mode while it is secured.
        /// let _region = unsafe { SecureRegion::with_any_flags(page, 4096, ProbeMode::ReadWrite, flags)? };
        /// assert!(process.protect(page, 4096, PAGE_READONLY, AccessMode::User).is_err());
        /// assert!(process.protect(page, 4096, PAGE_READONLY, AccessMode::Kernel).is_ok());
        /// # Ok::<(), mmsecure::Error>(())
        /// ```
        const USER_MODE_ONLY = MM_SECURE_USER_MODE_ONLY;
        /// `MM_SECURE_NO_INHERIT`: a forked child's copy of the range is not secured.
        ///
        /// ```
        /// use mmsecure::{ProbeMode, SecureFlags, SecureRegion};
        /// use mmsecure::host::{AccessMode, Process, PAGE_READONLY, PAGE_READWRITE};
        ///
        /// let parent = Process::new();
        /// let _in_parent = parent.attach();
        /// let page = parent.allocate(4096, PAGE_READWRITE).unwrap();
        /// let flags = SecureFlags::NO_INHERIT;
        /// let _region = SecureRegion::with_flags(page, 4096, ProbeMode::ReadWrite, flags)?;
        /// let child = parent.fork();
        /// assert!(child.protect(page, 4096, PAGE_READONLY, AccessMode::User).is_ok());
        /// assert!(parent.protect(page, 4096, PAGE_READONLY, AccessMode::User).is_err());
        /// child.exit();
        /// # Ok::<(), mmsecure::Error>(())
        /// ```
        const NO_INHERIT = MM_SECURE_NO_INHERIT;
    }
}

impl SecureFlags {
    /// The flags for a raw value; bits other than the four `MM_SECURE_*` values are
    /// [`Error::UnknownFlags`], holding just those bits.
    ///
    /// ```
    /// use mmsecure::{Error, SecureFlags};
    ///
    /// assert_eq!(SecureFlags::from_raw(0x2), Ok(SecureFlags::NO_CHANGE));
    /// assert_eq!(SecureFlags::from_raw(0x12), Err(Error::UnknownFlags(0x10)));
    /// ```
    pub const fn from_raw(raw: u32) -> Result<SecureFlags, Error> {
        let unknown = raw & !SecureFlags::all().bits();
        if unknown == 0 {
            Ok(SecureFlags::from_bits_retain(raw))
        } else {
            Err(Error::UnknownFlags(unknown))
        }
    }

    /// The raw `Flags` value the kernel takes.
    ///
    /// ```
    /// assert_eq!(mmsecure::SecureFlags::NO_INHERIT.into_raw(), 0x8);
    /// ```
    #[must_use]
    pub const fn into_raw(self) -> u32 {
        self.bits()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn flag_values_are_the_headers() {
        assert_eq!(SecureFlags::EXCLUSIVE.bits(), 0x1);
        assert_eq!(SecureFlags::NO_CHANGE.bits(), 0x2);
        assert_eq!(SecureFlags::USER_MODE_ONLY.bits(), 0x4);
        assert_eq!(SecureFlags::NO_INHERIT.bits(), 0x8);
    }

    #[test]
    fn from_raw_accepts_exactly_the_known_bits() {
        for raw in 0..=0xFFu32 {
            match SecureFlags::from_raw(raw) {
                Ok(flags) => {
                    assert!(raw <= 0xF);
                    assert_eq!(flags.into_raw(), raw);
                }
                Err(e) => {
                    assert!(raw > 0xF);
                    assert_eq!(e, Error::UnknownFlags(raw & !0xF));
                }
            }
        }
        assert_eq!(
            SecureFlags::from_raw(0x8000_0000),
            Err(Error::UnknownFlags(0x8000_0000))
        );
    }
}
