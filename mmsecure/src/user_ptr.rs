//! [`UserPtr`]: a user-mode address, as the I/O manager hands it over, that is never dereferenced.

use core::fmt;

/// A user-mode address: a number, not a pointer the driver may follow.
///
/// Every constructor of this crate takes `impl Into<UserPtr>`, so the pointer an IRP holds goes in
/// as it is, whatever its type: `Irp->UserBuffer` and `Type3InputBuffer` are `PVOID`
/// (`*mut c_void`), a driver's own code may have `*mut u8` or `*const u8`. No cast is needed, and
/// none can turn an output pointer into something else by accident. A plain integer is not
/// converted implicitly (it could be a length in the wrong place): say [`UserPtr::new`].
///
/// As in the Linux kernel's `UserPtr`, the address is kept as an integer: it names memory of one
/// process, good only in that process's context and only through this crate's copies, so it
/// offers no way to read or write through it.
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
/// reply.write(0, b"ok")?;
/// assert_eq!(UserPtr::from(user_buffer), UserPtr::new(page as usize));
/// assert_eq!(UserPtr::from(user_buffer).addr(), reply.address() as usize);
/// # Ok::<(), mmsecure::Error>(())
/// ```
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
#[repr(transparent)]
pub struct UserPtr(usize);

impl UserPtr {
    /// Address zero, which every constructor refuses ([`Error::NullAddress`](crate::Error::NullAddress)).
    ///
    /// ```
    /// use mmsecure::{Error, ProbeMode, SecureRegion, UserPtr};
    ///
    /// assert!(UserPtr::NULL.is_null());
    /// let err = SecureRegion::new(UserPtr::NULL, 16, ProbeMode::ReadOnly).unwrap_err();
    /// assert_eq!(err, Error::NullAddress);
    /// ```
    pub const NULL: UserPtr = UserPtr(0);

    /// The user address `address`.
    ///
    /// ```
    /// use mmsecure::UserPtr;
    ///
    /// assert_eq!(UserPtr::new(0x1000).addr(), 0x1000);
    /// ```
    #[must_use]
    pub const fn new(address: usize) -> UserPtr {
        UserPtr(address)
    }

    /// The address as a number.
    ///
    /// ```
    /// use mmsecure::UserPtr;
    ///
    /// let p = 0x7FFE_0000 as *const u8;
    /// assert_eq!(UserPtr::from(p).addr(), 0x7FFE_0000);
    /// ```
    #[must_use]
    pub const fn addr(self) -> usize {
        self.0
    }

    /// Whether the address is zero.
    ///
    /// ```
    /// use mmsecure::UserPtr;
    ///
    /// assert!(UserPtr::from(core::ptr::null::<u8>()).is_null());
    /// assert!(!UserPtr::new(1).is_null());
    /// ```
    #[must_use]
    pub const fn is_null(self) -> bool {
        self.0 == 0
    }

    /// The address `bytes` further on, wrapping around the address space (which every
    /// constructor then refuses as [`Error::Overflow`](crate::Error::Overflow) or
    /// [`Error::NotUserRange`](crate::Error::NotUserRange)).
    ///
    /// ```
    /// use mmsecure::UserPtr;
    ///
    /// assert_eq!(UserPtr::new(0x1000).wrapping_add(16), UserPtr::new(0x1010));
    /// ```
    #[must_use]
    pub const fn wrapping_add(self, bytes: usize) -> UserPtr {
        UserPtr(self.0.wrapping_add(bytes))
    }
}

impl<T: ?Sized> From<*const T> for UserPtr {
    #[inline]
    fn from(pointer: *const T) -> UserPtr {
        UserPtr(pointer.cast::<u8>() as usize)
    }
}

impl<T: ?Sized> From<*mut T> for UserPtr {
    #[inline]
    fn from(pointer: *mut T) -> UserPtr {
        UserPtr(pointer.cast::<u8>() as usize)
    }
}

impl fmt::Debug for UserPtr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "UserPtr({:#x})", self.0)
    }
}
