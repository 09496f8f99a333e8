//! Page protections (winnt.h `PAGE_*`), and what each one allows a thread to do.
//!
//! `PAGE_READONLY` and `PAGE_READWRITE` come from the generated bindings (ntddk.h names them for
//! `ProbeMode`); the others are winnt.h's values, which the kernel headers do not repeat.

use super::status::{Status, STATUS_INVALID_PAGE_PROTECTION};
pub use crate::{PAGE_READONLY, PAGE_READWRITE};

/// No access: any read or write faults.
pub const PAGE_NOACCESS: u32 = 0x01;
/// Read access; the first write makes a private copy and turns the page `PAGE_READWRITE`.
/// Windows allows it for mapped views only, and so does the model.
pub const PAGE_WRITECOPY: u32 = 0x08;
/// Execute only. Microsoft documents reads as faulting; x86 hardware would allow them. The
/// model takes the stricter reading: **not readable**.
pub const PAGE_EXECUTE: u32 = 0x10;
/// Execute and read.
pub const PAGE_EXECUTE_READ: u32 = 0x20;
/// Execute, read and write.
pub const PAGE_EXECUTE_READWRITE: u32 = 0x40;
/// Execute and copy-on-write (mapped views only).
pub const PAGE_EXECUTE_WRITECOPY: u32 = 0x80;
/// Modifier: the first access faults with `STATUS_GUARD_PAGE_VIOLATION` and clears the guard.
/// A guard page counts as accessible for nothing.
pub const PAGE_GUARD: u32 = 0x100;

/// The access bits of a protection, without modifiers.
const BASE_MASK: u32 = 0xFF;

/// Whether a thread may read a page with this protection (a guard page: no).
pub(crate) fn is_readable(protect: u32) -> bool {
    protect & PAGE_GUARD == 0
        && matches!(
            protect & BASE_MASK,
            PAGE_READONLY
                | PAGE_READWRITE
                | PAGE_WRITECOPY
                | PAGE_EXECUTE_READ
                | PAGE_EXECUTE_READWRITE
                | PAGE_EXECUTE_WRITECOPY
        )
}

/// Whether a thread may write a page with this protection (a guard page: no).
pub(crate) fn is_writable(protect: u32) -> bool {
    protect & PAGE_GUARD == 0
        && matches!(
            protect & BASE_MASK,
            PAGE_READWRITE | PAGE_WRITECOPY | PAGE_EXECUTE_READWRITE | PAGE_EXECUTE_WRITECOPY
        )
}

/// Whether `protect` is a protection a page of a private allocation (`mapped == false`) or of a
/// mapped view may have: exactly one access value, optionally with [`PAGE_GUARD`]
/// (not with `PAGE_NOACCESS`); copy-on-write only in views.
pub(crate) fn validate(protect: u32, mapped: bool) -> Result<(), Status> {
    let base = protect & BASE_MASK;
    let modifiers = protect & !BASE_MASK;
    let known = matches!(
        base,
        PAGE_NOACCESS
            | PAGE_READONLY
            | PAGE_READWRITE
            | PAGE_WRITECOPY
            | PAGE_EXECUTE
            | PAGE_EXECUTE_READ
            | PAGE_EXECUTE_READWRITE
            | PAGE_EXECUTE_WRITECOPY
    );
    let copy_on_write = matches!(base, PAGE_WRITECOPY | PAGE_EXECUTE_WRITECOPY);
    let bad_modifiers = modifiers & !PAGE_GUARD != 0 || (modifiers != 0 && base == PAGE_NOACCESS);
    if !known || bad_modifiers || (copy_on_write && !mapped) {
        return Err(Status(STATUS_INVALID_PAGE_PROTECTION));
    }
    Ok(())
}

/// WRK's `MmReadWrite` value for a protection (acceschk.c L42, indexed by the protection mask
/// the `PAGE_*` value maps to): 1 for no access, 10 for readable, 11 for writable. Execute-only
/// is 10, as x86 hardware reads it. `MiCheckSecuredVad` (protect.c L2720, L2726) refuses a
/// change below 10 under a read-only secure and below 11 under a read-write one; guard pages it
/// refuses before the table (L2714).
pub(crate) fn mm_read_write(protect: u32) -> u8 {
    match protect & BASE_MASK {
        PAGE_READONLY | PAGE_EXECUTE | PAGE_EXECUTE_READ => 10,
        PAGE_READWRITE | PAGE_WRITECOPY | PAGE_EXECUTE_READWRITE | PAGE_EXECUTE_WRITECOPY => 11,
        _ => 1,
    }
}

/// The protection a writable page has after a thread wrote it: copy-on-write pages become
/// private read-write pages.
pub(crate) fn after_write(protect: u32) -> u32 {
    match protect {
        PAGE_WRITECOPY => PAGE_READWRITE,
        PAGE_EXECUTE_WRITECOPY => PAGE_EXECUTE_READWRITE,
        other => other,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn guard_pages_allow_nothing() {
        assert!(!is_readable(PAGE_READWRITE | PAGE_GUARD));
        assert!(!is_writable(PAGE_READWRITE | PAGE_GUARD));
    }

    #[test]
    fn execute_only_is_not_readable() {
        assert!(!is_readable(PAGE_EXECUTE));
        assert!(is_readable(PAGE_EXECUTE_READ));
        assert!(!is_writable(PAGE_EXECUTE_READ));
    }

    #[test]
    fn execute_only_counts_as_readable_in_the_secure_table() {
        assert_eq!(mm_read_write(PAGE_EXECUTE), 10);
        assert_eq!(mm_read_write(PAGE_NOACCESS), 1);
        assert_eq!(mm_read_write(PAGE_EXECUTE_READWRITE), 11);
    }

    #[test]
    fn validate_rejects_combinations_and_unknown_bits() {
        assert!(validate(PAGE_READONLY | PAGE_READWRITE, false).is_err());
        assert!(validate(PAGE_NOACCESS | PAGE_GUARD, false).is_err());
        assert!(validate(0, false).is_err());
        assert!(validate(PAGE_READWRITE | 0x200, false).is_err());
        assert!(validate(PAGE_WRITECOPY, false).is_err());
        assert!(validate(PAGE_WRITECOPY, true).is_ok());
        assert!(validate(PAGE_READWRITE | PAGE_GUARD, false).is_ok());
    }
}
