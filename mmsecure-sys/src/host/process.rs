//! [`Process`]: a simulated user process: its address space, its secures, its misuse record.

use core::fmt;
use core::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex};
use std::vec::Vec;

use super::access::AccessMode;
use super::fetch::Fetches;
use super::guard::{self, Fault};
use super::lock;
use super::misuse::Misuse;
use super::object;
use super::secure::{self, Owner, SecureSpan};
use super::status::{Status, STATUS_GUARD_PAGE_VIOLATION, STATUS_PROCESS_IS_TERMINATING};
use super::thread::{self, Attach};
use super::vad::{AddressSpace, VadKind};
use crate::{UserPtr, MM_SECURE_EXCLUSIVE, PAGE_READONLY, PEPROCESS};

/// Process ids: multiples of 4, as on Windows, unique in the binary (4 would be System). Unlike
/// `EPROCESS` values (see `object`), ids are never reused.
static NEXT_ID: AtomicU64 = AtomicU64::new(1000);

/// The size from which `MiSecureVirtualMemory` may skip its probe (mapview.c L6125).
const LARGE_SECURE: usize = 64 * 1024;

/// Takes one from a counter of failures to come, if any is left.
fn take_one(counter: &AtomicUsize) -> bool {
    counter
        .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| n.checked_sub(1))
        .is_ok()
}

/// A per-process secret mixed into its handles (deterministic: derived from the id).
fn cookie_of(id: u64) -> u64 {
    // splitmix64's finaliser.
    let mut z = id.wrapping_add(0x9E37_79B9_7F4A_7C15);
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

/// A simulated Windows user process. Cloning gives another handle to the same process.
///
/// Its memory operations are what a user thread (or a driver, with [`AccessMode::Kernel`]) does
/// to its address space while a driver holds a secure: they are where the secures' refusals show.
/// All of it is thread-safe; `Process` is `Send` and `Sync`.
///
/// ```
/// use mmsecure_sys::host::{AccessMode, Process, PAGE_READONLY, PAGE_READWRITE, STATUS_INVALID_PAGE_PROTECTION};
/// use mmsecure_sys::{MmSecureVirtualMemory, MmUnsecureVirtualMemory};
///
/// let process = Process::new();
/// let _in = process.attach(); // this thread now runs in the process' context
/// let buffer = process.allocate(8192, PAGE_READWRITE).unwrap();
///
/// // What a driver does, through the same declarations it uses on Windows:
/// // SAFETY: the routine checks the range itself and returns NULL if it will not secure it.
/// let handle = unsafe { MmSecureVirtualMemory(buffer.cast(), 8192, PAGE_READWRITE) };
/// assert!(!handle.is_null());
///
/// // What the user then cannot do:
/// let refused = process.protect(buffer, 4096, PAGE_READONLY, AccessMode::User).unwrap_err();
/// assert_eq!(refused.0, STATUS_INVALID_PAGE_PROTECTION);
/// assert!(process.free(buffer, AccessMode::User).is_err());
///
/// // SAFETY: the handle is live and this thread is in the process that secured it.
/// unsafe { MmUnsecureVirtualMemory(handle) };
/// assert!(process.free(buffer, AccessMode::User).is_ok());
/// assert!(process.misuses().is_empty());
/// ```
#[derive(Clone)]
pub struct Process {
    pub(crate) inner: Arc<ProcessInner>,
}

/// The shared state behind every `Process` handle of one process.
pub(crate) struct ProcessInner {
    id: u64,
    /// The process object's slot in `object`'s table, and the `EPROCESS` value it gives.
    slot: usize,
    eprocess: usize,
    /// `ObfReferenceObject` calls not yet matched by `ObfDereferenceObject`; each also holds a
    /// strong count on this `Arc` (see `object`).
    pub(crate) driver_refs: AtomicUsize,
    /// Threads attached by `attach_eprocess`: each holds a strong count on this `Arc` that is no
    /// reference on the object (`KeStackAttachProcess` takes none).
    pub(crate) unreferenced_attaches: AtomicUsize,
    cookie: u64,
    strict: AtomicBool,
    state: Mutex<ProcessState>,
    misuses: Mutex<Vec<Misuse>>,
    /// Pages that fault in a guarded copy ([`Process::inject_fault`]).
    pub(crate) faults: Mutex<Vec<Fault>>,
    /// The double-fetch detector's requests and findings.
    pub(crate) fetches: Fetches,
    /// How many of the next secures find the pool exhausted.
    pool_failures: AtomicUsize,
}

#[derive(Default)]
struct ProcessState {
    exited: bool,
    space: AddressSpace,
    /// Live secures: handle to the base of the allocation it is recorded on.
    secures: HashMap<usize, usize>,
    /// The last secure serial number used.
    serial: u64,
    /// Handles whose secures exit dropped: still this process' in the handle table, so that an
    /// unsecure of one in another process is reported with its owner.
    retired: Vec<usize>,
    /// Handles whose secures went with their allocation (a kernel-mode free past
    /// `USER_MODE_ONLY` secures): unsecuring one stops the caller (rule 11).
    orphaned: HashSet<usize>,
}

impl ProcessInner {
    pub(crate) fn record(&self, misuse: Misuse) {
        lock(&self.misuses).push(misuse);
    }

    pub(crate) fn is_strict(&self) -> bool {
        self.strict.load(Ordering::SeqCst)
    }
}

impl Drop for ProcessInner {
    fn drop(&mut self) {
        let faults = self
            .faults
            .get_mut()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        guard::forget(faults.len());
        let state = self
            .state
            .get_mut()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        let known = state
            .secures
            .keys()
            .chain(&state.orphaned)
            .chain(&state.retired);
        secure::forget(known.copied());
        object::release(self.slot);
    }
}

/// Where the quiet run after each user side of a copy that did not fault ends
/// ([`Process::copy_faults`]); `None` for a side that is the driver's own memory, or where it
/// was not looked for.
pub(crate) struct QuietEnds {
    pub(crate) src: Option<usize>,
    pub(crate) dst: Option<usize>,
}

/// What `MmUnsecureVirtualMemory` found in a process.
pub(crate) enum Unsecured {
    /// The secure was the process' own and is gone.
    Done,
    /// The process has exited.
    Exited,
    /// The process has no live secure with this handle.
    NotHere,
    /// The handle named a `MM_SECURE_USER_MODE_ONLY` secure of this process whose allocation a
    /// kernel-mode free or unmap removed, and the secure with it.
    Orphaned,
}

impl Process {
    /// A new process with an empty address space.
    ///
    /// ```
    /// use mmsecure_sys::host::Process;
    ///
    /// let (a, b) = (Process::new(), Process::new());
    /// assert_ne!(a.id(), b.id());
    /// assert_ne!(a.eprocess(), b.eprocess());
    /// ```
    pub fn new() -> Process {
        let id = NEXT_ID.fetch_add(4, Ordering::Relaxed);
        Process {
            inner: Arc::new_cyclic(|weak| {
                let slot = object::allocate(weak.clone());
                ProcessInner {
                    id,
                    slot,
                    eprocess: object::eprocess_of_slot(slot) as usize,
                    driver_refs: AtomicUsize::new(0),
                    unreferenced_attaches: AtomicUsize::new(0),
                    cookie: cookie_of(id),
                    strict: AtomicBool::new(false),
                    state: Mutex::new(ProcessState::default()),
                    misuses: Mutex::new(Vec::new()),
                    faults: Mutex::new(Vec::new()),
                    fetches: Fetches::new(),
                    pool_failures: AtomicUsize::new(0),
                }
            }),
        }
    }

    /// The process id (unique in this binary).
    pub fn id(&self) -> u64 {
        self.inner.id
    }

    /// What `IoGetCurrentProcess` returns on a thread attached to this process: a fake
    /// `EPROCESS` address in the kernel half, never dereferenced.
    ///
    /// No two live process objects share a value. Once a process object is gone (every
    /// `Process` value dropped and every driver reference released), its value goes to the next
    /// new process, the most recently freed first, as freed pool memory is reused on Windows:
    /// a `PEPROCESS` kept without a reference may then name another process.
    ///
    /// ```
    /// use mmsecure_sys::host::Process;
    ///
    /// let first = Process::new();
    /// let stale = first.eprocess();
    /// drop(first); // the last reference: the object is freed
    /// let second = Process::new();
    /// assert_eq!(second.eprocess(), stale); // same address, another process
    /// ```
    pub fn eprocess(&self) -> PEPROCESS {
        self.inner.eprocess as PEPROCESS
    }

    /// How many references drivers hold on this process object (`ObfReferenceObject` calls not
    /// yet matched by `ObfDereferenceObject`). While any stands, the object and its `EPROCESS`
    /// value stay this process's, even after every `Process` value is dropped.
    ///
    /// ```
    /// use mmsecure_sys::host::Process;
    /// use mmsecure_sys::{ObfDereferenceObject, ObfReferenceObject};
    ///
    /// let process = Process::new();
    /// // SAFETY: a live process object, at PASSIVE_LEVEL.
    /// unsafe { ObfReferenceObject(process.eprocess().cast()) };
    /// assert_eq!(process.driver_references(), 1);
    /// // SAFETY: the reference taken above, released once.
    /// unsafe { ObfDereferenceObject(process.eprocess().cast()) };
    /// assert_eq!(process.driver_references(), 0);
    /// ```
    pub fn driver_references(&self) -> usize {
        self.inner.driver_refs.load(Ordering::Relaxed)
    }

    /// Runs this thread in the process' context until the guard drops, like
    /// `KeStackAttachProcess`: `IoGetCurrentProcess` answers this process and the secure routines
    /// work on its address space. Attaches nest; dropping restores the previous context.
    ///
    /// A thread that is attached to no process is in the System process, which has no user
    /// memory: securing there fails.
    ///
    /// ```
    /// use mmsecure_sys::host::Process;
    /// use mmsecure_sys::IoGetCurrentProcess;
    ///
    /// let (a, b) = (Process::new(), Process::new());
    /// let in_a = a.attach();
    /// {
    ///     let _in_b = b.attach();
    ///     // SAFETY: the model answers from a thread-local.
    ///     assert_eq!(unsafe { IoGetCurrentProcess() }, b.eprocess());
    /// }
    /// // SAFETY: as above.
    /// assert_eq!(unsafe { IoGetCurrentProcess() }, a.eprocess());
    /// drop(in_a);
    /// ```
    pub fn attach(&self) -> Attach {
        Attach::new(self)
    }

    /// Runs `f` on a new thread of this process and returns what it returns (a panic in `f` is
    /// resumed here): the thread is owned by the process and runs in its context without an
    /// attach, as an application's thread does when it calls into a driver (an IOCTL sent with
    /// `DeviceIoControl` reaches a top-level driver's dispatch routine on the caller's thread).
    /// [`Process::attach`] is what a thread that belongs elsewhere does.
    ///
    /// The difference shows in `PsGetCurrentProcessId`, which names the process that owns the
    /// thread, attached or not: [`Process::id`] here, System's (4) on a thread of the test
    /// binary. The thread keeps its process object alive until `f` returns, as a thread holds a
    /// reference on its process.
    ///
    /// ```
    /// use mmsecure_sys::host::Process;
    /// use mmsecure_sys::{IoGetCurrentProcess, PsGetCurrentProcessId, PsGetProcessId};
    ///
    /// let app = Process::new();
    /// let (current, own) = app.run_thread(|| {
    ///     // SAFETY: the model answers from thread-locals.
    ///     let ids = unsafe { (PsGetProcessId(IoGetCurrentProcess()), PsGetCurrentProcessId()) };
    ///     (ids.0 as u64, ids.1 as u64) // ids, to be sent back to this thread
    /// });
    /// assert_eq!(current, own); // in its own process
    /// assert_eq!(own, app.id());
    ///
    /// let _attached = app.attach(); // this thread belongs to System
    /// // SAFETY: as above.
    /// assert_ne!(unsafe { PsGetProcessId(IoGetCurrentProcess()) }, unsafe { PsGetCurrentProcessId() });
    /// ```
    pub fn run_thread<R: Send>(&self, f: impl FnOnce() -> R + Send) -> R {
        std::thread::scope(|scope| {
            let thread = scope.spawn(|| thread::as_thread_of(self, f));
            match thread.join() {
                Ok(result) => result,
                Err(panic) => std::panic::resume_unwind(panic),
            }
        })
    }

    fn state(&self) -> std::sync::MutexGuard<'_, ProcessState> {
        lock(&self.inner.state)
    }

    /// A live (not exited) state, or `STATUS_PROCESS_IS_TERMINATING`.
    fn live_state(&self) -> Result<std::sync::MutexGuard<'_, ProcessState>, Status> {
        let state = self.state();
        if state.exited {
            return Err(Status(STATUS_PROCESS_IS_TERMINATING));
        }
        Ok(state)
    }

    /// Reserves and commits `len` bytes (rounded up to whole pages) with `protect`, like
    /// `VirtualAlloc(MEM_RESERVE | MEM_COMMIT)`: page-aligned, zeroed real memory.
    ///
    /// Fails with `STATUS_INVALID_PARAMETER` for a zero length and
    /// `STATUS_INVALID_PAGE_PROTECTION` for a protection a private page cannot have.
    ///
    /// ```
    /// use mmsecure_sys::host::{Process, PAGE_READWRITE};
    ///
    /// let process = Process::new();
    /// let page = process.allocate(100, PAGE_READWRITE).unwrap();
    /// assert_eq!(page as usize % 4096, 0);
    /// assert_eq!(process.protection(page.wrapping_add(4095)), Some(PAGE_READWRITE));
    /// assert_eq!(process.protection(page.wrapping_add(4096)), None);
    /// ```
    pub fn allocate(&self, len: usize, protect: u32) -> Result<*mut u8, Status> {
        let base = self
            .live_state()?
            .space
            .insert(VadKind::Private, len, protect)?;
        Ok(base as *mut u8)
    }

    /// Commits `len` bytes as [`allocate`](Self::allocate) does, below 4 GiB: memory a 32-bit
    /// (WOW64) process's 32-bit pointers can name, to test what a driver reads from one
    /// (`UserAbi::Wow64` in mmsecure). Only on x86_64 Linux hosts (`MAP_32BIT`); elsewhere
    /// `STATUS_NO_MEMORY`.
    ///
    /// ```
    /// use mmsecure_sys::host::{Process, PAGE_READWRITE};
    ///
    /// let process = Process::new();
    /// if let Ok(low) = process.allocate_32bit(4096, PAGE_READWRITE) {
    ///     assert!((low as usize) < 1 << 32);
    ///     process.write(low, b"wow").unwrap();
    /// }
    /// ```
    pub fn allocate_32bit(&self, len: usize, protect: u32) -> Result<*mut u8, Status> {
        let base = self.live_state()?.space.insert_low(len, protect)?;
        Ok(base as *mut u8)
    }

    /// Reserves `len` bytes (rounded up to pages) without committing them, like
    /// `VirtualAlloc(MEM_RESERVE)`. Nothing can be secured there until [`commit`](Self::commit).
    ///
    /// ```
    /// use mmsecure_sys::host::{Process, PAGE_READWRITE};
    ///
    /// let process = Process::new();
    /// let region = process.reserve(3 * 4096).unwrap();
    /// assert_eq!(process.protection(region), None);
    /// process.commit(region.wrapping_add(4096), 4096, PAGE_READWRITE).unwrap();
    /// assert_eq!(process.protection(region.wrapping_add(4096)), Some(PAGE_READWRITE));
    /// ```
    pub fn reserve(&self, len: usize) -> Result<*mut u8, Status> {
        let base = self.live_state()?.space.insert(VadKind::Private, len, 0)?;
        Ok(base as *mut u8)
    }

    /// Commits the pages of `addr..addr + len` inside one private allocation, like
    /// `VirtualAlloc(MEM_COMMIT)`, as WRK's `NtAllocateVirtualMemory` does (rule 24 of the
    /// [module docs](super)). Newly committed pages read as zero. Pages nobody has touched
    /// (committed with the allocation, never accessed, protected or probed) and decommitted ones
    /// get `protect` with **no secure check**; other pages with another protection are changed
    /// as a user-mode protection change would change them, and if a secure refuses that they
    /// keep their protection while the commit still succeeds.
    ///
    /// ```
    /// use mmsecure_sys::host::{Process, PAGE_NOACCESS, PAGE_READWRITE};
    /// use mmsecure_sys::{MmSecureVirtualMemory, MmUnsecureVirtualMemory};
    ///
    /// // A secure of 64 KiB of untouched memory probes nothing (WRK's large path)...
    /// let app = Process::new();
    /// let buffer = app.allocate(64 * 1024, PAGE_READWRITE).unwrap();
    /// let _in_app = app.attach();
    /// // SAFETY: the routine validates the range itself.
    /// let handle = unsafe { MmSecureVirtualMemory(buffer.cast(), 64 * 1024, PAGE_READWRITE) };
    /// assert!(!handle.is_null());
    /// // ...so a user's commit makes the secured pages no-access.
    /// app.commit(buffer, 64 * 1024, PAGE_NOACCESS).unwrap();
    /// assert_eq!(app.protection(buffer), Some(PAGE_NOACCESS));
    /// // SAFETY: the handle is live and this thread is in its process.
    /// unsafe { MmUnsecureVirtualMemory(handle) };
    /// ```
    pub fn commit(&self, addr: impl Into<UserPtr>, len: usize, protect: u32) -> Result<(), Status> {
        self.live_state()?
            .space
            .commit(addr.into().addr(), len, protect)
    }

    /// Changes the protection of the pages of `addr..addr + len` (inside one allocation, all
    /// committed), like `VirtualProtect` (`mode` User) or `ZwProtectVirtualMemory` from a driver
    /// (`mode` Kernel). Returns the first page's old protection. [`PAGE_GUARD`](super::PAGE_GUARD)
    /// in `protect` makes guard pages.
    ///
    /// A secure standing on the allocation may refuse it with `STATUS_INVALID_PAGE_PROTECTION`;
    /// see the rules in the [module docs](super).
    pub fn protect(
        &self,
        addr: impl Into<UserPtr>,
        len: usize,
        protect: u32,
        mode: AccessMode,
    ) -> Result<u32, Status> {
        self.live_state()?
            .space
            .protect(addr.into().addr(), len, protect, mode)
    }

    /// Decommits the pages of `addr..addr + len` of a private allocation, like
    /// `VirtualFree(MEM_DECOMMIT)`. Refused with `STATUS_INVALID_PAGE_PROTECTION` while a secure
    /// that applies to `mode` covers one of the pages, or has `MM_SECURE_NO_CHANGE` anywhere on
    /// the allocation (rule 8). A `len` of 0 at the allocation's base page decommits the whole
    /// allocation past every other secure, as WRK does (rule 25); elsewhere it is
    /// `STATUS_FREE_VM_NOT_AT_BASE`.
    ///
    /// ```
    /// use mmsecure_sys::host::{AccessMode, Process, PAGE_READWRITE, PAGE_SIZE};
    /// use mmsecure_sys::{MmSecureVirtualMemory, MmUnsecureVirtualMemory};
    ///
    /// let app = Process::new();
    /// let buffer = app.allocate(2 * PAGE_SIZE, PAGE_READWRITE).unwrap();
    /// let _in_app = app.attach();
    /// let second = buffer.wrapping_add(PAGE_SIZE);
    /// // SAFETY: the routine validates the range itself.
    /// let handle = unsafe { MmSecureVirtualMemory(second.cast(), PAGE_SIZE as u64, PAGE_READWRITE) };
    /// assert!(!handle.is_null());
    /// assert!(app.decommit(second, PAGE_SIZE, AccessMode::User).is_err());
    /// // Size 0 at the base: the secured page goes too.
    /// app.decommit(buffer, 0, AccessMode::User).unwrap();
    /// assert_eq!(app.protection(second), None);
    /// // SAFETY: the handle is live and this thread is in its process.
    /// unsafe { MmUnsecureVirtualMemory(handle) };
    /// ```
    pub fn decommit(
        &self,
        addr: impl Into<UserPtr>,
        len: usize,
        mode: AccessMode,
    ) -> Result<(), Status> {
        self.live_state()?
            .space
            .decommit(addr.into().addr(), len, mode)
    }

    /// Releases the whole private allocation whose base is `addr`, like
    /// `VirtualFree(MEM_RELEASE)`. Refused with `STATUS_INVALID_PAGE_PROTECTION` while any secure
    /// that applies to `mode` stands on it. The bytes stay owned by the model until the last
    /// handle to this process is dropped.
    pub fn free(&self, addr: impl Into<UserPtr>, mode: AccessMode) -> Result<(), Status> {
        self.remove(addr.into().addr(), VadKind::Private, mode)
    }

    /// Removes an allocation; the secures that went with it become orphans.
    fn remove(&self, addr: usize, kind: VadKind, mode: AccessMode) -> Result<(), Status> {
        let mut guard = self.live_state()?;
        let state = &mut *guard;
        for handle in state.space.remove(addr, kind, mode)? {
            state.secures.remove(&handle);
            state.orphaned.insert(handle);
        }
        Ok(())
    }

    /// Maps a view of a new pagefile-backed section, `len` bytes (rounded up to pages), all
    /// committed with `protect` (which may be `PAGE_WRITECOPY`).
    pub fn map_view(&self, len: usize, protect: u32) -> Result<*mut u8, Status> {
        let base = self
            .live_state()?
            .space
            .insert(VadKind::Mapped, len, protect)?;
        Ok(base as *mut u8)
    }

    /// Unmaps the view containing `addr`, like `NtUnmapViewOfSection`. Refused with
    /// `STATUS_INVALID_PAGE_PROTECTION` while a secure that applies to `mode` stands on it.
    pub fn unmap_view(&self, addr: impl Into<UserPtr>, mode: AccessMode) -> Result<(), Status> {
        self.remove(addr.into().addr(), VadKind::Mapped, mode)
    }

    /// A user thread of this process stores `bytes` at `addr`: every page touched must be
    /// committed and writable. A guard page faults with `STATUS_GUARD_PAGE_VIOLATION` (and loses
    /// its guard); a copy-on-write page becomes read-write. Securing never prevents this.
    pub fn write(&self, addr: impl Into<UserPtr>, bytes: &[u8]) -> Result<(), Status> {
        self.copy(addr.into().addr(), bytes.len(), true, |backing, offset| {
            backing.store(offset, bytes);
        })
    }

    /// A user thread of this process loads `out.len()` bytes from `addr`: every page touched
    /// must be committed and readable.
    pub fn read(&self, addr: impl Into<UserPtr>, out: &mut [u8]) -> Result<(), Status> {
        let len = out.len();
        self.copy(addr.into().addr(), len, false, |backing, offset| {
            backing.load(offset, out);
        })
    }

    fn copy(
        &self,
        addr: usize,
        len: usize,
        write: bool,
        f: impl FnOnce(&super::memory::Backing, usize),
    ) -> Result<(), Status> {
        let mut state = self.live_state()?;
        if len == 0 {
            return Ok(());
        }
        let (backing, offset) = state.space.access(addr, len, write)?;
        // Under the process lock: the copy is atomic with respect to the process' own
        // operations (a free cannot land halfway), though not to a driver's raw copies.
        f(&backing, offset);
        Ok(())
    }

    /// The protection of the page holding `addr` (with `PAGE_GUARD` if it is a guard page), or
    /// `None` if the page is not committed, not this process' memory, or the process exited.
    pub fn protection(&self, addr: impl Into<UserPtr>) -> Option<u32> {
        let state = self.state();
        if state.exited {
            return None;
        }
        state.space.protection(addr.into().addr())
    }

    /// Where a driver's copy of `len` bytes, reading the user memory at `src` and writing the
    /// user memory at `dst` (`None`: that side is the driver's own memory), first faults in this
    /// process's context, with `injected` the first injected fault the copy meets. Then applies
    /// what the copy did up to there, and no further, as a forward `rep movsb` stops at its first
    /// faulting byte: the copy-on-write pages written become read-write, and a guard page that
    /// raised loses its guard. At the same offset the read comes first. Everything faults in an
    /// exited process, which has no address space.
    ///
    /// A copy that does not fault gives, for each user side, where the run of pages after its
    /// range that a copy would pass and leave as they are ends, at most `quiet_pages` on (for
    /// the source, and for the destination; 0: not looked for) (`AddressSpace::quiet_end`), read
    /// under the same lock as the check.
    pub(crate) fn copy_faults(
        &self,
        src: Option<usize>,
        dst: Option<usize>,
        len: usize,
        injected: Option<(usize, crate::NTSTATUS)>,
        quiet_pages: (usize, usize),
    ) -> Result<QuietEnds, (usize, crate::NTSTATUS)> {
        let mut state = self.state();
        if state.exited {
            return Err((0, super::status::STATUS_ACCESS_VIOLATION));
        }
        let read = src.and_then(|at| state.space.probe(at, len, false));
        let write = dst.and_then(|at| state.space.probe(at, len, true));
        // The earliest fault; on a tie the read (the copy reads a byte before it writes it),
        // then the page's own fault before an injected one.
        let mut first: Option<(usize, crate::NTSTATUS, Option<usize>)> = None;
        for (fault, base) in [(read, src), (write, dst)] {
            if let Some((at, status)) = fault {
                if first.map_or(true, |(done, _, _)| at < done) {
                    first = Some((at, status.0, base));
                }
            }
        }
        if let Some((at, status)) = injected {
            if first.map_or(true, |(done, _, _)| at < done) {
                first = Some((at, status, None));
            }
        }
        let done = first.map_or(len, |(at, _, _)| at);
        if let Some(dst) = dst {
            state.space.written(dst, done);
            state.space.touch(dst, done);
        }
        if let Some(src) = src {
            state.space.touch(src, done);
        }
        if let Some((at, status, Some(base))) = first {
            if status == super::status::STATUS_GUARD_PAGE_VIOLATION {
                state.space.clear_guard(base + at);
            }
        }
        if let Some((at, status, _)) = first {
            return Err((at, status));
        }
        let space = &state.space;
        let (src_pages, dst_pages) = quiet_pages;
        Ok(QuietEnds {
            src: src
                .filter(|_| src_pages > 0)
                .map(|at| space.quiet_end(at, len, false, src_pages)),
            dst: dst
                .filter(|_| dst_pages > 0)
                .map(|at| space.quiet_end(at, len, true, dst_pages)),
        })
    }

    /// Whether the page holding `addr` is touched, if it is in an allocation.
    #[cfg(test)]
    pub(crate) fn is_touched(&self, addr: impl Into<UserPtr>) -> Option<bool> {
        self.state().space.is_touched(addr.into().addr())
    }

    /// How many secures stand in this process (including ones inherited from a fork).
    pub fn secure_count(&self) -> usize {
        self.state().secures.len()
    }

    /// Whether `handle` names a secure standing in this process: not unsecured, not taken by the
    /// exit, nor by a kernel-mode free or unmap of its allocation (which a
    /// `MM_SECURE_USER_MODE_ONLY` secure lets pass). Unsecuring a handle of this process for
    /// which this is `false` stops the caller as a bug check, but after the exit.
    ///
    /// ```
    /// use mmsecure_sys::host::{AccessMode, Process, PAGE_READWRITE};
    /// use mmsecure_sys::{MmSecureVirtualMemoryEx, MM_SECURE_USER_MODE_ONLY};
    ///
    /// let process = Process::new();
    /// let _in = process.attach();
    /// let page = process.allocate(4096, PAGE_READWRITE).unwrap();
    /// // SAFETY: the model checks the range itself.
    /// let handle =
    ///     unsafe { MmSecureVirtualMemoryEx(page.cast(), 4096, PAGE_READWRITE, MM_SECURE_USER_MODE_ONLY) };
    /// assert!(process.is_secured(handle));
    /// process.free(page, AccessMode::Kernel).unwrap(); // another driver's ZwFreeVirtualMemory
    /// assert!(!process.is_secured(handle)); // unsecuring it now would bug check
    /// ```
    pub fn is_secured(&self, handle: crate::HANDLE) -> bool {
        self.state().secures.contains_key(&(handle as usize))
    }

    /// Clones the process, as `fork` (`NtCreateProcess` with the parent's address space) does.
    ///
    /// The child has every allocation at the same address with the same pages and protections,
    /// and a copy of each secure made without `MM_SECURE_NO_INHERIT`: those protect the child's
    /// copy until the child exits (no handle to them exists). The child's misuse record is
    /// empty and it is not strict.
    ///
    /// **Limit of the model:** the host cannot map two copies at one address, so the child's
    /// allocations share the parent's bytes (a write in either shows in both) rather than
    /// being copy-on-write. Only their bookkeeping (allocations, protections, secures) is the
    /// child's own.
    ///
    /// ```
    /// use mmsecure_sys::host::{AccessMode, Process, PAGE_READONLY, PAGE_READWRITE};
    /// use mmsecure_sys::MmSecureVirtualMemory;
    ///
    /// let parent = Process::new();
    /// let page = parent.allocate(4096, PAGE_READWRITE).unwrap();
    /// let _in = parent.attach();
    /// // SAFETY: the model checks the range.
    /// let _secured = unsafe { MmSecureVirtualMemory(page.cast(), 4096, PAGE_READWRITE) };
    /// let child = parent.fork();
    /// assert!(child.protect(page, 4096, PAGE_READONLY, AccessMode::User).is_err());
    /// child.exit(); // the child's copy goes away with the child
    /// # unsafe { mmsecure_sys::MmUnsecureVirtualMemory(_secured) };
    /// ```
    pub fn fork(&self) -> Process {
        let child = Process::new();
        {
            let parent = self.state();
            let mut guard = child.state();
            let state = &mut *guard;
            if parent.exited {
                state.exited = true;
            } else {
                for vad in parent.space.vads() {
                    let mut copy = vad.fork_copy();
                    for (_, span) in vad.secures().filter(|(_, span)| span.inherited()) {
                        let owner = Owner { pid: child.id() };
                        let handle = secure::issue(&mut state.serial, child.inner.cookie, owner);
                        copy.add_secure(handle, *span);
                        state.secures.insert(handle, copy.base());
                    }
                    state.space.insert_vad(copy);
                }
            }
        }
        child
    }

    /// Ends the process: every secure it holds is dropped and its address space deleted, and
    /// nothing is refused (DOCS, WRK: teardown ignores secures). Threads still attached stay in
    /// its context: securing there fails, and unsecuring returns and records nothing, as the
    /// kernel does once the address space is deleted. Exiting twice does nothing.
    pub fn exit(&self) {
        let mut guard = self.state();
        let state = &mut *guard;
        if state.exited {
            return;
        }
        state.exited = true;
        let dropped: Vec<usize> = state.secures.drain().map(|(handle, _)| handle).collect();
        state.retired.extend(dropped);
        state.retired.extend(state.orphaned.drain());
        state.space.delete();
        drop(guard);
        self.inner.fetches.close_all();
    }

    /// Whether [`exit`](Self::exit) has run.
    pub fn has_exited(&self) -> bool {
        self.state().exited
    }

    /// The misuses recorded against this process: made in its context, or with a handle it
    /// issued.
    pub fn misuses(&self) -> Vec<Misuse> {
        lock(&self.inner.misuses).clone()
    }

    /// How many secures a wrapper left standing against this process ([`misuses`](Self::misuses)
    /// of kind [`MisuseKind::Abandoned`](super::MisuseKind::Abandoned)): a drop in the wrong
    /// process or above `APC_LEVEL`. Unlike mmsecure's global `abandoned_secures()`, no other
    /// test's process adds to it, so `assert_eq!(process.abandoned_secures(), 0)` holds under
    /// cargo's parallel test threads.
    ///
    /// ```
    /// use mmsecure_sys::host::{Process, PAGE_READWRITE};
    /// use mmsecure_sys::{MmSecureVirtualMemory, PAGE_READWRITE as RW};
    ///
    /// let app = Process::new();
    /// let page = app.allocate(4096, PAGE_READWRITE).unwrap();
    /// let in_app = app.attach();
    /// // SAFETY: the model checks the range itself.
    /// let handle = unsafe { MmSecureVirtualMemory(page.cast(), 4096, RW) };
    /// drop(in_app);
    /// assert_eq!(app.abandoned_secures(), 0);
    /// mmsecure_sys::report_abandoned_secure(handle, app.eprocess());
    /// assert_eq!(app.abandoned_secures(), 1);
    /// ```
    pub fn abandoned_secures(&self) -> usize {
        lock(&self.inner.misuses)
            .iter()
            .filter(|misuse| misuse.kind == super::MisuseKind::Abandoned)
            .count()
    }

    /// In strict mode, a misuse recorded against this process stops the test binary (printing
    /// the misuse), as Driver Verifier would bug check, and a double fetch found in it
    /// ([`double_fetches`](Self::double_fetches)) panics where the second read was made, which
    /// fails the test. Off by default.
    pub fn set_strict(&self, strict: bool) {
        self.inner.strict.store(strict, Ordering::SeqCst);
    }

    pub(crate) fn is_strict(&self) -> bool {
        self.inner.is_strict()
    }

    /// `MmSecureVirtualMemory(Ex)` in this process, once the arguments passed the routine's own
    /// checks: the handle, or 0 if refused.
    /// Makes the next `count` secures in this process that pass every check fail as if
    /// nonpaged pool were exhausted: `MiSecureVirtualMemory` allocates its secure entry with
    /// `ExAllocatePoolWithTag` and returns NULL when that fails (mapview.c L6481-L6486), for a
    /// request that is otherwise valid. A driver's NULL path is so tested with good arguments
    /// too. A refused secure (bad range, pages without the access) does not use one up; neither
    /// does the large path's lack of a probe. Calling it again replaces the count.
    ///
    /// ```
    /// use mmsecure_sys::host::{Process, PAGE_READWRITE, PAGE_SIZE};
    /// use mmsecure_sys::MmSecureVirtualMemory;
    ///
    /// let app = Process::new();
    /// let buffer = app.allocate(PAGE_SIZE, PAGE_READWRITE).unwrap();
    /// let _in_app = app.attach();
    /// app.fail_pool_allocations(1);
    /// // SAFETY: the routine validates the range itself.
    /// let handle = unsafe { MmSecureVirtualMemory(buffer.cast(), PAGE_SIZE as u64, PAGE_READWRITE) };
    /// assert!(handle.is_null());
    /// assert_eq!(app.secure_count(), 0);
    /// ```
    pub fn fail_pool_allocations(&self, count: usize) {
        self.inner.pool_failures.store(count, Ordering::SeqCst);
    }

    /// `MiSecureVirtualMemory`'s checks of the pages (mapview.c): whether the secure may go on.
    ///
    /// A secure of 64 KiB or more (L6125) of a range inside one allocation (else NULL, L6152)
    /// that takes the large path ([`Vad::takes_large_path`](super::vad::Vad)) is accepted with
    /// no probe: pages stay untouched. Every other secure takes the long way (L6381-L6419): it
    /// reads one byte of each page (read-only, L6405-L6408) or reads and writes one back
    /// (`ProbeForWrite`, ex/probe.c L116-L119), in order, under `try`; the first fault returns
    /// NULL (L6414-L6418). The probe is a real access: the pages before the fault are touched, a
    /// copy-on-write page it writes becomes private read-write, and a guard page it reaches
    /// faults and loses its guard (so a second secure of the same range gets past it).
    fn probe_for_secure(space: &mut AddressSpace, address: usize, size: usize, probe: u32) -> bool {
        if size >= LARGE_SECURE {
            let (vad, first, end) = match space.locate(address, size) {
                Ok(found) => found,
                Err(_) => return false,
            };
            if vad.takes_large_path(first, end, probe) {
                return true;
            }
        }
        let write = probe != PAGE_READONLY;
        let fault = space.probe(address, size, write);
        let done = fault.map_or(size, |(at, _)| at);
        if write {
            space.written(address, done);
        }
        space.touch(address, done);
        match fault {
            Some((at, status)) => {
                if status.0 == STATUS_GUARD_PAGE_VIOLATION {
                    space.clear_guard(address + at);
                }
                false
            }
            None => true,
        }
    }

    pub(crate) fn secure(&self, address: usize, size: usize, probe: u32, flags: u32) -> usize {
        let mut guard = self.state();
        let state = &mut *guard;
        if state.exited {
            return 0;
        }
        if !Self::probe_for_secure(&mut state.space, address, size, probe) {
            return 0;
        }
        // mapview.c L6429-L6450: the range must lie inside one allocation.
        let (vad, _, _) = match state.space.locate(address, size) {
            Ok(found) => found,
            Err(_) => return 0,
        };
        // EXCLUSIVE only if nothing else is on the allocation; and nothing joins an exclusive
        // secure (the kernel pins the VAD for it: the stricter reading).
        let exclusive_conflict =
            vad.has_exclusive() || (flags & MM_SECURE_EXCLUSIVE != 0 && vad.secure_count() > 0);
        if exclusive_conflict {
            return 0;
        }
        // mapview.c L6481-L6486: the secure entry (or the long VAD) comes from nonpaged pool;
        // when `ExAllocatePoolWithTag` fails the routine returns NULL for a valid request.
        if take_one(&self.inner.pool_failures) {
            return 0;
        }
        let (vad, first, end) = match state.space.locate(address, size) {
            Ok(found) => found,
            Err(_) => return 0,
        };
        let base = vad.base();
        let owner = Owner { pid: self.id() };
        let handle = secure::issue(&mut state.serial, self.inner.cookie, owner);
        let span = SecureSpan {
            first,
            end,
            probe,
            flags,
        };
        match state.space.vad_by_base_mut(base) {
            Some(vad) => vad.add_secure(handle, span),
            None => return 0,
        }
        state.secures.insert(handle, base);
        drop(guard);
        self.inner.fetches.opened(handle, address, size);
        handle
    }

    /// `MmUnsecureVirtualMemory` in this process.
    pub(crate) fn unsecure(&self, handle: usize) -> Unsecured {
        let mut guard = self.state();
        let state = &mut *guard;
        if state.exited {
            return Unsecured::Exited;
        }
        match state.secures.remove(&handle) {
            Some(base) => {
                if let Some(vad) = state.space.vad_by_base_mut(base) {
                    vad.remove_secure(handle);
                }
            }
            None if state.orphaned.contains(&handle) => return Unsecured::Orphaned,
            None => return Unsecured::NotHere,
        }
        drop(guard);
        self.inner.fetches.closed(handle);
        secure::forget([handle]);
        Unsecured::Done
    }
}

impl Default for Process {
    fn default() -> Process {
        Process::new()
    }
}

impl fmt::Debug for Process {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Process")
            .field("id", &self.inner.id)
            .field("exited", &self.has_exited())
            .finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::host::STATUS_INVALID_PARAMETER;
    use crate::PAGE_READWRITE;

    #[test]
    fn zero_length_allocation_is_an_invalid_parameter() {
        let process = Process::new();
        assert_eq!(
            process.allocate(0, PAGE_READWRITE),
            Err(Status(STATUS_INVALID_PARAMETER))
        );
    }

    #[test]
    fn eprocess_is_in_the_kernel_half() {
        let process = Process::new();
        assert!(process.eprocess() as usize > super::super::HIGHEST_USER_ADDRESS);
        assert_ne!(process.eprocess(), object::system_eprocess());
    }

    #[test]
    fn process_is_send_and_sync() {
        fn check<T: Send + Sync>() {}
        check::<Process>();
    }
}
