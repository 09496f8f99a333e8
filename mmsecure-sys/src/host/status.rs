//! [`Status`]: the NTSTATUS a refused user-mode operation returns, and the codes the model uses
//! (re-exported from [`crate::status`], the one set of them).

use core::fmt;

pub use crate::status::{
    STATUS_ACCESS_VIOLATION, STATUS_CONFLICTING_ADDRESSES, STATUS_FREE_VM_NOT_AT_BASE,
    STATUS_GUARD_PAGE_VIOLATION, STATUS_INVALID_PAGE_PROTECTION, STATUS_INVALID_PARAMETER,
    STATUS_IN_PAGE_ERROR, STATUS_MEMORY_NOT_ALLOCATED, STATUS_NOT_COMMITTED,
    STATUS_NOT_MAPPED_VIEW, STATUS_NO_MEMORY, STATUS_PROCESS_IS_TERMINATING,
    STATUS_UNABLE_TO_DELETE_SECTION,
};
use crate::NTSTATUS;

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
pub struct Status(pub NTSTATUS);

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
