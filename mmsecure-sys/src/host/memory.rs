//! The real bytes behind simulated user memory, and how the model itself touches them.
//!
//! Every allocation is backed by page-aligned, zeroed host memory, so a driver's raw-pointer copy
//! reads and writes real bytes. A [`Backing`] is shared (`Arc`) by every process that maps it (a
//! parent and its forked children) and is kept by each of them even after the allocation is
//! freed or the process exits, until the last `Process` handle is dropped: a driver that copies
//! from freed user memory then reads stale bytes that the model still owns, never memory the host
//! allocator has handed to someone else. Such a bug is the model's to detect, not host UB.
//!
//! Every live backing is in a registry of the model's memory, which the guarded copy asks whether
//! a pointer is user memory (of some process, live or freed) or the driver's own. A counter of
//! changes (`generation`), bumped by every change to any address space and to the registry, lets
//! the guarded copy reuse a check it made until something changes.
//!
//! Driver code may copy these bytes at any time, from any thread (a user thread writes while a
//! driver reads, exactly the race securing does not prevent). The model's own accesses are
//! therefore relaxed atomic loads and stores, never plain reads or writes, and all of one size,
//! a byte, as are the portable copy's (`copy/portable.rs`): atomics of different sizes that
//! overlap and race are undefined behaviour too.

use core::ptr::NonNull;
use core::sync::atomic::{AtomicU64, AtomicU8, Ordering};
use std::alloc::{self, Layout};
use std::collections::BTreeMap;
use std::sync::{Arc, RwLock};

use super::lock_read;

use super::status::{Status, STATUS_NO_MEMORY};
use super::PAGE_SIZE;

/// Every live backing: first byte to one past the last.
static BACKINGS: RwLock<Option<BTreeMap<usize, usize>>> = RwLock::new(None);

/// Bumped by every change to an address space (protections, allocations, exit) and to
/// [`BACKINGS`].
static GENERATION: AtomicU64 = AtomicU64::new(0);

/// The current count of changes: a check made after reading it holds while it stays the same.
#[inline]
pub(crate) fn generation() -> u64 {
    GENERATION.load(Ordering::Acquire)
}

/// Records a change to some address space. Called under the changed process's lock, before the
/// change is visible to other threads.
pub(crate) fn changed() {
    GENERATION.fetch_add(1, Ordering::AcqRel);
}

/// Whether any byte of `start .. start + len` is the model's memory (user memory of some
/// process, mapped or freed), as opposed to the driver's own.
pub(crate) fn is_model_memory(start: usize, len: usize) -> bool {
    let end = start.saturating_add(len);
    let guard = lock_read(&BACKINGS);
    let backings = match guard.as_ref() {
        Some(backings) => backings,
        None => return false,
    };
    // The backing starting at or before `start`, or the first one starting inside the range.
    let before = backings
        .range(..=start)
        .next_back()
        .map_or(false, |(_, last)| start < *last);
    before || backings.range(start..end).next().is_some()
}

/// Page-aligned zeroed host memory owned by the model.
pub(crate) struct Backing {
    start: NonNull<u8>,
    layout: Layout,
    /// Mapped below 4 GiB by [`low::map`] (unmapped on drop), not from the host allocator.
    low: bool,
}

// SAFETY: `Backing` only owns the allocation; its bytes are accessed through atomics by the model
// and through raw pointers by driver code, never through references, so sharing it between
// threads adds no aliasing hazard.
unsafe impl Send for Backing {}
// SAFETY: as for `Send`: no method hands out a reference to the bytes.
unsafe impl Sync for Backing {}

impl Backing {
    /// Allocates `len` bytes (a non-zero multiple of the page size), zeroed.
    pub(crate) fn new(len: usize) -> Result<Arc<Backing>, Status> {
        let layout = match Layout::from_size_align(len, PAGE_SIZE) {
            Ok(layout) if len > 0 => layout,
            _ => return Err(Status(STATUS_NO_MEMORY)),
        };
        // SAFETY: `layout` has a non-zero size.
        let raw = unsafe { alloc::alloc_zeroed(layout) };
        Backing::register(raw, layout, false)
    }

    /// Allocates `len` bytes (a non-zero multiple of the page size), zeroed, below 4 GiB: what a
    /// 32-bit process's pointers can reach (`Process::allocate_32bit`).
    pub(crate) fn new_low(len: usize) -> Result<Arc<Backing>, Status> {
        let layout = match Layout::from_size_align(len, PAGE_SIZE) {
            Ok(layout) if len > 0 => layout,
            _ => return Err(Status(STATUS_NO_MEMORY)),
        };
        Backing::register(low::map(len), layout, true)
    }

    fn register(raw: *mut u8, layout: Layout, low: bool) -> Result<Arc<Backing>, Status> {
        let len = layout.size();
        let start = NonNull::new(raw).ok_or(Status(STATUS_NO_MEMORY))?;
        let base = raw as usize;
        let mut registry = super::lock_write(&BACKINGS);
        registry
            .get_or_insert_with(BTreeMap::new)
            .insert(base, base + len);
        changed();
        Ok(Arc::new(Backing { start, layout, low }))
    }

    /// The address of the first byte.
    pub(crate) fn base(&self) -> usize {
        self.start.as_ptr() as usize
    }

    /// The size in bytes.
    pub(crate) fn len(&self) -> usize {
        self.layout.size()
    }

    /// Stores `bytes` at `offset`, byte for byte as a user thread would (relaxed atomics).
    /// Returns false, storing nothing, if the bytes do not fit.
    pub(crate) fn store(&self, offset: usize, bytes: &[u8]) -> bool {
        if !self.fits(offset, bytes.len()) {
            return false;
        }
        for (at, byte) in bytes.iter().enumerate() {
            self.cell(offset + at).store(*byte, Ordering::Relaxed);
        }
        true
    }

    pub(crate) fn load(&self, offset: usize, out: &mut [u8]) -> bool {
        if !self.fits(offset, out.len()) {
            return false;
        }
        for (at, byte) in out.iter_mut().enumerate() {
            *byte = self.cell(offset + at).load(Ordering::Relaxed);
        }
        true
    }

    pub(crate) fn zero(&self, offset: usize, len: usize) {
        if !self.fits(offset, len) {
            return;
        }
        for at in offset..offset + len {
            self.cell(at).store(0, Ordering::Relaxed);
        }
    }

    /// The byte at `offset` (checked by the caller with `fits`) as the atomic every Rust access
    /// to it goes through: one size, a byte, on every side (the portable copy's too), so no
    /// access races another of a different size (see `copy/portable.rs`).
    fn cell(&self, offset: usize) -> &AtomicU8 {
        // SAFETY: `offset` is inside this live allocation, which lives as long as `self`;
        // AtomicU8 has u8's layout; only byte atomics are used on these bytes from Rust.
        unsafe { &*((self.base() + offset) as *const AtomicU8) }
    }

    fn fits(&self, offset: usize, len: usize) -> bool {
        offset
            .checked_add(len)
            .map_or(false, |end| end <= self.len())
    }
}

impl Drop for Backing {
    fn drop(&mut self) {
        let mut registry = super::lock_write(&BACKINGS);
        if let Some(backings) = registry.as_mut() {
            backings.remove(&self.base());
        }
        changed();
        drop(registry);
        if self.low {
            low::unmap(self.start.as_ptr(), self.layout.size());
            return;
        }
        // SAFETY: `start` came from `alloc_zeroed` with `layout` and is freed once, here; no
        // process maps it any more (every process holding it has been dropped).
        unsafe { alloc::dealloc(self.start.as_ptr(), self.layout) };
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stores_and_loads_round_trip_at_any_alignment() {
        let backing = Backing::new(PAGE_SIZE).unwrap();
        assert_eq!(backing.base() % PAGE_SIZE, 0);
        let pattern: std::vec::Vec<u8> = (0..100u8).collect();
        assert!(backing.store(3, &pattern));
        let mut out = [0u8; 100];
        assert!(backing.load(3, &mut out));
        assert_eq!(&out[..], &pattern[..]);
        backing.zero(0, 50);
        assert!(backing.load(3, &mut out));
        assert!(out[..47].iter().all(|b| *b == 0));
        assert_eq!(out[47], 47);
    }

    #[test]
    fn out_of_bounds_accesses_do_nothing() {
        let backing = Backing::new(PAGE_SIZE).unwrap();
        assert!(!backing.store(PAGE_SIZE - 1, &[1, 2]));
        assert!(!backing.load(usize::MAX, &mut [0u8; 2]));
    }
}

/// Host memory below 4 GiB, for a 32-bit process's allocations: `mmap` with `MAP_32BIT` on
/// x86_64 Linux (the first 2 GiB); elsewhere none (null, which the caller turns into
/// `STATUS_NO_MEMORY`).
mod low {
    #[cfg(all(target_os = "linux", target_arch = "x86_64"))]
    extern "C" {
        fn mmap(addr: *mut u8, len: usize, prot: i32, flags: i32, fd: i32, off: i64) -> *mut u8;
        fn munmap(addr: *mut u8, len: usize) -> i32;
    }

    /// Zeroed, page-aligned, readable and writable memory below 4 GiB, or null.
    #[cfg(all(target_os = "linux", target_arch = "x86_64"))]
    pub(super) fn map(len: usize) -> *mut u8 {
        const PROT_READ_WRITE: i32 = 0x1 | 0x2;
        const MAP_PRIVATE_ANONYMOUS_32BIT: i32 = 0x02 | 0x20 | 0x40;
        // SAFETY: an anonymous private mapping at an address the kernel picks: touches no
        // existing memory. Anonymous pages are zeroed.
        let raw = unsafe {
            mmap(
                core::ptr::null_mut(),
                len,
                PROT_READ_WRITE,
                MAP_PRIVATE_ANONYMOUS_32BIT,
                -1,
                0,
            )
        };
        if raw as isize == -1 {
            return core::ptr::null_mut();
        }
        if raw as usize + len > 1 << 32 {
            // Not where a 32-bit process could point: give it back.
            unmap(raw, len);
            return core::ptr::null_mut();
        }
        raw
    }

    /// Unmaps what [`map`] returned.
    #[cfg(all(target_os = "linux", target_arch = "x86_64"))]
    pub(super) fn unmap(start: *mut u8, len: usize) {
        // SAFETY: `start..start + len` is one mapping made by `mmap` in `map`, unmapped once:
        // there, when it came back too high to be used, or else by its `Backing`'s drop, when no
        // process maps it any more.
        unsafe { munmap(start, len) };
    }

    #[cfg(not(all(target_os = "linux", target_arch = "x86_64")))]
    pub(super) fn map(_len: usize) -> *mut u8 {
        core::ptr::null_mut()
    }

    #[cfg(not(all(target_os = "linux", target_arch = "x86_64")))]
    pub(super) fn unmap(_start: *mut u8, _len: usize) {}
}
