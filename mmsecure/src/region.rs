//! [`SecureRegion`]: one secured user range, unsecured when dropped.

use core::ffi::c_void;
use core::fmt;
use core::marker::PhantomData;
use core::mem::ManuallyDrop;
use core::ptr::NonNull;

use bytemuck::{AnyBitPattern, NoUninit};
use mmsecure_sys::PEPROCESS;

use crate::raw::{FromRawError, RawRegion};
use crate::span::Span;
use crate::{context, kernel, user_range, Error, ProbeMode, ProcessRef, SecureFlags, UserPtr};

/// A user-mode address range secured against being freed or made more restrictive, until this
/// value is dropped.
///
/// Made by [`SecureRegion::new`] (`MmSecureVirtualMemory`) or [`SecureRegion::with_flags`]
/// (`MmSecureVirtualMemoryEx`); dropping it calls `MmUnsecureVirtualMemory`. Its bytes are reached
/// only by copying: [`read_slice`](Self::read_slice), [`write_slice`](Self::write_slice),
/// [`read`](Self::read), [`write`](Self::write), or front to back with
/// the cursors [`reader`](Self::reader) and [`writer`](Self::writer), which read each byte at
/// most once. No reference into user memory is ever formed.
///
/// The constructors take the user address as `impl Into<`[`UserPtr`]`>`: the `PVOID` an IRP
/// holds, or any other raw pointer, goes in without a cast.
///
/// # What a secure guarantees, and what it does not
///
/// While the region stands, the kernel refuses to free, decommit or unmap the allocation it lies
/// in, and refuses protection changes below its [`ProbeMode`] (and guard pages). That is all:
///
/// - The user can still **change the bytes** at any time, from another thread. Copy once, then
///   validate the copy; never validate in place and read again.
/// - Pages are **not made resident**: a copy may page-fault and wait, so copies run at
///   `APC_LEVEL` or below only. Every copy and constructor reads the IRQL at run time and
///   returns [`Error::IrqlTooHigh`] above that, before the kernel or user memory is touched.
/// - An **in-page error** (a failed page-file or network read) can still raise an exception
///   during a copy; Microsoft's header asks for `__try/__except` around every access for this
///   reason. On **x86_64 Windows** every copy runs under such a frame (mmsecure-sys's
///   `copy_guarded`), and the exception comes back as [`Error::Fault`] with its code; the region
///   stays usable. What no handler catches (a fault at IRQL >= `DISPATCH_LEVEL`, a kernel stack
///   overflow) is listed in `docs/exceptions.md`. On **ARM64 Windows** the copies run under the
///   same kind of frame, built and checked structurally but never run on ARM64 hardware (test
///   a fault on a device: `docs/exceptions.md`). Other Windows architectures do not build. The
///   host model returns faults a test injects (`Process::inject_fault`).
/// - The region is only meaningful in the **process that secured it**. It holds a reference on
///   that process object (`ObfReferenceObject`), so its `PEPROCESS` can never come to name
///   another process, and every copy checks that the current process is that one
///   ([`Error::WrongProcess`] otherwise).
///
/// # Dropping
///
/// Drop unsecures (`MmUnsecureVirtualMemory`) only where the kernel allows it: in the securing
/// process's context (attach with `KeStackAttachProcess` from elsewhere), at `APC_LEVEL` or
/// below. Dropped anywhere else it does not call the kernel: the secure is left standing until
/// the process exits, and counted ([`abandoned_secures`](crate::abandoned_secures)). Then it
/// releases its process reference (`ObfDereferenceObject`, at `DISPATCH_LEVEL` or below). Drop
/// never panics.
///
/// It cannot be cloned, and is neither `Send` nor `Sync`: the kernel ties a secure to a process
/// context. To keep a secure beyond the current call (across a pended IRP, say), take it apart
/// with [`into_raw`](Self::into_raw) and rebuild it with [`from_raw`](Self::from_raw).
///
/// # Example
///
/// ```
/// use mmsecure::{ProbeMode, SecureRegion};
/// use mmsecure::host::{Process, PAGE_READWRITE};
///
/// // On the host backend: a simulated user process with one page of user memory.
/// let process = Process::new();
/// let _in_process = process.attach();
/// let buffer = process.allocate(4096, PAGE_READWRITE).unwrap();
/// process.write(buffer, b"request").unwrap();
///
/// let region = SecureRegion::new(buffer, 4096, ProbeMode::ReadWrite)?;
/// let mut copy = [0u8; 7];
/// region.read_slice(0, &mut copy)?;
/// assert_eq!(&copy, b"request");
/// region.write_slice(0, b"REPLY")?;
/// drop(region); // MmUnsecureVirtualMemory
/// # Ok::<(), mmsecure::Error>(())
/// ```
pub struct SecureRegion {
    handle: NonNull<c_void>,
    address: NonNull<u8>,
    len: usize,
    mode: ProbeMode,
    process: PEPROCESS,
    /// A secure belongs to a process context: not `Send`, not `Sync`.
    _context: PhantomData<*mut ()>,
}

impl SecureRegion {
    /// Secures `len` bytes at `address` in the current process with `MmSecureVirtualMemory`.
    ///
    /// The range is checked first: null, zero length, wrap-around and addresses above the user
    /// range get their own error and never reach the kernel. The kernel may still refuse the
    /// range ([`Error::Refused`]): memory not committed, not inside one allocation, or without
    /// the access `mode` asks.
    ///
    /// Call at IRQL <= `APC_LEVEL` ([`Error::IrqlTooHigh`] otherwise), in the context of the
    /// process that owns `address`.
    ///
    /// ```
    /// use mmsecure::{Error, ProbeMode, SecureRegion};
    /// use mmsecure::host::{Process, PAGE_READONLY};
    ///
    /// let process = Process::new();
    /// let _in_process = process.attach();
    /// let page = process.allocate(4096, PAGE_READONLY).unwrap();
    ///
    /// assert!(SecureRegion::new(page, 4096, ProbeMode::ReadOnly).is_ok());
    /// // Read-only memory cannot be secured for writing.
    /// assert_eq!(
    ///     SecureRegion::new(page, 4096, ProbeMode::ReadWrite).unwrap_err(),
    ///     Error::Refused
    /// );
    /// ```
    #[inline]
    pub fn new(
        address: impl Into<UserPtr>,
        len: usize,
        mode: ProbeMode,
    ) -> Result<SecureRegion, Error> {
        let address = checked_start(address.into(), len)?;
        context::require_irql(context::SECURE_MAX)?;
        let handle = kernel::secure(address.as_ptr() as usize, len, mode.into_raw());
        SecureRegion::adopt(handle, address, len, mode)
    }

    /// Secures `len` bytes at `address` with `MmSecureVirtualMemoryEx` and `flags`.
    ///
    /// The Ex routine exists on Windows 10 1809 (build 17763) and later only. It is looked up at
    /// run time, never imported, so a driver using this still loads on older Windows, where this
    /// returns [`Error::Unavailable`]. Empty flags use `MmSecureVirtualMemory`, which every
    /// Windows has. Flags with unknown bits are [`Error::UnknownFlags`];
    /// [`SecureFlags::USER_MODE_ONLY`] is [`Error::UnsafeFlags`] (with it a kernel-mode free can
    /// make the drop bug check: see [`with_any_flags`](Self::with_any_flags)); both are refused
    /// before anything else is looked at. The range and the IRQL are checked as in
    /// [`new`](Self::new).
    ///
    /// The look-up (`MmGetSystemRoutineAddress`) runs at `PASSIVE_LEVEL` only. A driver whose
    /// first flagged secure may come at `APC_LEVEL` calls
    /// [`secure_ex_available`](crate::secure_ex_available) from `DriverEntry`, which looks it up
    /// once for good; until then, a flagged secure above `PASSIVE_LEVEL` is
    /// [`Error::IrqlTooHigh`] and the kernel is not called.
    ///
    /// ```
    /// use mmsecure::{Error, ProbeMode, SecureFlags, SecureRegion};
    /// use mmsecure::host::{AccessMode, Process, PAGE_READONLY, PAGE_READWRITE};
    ///
    /// let process = Process::new();
    /// let _in_process = process.attach();
    /// let page = process.allocate(4096, PAGE_READWRITE).unwrap();
    ///
    /// let region = SecureRegion::with_flags(page, 4096, ProbeMode::ReadOnly, SecureFlags::NO_CHANGE)?;
    /// // NO_CHANGE refuses even a change a read-only secure would allow.
    /// assert!(process.protect(page, 4096, PAGE_READONLY, AccessMode::User).is_err());
    /// drop(region);
    /// assert!(process.protect(page, 4096, PAGE_READONLY, AccessMode::User).is_ok());
    /// # Ok::<(), Error>(())
    /// ```
    ///
    /// ```
    /// # use mmsecure::{Error, ProbeMode, SecureFlags, SecureRegion};
    /// # use mmsecure::host::{Process, PAGE_READWRITE};
    /// # let process = Process::new();
    /// # let _in_process = process.attach();
    /// # let page = process.allocate(4096, PAGE_READWRITE).unwrap();
    /// let flags = SecureFlags::USER_MODE_ONLY | SecureFlags::NO_CHANGE;
    /// let refused = SecureRegion::with_flags(page, 4096, ProbeMode::ReadWrite, flags);
    /// assert_eq!(refused.unwrap_err(), Error::UnsafeFlags(0x4));
    /// assert_eq!(process.secure_count(), 0); // the kernel was not called
    /// ```
    #[inline]
    pub fn with_flags(
        address: impl Into<UserPtr>,
        len: usize,
        mode: ProbeMode,
        flags: SecureFlags,
    ) -> Result<SecureRegion, Error> {
        let flags = SecureFlags::from_raw(flags.bits())?;
        let needs_promise = flags & SecureFlags::USER_MODE_ONLY;
        if !needs_promise.is_empty() {
            return Err(Error::UnsafeFlags(needs_promise.bits()));
        }
        // SAFETY: without `USER_MODE_ONLY` there is nothing to promise: every secure the flags
        // make refuses kernel-mode frees and unmaps of its allocation.
        unsafe { SecureRegion::with_any_flags(address, len, mode, flags) }
    }

    /// Secures `len` bytes at `address` with `MmSecureVirtualMemoryEx` and any `flags`,
    /// [`SecureFlags::USER_MODE_ONLY`] included, which [`with_flags`](Self::with_flags) refuses.
    /// Otherwise as `with_flags`.
    ///
    /// With `USER_MODE_ONLY`, the secure refuses only what user mode asks: a kernel-mode
    /// `ZwFreeVirtualMemory` or `ZwUnmapViewOfSection` (this driver's or any other component's)
    /// may remove the allocation, and the secure goes with it. The region's drop then calls
    /// `MmUnsecureVirtualMemory` on a handle that names no secure, which is a bug check
    /// (`MEMORY_MANAGEMENT`, 0x1A, as decompiled modern builds show; the host model stops the
    /// caller the same way). Nothing in a region can tell that this happened before it drops.
    ///
    /// # Safety
    ///
    /// If `flags` contains `USER_MODE_ONLY`: while the region (or the [`RawRegion`] made from it)
    /// stands, no kernel-mode request frees (`MEM_RELEASE`) or unmaps the allocation the range
    /// lies in, from any component. The caller knows every kernel-mode code that can free or
    /// unmap this process's memory, and that none of it does so here. (Kernel-mode protection
    /// changes and decommits pass the secure too; they make copies fault, which is an error, not
    /// a bug check. [`RawRegion::leak`], the process's exit, and a drop in a context where
    /// the region is abandoned do not unsecure, and need nothing.) Without `USER_MODE_ONLY`
    /// there is nothing to promise.
    ///
    /// ```
    /// use mmsecure::{ProbeMode, SecureFlags, SecureRegion};
    /// use mmsecure::host::{AccessMode, Process, PAGE_READONLY, PAGE_READWRITE};
    ///
    /// let process = Process::new();
    /// let _in_process = process.attach();
    /// let page = process.allocate(4096, PAGE_READWRITE).unwrap();
    /// let flags = SecureFlags::USER_MODE_ONLY;
    /// // SAFETY: nothing in this program frees or unmaps `page` from kernel mode while the
    /// // region stands.
    /// let region = unsafe { SecureRegion::with_any_flags(page, 4096, ProbeMode::ReadWrite, flags)? };
    /// assert!(process.protect(page, 4096, PAGE_READONLY, AccessMode::User).is_err());
    /// assert!(process.protect(page, 4096, PAGE_READONLY, AccessMode::Kernel).is_ok());
    /// drop(region);
    /// # Ok::<(), mmsecure::Error>(())
    /// ```
    #[inline]
    pub unsafe fn with_any_flags(
        address: impl Into<UserPtr>,
        len: usize,
        mode: ProbeMode,
        flags: SecureFlags,
    ) -> Result<SecureRegion, Error> {
        let address = address.into();
        let flags = SecureFlags::from_raw(flags.bits())?;
        if flags.is_empty() {
            return SecureRegion::new(address, len, mode);
        }
        let address = checked_start(address, len)?;
        context::require_irql(context::SECURE_MAX)?;
        let handle = kernel::secure_ex(
            address.as_ptr() as usize,
            len,
            mode.into_raw(),
            flags.into_raw(),
        )?;
        SecureRegion::adopt(handle, address, len, mode)
    }

    /// A region over a secure already made.
    ///
    /// # Safety
    ///
    /// `handle` is a live secure of `len` bytes at `address`, made with `mode` in `process`'s
    /// context, released by nothing else. Its drop unsecures and gives up a reference on
    /// `process`: the caller holds that reference, or never drops the region as a
    /// `SecureRegion` and releases the secure itself (`scope`, in a `ManuallyDrop`).
    #[inline]
    pub(crate) unsafe fn from_parts(
        handle: NonNull<c_void>,
        address: NonNull<u8>,
        len: usize,
        mode: ProbeMode,
        process: PEPROCESS,
    ) -> SecureRegion {
        SecureRegion {
            handle,
            address,
            len,
            mode,
            process,
            _context: PhantomData,
        }
    }

    /// The secure's handle and the process it was made in.
    #[inline]
    pub(crate) fn handle_and_process(&self) -> (NonNull<c_void>, PEPROCESS) {
        (self.handle, self.process)
    }

    /// Wraps what a secure routine returned for a checked range, with a reference on the
    /// process it was made in.
    #[inline]
    fn adopt(
        handle: mmsecure_sys::HANDLE,
        address: NonNull<u8>,
        len: usize,
        mode: ProbeMode,
    ) -> Result<SecureRegion, Error> {
        let handle = NonNull::new(handle).ok_or(Error::Refused)?;
        Ok(SecureRegion {
            handle,
            address,
            len,
            mode,
            process: kernel::reference_current(),
            _context: PhantomData,
        })
    }

    /// The first byte of the secured range, as given (the kernel secures whole pages around it).
    ///
    /// ```
    /// # use mmsecure::{ProbeMode, SecureRegion, UserPtr};
    /// # use mmsecure::host::{Process, PAGE_READWRITE};
    /// # let process = Process::new();
    /// # let _in_process = process.attach();
    /// # let page = process.allocate(4096, PAGE_READWRITE).unwrap();
    /// let region = SecureRegion::new(page, 100, ProbeMode::ReadOnly)?;
    /// assert_eq!(region.address(), UserPtr::from(page));
    /// assert_eq!(region.len(), 100);
    /// assert_eq!(region.mode(), ProbeMode::ReadOnly);
    /// # Ok::<(), mmsecure::Error>(())
    /// ```
    #[must_use]
    pub fn address(&self) -> UserPtr {
        UserPtr::from(self.address.as_ptr())
    }

    /// The length of the range in bytes, as given; never zero.
    ///
    /// ```
    /// # use mmsecure::{ProbeMode, SecureRegion, UserPtr};
    /// # use mmsecure::host::{Process, PAGE_READWRITE};
    /// # let process = Process::new();
    /// # let _in_process = process.attach();
    /// # let page = process.allocate(8192, PAGE_READWRITE).unwrap();
    /// // The kernel secures both pages this range touches; the region still reaches 10 bytes only.
    /// let region = SecureRegion::new(page.wrapping_add(4090), 10, ProbeMode::ReadOnly)?;
    /// assert_eq!(region.len(), 10);
    /// # Ok::<(), mmsecure::Error>(())
    /// ```
    #[must_use]
    #[allow(clippy::len_without_is_empty)] // a region is never empty
    pub fn len(&self) -> usize {
        self.len
    }

    /// The probe mode the range was secured with.
    ///
    /// ```
    /// # use mmsecure::{Error, ProbeMode, SecureRegion};
    /// # use mmsecure::host::{Process, PAGE_READWRITE};
    /// # let process = Process::new();
    /// # let _in_process = process.attach();
    /// # let page = process.allocate(4096, PAGE_READWRITE).unwrap();
    /// let region = SecureRegion::new(page, 16, ProbeMode::ReadOnly)?;
    /// assert_eq!(region.mode(), ProbeMode::ReadOnly);
    /// // A read-only secure does not promise writable pages, so the region refuses writes.
    /// assert_eq!(region.write_slice(0, b"x"), Err(Error::NotWritable));
    /// # Ok::<(), Error>(())
    /// ```
    #[must_use]
    pub fn mode(&self) -> ProbeMode {
        self.mode
    }

    /// The process that secured the range, as `IoGetCurrentProcess` named it then: attach to it
    /// (`KeStackAttachProcess`) to use or drop the region from another context.
    ///
    /// The region holds a reference on the process object (or, made by
    /// [`scope`](Self::scope) on a thread in its own process, the thread's own reference stands
    /// for it), so the pointer stays valid (for `KeStackAttachProcess` from another thread, say)
    /// while the region stands. To use it
    /// after the region is gone, take a reference of your own: [`process_ref`](Self::process_ref).
    ///
    /// ```
    /// # use mmsecure::{ProbeMode, SecureRegion, UserPtr};
    /// # use mmsecure::host::{Process, PAGE_READWRITE};
    /// let process = Process::new();
    /// let _in_process = process.attach();
    /// let page = process.allocate(4096, PAGE_READWRITE).unwrap();
    /// let region = SecureRegion::new(page, 16, ProbeMode::ReadOnly)?;
    /// assert_eq!(region.eprocess(), process.eprocess());
    /// # Ok::<(), mmsecure::Error>(())
    /// ```
    #[must_use]
    pub fn eprocess(&self) -> PEPROCESS {
        self.process
    }

    /// A reference of the caller's own on [`eprocess`](Self::eprocess), which outlives the region:
    /// for a worker that attaches to the process to drop the region there. Drop it after the
    /// detach. [`Error::IrqlTooHigh`] above `DISPATCH_LEVEL`.
    ///
    /// ```
    /// # use mmsecure::{ProbeMode, SecureRegion, UserPtr};
    /// # use mmsecure::host::{Process, PAGE_READWRITE};
    /// let process = Process::new();
    /// let _in_process = process.attach();
    /// let page = process.allocate(4096, PAGE_READWRITE).unwrap();
    /// let region = SecureRegion::new(page, 16, ProbeMode::ReadOnly)?;
    /// let keep = region.process_ref()?;
    /// drop(region);
    /// assert_eq!(keep.as_ptr(), process.eprocess());
    /// assert_eq!(process.driver_references(), 1);
    /// # Ok::<(), mmsecure::Error>(())
    /// ```
    pub fn process_ref(&self) -> Result<ProcessRef, Error> {
        // SAFETY: the process object is alive while the region stands: the region holds a
        // reference on it, or (a scope's region) it is the process that owns the thread running
        // the scope, and a thread keeps its process object.
        unsafe { ProcessRef::to_referenced(self.process) }
    }

    /// Copies `out.len()` bytes starting `offset` bytes into the region into `out`.
    ///
    /// A fault during the copy is [`Error::Fault`] (see the type's docs for where it is caught);
    /// `out` then holds an exact prefix of the copy: the bytes before the first faulting byte
    /// (the start of the first page that faults, or of the range) are copied, and `out` is
    /// unchanged from there on, on x64, on ARM64 (built, never run on ARM64 hardware) and in the
    /// host model alike.
    ///
    /// ```
    /// # use mmsecure::{Error, ProbeMode, SecureRegion};
    /// # use mmsecure::host::{Process, PAGE_READWRITE};
    /// # let process = Process::new();
    /// # let _in_process = process.attach();
    /// # let page = process.allocate(4096, PAGE_READWRITE).unwrap();
    /// process.write(page.wrapping_add(8), &[1, 2, 3]).unwrap();
    /// let region = SecureRegion::new(page, 16, ProbeMode::ReadOnly)?;
    /// let mut out = [0u8; 3];
    /// region.read_slice(8, &mut out)?;
    /// assert_eq!(out, [1, 2, 3]);
    /// assert!(matches!(region.read_slice(14, &mut out), Err(Error::OutOfBounds { .. })));
    /// # Ok::<(), Error>(())
    /// ```
    #[inline]
    pub fn read_slice(&self, offset: usize, out: &mut [u8]) -> Result<(), Error> {
        self.span().read(offset, out)
    }

    /// Copies `data` into the region starting `offset` bytes in. Refused with
    /// [`Error::NotWritable`] on a [`ProbeMode::ReadOnly`] region.
    ///
    /// A fault during the copy is [`Error::Fault`]; the user's range then holds an exact
    /// prefix of `data`: the bytes before the first faulting byte (the start of the first page
    /// that faults, or of the range) have been written, and none from there on, as in
    /// [`read_slice`](Self::read_slice).
    ///
    /// ```
    /// # use mmsecure::{Error, ProbeMode, SecureRegion};
    /// # use mmsecure::host::{Process, PAGE_READWRITE};
    /// # let process = Process::new();
    /// # let _in_process = process.attach();
    /// # let page = process.allocate(4096, PAGE_READWRITE).unwrap();
    /// let region = SecureRegion::new(page, 16, ProbeMode::ReadWrite)?;
    /// region.write_slice(0, b"ok")?;
    /// let mut seen = [0u8; 2];
    /// process.read(page, &mut seen).unwrap();
    /// assert_eq!(&seen, b"ok");
    /// # Ok::<(), Error>(())
    /// ```
    #[inline]
    pub fn write_slice(&self, offset: usize, data: &[u8]) -> Result<(), Error> {
        self.span().write(offset, data)
    }

    /// Copies a `T` out of the region at `offset` (no alignment needed). `T` must accept any bit
    /// pattern ([`AnyBitPattern`]), since the user chooses the bytes. A fault is
    /// [`Error::Fault`], and no `T`.
    ///
    /// The `T` is built on the kernel stack, so it may be at most
    /// [`MAX_TYPED_READ`](crate::MAX_TYPED_READ) (1 KiB) large: a larger `T` does not compile.
    /// Read a larger value into memory of your own with [`read_slice`](Self::read_slice).
    ///
    /// Reading the same bytes twice while the region stands is a double fetch: the user may
    /// have changed them in between, and the host model reports it
    /// (`Process::double_fetches`). Read once, or use a [`reader`](Self::reader).
    ///
    /// ```
    /// # use mmsecure::{Error, ProbeMode, SecureRegion};
    /// # use mmsecure::host::{Process, PAGE_READWRITE};
    /// # let process = Process::new();
    /// # let _in_process = process.attach();
    /// # let page = process.allocate(4096, PAGE_READWRITE).unwrap();
    /// process.write(page.wrapping_add(1), &0x1234_5678u32.to_ne_bytes()).unwrap();
    /// let region = SecureRegion::new(page, 64, ProbeMode::ReadOnly)?;
    /// let value: u32 = region.read(1)?;
    /// assert_eq!(value, 0x1234_5678);
    /// assert!(process.double_fetches().is_empty());
    /// let again: u32 = region.read(1)?; // checked once, used twice? The model says so.
    /// assert_eq!(process.double_fetches()[0].len, 4);
    /// # Ok::<(), Error>(())
    /// ```
    #[inline]
    pub fn read<T: AnyBitPattern>(&self, offset: usize) -> Result<T, Error> {
        let () = crate::stack_bound::StackBound::<T>::CHECK;
        self.span().read_value(offset)
    }

    /// Copies `value` into the region at `offset` (no alignment needed). `T` has no padding
    /// ([`NoUninit`]), so no uninitialized kernel bytes reach the user. Refused with
    /// [`Error::NotWritable`] on a [`ProbeMode::ReadOnly`] region. A fault is [`Error::Fault`],
    /// possibly with part of the value written, as in [`write_slice`](Self::write_slice).
    ///
    /// ```
    /// # use mmsecure::{Error, ProbeMode, SecureRegion};
    /// # use mmsecure::host::{Process, PAGE_READWRITE};
    /// # let process = Process::new();
    /// # let _in_process = process.attach();
    /// # let page = process.allocate(4096, PAGE_READWRITE).unwrap();
    /// let region = SecureRegion::new(page, 64, ProbeMode::ReadWrite)?;
    /// region.write(4, &7u64)?;
    /// assert_eq!(region.read::<u64>(4)?, 7);
    /// # Ok::<(), Error>(())
    /// ```
    #[inline]
    pub fn write<T: NoUninit>(&self, offset: usize, value: &T) -> Result<(), Error> {
        self.write_slice(offset, bytemuck::bytes_of(value))
    }

    /// The region's bytes as a [`Span`]: writable when secured read-write (a read-write secure
    /// keeps the pages writable), in the securing process, whose reference the region holds.
    #[inline]
    pub(crate) fn span(&self) -> Span {
        Span {
            base: self.address.as_ptr() as usize,
            len: self.len,
            process: self.process,
            writable: self.mode == ProbeMode::ReadWrite,
        }
    }

    /// Takes the region apart without unsecuring it, to keep the secure beyond this value's life
    /// (across a pended IRP, say): the [`RawRegion`] carries the secure and the process
    /// reference, can move to another thread, and turns back into a region with
    /// [`from_raw`](Self::from_raw) in the securing process's context.
    ///
    /// ```
    /// # use mmsecure::{ProbeMode, SecureRegion, UserPtr};
    /// # use mmsecure::host::{Process, PAGE_READWRITE};
    /// # let process = Process::new();
    /// # let _in_process = process.attach();
    /// # let page = process.allocate(4096, PAGE_READWRITE).unwrap();
    /// let raw = SecureRegion::new(page, 4096, ProbeMode::ReadWrite)?.into_raw();
    /// // ... keep `raw` in the IRP's context; later, in the same process context:
    /// let region = SecureRegion::from_raw(raw).expect("in the securing process");
    /// assert_eq!(region.len(), 4096);
    /// # Ok::<(), mmsecure::Error>(())
    /// ```
    #[must_use = "a dropped raw region is released like a region: rebuild it with from_raw"]
    pub fn into_raw(self) -> RawRegion {
        let this = ManuallyDrop::new(self);
        RawRegion::new(this.handle, this.address, this.len, this.mode, this.process)
    }

    /// Rebuilds a region from a [`RawRegion`], once this thread is in the securing process's
    /// context at `APC_LEVEL` or below. Otherwise the raw region comes back in the error,
    /// untouched, for a later try: [`Error::WrongProcess`] or [`Error::IrqlTooHigh`]. The error
    /// does not convert into [`Error`], so `?` cannot drop the raw region by accident: take it
    /// back with [`FromRawError::into_raw`].
    ///
    /// A `RawRegion` is made only by [`into_raw`](Self::into_raw) and cannot be copied, so this
    /// is safe: one secure, one region, at most one unsecure.
    ///
    /// ```
    /// use mmsecure::{Error, ProbeMode, SecureRegion, UserPtr};
    /// use mmsecure::host::{Process, PAGE_READWRITE};
    ///
    /// let (app, other) = (Process::new(), Process::new());
    /// let page = app.allocate(4096, PAGE_READWRITE).unwrap();
    /// let in_app = app.attach();
    /// let raw = SecureRegion::new(page, 64, ProbeMode::ReadWrite)?.into_raw();
    /// drop(in_app);
    ///
    /// // In another process's context the raw region is refused, and handed back.
    /// let in_other = other.attach();
    /// let refused = SecureRegion::from_raw(raw).unwrap_err();
    /// assert_eq!(refused.error(), Error::WrongProcess);
    /// let raw = refused.into_raw();
    /// drop(in_other);
    ///
    /// let _in_app = app.attach();
    /// let region = SecureRegion::from_raw(raw).expect("attached to the securing process");
    /// assert_eq!((region.address(), region.len()), (UserPtr::from(page), 64));
    /// # Ok::<(), Error>(())
    /// ```
    pub fn from_raw(raw: RawRegion) -> Result<SecureRegion, FromRawError> {
        let check = context::require_irql(context::SECURE_MAX).and_then(|()| {
            if kernel::current_process() == raw.eprocess() {
                Ok(())
            } else {
                Err(Error::WrongProcess)
            }
        });
        if let Err(error) = check {
            return Err(FromRawError::new(raw, error));
        }
        let (handle, address, len, mode, process) = raw.into_parts();
        // SAFETY: a raw region's parts are a live secure made in `process`'s context, with the
        // reference on `process` it carried over from the region it came from; it is consumed.
        Ok(unsafe { SecureRegion::from_parts(handle, address, len, mode, process) })
    }
}

impl Drop for SecureRegion {
    #[inline]
    fn drop(&mut self) {
        // SAFETY: `handle` is this region's live secure, made in `process`'s context, and the
        // region holds a reference on `process`; both are given up here, once.
        unsafe { context::release(self.handle, self.process) };
    }
}

impl fmt::Debug for SecureRegion {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SecureRegion")
            .field("address", &self.address)
            .field("len", &self.len)
            .field("mode", &self.mode)
            .finish_non_exhaustive()
    }
}

/// Checks a range and returns its start as non-null.
#[inline]
pub(crate) fn checked_start(address: UserPtr, len: usize) -> Result<NonNull<u8>, Error> {
    user_range::check(address.addr(), len)?;
    NonNull::new(address.addr() as *mut u8).ok_or(Error::NullAddress)
}
