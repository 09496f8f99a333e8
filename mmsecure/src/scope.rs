//! [`SecureRegion::scope`]: a secure for the length of one call, which takes no reference on the
//! process when the thread runs in its own process.

use core::mem::ManuallyDrop;
use core::ptr::NonNull;

use crate::region::checked_start;
use crate::{context, kernel, Error, ProbeMode, SecureRegion, UserPtr};

impl SecureRegion {
    /// Secures `len` bytes at `address` as [`new`](Self::new) does, runs `f` with the region, and
    /// unsecures when `f` returns (or unwinds): `f`'s result, or the error of the secure, before
    /// `f` runs. The region cannot leave `f`, so it cannot outlive the call; for a region that
    /// does (a pended IRP, [`into_raw`](Self::into_raw)), use [`new`](Self::new).
    ///
    /// Every check of [`new`](Self::new) and its drop stays: the range and the IRQL before the
    /// secure, and at the end the IRQL and the process, read at run time. If unsafe code in `f`
    /// leaves the thread attached to another process, or at `DISPATCH_LEVEL`, the secure is
    /// abandoned (see [`abandoned_secures`](crate::abandoned_secures)), never unsecured there.
    ///
    /// # What it saves, and why that is sound
    ///
    /// A region made by `new` holds a reference on its process object
    /// (`ObfReferenceObject`), because the process check at its drop compares pointers: without
    /// the reference the process could exit and be freed, and its `EPROCESS` memory could hold a
    /// new process whose pointer compares equal, so that the unsecure ran in the wrong address
    /// space. A scope takes that reference only when it needs it:
    ///
    /// - When the thread runs in **its own process** (the process that owns the thread: the
    ///   caller's thread in a top-level driver's `IRP_MJ_DEVICE_CONTROL`, the usual case), it
    ///   takes none. The thread holds a reference on its own process for its whole life (WRK
    ///   `ps/create.c`, `PspCreateThread` L345-L364; released in `ps/psdelete.c`,
    ///   `PspThreadDelete` L1677), and the thread is running this call, so the process object is
    ///   alive from the secure to the unsecure. No other object can have its address meanwhile:
    ///   at the end, "the current process is the one that secured" is an identity, whatever `f`
    ///   attached to, detached from or freed in between.
    /// - When the thread is **attached** to another process (`KeStackAttachProcess`), it takes
    ///   the reference, as `new` does. "The thread is in the process's context for the whole
    ///   call" is not enough there: unsafe code in `f` may end an attach made before the scope,
    ///   let the process go, and attach to a new process at the same address; only a reference
    ///   rules that out.
    ///
    /// Which case holds is read right after the secure: the id of the current process
    /// (`PsGetProcessId(IoGetCurrentProcess())`) against the id of the thread's own
    /// (`PsGetCurrentProcessId`, the thread's `Cid.UniqueProcess`: WRK `ps/create.c` L2387-L2390).
    /// Both processes are alive then, and two live processes never share an id (the kernel frees
    /// an id when the object is deleted: `ps/psdelete.c`, `PspProcessDelete` L1594-L1595). So in
    /// the common case a scope costs two id reads where `new` + drop costs an interlocked
    /// increment and decrement.
    ///
    /// In the host model, a test thread belongs to System and reaches a process with
    /// `Process::attach`: a scope there takes the reference. `Process::run_thread` runs code on a
    /// thread of the process, in its own context.
    ///
    /// ```
    /// use mmsecure::{ProbeMode, SecureRegion};
    /// use mmsecure::host::{Process, PAGE_READWRITE};
    ///
    /// let app = Process::new();
    /// let buffer = app.allocate(4096, PAGE_READWRITE).unwrap();
    /// app.write(buffer, &7u32.to_ne_bytes()).unwrap();
    /// let buffer = mmsecure::UserPtr::from(buffer);
    /// // The app's thread calls the driver, which secures its buffer for the call.
    /// let (value, references) = app.run_thread(|| {
    ///     SecureRegion::scope(buffer, 4096, ProbeMode::ReadWrite, |region| {
    ///         let value = region.read::<u32>(0)?;
    ///         region.write(0, &(value + 1))?;
    ///         Ok::<_, mmsecure::Error>((value, app.driver_references()))
    ///     })?
    /// })?;
    /// assert_eq!((value, references), (7, 0)); // no reference on the process was taken
    /// assert_eq!(app.secure_count(), 0); // unsecured at the end of the scope
    /// # Ok::<(), mmsecure::Error>(())
    /// ```
    #[inline]
    pub fn scope<R>(
        address: impl Into<UserPtr>,
        len: usize,
        mode: ProbeMode,
        f: impl FnOnce(&SecureRegion) -> R,
    ) -> Result<R, Error> {
        let address = checked_start(address.into(), len)?;
        context::require_irql(context::SECURE_MAX)?;
        let handle = kernel::secure(address.as_ptr() as usize, len, mode.into_raw());
        let handle = NonNull::new(handle).ok_or(Error::Refused)?;
        // The process the secure was made in: nothing ran on this thread since.
        let process = kernel::current_process();
        let attached = !kernel::is_own_process(process);
        if attached {
            // SAFETY: the current process is alive (the attach that put this thread in its
            // context holds a reference), at the IRQL <= APC_LEVEL checked above.
            unsafe { kernel::reference(process) };
        }
        // SAFETY: the secure just made, of `len` bytes at `address` with `mode`, in `process`'s
        // context; the region stays in a `ManuallyDrop`, and `Scope` releases the secure (and
        // the reference, when it took one) exactly once.
        let region = unsafe { SecureRegion::from_parts(handle, address, len, mode, process) };
        let scope = Scope {
            region: ManuallyDrop::new(region),
            referenced: attached,
        };
        let result = f(&scope.region);
        scope.end();
        Ok(result)
    }
}

/// A scope's region, released as the scope ends: with its reference when it took one.
struct Scope {
    /// Never dropped as a `SecureRegion`: its drop would give up a reference that an
    /// unreferenced scope does not hold.
    region: ManuallyDrop<SecureRegion>,
    referenced: bool,
}

impl Scope {
    /// Ends the scope where `f` returned. Written out in `scope` rather than left to the drop,
    /// which only an unwinding `f` reaches: so in a driver (panics abort) the unsecure is inlined
    /// into the function that secured, where `cargo xtask bench --disasm-check` follows it.
    #[inline(always)]
    fn end(self) {
        let mut this = ManuallyDrop::new(self);
        this.release();
    }

    /// Releases the secure, and the reference if the scope took one. Called once: by `end`, or
    /// by the drop of a scope that `end` did not consume.
    #[inline(always)]
    fn release(&mut self) {
        let (handle, process) = self.region.handle_and_process();
        if self.referenced {
            // SAFETY: the scope's live secure, made in `process`'s context, with the reference
            // taken after it; both given up here, once.
            unsafe { context::release(handle, process) };
        } else {
            // SAFETY: the scope's live secure, released once, here; `process` owns this thread,
            // which keeps the object alive, so no other process can have its address.
            let _irql = unsafe { context::unsecure_or_abandon(handle, process) };
        }
    }
}

impl Drop for Scope {
    fn drop(&mut self) {
        self.release();
    }
}
