//! [`Status`]: the NTSTATUS a refused user-mode operation returns, and the codes the model uses.

use core::fmt;

/// The protection asked for is not allowed: the code a secure refuses with (WRK `MiCheckSecuredVad`;
/// DOCS), and the code for a malformed protection value.
pub const STATUS_INVALID_PAGE_PROTECTION: i32 = 0xC000_0045_u32 as i32;
/// An access to memory that is not mapped, not committed, or lacks the access.
pub const STATUS_ACCESS_VIOLATION: i32 = 0xC000_0005_u32 as i32;
/// A page could not be read in from its backing store (a failed page-file or network read); the
/// code an access to such a page raises, and the one to inject with
/// [`Process::inject_fault`](super::Process::inject_fault) to simulate it.
pub const STATUS_IN_PAGE_ERROR: i32 = 0xC000_0006_u32 as i32;
/// An access hit a guard page; the guard is cleared by this first access, as on Windows.
pub const STATUS_GUARD_PAGE_VIOLATION: i32 = 0x8000_0001_u32 as i32;
/// A length of zero, a null address, or another malformed argument.
pub const STATUS_INVALID_PARAMETER: i32 = 0xC000_000D_u32 as i32;
/// The host could not provide the memory, or it would lie above the highest user address.
pub const STATUS_NO_MEMORY: i32 = 0xC000_0017_u32 as i32;
/// The range is not inside one allocation, or an operation does not fit the allocation's kind.
pub const STATUS_CONFLICTING_ADDRESSES: i32 = 0xC000_0018_u32 as i32;
/// `unmap_view` on memory that is not a mapped view.
pub const STATUS_NOT_MAPPED_VIEW: i32 = 0xC000_0019_u32 as i32;
/// `free` or `decommit` on a mapped view (unmap it instead).
pub const STATUS_UNABLE_TO_DELETE_SECTION: i32 = 0xC000_001B_u32 as i32;
/// A protection change on pages that are reserved but not committed.
pub const STATUS_NOT_COMMITTED: i32 = 0xC000_002D_u32 as i32;
/// `free` at an address that is not the base of its allocation.
pub const STATUS_FREE_VM_NOT_AT_BASE: i32 = 0xC000_009F_u32 as i32;
/// The address is not in any allocation of the process.
pub const STATUS_MEMORY_NOT_ALLOCATED: i32 = 0xC000_00A0_u32 as i32;
/// The process has exited: it has no address space any more.
pub const STATUS_PROCESS_IS_TERMINATING: i32 = 0xC000_010A_u32 as i32;

/// An NTSTATUS error code returned by a simulated user-mode memory operation.
///
/// `Display` and `Debug` give the status' name (for the codes the model uses) and its value in
/// hex.
///
/// ```
/// use mmsecure_sys::host::{Status, STATUS_INVALID_PAGE_PROTECTION};
///
/// let refused = Status(STATUS_INVALID_PAGE_PROTECTION);
/// assert_eq!(refused.to_string(), "STATUS_INVALID_PAGE_PROTECTION (0xC0000045)");
/// assert_eq!(refused.name(), Some("STATUS_INVALID_PAGE_PROTECTION"));
/// ```
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub struct Status(pub i32);

impl Status {
    /// The status' symbolic name, if it is one the model uses.
    pub fn name(self) -> Option<&'static str> {
        let name = match self.0 {
            STATUS_INVALID_PAGE_PROTECTION => "STATUS_INVALID_PAGE_PROTECTION",
            STATUS_ACCESS_VIOLATION => "STATUS_ACCESS_VIOLATION",
            STATUS_IN_PAGE_ERROR => "STATUS_IN_PAGE_ERROR",
            STATUS_GUARD_PAGE_VIOLATION => "STATUS_GUARD_PAGE_VIOLATION",
            STATUS_INVALID_PARAMETER => "STATUS_INVALID_PARAMETER",
            STATUS_NO_MEMORY => "STATUS_NO_MEMORY",
            STATUS_CONFLICTING_ADDRESSES => "STATUS_CONFLICTING_ADDRESSES",
            STATUS_NOT_MAPPED_VIEW => "STATUS_NOT_MAPPED_VIEW",
            STATUS_UNABLE_TO_DELETE_SECTION => "STATUS_UNABLE_TO_DELETE_SECTION",
            STATUS_NOT_COMMITTED => "STATUS_NOT_COMMITTED",
            STATUS_FREE_VM_NOT_AT_BASE => "STATUS_FREE_VM_NOT_AT_BASE",
            STATUS_MEMORY_NOT_ALLOCATED => "STATUS_MEMORY_NOT_ALLOCATED",
            STATUS_PROCESS_IS_TERMINATING => "STATUS_PROCESS_IS_TERMINATING",
            _ => return None,
        };
        Some(name)
    }
}

impl fmt::Display for Status {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.name() {
            Some(name) => write!(f, "{} ({:#010X})", name, self.0 as u32),
            None => write!(f, "NTSTATUS {:#010X}", self.0 as u32),
        }
    }
}

impl fmt::Debug for Status {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Status({self})")
    }
}

impl std::error::Error for Status {}

#[cfg(test)]
mod tests {
    use super::*;
    use std::format;

    #[test]
    fn unknown_codes_print_as_hex() {
        assert_eq!(
            format!("{}", Status(0xC000_0001_u32 as i32)),
            "NTSTATUS 0xC0000001"
        );
        assert_eq!(Status(0xC000_0001_u32 as i32).name(), None);
    }

    #[test]
    fn debug_names_the_status() {
        assert_eq!(
            format!("{:?}", Status(STATUS_NOT_COMMITTED)),
            "Status(STATUS_NOT_COMMITTED (0xC000002D))"
        );
    }
}
