//! The size bound on a typed read's `T`, checked when the read is compiled.
//!
//! A typed read ([`SecureRegion::read`](crate::SecureRegion::read),
//! [`read_user`](crate::read_user), a reader's [`read`](crate::Reader::read)) copies into a
//! `MaybeUninit<T>` on the stack and returns the `T` by value, so each call needs at least
//! `size_of::<T>()` bytes of kernel stack, two or three times that in a debug build, where the
//! value is moved between frames. A kernel stack is small and cannot grow: 24 KiB on x64
//! (`KERNEL_STACK_SIZE` is `0x6000` in the WDK's `ntddk.h` for `_AMD64_`, and Microsoft's
//! "How do I keep my driver from running out of kernel-mode stack?" gives 12K on x86 and 24K on
//! x64; "Using the Kernel Stack" says "approximately three pages" and that the size varies by
//! platform and version). No source we found gives ARM64's size, so the bound assumes it is no
//! larger. Running off the end is bug check 0x7F (`UNEXPECTED_KERNEL_MODE_TRAP`, double fault)
//! with no exception any handler could catch.
//!
//! The bound is [`MAX_TYPED_READ`] = 1 KiB: what Microsoft's code analysis allows one
//! kernel-mode function frame before warning (C6262, whose `/analyze:stacksize` is 1 KB for
//! driver projects), and a twenty-fourth of an x64 kernel stack. A larger `T` does not compile,
//! whatever the call's offset or length; read it into memory of your own (pool, or a static),
//! with [`SecureRegion::read_slice`](crate::SecureRegion::read_slice) or a reader's
//! [`read_slice`](crate::Reader::read_slice)/[`read_raw`](crate::Reader::read_raw).
//!
//! The check is an associated constant of a generic type, evaluated when the read is
//! instantiated with a concrete `T` (post-monomorphization), which works on Rust 1.63. It shows
//! in `cargo build` and `cargo test`; `cargo check` does not instantiate generic code and so
//! does not report it.

use core::marker::PhantomData;
use core::mem::size_of;

/// The largest `T`, in bytes, that a typed read accepts: 1024. A read of a larger `T` fails to
/// compile: see the crate docs' *Typed copies* for why, and what to do instead.
///
/// ```
/// use mmsecure::host::{Process, PAGE_READWRITE};
///
/// let process = Process::new();
/// let _in_process = process.attach();
/// let input = process.allocate(4096, PAGE_READWRITE).unwrap();
/// // A request of exactly the bound still reads by value...
/// let request: [u8; mmsecure::MAX_TYPED_READ] = mmsecure::read_user(input)?;
/// assert_eq!(request.len(), 1024);
/// // ...a larger one goes into the driver's own memory (a pool allocation in a driver).
/// let mut large = vec![0u8; 4096];
/// mmsecure::read_user_slice(input, &mut large)?;
/// # Ok::<(), mmsecure::Error>(())
/// ```
///
/// A `T` over the bound is refused when the read is compiled, through each of the three typed
/// reads:
///
/// ```compile_fail
/// # use mmsecure::host::{Process, PAGE_READWRITE};
/// # let process = Process::new();
/// # let _in_process = process.attach();
/// # let input = process.allocate(16384, PAGE_READWRITE).unwrap();
/// // 16 KiB on a 24 KiB kernel stack: does not compile.
/// let request: [[u8; 4096]; 4] = mmsecure::read_user(input)?;
/// # Ok::<(), mmsecure::Error>(())
/// ```
///
/// ```compile_fail
/// # use mmsecure::host::{Process, PAGE_READWRITE};
/// # use mmsecure::{ProbeMode, SecureRegion};
/// # let process = Process::new();
/// # let _in_process = process.attach();
/// # let input = process.allocate(4096, PAGE_READWRITE).unwrap();
/// /// One byte over the bound.
/// #[derive(Clone, Copy)]
/// #[repr(C)]
/// struct OneOver([u8; 1024], u8);
/// // SAFETY: plain bytes, no padding: any bit pattern, including all zeros, is a valid value.
/// unsafe impl mmsecure::bytemuck::Zeroable for OneOver {}
/// // SAFETY: as above.
/// unsafe impl mmsecure::bytemuck::AnyBitPattern for OneOver {}
///
/// let region = SecureRegion::new(input, 4096, ProbeMode::ReadOnly)?;
/// let _value: OneOver = region.read(0)?;
/// # Ok::<(), mmsecure::Error>(())
/// ```
///
/// ```compile_fail
/// # use mmsecure::host::{Process, PAGE_READWRITE};
/// # use mmsecure::{ProbeMode, SecureRegion};
/// # let process = Process::new();
/// # let _in_process = process.attach();
/// # let input = process.allocate(4096, PAGE_READWRITE).unwrap();
/// # #[derive(Clone, Copy)]
/// # #[repr(C)]
/// # struct OneOver([u8; 1024], u8);
/// # // SAFETY: plain bytes, no padding.
/// # unsafe impl mmsecure::bytemuck::Zeroable for OneOver {}
/// # // SAFETY: as above.
/// # unsafe impl mmsecure::bytemuck::AnyBitPattern for OneOver {}
/// let region = SecureRegion::new(input, 4096, ProbeMode::ReadOnly)?;
/// let _value: OneOver = region.reader().read()?;
/// # Ok::<(), mmsecure::Error>(())
/// ```
pub const MAX_TYPED_READ: usize = 1024;

/// Carries the check for one `T`.
pub(crate) struct StackBound<T>(PhantomData<T>);

impl<T> StackBound<T> {
    /// Evaluated (and a compile error, when `T` is too large) wherever a typed read of `T` is
    /// instantiated: `let () = StackBound::<T>::CHECK;`.
    pub(crate) const CHECK: () = assert!(
        size_of::<T>() <= MAX_TYPED_READ,
        "mmsecure: a typed read's T is larger than mmsecure::MAX_TYPED_READ (1024 bytes) and \
         would sit on the small kernel stack; read it into memory of your own with \
         SecureRegion::read_slice or Reader::read_slice"
    );
}
