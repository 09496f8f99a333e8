//! A process' user address space: its allocations (VADs), their pages and page protections, and
//! the refusals the secures standing on an allocation impose on user-mode operations.

use std::collections::hash_map::DefaultHasher;
use std::collections::{BTreeMap, HashMap};
use std::hash::BuildHasherDefault;
use std::sync::Arc;
use std::vec::Vec;

use super::access::AccessMode;
use super::memory::{changed, Backing};
use super::protection::PAGE_EXECUTE_READWRITE;
use super::protection::{
    after_write, is_readable, is_writable, mm_read_write, validate, PAGE_GUARD, PAGE_NOACCESS,
    PAGE_READONLY, PAGE_READWRITE,
};
use super::secure::SecureSpan;
use super::status::{
    Status, STATUS_ACCESS_VIOLATION, STATUS_CONFLICTING_ADDRESSES, STATUS_FREE_VM_NOT_AT_BASE,
    STATUS_GUARD_PAGE_VIOLATION, STATUS_INVALID_PAGE_PROTECTION, STATUS_INVALID_PARAMETER,
    STATUS_MEMORY_NOT_ALLOCATED, STATUS_NOT_COMMITTED, STATUS_NOT_MAPPED_VIEW, STATUS_NO_MEMORY,
    STATUS_UNABLE_TO_DELETE_SECTION,
};
use super::{HIGHEST_USER_ADDRESS, PAGE_SIZE};

/// How an allocation came to be: it decides which operations remove it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum VadKind {
    /// `VirtualAlloc`: decommitted with `decommit`, released with `free`.
    Private,
    /// A mapped section view: removed with `unmap_view` only.
    Mapped,
}

/// How many secures of an allocation refuse what, so that most checks need no scan.
#[derive(Clone, Copy, Debug, Default)]
struct Counts {
    /// All secures.
    all: usize,
    /// Secures that refuse kernel-mode requests too (not `USER_MODE_ONLY`).
    kernel: usize,
    exclusive: usize,
    no_change: usize,
    no_change_kernel: usize,
}

/// An allocation's secures by handle. A hash map, not a tree: with 100 000 secures standing, a
/// tree's walk misses the cache several times per secure and unsecure (issue #8's benchmark). The
/// hasher has fixed keys, so iteration order (which a fork's new handles follow) is the same on
/// every run.
type SecureMap = HashMap<usize, SecureSpan, BuildHasherDefault<DefaultHasher>>;

/// One allocation: its pages' protections (0 = reserved, not committed) and its secures by
/// handle.
///
/// `touched` stands for WRK's "the page's PTE is not zero": a page committed with the allocation
/// (`VirtualAlloc(MEM_RESERVE | MEM_COMMIT)`, the VAD's `MemCommit`) that nobody has accessed,
/// protected, decommitted or probed still has a zero PTE, which means "demand zero, with the
/// VAD's protection". Two WRK paths skip their checks over such pages: a secure of 64 KiB or more
/// probes nothing (mapview.c, `MiSecureVirtualMemory`, L6125-L6378), and `MEM_COMMIT` writes its
/// new protection into them with no secure check (allocvm.c, `NtAllocateVirtualMemory`, L1956,
/// L1980). The model counts a page touched when the model sees an access to it (a user read or
/// write, a guarded copy, a secure's probe) or a change of its PTE (protect, commit, decommit);
/// a driver's raw-pointer access it cannot see, so such a page stays untouched: the reading
/// worse for the driver.
pub(crate) struct Vad {
    pub(crate) kind: VadKind,
    backing: Arc<Backing>,
    pages: Vec<u32>,
    touched: Vec<bool>,
    /// Committed when it was made (WRK's `MemCommit`), with this protection (the VAD's).
    mem_commit: bool,
    vad_protect: u32,
    secures: SecureMap,
    counts: Counts,
}

impl Vad {
    pub(crate) fn base(&self) -> usize {
        self.backing.base()
    }

    fn end(&self) -> usize {
        self.base() + self.pages.len() * PAGE_SIZE
    }

    /// Whether a secure of pages `first..end` with `probe` takes WRK's large path, which probes
    /// nothing: mapview.c, `MiSecureVirtualMemory`. The caller checked `Size >= 64 KiB` (L6125)
    /// and that the range is inside this allocation (L6152). Then: private memory committed when
    /// it was made (L6138, L6142), whose protection is not no-access (L6157) and suits the probe
    /// (L6161-L6171: for read-only any protection up to `MM_EXECUTE_WRITECOPY`, execute-only
    /// included; for read-write exactly read-write or execute-read-write), and every PTE of the
    /// range zero (L6372: one non-zero PTE sends it the long way, which probes).
    pub(crate) fn takes_large_path(&self, first: usize, end: usize, probe: u32) -> bool {
        let suits = if self.vad_protect & PAGE_GUARD != 0 || self.vad_protect == PAGE_NOACCESS {
            false
        } else if probe == PAGE_READONLY {
            mm_read_write(self.vad_protect) >= 10
        } else {
            matches!(self.vad_protect, PAGE_READWRITE | PAGE_EXECUTE_READWRITE)
        };
        self.kind == VadKind::Private
            && self.mem_commit
            && suits
            && self.touched[first..end].iter().all(|t| !*t)
    }

    pub(crate) fn secure_count(&self) -> usize {
        self.counts.all
    }

    pub(crate) fn has_exclusive(&self) -> bool {
        self.counts.exclusive > 0
    }

    pub(crate) fn secures(&self) -> impl Iterator<Item = (&usize, &SecureSpan)> {
        self.secures.iter()
    }

    pub(crate) fn add_secure(&mut self, handle: usize, span: SecureSpan) {
        self.count(&span, true);
        self.secures.insert(handle, span);
    }

    pub(crate) fn remove_secure(&mut self, handle: usize) -> Option<SecureSpan> {
        let span = self.secures.remove(&handle)?;
        self.count(&span, false);
        Some(span)
    }

    fn count(&mut self, span: &SecureSpan, add: bool) {
        let kernel = span.applies_to(AccessMode::Kernel);
        let counters = [
            (&mut self.counts.all, true),
            (&mut self.counts.kernel, kernel),
            (&mut self.counts.exclusive, span.exclusive()),
            (&mut self.counts.no_change, span.no_change()),
            (
                &mut self.counts.no_change_kernel,
                span.no_change() && kernel,
            ),
        ];
        for (counter, applies) in counters {
            if applies {
                *counter = if add {
                    *counter + 1
                } else {
                    counter.saturating_sub(1)
                };
            }
        }
    }

    /// Refuses deleting this allocation (freeing it, unmapping the view) while a secure that
    /// applies to `mode` stands anywhere on it, as WRK checks MEM_RELEASE against the whole VAD.
    /// Deletion counts as a change to no-access, which every secure refuses.
    fn check_delete(&self, mode: AccessMode) -> Result<(), Status> {
        let standing = match mode {
            AccessMode::User => self.counts.all,
            AccessMode::Kernel => self.counts.kernel,
        };
        if standing > 0 {
            return Err(Status(STATUS_INVALID_PAGE_PROTECTION));
        }
        Ok(())
    }

    /// Refuses decommitting pages `first..end` while a secure that applies to `mode` covers any
    /// of them, or, with `NO_CHANGE`, stands anywhere on the allocation (rule 9's reading of "no
    /// protection change": decommitting is a change to no-access). WRK checks a decommit against
    /// the secured range only; pages outside it may go. (Before issue #12 the model refused a
    /// decommit anywhere in the allocation: kinder to a driver than the kernel, which a driver's
    /// tests must not be.)
    fn check_decommit(&self, first: usize, end: usize, mode: AccessMode) -> Result<(), Status> {
        let (standing, no_change) = match mode {
            AccessMode::User => (self.counts.all, self.counts.no_change),
            AccessMode::Kernel => (self.counts.kernel, self.counts.no_change_kernel),
        };
        if standing == 0 {
            return Ok(());
        }
        let refused = no_change > 0
            || self
                .secures
                .values()
                .any(|s| s.applies_to(mode) && s.first < end && first < s.end);
        if refused {
            return Err(Status(STATUS_INVALID_PAGE_PROTECTION));
        }
        Ok(())
    }

    /// Refuses changing pages `first..end` to `new` if a secure that applies to `mode` forbids it.
    fn check_protect(
        &self,
        first: usize,
        end: usize,
        new: u32,
        mode: AccessMode,
    ) -> Result<(), Status> {
        let (standing, no_change) = match mode {
            AccessMode::User => (self.counts.all, self.counts.no_change),
            AccessMode::Kernel => (self.counts.kernel, self.counts.no_change_kernel),
        };
        if standing == 0 {
            return Ok(());
        }
        if no_change > 0 {
            return Err(Status(STATUS_INVALID_PAGE_PROTECTION));
        }
        // Every probe mode allows a writable, non-guard protection: no scan needed.
        if is_writable(new) {
            return Ok(());
        }
        let refused = self
            .secures
            .values()
            .any(|s| s.applies_to(mode) && s.refuses_protection(first, end, new));
        if refused {
            return Err(Status(STATUS_INVALID_PAGE_PROTECTION));
        }
        Ok(())
    }

    /// A forked child's copy: same pages and protections over the same bytes, no secures (the
    /// caller adds the inherited ones).
    pub(crate) fn fork_copy(&self) -> Vad {
        Vad {
            kind: self.kind,
            backing: Arc::clone(&self.backing),
            pages: self.pages.clone(),
            touched: self.touched.clone(),
            mem_commit: self.mem_commit,
            vad_protect: self.vad_protect,
            secures: SecureMap::default(),
            counts: Counts::default(),
        }
    }
}

/// Pages `start..end` as page-aligned addresses covering `address..address + len`, or `None`
/// if the end wraps.
pub(crate) fn page_span(address: usize, len: usize) -> Option<(usize, usize)> {
    let start = address & !(PAGE_SIZE - 1);
    let end = address.checked_add(len)?.checked_add(PAGE_SIZE - 1)? & !(PAGE_SIZE - 1);
    Some((start, end))
}

/// A process' allocations by base address, and the backing of every allocation it ever had.
#[derive(Default)]
pub(crate) struct AddressSpace {
    vads: BTreeMap<usize, Vad>,
    /// Backings of freed allocations: kept until the process is dropped (see `memory`).
    graveyard: Vec<Arc<Backing>>,
}

impl AddressSpace {
    /// Adds an allocation of `len` bytes (rounded up to pages): committed with `protect`, or
    /// only reserved when `protect` is 0.
    pub(crate) fn insert(
        &mut self,
        kind: VadKind,
        len: usize,
        protect: u32,
    ) -> Result<usize, Status> {
        self.insert_from(kind, len, protect, Backing::new)
    }

    /// [`insert`](Self::insert) with memory below 4 GiB (a 32-bit process's).
    pub(crate) fn insert_low(&mut self, len: usize, protect: u32) -> Result<usize, Status> {
        self.insert_from(VadKind::Private, len, protect, Backing::new_low)
    }

    fn insert_from(
        &mut self,
        kind: VadKind,
        len: usize,
        protect: u32,
        backing: fn(usize) -> Result<Arc<Backing>, Status>,
    ) -> Result<usize, Status> {
        if len == 0 {
            return Err(Status(STATUS_INVALID_PARAMETER));
        }
        if protect != 0 {
            validate(protect, kind == VadKind::Mapped)?;
        }
        let pages = len / PAGE_SIZE + usize::from(len % PAGE_SIZE != 0);
        let bytes = pages
            .checked_mul(PAGE_SIZE)
            .ok_or(Status(STATUS_NO_MEMORY))?;
        let backing = backing(bytes)?;
        let base = backing.base();
        if base + (bytes - 1) > HIGHEST_USER_ADDRESS {
            // The host placed it where no Windows user address can be; keep it alive anyway.
            self.graveyard.push(backing);
            return Err(Status(STATUS_NO_MEMORY));
        }
        let vad = Vad {
            kind,
            backing,
            pages: std::vec![protect; pages],
            touched: std::vec![false; pages],
            mem_commit: protect != 0,
            vad_protect: protect,
            secures: SecureMap::default(),
            counts: Counts::default(),
        };
        self.vads.insert(base, vad);
        changed();
        Ok(base)
    }

    /// The allocation containing `address`.
    pub(crate) fn vad_at(&self, address: usize) -> Option<&Vad> {
        let (_, vad) = self.vads.range(..=address).next_back()?;
        (address < vad.end()).then_some(vad)
    }

    fn vad_at_mut(&mut self, address: usize) -> Option<&mut Vad> {
        let (_, vad) = self.vads.range_mut(..=address).next_back()?;
        if address < vad.end() {
            Some(vad)
        } else {
            None
        }
    }

    pub(crate) fn vad_by_base_mut(&mut self, base: usize) -> Option<&mut Vad> {
        self.vads.get_mut(&base)
    }

    pub(crate) fn vads(&self) -> impl Iterator<Item = &Vad> {
        self.vads.values()
    }

    pub(crate) fn insert_vad(&mut self, vad: Vad) {
        self.vads.insert(vad.base(), vad);
        changed();
    }

    /// The allocation holding all of `address..address + len` (page-rounded), with the page
    /// indices `first..end` the range covers.
    pub(crate) fn locate(
        &self,
        address: usize,
        len: usize,
    ) -> Result<(&Vad, usize, usize), Status> {
        if len == 0 {
            return Err(Status(STATUS_INVALID_PARAMETER));
        }
        let (start, end) = page_span(address, len).ok_or(Status(STATUS_INVALID_PARAMETER))?;
        let vad = self
            .vad_at(start)
            .ok_or(Status(STATUS_MEMORY_NOT_ALLOCATED))?;
        if end > vad.end() {
            return Err(Status(STATUS_CONFLICTING_ADDRESSES));
        }
        let first = (start - vad.base()) / PAGE_SIZE;
        Ok((vad, first, first + (end - start) / PAGE_SIZE))
    }

    fn locate_mut(
        &mut self,
        address: usize,
        len: usize,
    ) -> Result<(&mut Vad, usize, usize), Status> {
        let (vad, first, end) = self.locate(address, len)?;
        let base = vad.base();
        let vad = self
            .vads
            .get_mut(&base)
            .ok_or(Status(STATUS_MEMORY_NOT_ALLOCATED))?;
        Ok((vad, first, end))
    }

    /// `VirtualAlloc(MEM_COMMIT)`, as allocvm.c's `NtAllocateVirtualMemory` does it for private
    /// memory (L1941-L2045, L2091-L2103). A page with a zero PTE (untouched, or reserved and
    /// never committed) and a decommitted page get the new protection written straight in, with
    /// **no secure check** (L1956-L1980, L1984-L1991): over an untouched secured range the user
    /// so makes secured pages no-access (issue #22's first hole). If any other page's protection
    /// differs, the whole range then goes through `MiProtectVirtualMemory` (L2099), which checks
    /// the secures; its status is ignored, so the commit succeeds either way, and a refused
    /// change leaves those pages as they were.
    pub(crate) fn commit(
        &mut self,
        address: usize,
        len: usize,
        protect: u32,
    ) -> Result<(), Status> {
        let (vad, first, end) = self.locate_mut(address, len)?;
        if vad.kind != VadKind::Private {
            return Err(Status(STATUS_CONFLICTING_ADDRESSES));
        }
        validate(protect, false)?;
        let mut change_protection = false;
        for index in first..end {
            if vad.pages[index] == 0 {
                vad.backing.zero(index * PAGE_SIZE, PAGE_SIZE);
                vad.pages[index] = protect;
            } else if !vad.touched[index] {
                vad.pages[index] = protect;
            } else if vad.pages[index] != protect {
                change_protection = true;
            }
            vad.touched[index] = true;
        }
        if change_protection
            && vad
                .check_protect(first, end, protect, AccessMode::User)
                .is_ok()
        {
            for page in &mut vad.pages[first..end] {
                *page = protect;
            }
        }
        changed();
        Ok(())
    }

    /// `VirtualProtect`: returns the first page's old protection.
    pub(crate) fn protect(
        &mut self,
        address: usize,
        len: usize,
        protect: u32,
        mode: AccessMode,
    ) -> Result<u32, Status> {
        let (vad, first, end) = self.locate_mut(address, len)?;
        validate(protect, vad.kind == VadKind::Mapped)?;
        if vad.pages[first..end].contains(&0) {
            return Err(Status(STATUS_NOT_COMMITTED));
        }
        vad.check_protect(first, end, protect, mode)?;
        let old = vad.pages[first];
        for page in &mut vad.pages[first..end] {
            *page = protect;
        }
        vad.touched[first..end].fill(true);
        changed();
        Ok(old)
    }

    /// `VirtualFree(MEM_DECOMMIT)`. A size of 0 at the allocation's base decommits the whole
    /// allocation, secured pages included (issue #22's second hole): freevm.c,
    /// `NtFreeVirtualMemory`, checks the secures with the caller's size (L333-L336), and
    /// protect.c's `MiCheckSecuredVad` computes `End = Base + Size - 1` (L2679), one byte before
    /// the base, which no secure overlaps; only then does L813-L821 widen a size of 0 to the
    /// whole VAD (and refuse it anywhere but the base's page, `STATUS_FREE_VM_NOT_AT_BASE`).
    pub(crate) fn decommit(
        &mut self,
        address: usize,
        len: usize,
        mode: AccessMode,
    ) -> Result<(), Status> {
        let (vad, first, end, checked_end) = if len == 0 {
            let vad = self
                .vad_at_mut(address)
                .ok_or(Status(STATUS_MEMORY_NOT_ALLOCATED))?;
            if vad.kind == VadKind::Private && (address - vad.base()) / PAGE_SIZE != 0 {
                return Err(Status(STATUS_FREE_VM_NOT_AT_BASE));
            }
            let pages = vad.pages.len();
            (vad, 0, pages, 0)
        } else {
            let (vad, first, end) = self.locate_mut(address, len)?;
            (vad, first, end, end)
        };
        if vad.kind != VadKind::Private {
            return Err(Status(STATUS_UNABLE_TO_DELETE_SECTION));
        }
        vad.check_decommit(first, checked_end, mode)?;
        for page in &mut vad.pages[first..end] {
            *page = 0;
        }
        vad.touched[first..end].fill(true);
        changed();
        Ok(())
    }

    /// `VirtualFree(MEM_RELEASE)` at the allocation's base (`kind` Private), or
    /// `UnmapViewOfFile` anywhere in a view (`kind` Mapped). Returns the handles of the secures
    /// that went with it (only `USER_MODE_ONLY` ones, removed from kernel mode).
    pub(crate) fn remove(
        &mut self,
        address: usize,
        kind: VadKind,
        mode: AccessMode,
    ) -> Result<Vec<usize>, Status> {
        let vad = match self.vad_at(address) {
            Some(vad) => vad,
            None if kind == VadKind::Mapped => return Err(Status(STATUS_NOT_MAPPED_VIEW)),
            None => return Err(Status(STATUS_MEMORY_NOT_ALLOCATED)),
        };
        match (kind, vad.kind) {
            (VadKind::Private, VadKind::Mapped) => {
                return Err(Status(STATUS_UNABLE_TO_DELETE_SECTION))
            }
            (VadKind::Mapped, VadKind::Private) => return Err(Status(STATUS_NOT_MAPPED_VIEW)),
            (VadKind::Private, VadKind::Private) if vad.base() != address => {
                return Err(Status(STATUS_FREE_VM_NOT_AT_BASE))
            }
            _ => {}
        }
        vad.check_delete(mode)?;
        let base = vad.base();
        let mut orphaned = Vec::new();
        if let Some(vad) = self.vads.remove(&base) {
            orphaned.extend(vad.secures.keys().copied());
            self.graveyard.push(vad.backing);
        }
        changed();
        Ok(orphaned)
    }

    /// The protection of the page holding `address`, if committed.
    pub(crate) fn protection(&self, address: usize) -> Option<u32> {
        let vad = self.vad_at(address)?;
        let page = vad.pages[(address - vad.base()) / PAGE_SIZE];
        (page != 0).then_some(page)
    }

    /// Checks that a user thread may read (or write) `len` bytes at `address`, all inside one
    /// allocation, as [`probe`](Self::probe) does; a guard page that faults loses its guard. On
    /// success a write turns the copy-on-write pages read-write, and this returns the
    /// allocation's backing and the offset of `address` in it.
    pub(crate) fn access(
        &mut self,
        address: usize,
        len: usize,
        write: bool,
    ) -> Result<(Arc<Backing>, usize), Status> {
        if let Some((at, status)) = self.probe(address, len, write) {
            if status.0 == STATUS_GUARD_PAGE_VIOLATION {
                self.clear_guard(address + at);
            }
            return Err(status);
        }
        let vad = self
            .vad_at(address)
            .ok_or(Status(STATUS_ACCESS_VIOLATION))?;
        if address + len > vad.end() {
            return Err(Status(STATUS_ACCESS_VIOLATION));
        }
        let found = (Arc::clone(&vad.backing), address - vad.base());
        if write {
            self.written(address, len);
        }
        self.touch(address, len);
        Ok(found)
    }

    /// Where an access of `len` bytes at `address` (a read, or a write) would first fault,
    /// touching the pages in order as a forward copy does: the offset of the first faulting byte
    /// and the status raised there. A guard page raises `STATUS_GUARD_PAGE_VIOLATION`; a byte in
    /// no allocation, in a page not committed, or in a page without the access raises
    /// `STATUS_ACCESS_VIOLATION`. Changes nothing: the caller applies what the access did
    /// ([`clear_guard`](Self::clear_guard), [`written`](Self::written)) once it knows how far it
    /// got.
    pub(crate) fn probe(&self, address: usize, len: usize, write: bool) -> Option<(usize, Status)> {
        let violation = Status(STATUS_ACCESS_VIOLATION);
        let end = match address.checked_add(len) {
            Some(end) => end,
            None => return Some((0, violation)),
        };
        let mut page = address & !(PAGE_SIZE - 1);
        while page < end {
            let at = page.max(address) - address;
            let protect = match self.vad_at(page) {
                Some(vad) => vad.pages[(page - vad.base()) / PAGE_SIZE],
                None => return Some((at, violation)),
            };
            if protect & PAGE_GUARD != 0 {
                return Some((at, Status(STATUS_GUARD_PAGE_VIOLATION)));
            }
            let allowed = if write {
                is_writable(protect)
            } else {
                is_readable(protect)
            };
            if !allowed {
                return Some((at, violation));
            }
            page = match page.checked_add(PAGE_SIZE) {
                Some(next) => next,
                None => break,
            };
        }
        None
    }

    /// Where a run of pages that a guarded copy could touch with no effect ends, starting
    /// right after the pages of `address..address + len` (which a successful check has just
    /// probed and touched) and taking at most `max_pages` more: a page counts if it is in an
    /// allocation, already touched, has the access (read, or write for `write`), is not a
    /// guard page and, for a write, is not copy-on-write. Such a page passes
    /// [`probe`](Self::probe), and the copy's [`touch`](Self::touch) and
    /// [`written`](Self::written) leave it as it is, so a copy over it does exactly what the
    /// check would have done: nothing but copy. Returns the end of the last such page, or the
    /// end of the range's last page if the first page after it does not count. The run stays in
    /// the allocation holding that first page.
    ///
    /// `touched` only ever goes from false to true in an allocation; every other change to a
    /// page (protection, commit, decommit, free, a new allocation there) bumps the generation,
    /// which a remembered run is tied to.
    pub(crate) fn quiet_end(
        &self,
        address: usize,
        len: usize,
        write: bool,
        max_pages: usize,
    ) -> usize {
        let end = address.saturating_add(len);
        let next = match page_span(address, len) {
            Some((_, page_end)) => page_end,
            None => return end,
        };
        // One allocation only: one look-up, then its page table (the run stops at its end).
        let vad = match self.vad_at(next) {
            Some(vad) => vad,
            None => return next.max(end),
        };
        let first = (next - vad.base()) / PAGE_SIZE;
        let quiet = vad.pages[first..]
            .iter()
            .zip(&vad.touched[first..])
            .take(max_pages)
            .take_while(|(protect, touched)| {
                let access = if write {
                    is_writable(**protect) && after_write(**protect) == **protect
                } else {
                    is_readable(**protect)
                };
                **touched && access && **protect & PAGE_GUARD == 0
            })
            .count();
        // Inside the allocation, so below the highest user address: no wrap.
        (next + quiet * PAGE_SIZE).max(end)
    }

    /// Whether the page holding `address` is touched (rule 24's sense), if it is in an
    /// allocation.
    #[cfg(test)]
    pub(crate) fn is_touched(&self, address: usize) -> Option<bool> {
        let vad = self.vad_at(address)?;
        Some(vad.touched[(address - vad.base()) / PAGE_SIZE])
    }

    /// The guard page holding `address` was touched: it loses its guard, as on Windows.
    pub(crate) fn clear_guard(&mut self, address: usize) {
        if let Some(vad) = self.vad_at_mut(address) {
            let index = (address - vad.base()) / PAGE_SIZE;
            vad.pages[index] &= !PAGE_GUARD;
            vad.touched[index] = true;
            changed();
        }
    }

    /// `len` bytes at `address` were accessed: their pages' PTEs are no longer zero.
    pub(crate) fn touch(&mut self, address: usize, len: usize) {
        let end = address.saturating_add(len);
        let mut page = address & !(PAGE_SIZE - 1);
        while page < end {
            if let Some(vad) = self.vad_at_mut(page) {
                let index = (page - vad.base()) / PAGE_SIZE;
                vad.touched[index] = true;
            }
            page = match page.checked_add(PAGE_SIZE) {
                Some(next) => next,
                None => break,
            };
        }
    }

    /// `len` bytes at `address` were written: the copy-on-write pages among them become
    /// read-write.
    pub(crate) fn written(&mut self, address: usize, len: usize) {
        let end = address.saturating_add(len);
        let mut page = address & !(PAGE_SIZE - 1);
        while page < end {
            if let Some(vad) = self.vad_at_mut(page) {
                let index = (page - vad.base()) / PAGE_SIZE;
                let protect = vad.pages[index];
                if after_write(protect) != protect {
                    vad.pages[index] = after_write(protect);
                    changed();
                }
            }
            page = match page.checked_add(PAGE_SIZE) {
                Some(next) => next,
                None => break,
            };
        }
    }

    /// Deletes the address space (process exit): every allocation goes, secures and all, and
    /// nothing is refused. The bytes stay alive until the process is dropped.
    pub(crate) fn delete(&mut self) {
        let vads = core::mem::take(&mut self.vads);
        self.graveyard
            .extend(vads.into_values().map(|vad| vad.backing));
        changed();
    }
}
