//! The double-fetch detector: the model sees every guarded read of user memory, and reports a
//! driver that reads the same user bytes twice within one request.
//!
//! A double fetch is the bug that securing does not prevent: the user rewrites the bytes between
//! the driver's two reads, so that what the driver validated (the first read) is not what it uses
//! (the second). Bochspwn-style research found many in the Windows kernel; a secure keeps the
//! pages mapped, never the bytes still. The fix is always the same: copy once, and work on the
//! copy.
//!
//! # What a request is
//!
//! - **By default, one secure's life**: from the `MmSecureVirtualMemory(Ex)` that made it to the
//!   `MmUnsecureVirtualMemory` that ends it (or the process's exit). A guarded read is part of
//!   the request of every standing secure of the current process whose range (as given, not
//!   page-rounded) it overlaps. The model learns of a region's life from the secure and unsecure
//!   routines themselves, which every wrapper calls, so a driver on the raw declarations is
//!   checked as one on `mmsecure` is. Where secures of several threads overlap the read, only
//!   those made on the reading thread count (two dispatch routines reading one shared buffer
//!   each read it once); a read on a thread that made none of them (a worker completing a
//!   pended request) counts for all of them.
//! - **An explicit scope** ([`Process::begin_request`]): while it stands, every guarded read of
//!   the process's user memory, inside a secure or not, belongs to that one request, across any
//!   number of secures: a driver that secures a header, unsecures, and secures it again to read
//!   it a second time is caught there, and by default not.
//!
//! Only what a guarded copy actually read counts: a copy that faults read the bytes before the
//! fault. Writes are not fetches. Reads the process itself makes ([`Process::read`]) are the
//! user's, not the driver's.
//!
//! # Limits
//!
//! Findings are kept up to [`MAX_FINDINGS`] per process (the count goes on:
//! [`Process::double_fetch_count`]). A read identical to one already recorded in a request is
//! reported and not stored again, so a loop that re-reads one header grows nothing but the count.

use core::fmt;
use core::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::vec::Vec;

use super::lock;
use super::memory;
use super::process::{Process, ProcessInner};
use super::thread::current_fast;

/// The most findings a process keeps; [`Process::double_fetch_count`] counts past it.
///
/// ```
/// assert_eq!(mmsecure_sys::host::MAX_FINDINGS, 1024);
/// ```
pub const MAX_FINDINGS: usize = 1024;

/// One guarded read of user memory: where, how long, and its number among the reads the process
/// has seen (from 1), so that a finding's two reads can be told apart and ordered.
///
/// ```
/// use mmsecure_sys::host::{Fetch, Process, PAGE_READWRITE};
/// use mmsecure_sys::{MmSecureVirtualMemory, MmUnsecureVirtualMemory, PAGE_READONLY};
///
/// let process = Process::new();
/// let _in_process = process.attach();
/// let buffer = process.allocate(4096, PAGE_READWRITE).unwrap();
/// let mut out = [0u8; 8];
/// // SAFETY: secured, readable, in the current process; `out` is the driver's.
/// unsafe {
///     let handle = MmSecureVirtualMemory(buffer.cast(), 8, PAGE_READONLY);
///     mmsecure_sys::copy_guarded(out.as_mut_ptr(), buffer, 8);
///     mmsecure_sys::copy_guarded(out.as_mut_ptr(), buffer.wrapping_add(4), 4);
///     MmUnsecureVirtualMemory(handle);
/// }
/// let second: Fetch = process.double_fetches()[0].second;
/// assert_eq!((second.address, second.len), (buffer as usize + 4, 4));
/// ```
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct Fetch {
    /// The first user byte read.
    pub address: usize,
    /// How many bytes were read.
    pub len: usize,
    /// The read's number among the guarded reads recorded in this process, from 1.
    pub serial: u64,
}

/// A double fetch: `second` read user bytes that `first` had read already, within one request.
///
/// ```
/// use mmsecure_sys::host::{Process, PAGE_READWRITE};
/// use mmsecure_sys::{MmSecureVirtualMemory, MmUnsecureVirtualMemory, PAGE_READONLY};
///
/// let process = Process::new();
/// let _in_process = process.attach();
/// let buffer = process.allocate(4096, PAGE_READWRITE).unwrap();
/// // SAFETY: the routine checks the range itself.
/// let handle = unsafe { MmSecureVirtualMemory(buffer.cast(), 16, PAGE_READONLY) };
/// let mut length = [0u8; 4];
/// let mut header = [0u8; 16];
/// // SAFETY: both reads are inside the secured, readable range; the buffers are the driver's.
/// unsafe {
///     mmsecure_sys::copy_guarded(length.as_mut_ptr(), buffer, 4); // validate the length...
///     mmsecure_sys::copy_guarded(header.as_mut_ptr(), buffer, 16); // ...then read it again
///     MmUnsecureVirtualMemory(handle);
/// }
/// let found = process.double_fetches();
/// assert_eq!(found.len(), 1);
/// assert_eq!((found[0].address, found[0].len), (buffer as usize, 4));
/// assert_eq!((found[0].first.len, found[0].second.len), (4, 16));
/// assert!(found[0].first.serial < found[0].second.serial);
/// ```
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct DoubleFetch {
    /// The first user byte both reads read.
    pub address: usize,
    /// How many bytes both reads read.
    pub len: usize,
    /// The earlier read.
    pub first: Fetch,
    /// The later read, of bytes the earlier one had read.
    pub second: Fetch,
}

impl fmt::Display for DoubleFetch {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "double fetch of {} bytes at {:#x}: read #{} ({} bytes at {:#x}) and read #{} ({} \
             bytes at {:#x}) in one request",
            self.len,
            self.address,
            self.first.serial,
            self.first.len,
            self.first.address,
            self.second.serial,
            self.second.len,
            self.second.address,
        )
    }
}

/// Numbers threads, from 1, for telling whose secure a read falls in.
static NEXT_THREAD: AtomicU64 = AtomicU64::new(1);

std::thread_local! {
    static THREAD: u64 = NEXT_THREAD.fetch_add(1, Ordering::Relaxed);
}

/// This thread's number (0 while the thread is being torn down).
fn thread_id() -> u64 {
    THREAD.try_with(|id| *id).unwrap_or(0)
}

/// The reads of one request.
#[derive(Default)]
struct Reads {
    reads: Vec<Fetch>,
}

impl Reads {
    /// Adds `read`, returning the double fetches it makes with the reads before it.
    fn add(&mut self, read: Fetch, found: &mut Vec<DoubleFetch>) {
        let end = read.address + read.len;
        let mut duplicate = false;
        for earlier in &self.reads {
            let start = earlier.address.max(read.address);
            let stop = (earlier.address + earlier.len).min(end);
            if start < stop {
                let finding = DoubleFetch {
                    address: start,
                    len: stop - start,
                    first: *earlier,
                    second: read,
                };
                // Two secures over the same bytes both see the read: report it once.
                if !found
                    .iter()
                    .any(|f| f.first == finding.first && f.second == finding.second)
                {
                    found.push(finding);
                }
                duplicate |= earlier.address == read.address && earlier.len == read.len;
            }
        }
        if !duplicate {
            self.reads.push(read);
        }
    }
}

/// A standing secure, as a request: its range as given, the thread that made it, and the reads
/// made inside it.
struct Secured {
    thread: u64,
    start: usize,
    end: usize,
    reads: Reads,
}

#[derive(Default)]
struct State {
    /// Standing secures of the process by handle, each a request while no scope is open. A
    /// secure and an unsecure cost one hash-map operation each; a read that is tracked looks at
    /// every standing secure of the process.
    secured: HashMap<usize, Secured>,
    /// Open explicit scopes, innermost last: `(id, reads)`.
    scopes: Vec<(u64, Reads)>,
    next_scope: u64,
    serial: u64,
    findings: Vec<DoubleFetch>,
    /// Every finding, kept or not.
    count: usize,
}

/// A process's detector.
pub(crate) struct Fetches {
    enabled: AtomicBool,
    /// Secures plus open scopes: a read with none of either costs one load.
    tracked: AtomicUsize,
    state: Mutex<State>,
}

impl Fetches {
    pub(crate) fn new() -> Fetches {
        Fetches {
            enabled: AtomicBool::new(true),
            tracked: AtomicUsize::new(0),
            state: Mutex::new(State::default()),
        }
    }

    /// Whether the detector is on: a request opened while it is off is not tracked, as a secure
    /// made then is not.
    pub(crate) fn is_enabled(&self) -> bool {
        self.enabled.load(Ordering::Relaxed)
    }

    /// A secure of `size` bytes at `address` now stands: a request of its own (unless the
    /// detector is off).
    pub(crate) fn opened(&self, handle: usize, address: usize, size: usize) {
        if !self.enabled.load(Ordering::Relaxed) {
            return;
        }
        let mut state = lock(&self.state);
        let secured = Secured {
            thread: thread_id(),
            start: address,
            end: address.saturating_add(size),
            reads: Reads::default(),
        };
        if state.secured.insert(handle, secured).is_none() {
            self.tracked.fetch_add(1, Ordering::Relaxed);
        }
    }

    /// The secure `handle` is gone (unsecured): its request ends.
    pub(crate) fn closed(&self, handle: usize) {
        if self.tracked.load(Ordering::Relaxed) == 0 {
            return;
        }
        let mut state = lock(&self.state);
        if state.secured.remove(&handle).is_some() {
            self.tracked.fetch_sub(1, Ordering::Relaxed);
        }
    }

    /// The process exited: every secure's request ends.
    pub(crate) fn close_all(&self) {
        let mut state = lock(&self.state);
        let closed = state.secured.len();
        state.secured.clear();
        self.tracked.fetch_sub(closed, Ordering::Relaxed);
    }
}

/// A guarded copy read `len` bytes of user memory at `address` in the current process's
/// context: adds the read to its requests, and reports what it read twice. In strict mode a
/// double fetch panics, which fails the test (the guarded copy is a Rust function, which may
/// unwind, unlike the `extern "C"` routines where a misuse must abort).
#[inline]
pub(crate) fn record(address: usize, len: usize) {
    if len == 0 {
        return;
    }
    let current = current_fast();
    if current.inner.is_null() {
        return;
    }
    // SAFETY: `current.inner` is the process this thread is attached to: `FAST` names it only
    // while the thread's `CURRENT` holds that `Process` (see `thread::Current`).
    let inner = unsafe { &*current.inner };
    let fetches = &inner.fetches;
    if fetches.tracked.load(Ordering::Relaxed) == 0 || !fetches.enabled.load(Ordering::Relaxed) {
        return;
    }
    record_slow(inner, address, len);
}

#[cold]
fn record_slow(inner: &ProcessInner, address: usize, len: usize) {
    let fetches = &inner.fetches;
    let scoped = !lock(&fetches.state).scopes.is_empty();
    // A scope takes every read of user memory; the driver's own buffers are not user memory.
    if scoped && !memory::is_model_memory(address, len) {
        return;
    }
    let mut found = Vec::new();
    let first_new = {
        let mut guard = lock(&fetches.state);
        let state = &mut *guard;
        let end = address.saturating_add(len);
        let overlaps = state.scopes.is_empty()
            && state
                .secured
                .values()
                .any(|s| s.start < end && address < s.end);
        if state.scopes.is_empty() && !overlaps {
            return;
        }
        state.serial += 1;
        let read = Fetch {
            address,
            len,
            serial: state.serial,
        };
        match state.scopes.last_mut() {
            Some((_, reads)) => reads.add(read, &mut found),
            None => {
                let thread = thread_id();
                let overlaps = |s: &Secured| s.start < end && address < s.end;
                let own = state
                    .secured
                    .values()
                    .any(|s| overlaps(s) && s.thread == thread);
                for secured in state.secured.values_mut() {
                    if overlaps(secured) && (!own || secured.thread == thread) {
                        secured.reads.add(read, &mut found);
                    }
                }
            }
        }
        state.count += found.len();
        let room = MAX_FINDINGS.saturating_sub(state.findings.len());
        state.findings.extend(found.iter().take(room).copied());
        found.first().copied()
    };
    if let Some(finding) = first_new {
        if inner.is_strict() {
            panic!("mmsecure host model, strict mode: {finding}");
        }
    }
}

/// An explicit request: while it stands, every guarded read of its process's user memory belongs
/// to it, across secures. Made by [`Process::begin_request`]; dropping it ends the request.
/// Scopes nest: reads belong to the innermost one.
///
/// ```
/// use mmsecure_sys::host::{Process, RequestScope};
///
/// let process = Process::new();
/// let request: RequestScope = process.begin_request();
/// // ... the dispatch routine under test runs here ...
/// drop(request);
/// assert!(process.double_fetches().is_empty());
/// ```
#[must_use = "the request ends when this guard is dropped"]
pub struct RequestScope {
    process: Arc<ProcessInner>,
    id: u64,
}

impl Drop for RequestScope {
    fn drop(&mut self) {
        let fetches = &self.process.fetches;
        let mut state = lock(&fetches.state);
        if let Some(at) = state.scopes.iter().position(|(id, _)| *id == self.id) {
            state.scopes.remove(at);
            fetches.tracked.fetch_sub(1, Ordering::Relaxed);
        }
    }
}

impl fmt::Debug for RequestScope {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RequestScope")
            .field("id", &self.id)
            .finish()
    }
}

impl Process {
    /// Opens an explicit request: until the returned scope is dropped, every guarded read of
    /// this process's user memory belongs to one request, whatever secures come and go, and a
    /// second read of bytes read before is a double fetch (see [`DoubleFetch`]).
    ///
    /// Without a scope a request is one secure's life. A dispatch routine that secures a
    /// header, unsecures it and secures it again reads it in two requests, which only a scope
    /// around the whole dispatch sees as one:
    ///
    /// ```
    /// use mmsecure_sys::host::{Process, PAGE_READWRITE};
    /// use mmsecure_sys::{MmSecureVirtualMemory, MmUnsecureVirtualMemory, PAGE_READONLY};
    ///
    /// let process = Process::new();
    /// let _in_process = process.attach();
    /// let buffer = process.allocate(4096, PAGE_READWRITE).unwrap();
    /// let dispatch = || {
    ///     for _ in 0..2 {
    ///         let mut header = [0u8; 8];
    ///         // SAFETY: secured, readable, in the current process; the buffer is ours.
    ///         unsafe {
    ///             let handle = MmSecureVirtualMemory(buffer.cast(), 8, PAGE_READONLY);
    ///             mmsecure_sys::copy_guarded(header.as_mut_ptr(), buffer, 8);
    ///             MmUnsecureVirtualMemory(handle);
    ///         }
    ///     }
    /// };
    /// dispatch();
    /// assert!(process.double_fetches().is_empty()); // two secures, two requests
    /// let request = process.begin_request();
    /// dispatch();
    /// drop(request);
    /// assert_eq!(process.double_fetches().len(), 1); // one request
    /// ```
    pub fn begin_request(&self) -> RequestScope {
        let fetches = &self.inner.fetches;
        let mut state = lock(&fetches.state);
        state.next_scope += 1;
        let id = state.next_scope;
        state.scopes.push((id, Reads::default()));
        fetches.tracked.fetch_add(1, Ordering::Relaxed);
        RequestScope {
            process: Arc::clone(&self.inner),
            id,
        }
    }

    /// The double fetches found in this process so far, in order (at most [`MAX_FINDINGS`]).
    /// In strict mode ([`set_strict`](Self::set_strict)) the first one panics instead, failing
    /// the test where it happened.
    ///
    /// ```
    /// use mmsecure_sys::host::{Process, PAGE_READWRITE};
    ///
    /// let process = Process::new();
    /// assert!(process.double_fetches().is_empty());
    /// ```
    pub fn double_fetches(&self) -> Vec<DoubleFetch> {
        lock(&self.inner.fetches.state).findings.clone()
    }

    /// How many double fetches were found in this process, including those past
    /// [`MAX_FINDINGS`] that [`double_fetches`](Self::double_fetches) does not keep.
    ///
    /// ```
    /// use mmsecure_sys::host::Process;
    ///
    /// assert_eq!(Process::new().double_fetch_count(), 0);
    /// ```
    pub fn double_fetch_count(&self) -> usize {
        lock(&self.inner.fetches.state).count
    }

    /// Turns the detector on or off for this process (on by default). Off, a guarded read, a
    /// secure and an unsecure cost the detector a load each: for benchmarks, which re-read one
    /// buffer on purpose and measure the crate, not the model. Secures made while it is off are
    /// not requests; explicit scopes still are.
    ///
    /// ```
    /// use mmsecure_sys::host::{Process, PAGE_READWRITE};
    /// use mmsecure_sys::{MmSecureVirtualMemory, MmUnsecureVirtualMemory, PAGE_READONLY};
    ///
    /// let process = Process::new();
    /// process.set_double_fetch_detection(false);
    /// let _in_process = process.attach();
    /// let buffer = process.allocate(4096, PAGE_READWRITE).unwrap();
    /// let mut byte = [0u8; 1];
    /// // SAFETY: secured, readable, in the current process; the buffer is ours.
    /// unsafe {
    ///     let handle = MmSecureVirtualMemory(buffer.cast(), 1, PAGE_READONLY);
    ///     mmsecure_sys::copy_guarded(byte.as_mut_ptr(), buffer, 1);
    ///     mmsecure_sys::copy_guarded(byte.as_mut_ptr(), buffer, 1);
    ///     MmUnsecureVirtualMemory(handle);
    /// }
    /// assert_eq!(process.double_fetch_count(), 0);
    /// ```
    pub fn set_double_fetch_detection(&self, on: bool) {
        self.inner.fetches.enabled.store(on, Ordering::Relaxed);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fetch(address: usize, len: usize, serial: u64) -> Fetch {
        Fetch {
            address,
            len,
            serial,
        }
    }

    #[test]
    fn overlapping_reads_report_the_overlap_and_adjacent_ones_nothing() {
        let mut reads = Reads::default();
        let mut found = Vec::new();
        reads.add(fetch(100, 8, 1), &mut found);
        reads.add(fetch(108, 8, 2), &mut found);
        assert!(found.is_empty());
        reads.add(fetch(104, 8, 3), &mut found);
        assert_eq!(found.len(), 2);
        assert_eq!((found[0].address, found[0].len), (104, 4));
        assert_eq!((found[1].address, found[1].len), (108, 4));
        assert_eq!(found[1].first.serial, 2);
        assert_eq!(found[1].second.serial, 3);
    }

    #[test]
    fn an_identical_read_is_reported_but_not_stored_again() {
        let mut reads = Reads::default();
        let mut found = Vec::new();
        for serial in 1..=100 {
            reads.add(fetch(0x1000, 16, serial), &mut found);
        }
        assert_eq!(reads.reads.len(), 1);
        assert_eq!(found.len(), 99);
        assert!(found.iter().all(|f| f.first.serial == 1));
    }
}
