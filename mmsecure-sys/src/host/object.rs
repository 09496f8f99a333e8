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

use std::sync::{Arc, Mutex, Weak};
use std::vec::Vec;

use super::lock;
use super::process::{Process, ProcessInner};
use super::thread::stop;
use crate::PEPROCESS;

/// The System process's slot: never freed, never counted.
const SYSTEM_SLOT: usize = 1;

/// The slots of every live process object, their driver references, and the freed slots.
struct Table {
    /// Indexed by slot; `None` is free (or the unused slot 0).
    slots: Vec<Option<Slot>>,
    /// Freed slots, the most recently freed last (handed out first).
    free: Vec<usize>,
}

/// One live process object.
struct Slot {
    process: Weak<ProcessInner>,
    /// `ObfReferenceObject` calls not yet matched by `ObfDereferenceObject`.
    driver_refs: usize,
    /// While a driver holds a reference, the process itself, so that it outlives every
    /// `Process` value as a referenced object outlives its handles.
    keep: Option<Arc<ProcessInner>>,
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
    table.slots[slot] = Some(Slot {
        process,
        driver_refs: 0,
        keep: None,
    });
    slot
}

/// The last `Process` value of the object in `slot` is gone, and no driver reference stands (it
/// would keep the process alive): the object is freed, its value free for the next process.
pub(crate) fn release(slot: usize) {
    let mut table = lock(&TABLE);
    if let Some(entry) = table.slots.get_mut(slot) {
        if entry.take().is_some() {
            table.free.push(slot);
        }
    }
}

/// The driver references that stand on the process in `slot`.
pub(crate) fn driver_refs(slot: usize) -> usize {
    let table = lock(&TABLE);
    match table.slots.get(slot) {
        Some(Some(entry)) => entry.driver_refs,
        _ => 0,
    }
}

/// The live process an `EPROCESS` value names, if any (not System).
pub(crate) fn process_of(eprocess: PEPROCESS) -> Option<Process> {
    let slot = slot_of(eprocess)?;
    let table = lock(&TABLE);
    let entry = table.slots.get(slot)?.as_ref()?;
    let inner = entry.process.upgrade()?;
    drop(table);
    Some(Process { inner })
}

/// `ObfReferenceObject` on a process object: the driver references now standing on it.
pub(crate) fn reference(object: PEPROCESS) -> usize {
    let slot = match slot_of(object) {
        Some(SYSTEM_SLOT) => return 1,
        Some(slot) => slot,
        None => not_an_object("ObfReferenceObject", object),
    };
    let mut table = lock(&TABLE);
    let entry = match table.slots.get_mut(slot) {
        Some(Some(entry)) => entry,
        _ => {
            drop(table);
            not_an_object("ObfReferenceObject", object)
        }
    };
    if entry.keep.is_none() {
        match entry.process.upgrade() {
            Some(process) => entry.keep = Some(process),
            None => {
                drop(table);
                not_an_object("ObfReferenceObject", object)
            }
        }
    }
    entry.driver_refs += 1;
    entry.driver_refs
}

/// `ObfDereferenceObject` on a process object: the driver references left. Dropping the last
/// one may free the object, which happens after the table's lock is released (freeing takes it
/// again).
pub(crate) fn dereference(object: PEPROCESS) -> usize {
    let slot = match slot_of(object) {
        Some(SYSTEM_SLOT) => return 1,
        Some(slot) => slot,
        None => not_an_object("ObfDereferenceObject", object),
    };
    let released = {
        let mut table = lock(&TABLE);
        let entry = match table.slots.get_mut(slot) {
            Some(Some(entry)) if entry.driver_refs > 0 => entry,
            _ => {
                drop(table);
                stop(format_args!(
                    "REFERENCE_BY_POINTER (bug check 0x18): ObfDereferenceObject({object:p}) \
                     without a reference to drop: the object's count would go below zero, or it \
                     was freed already"
                ))
            }
        };
        entry.driver_refs -= 1;
        let left = entry.driver_refs;
        (left, if left == 0 { entry.keep.take() } else { None })
    };
    let (left, last) = released;
    drop(last);
    left
}

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
