//! Process objects: their `EPROCESS` values, their reference counts (`ObfReferenceObject`,
//! `ObfDereferenceObject`), and the reuse of a value once the object is gone.
//!
//! On Windows an `EPROCESS` is a kernel object in pool memory. While any reference stands (a
//! handle, an `ObReferenceObject`, a thread in the process) it stays where it is; once the last
//! one goes, the memory is freed and can hold the next process's object. A `PEPROCESS` kept
//! without a reference can therefore compare equal to a later, unrelated process.
//!
//! The model does the same with fake addresses. Each live process holds one slot, and its
//! `EPROCESS` value is the slot's. Every [`Process`](super::Process) value counts as a
//! reference, and so does each `ObfReferenceObject` a driver makes; a driver reference also keeps
//! the process (its memory and bookkeeping) alive, as a reference keeps the object. When the last
//! reference of both kinds is gone, the slot is freed, and the next new process gets the most
//! recently freed slot first: a stale pointer then names a new process, deterministically.

use core::sync::atomic::Ordering;
use std::sync::{Arc, Mutex, Weak};
use std::vec::Vec;

use super::lock;
use super::process::{Process, ProcessInner};
use super::thread::{current_fast, stop};
use crate::PEPROCESS;

/// The System process's slot: never freed, never counted.
const SYSTEM_SLOT: usize = 1;

/// The slots of every live process object, and the freed slots.
struct Table {
    /// Indexed by slot: the process object there, `None` when free (or the unused slot 0).
    slots: Vec<Option<Weak<ProcessInner>>>,
    /// Freed slots, the most recently freed last (handed out first).
    free: Vec<usize>,
}

static TABLE: Mutex<Table> = Mutex::new(Table {
    slots: Vec::new(),
    free: Vec::new(),
});

/// The `EPROCESS` value of `slot`: in the kernel half, page-aligned, never dereferenced.
pub(crate) fn eprocess_of_slot(slot: usize) -> PEPROCESS {
    let address = if usize::BITS == 64 {
        // Bits 12..44 for the slot, below the 0xA at bits 44..48.
        (0xFFFF_A000_0000_0000_u64 | ((slot as u64 & 0xFFFF_FFFF) << 12)) as usize
    } else {
        0x8000_0000 | ((slot & 0x7_FFFF) << 12)
    };
    address as PEPROCESS
}

/// The slot an `EPROCESS` value names, if it is one of the model's values.
fn slot_of(eprocess: PEPROCESS) -> Option<usize> {
    let address = eprocess as usize;
    if address % 4096 != 0 {
        return None;
    }
    let slot = if usize::BITS == 64 {
        let high = address as u64 & !(0xFFFF_FFFF << 12);
        if high != 0xFFFF_A000_0000_0000 {
            return None;
        }
        (address as u64 >> 12 & 0xFFFF_FFFF) as usize
    } else {
        if address & !(0x7_FFFF << 12) != 0x8000_0000 {
            return None;
        }
        address >> 12 & 0x7_FFFF
    };
    (eprocess_of_slot(slot) == eprocess).then_some(slot)
}

/// The System process's `EPROCESS`.
pub(crate) fn system_eprocess() -> PEPROCESS {
    eprocess_of_slot(SYSTEM_SLOT)
}

/// A slot for a new process object: the most recently freed one, or a new one.
pub(crate) fn allocate(process: Weak<ProcessInner>) -> usize {
    let mut table = lock(&TABLE);
    if table.slots.len() <= SYSTEM_SLOT {
        table.slots.resize_with(SYSTEM_SLOT + 1, || None);
    }
    let slot = match table.free.pop() {
        Some(slot) => slot,
        None => {
            table.slots.push(None);
            table.slots.len() - 1
        }
    };
    table.slots[slot] = Some(process);
    slot
}

/// The last `Process` value of the object in `slot` and the last driver reference on it are gone
/// (a driver reference is a strong count on it): the object is freed, its value free for the next
/// process.
pub(crate) fn release(slot: usize) {
    let mut table = lock(&TABLE);
    if let Some(entry) = table.slots.get_mut(slot) {
        if entry.take().is_some() {
            table.free.push(slot);
        }
    }
}

/// The live process an `EPROCESS` value names, if any (not System).
pub(crate) fn process_of(eprocess: PEPROCESS) -> Option<Process> {
    let slot = slot_of(eprocess)?;
    let table = lock(&TABLE);
    let inner = table.slots.get(slot)?.as_ref()?.upgrade();
    drop(table);
    Some(Process { inner: inner? })
}

/// `ObfReferenceObject` on a process object: the driver references now standing on it.
///
/// A driver reference is a strong count on the process's `Arc`, taken without a `Process` value
/// to hold it (`Arc::increment_strong_count`), and counted in the process's `driver_refs`. The
/// common case, a reference on the current process, reads the thread's context and takes no
/// lock.
#[inline]
pub(crate) fn reference(object: PEPROCESS) -> usize {
    let current = current_fast();
    if current.eprocess == object as usize && !current.inner.is_null() {
        // SAFETY: `current.inner` is the `Arc` pointer of the process this thread is attached
        // to: `FAST` names it only while the thread's `CURRENT` holds that `Process` (see
        // `thread::Current`), which nothing can take away during this call.
        unsafe { Arc::increment_strong_count(current.inner) };
        // SAFETY: as above: the process is alive, and is now kept so by the new count.
        let inner = unsafe { &*current.inner };
        return inner.driver_refs.fetch_add(1, Ordering::Relaxed) + 1;
    }
    let process = match slot_of(object) {
        Some(SYSTEM_SLOT) => return 1,
        Some(_) => process_of(object),
        None => None,
    };
    match process {
        Some(process) => {
            let refs = process.inner.driver_refs.fetch_add(1, Ordering::Relaxed) + 1;
            // The strong count `process` holds becomes the driver's.
            let _ = Arc::into_raw(process.inner);
            refs
        }
        None => not_an_object("ObfReferenceObject", object),
    }
}

/// `ObfDereferenceObject` on a process object: the driver references left. Dropping the last
/// reference of a process no `Process` value holds frees it.
#[inline]
pub(crate) fn dereference(object: PEPROCESS) -> usize {
    let current = current_fast();
    if current.eprocess == object as usize && !current.inner.is_null() {
        // SAFETY: `current.inner` is the `Arc` pointer of the process this thread is attached
        // to, kept by the thread's `CURRENT` (see `thread::Current`) for this whole call.
        let process = unsafe { &*current.inner };
        // The common case: the current process, with no attach by pointer standing on it, so
        // that `CURRENT`'s own count stays after this one goes and nothing can be freed here.
        if process.unreferenced_attaches.load(Ordering::SeqCst) == 0 {
            let left = give_up_driver_reference(process, object);
            // SAFETY: a driver reference stood (the count was positive): a strong count on this
            // `Arc`, taken by `reference`, given up here, once; `CURRENT` holds another.
            unsafe { Arc::decrement_strong_count(current.inner) };
            return left;
        }
    }
    dereference_elsewhere(object)
}

/// Takes one driver reference off `process`'s count and returns the count left; with none
/// standing, the binary stops (`no_reference`), the count as it was.
#[inline]
fn give_up_driver_reference(process: &ProcessInner, object: PEPROCESS) -> usize {
    match process.driver_refs.fetch_sub(1, Ordering::Relaxed) {
        0 => {
            process.driver_refs.fetch_add(1, Ordering::Relaxed);
            no_reference(object)
        }
        refs => refs - 1,
    }
}

/// [`dereference`] of another process than the current one, or of one an attach by pointer
/// stands on: with the table look-up and the check that the last reference does not go under
/// such an attach.
#[cold]
#[inline(never)]
fn dereference_elsewhere(object: PEPROCESS) -> usize {
    let current = current_fast();
    // Off the fast path, the process found in the table, held until the end so that it cannot
    // be freed while it is looked at (a stale call must stop cleanly, not use freed memory).
    let mut found = None;
    let inner = if current.eprocess == object as usize && !current.inner.is_null() {
        current.inner
    } else {
        match slot_of(object) {
            Some(SYSTEM_SLOT) => return 1,
            Some(_) => match process_of(object) {
                Some(process) => Arc::as_ptr(&found.insert(process).inner),
                None => no_reference(object),
            },
            None => no_reference(object),
        }
    };
    // SAFETY: `inner` points to a live process: the current one (kept by the thread's
    // `CURRENT`) or the one in `found`.
    let process = unsafe { &*inner };
    let left = give_up_driver_reference(process, object);
    let attaches = process.unreferenced_attaches.load(Ordering::SeqCst);
    if attaches != 0 {
        // SAFETY: `inner` is an `Arc` pointer of a live process (see above); the `Arc` made
        // here is only read, never dropped.
        let arc = core::mem::ManuallyDrop::new(unsafe { Arc::from_raw(inner) });
        // What stays once this reference goes: every strong count but this one, `found`'s, and
        // those of the attaches that are no reference.
        let staying = Arc::strong_count(&arc)
            .saturating_sub(1 + usize::from(found.is_some()))
            .saturating_sub(attaches);
        if staying == 0 {
            freed_while_attached(object);
        }
    }
    // SAFETY: a driver reference stood (the count above was positive): it is a strong count on
    // this `Arc`, taken by `reference`, given up here, once. `found` or the thread's `CURRENT`
    // still holds another, so this does not free the process; dropping `found` afterwards may.
    unsafe { Arc::decrement_strong_count(inner) };
    drop(found);
    left
}

#[cold]
fn freed_while_attached(object: PEPROCESS) -> ! {
    stop(format_args!(
        "ObfDereferenceObject({object:p}) drops the last reference on a process object while a \
         thread is attached to it by pointer (KeStackAttachProcess takes no reference): Windows \
         frees the EPROCESS under the attached thread, whose detach then uses freed memory (no \
         bug check of its own: a crash or a corruption later); take a reference of your own \
         before the attach and drop it after the detach"
    ))
}

#[cold]
fn no_reference(object: PEPROCESS) -> ! {
    stop(format_args!(
        "REFERENCE_BY_POINTER (bug check 0x18): ObfDereferenceObject({object:p}) without a \
         reference to drop: the object's count would go below zero, or it was freed already"
    ))
}

#[cold]
fn not_an_object(routine: &str, object: PEPROCESS) -> ! {
    stop(format_args!(
        "REFERENCE_BY_POINTER (bug check 0x18): {routine}({object:p}) on no live process \
         object: a stale or made-up pointer"
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn slots_and_values_convert_both_ways() {
        for slot in [1, 2, 1000, 0x7_FFFF] {
            assert_eq!(slot_of(eprocess_of_slot(slot)), Some(slot));
        }
        assert_eq!(slot_of(0x1000 as PEPROCESS), None);
        assert_eq!(
            slot_of((eprocess_of_slot(5) as usize + 8) as PEPROCESS),
            None
        );
    }
}
