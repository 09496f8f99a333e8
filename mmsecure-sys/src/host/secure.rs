//! Secure records, the per-allocation rules they impose, and how their handles are made.
//!
//! A secure is recorded on the allocation (VAD) it lies in, page-rounded (WRK `MiSecureVirtualMemory`
//! records start and end VPNs); one allocation holds any number of them, each independent (WRK
//! keeps a list). The "handle" the routines return is not an address: it is a per-process serial
//! number, scrambled and mixed with a per-process cookie, tagged with bits no canonical address
//! has. It names a secure only in its own process (modern kernels obfuscate it with the process
//! and a cookie, so a handle is meaningless elsewhere).

use std::collections::hash_map::{Entry, HashMap};
use std::sync::Mutex;

use super::access::AccessMode;
use super::lock;
use super::protection::{mm_read_write, PAGE_GUARD};
use crate::{
    MM_SECURE_EXCLUSIVE, MM_SECURE_NO_CHANGE, MM_SECURE_NO_INHERIT, MM_SECURE_USER_MODE_ONLY,
    PAGE_READONLY,
};

/// Every flag `MmSecureVirtualMemoryEx` knows; any other bit makes it return NULL.
pub(crate) const KNOWN_FLAGS: u32 =
    MM_SECURE_EXCLUSIVE | MM_SECURE_NO_CHANGE | MM_SECURE_USER_MODE_ONLY | MM_SECURE_NO_INHERIT;

/// One secure, as recorded on its allocation: pages `first..end` (indices into the allocation),
/// the probe mode it was made with, and its flags.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct SecureSpan {
    pub(crate) first: usize,
    pub(crate) end: usize,
    /// `PAGE_READONLY` or `PAGE_READWRITE`.
    pub(crate) probe: u32,
    pub(crate) flags: u32,
}

impl SecureSpan {
    /// Whether this secure refuses what `mode` asks (`MM_SECURE_USER_MODE_ONLY` lets kernel-mode
    /// requests pass).
    pub(crate) fn applies_to(&self, mode: AccessMode) -> bool {
        mode == AccessMode::User || self.flags & MM_SECURE_USER_MODE_ONLY == 0
    }

    pub(crate) fn no_change(&self) -> bool {
        self.flags & MM_SECURE_NO_CHANGE != 0
    }

    pub(crate) fn exclusive(&self) -> bool {
        self.flags & MM_SECURE_EXCLUSIVE != 0
    }

    /// Whether a forked child's copy of the allocation keeps this secure.
    pub(crate) fn inherited(&self) -> bool {
        self.flags & MM_SECURE_NO_INHERIT == 0
    }

    /// Whether this secure refuses changing pages `first..end` of its allocation to `new`
    /// (assuming it applies to the requester's mode).
    pub(crate) fn refuses_protection(&self, first: usize, end: usize, new: u32) -> bool {
        if self.no_change() {
            // DOCS: "no protection change will be allowed on the supplied view": the whole
            // allocation, the stricter of the two readings.
            return true;
        }
        if end <= self.first || self.end <= first {
            return false;
        }
        // protect.c, MiCheckSecuredVad: a guard page is refused before anything else (L2714);
        // then `MmReadWrite` decides (L2720 read-only, L2726 read-write). Execute-only is 10 in
        // that table, so a read-only secure lets a user make its pages `PAGE_EXECUTE` (issue
        // #22's third hole; x86/x64 hardware still reads them, the model's copy does not).
        if new & PAGE_GUARD != 0 {
            return true;
        }
        let needed = if self.probe == PAGE_READONLY { 10 } else { 11 };
        mm_read_write(new) < needed
    }
}

/// A handle's tag: bits 52..64 of every handle on a 64-bit host. Bit 47 and bits 48..64 then
/// never agree, so no handle is a canonical (dereferenceable) x86-64 or AArch64 address.
const TAG: u64 = 0x5EC << 52;
/// The 48 bits below the tag.
const LOW48: u64 = (1 << 48) - 1;

/// The handle for secure number `serial` (from 1) of the process with `cookie`.
pub(crate) fn encode(serial: u64, cookie: u64) -> usize {
    let mixed = (scramble48(serial) ^ cookie) & LOW48;
    if usize::BITS == 64 {
        (TAG | mixed) as usize
    } else {
        // A 32-bit host has no spare bits: keep it odd (no aligned object's address) and high
        // (the kernel half of a 32-bit address space), and never NULL.
        (mixed as u32 | 0x8000_0001) as usize
    }
}

/// A bijection on 48-bit values (multiply by an odd constant, xor-shift), so distinct serials of
/// one process never share a handle.
fn scramble48(value: u64) -> u64 {
    let mut x = value & LOW48;
    x = x.wrapping_mul(0x9E37_79B9_7F4B) & LOW48;
    x ^= x >> 24;
    x = x.wrapping_mul(0x5851_F42D_4C95) & LOW48;
    x ^ (x >> 17)
}

/// The process a handle was issued in: its id.
#[derive(Clone)]
pub(crate) struct Owner {
    pub(crate) pid: u64,
}

/// Every handle issued and not yet unsecured, with its owner, across all processes. The model
/// uses it only to tell a misuse's kind (wrong process, unknown handle) and to keep handles
/// unique across processes; the routines never look a secure up here.
static HANDLES: Mutex<Option<HashMap<usize, Owner>>> = Mutex::new(None);

/// Issues a handle for the process' next secure, unique among live handles of all processes.
/// `serial` is the process' secure counter.
pub(crate) fn issue(serial: &mut u64, cookie: u64, owner: Owner) -> usize {
    let mut guard = lock(&HANDLES);
    let table = guard.get_or_insert_with(HashMap::new);
    loop {
        *serial = serial.wrapping_add(1);
        let handle = encode(*serial, cookie);
        if let Entry::Vacant(slot) = table.entry(handle) {
            slot.insert(owner);
            return handle;
        }
    }
}

/// The owner of a handle issued and not unsecured, if any.
pub(crate) fn owner(handle: usize) -> Option<Owner> {
    lock(&HANDLES)
        .as_ref()
        .and_then(|table| table.get(&handle).cloned())
}

/// Forgets handles: unsecured ones, and those of a process that is gone.
pub(crate) fn forget(handles: impl IntoIterator<Item = usize>) {
    let mut guard = lock(&HANDLES);
    if let Some(table) = guard.as_mut() {
        for handle in handles {
            table.remove(&handle);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::PAGE_READWRITE;
    use std::collections::HashSet;

    #[test]
    fn handles_are_tagged_distinct_and_cookie_dependent() {
        let mut seen = HashSet::new();
        for serial in 1..10_000 {
            let handle = encode(serial, 0x1234_5678_9ABC);
            assert_ne!(handle, 0);
            assert!(seen.insert(handle));
            if usize::BITS == 64 {
                assert_eq!(handle as u64 >> 52, 0x5EC);
            }
        }
        assert_ne!(encode(1, 1), encode(1, 2));
    }

    #[test]
    fn read_write_secure_refuses_read_only_but_not_beside_it() {
        let span = SecureSpan {
            first: 2,
            end: 4,
            probe: PAGE_READWRITE,
            flags: 0,
        };
        assert!(span.refuses_protection(3, 5, PAGE_READONLY));
        assert!(!span.refuses_protection(4, 5, PAGE_READONLY));
        assert!(!span.refuses_protection(0, 2, PAGE_READONLY));
    }
}
