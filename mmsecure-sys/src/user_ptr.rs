//! [`UserPtr`]: a user-mode address, as the I/O manager hands it over, that is never dereferenced.

use core::fmt;

/// A user-mode address: a number, not a pointer the driver may follow.
///
/// Every constructor of `mmsecure` takes `impl Into<UserPtr>` (it re-exports this type as
/// `mmsecure::UserPtr`), and so does every address parameter of the host model's
/// `host::Process`. So the pointer an IRP holds goes in as it is, whatever its
/// type: `Irp->UserBuffer` and `Type3InputBuffer` are `PVOID`
/// (`*mut c_void`), a driver's own code may have `*mut u8` or `*const u8`. No cast is needed, and
/// none can turn an output pointer into something else by accident. A plain integer is not
/// converted implicitly (it could be a length in the wrong place): say [`UserPtr::new`].
///
/// As in the Linux kernel's `UserPtr`, the address is kept as an integer: it names memory of one
/// process, good only in that process's context and only through this crate's copies, so it
/// offers no way to read or write through it. It is `Send` and `Sync`, as a number is: a test's
/// hostile user thread takes it along, where a raw pointer could not go.
///
/// ```
/// # #[cfg(any(not(windows), feature = "host"))] {
/// use core::ffi::c_void;
/// use mmsecure_sys::host::{Process, PAGE_READWRITE};
/// use mmsecure_sys::UserPtr;
///
/// let process = Process::new();
/// let page = process.allocate(4096, PAGE_READWRITE).unwrap();
/// let user_buffer: *mut c_void = page.cast(); // what an IRP gives: a PVOID
/// assert_eq!(UserPtr::from(user_buffer), UserPtr::new(page as usize));
///
/// // The user, on a thread of its own, rewrites the buffer.
/// let at = UserPtr::from(user_buffer);
/// let user = process.clone();
/// std::thread::spawn(move || user.write(at, b"changed").unwrap()).join().unwrap();
/// let mut seen = [0u8; 7];
/// process.read(page, &mut seen).unwrap();
/// assert_eq!(&seen, b"changed");
/// # }
/// ```
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
#[repr(transparent)]
pub struct UserPtr(usize);

impl UserPtr {
    /// Address zero, which every constructor of `mmsecure` refuses (`Error::NullAddress`).
    ///
    /// ```
    /// use mmsecure_sys::UserPtr;
    ///
    /// assert!(UserPtr::NULL.is_null());
    /// assert_eq!(UserPtr::NULL, UserPtr::new(0));
    /// ```
    pub const NULL: UserPtr = UserPtr(0);

    /// The user address `address`.
    ///
    /// ```
    /// use mmsecure_sys::UserPtr;
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
    /// use mmsecure_sys::UserPtr;
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
    /// use mmsecure_sys::UserPtr;
    ///
    /// assert!(UserPtr::from(core::ptr::null::<u8>()).is_null());
    /// assert!(!UserPtr::new(1).is_null());
    /// ```
    #[must_use]
    pub const fn is_null(self) -> bool {
        self.0 == 0
    }

    /// The address `bytes` further on, wrapping around the address space (which every
    /// constructor of `mmsecure` then refuses, as `Error::Overflow` or `Error::NotUserRange`).
    ///
    /// ```
    /// use mmsecure_sys::UserPtr;
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
