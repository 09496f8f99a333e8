//! The code path a driver author writes around a user buffer: secure it, copy what is needed out
//! of it, drop the secure, and work on the copy only.

use mmsecure::{Error, ProbeMode, SecureFlags, SecureRegion};

/// How many bytes of the user's buffer make a request.
pub const REQUEST_LEN: usize = 64;

/// A request, copied out of user memory.
pub type Request = [u8; REQUEST_LEN];

/// Copies the request at the start of the user buffer `user .. user + len`.
///
/// Empty `flags` secure with `MmSecureVirtualMemory`; any flag needs `MmSecureVirtualMemoryEx`,
/// which mmsecure looks up at run time ([`Error::Unavailable`] where Windows lacks it).
///
/// In a real driver this runs in a `METHOD_NEITHER` device-control handler, in the context of the
/// process that sent the request, with `user` and `len` taken from the IRP. Securing keeps the
/// buffer from being freed or made inaccessible during the copy; the user can still change its
/// bytes, so the driver validates the copy, never the buffer.
pub fn copy_request(user: *const u8, len: usize, flags: SecureFlags) -> Result<Request, Error> {
    let region = SecureRegion::with_flags(user, len, ProbeMode::ReadOnly, flags)?;
    let mut request = [0u8; REQUEST_LEN];
    region.read(0, &mut request)?;
    // Unsecure as soon as the copy is taken: the secure blocks the user's own memory management.
    drop(region);
    Ok(request)
}

/// The name of a mmsecure error as reported: the variant's name.
pub fn error_name(error: Error) -> &'static str {
    match error {
        Error::NullAddress => "Err(NullAddress)",
        Error::ZeroLength => "Err(ZeroLength)",
        Error::Overflow => "Err(Overflow)",
        Error::NotUserRange => "Err(NotUserRange)",
        Error::UnknownProbeMode(_) => "Err(UnknownProbeMode)",
        Error::UnknownFlags(_) => "Err(UnknownFlags)",
        Error::OutOfBounds { .. } => "Err(OutOfBounds)",
        Error::NotWritable => "Err(NotWritable)",
        Error::WrongProcess => "Err(WrongProcess)",
        Error::NullHandle => "Err(NullHandle)",
        Error::Refused => "Err(Refused)",
        Error::Unavailable => "Err(Unavailable)",
        Error::Fault { .. } => "Err(Fault)",
        // `Error` is non-exhaustive: a variant added later still gets a report.
        _ => "Err(other)",
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use mmsecure_sys::host::{self, AccessMode, Process, PAGE_NOACCESS, PAGE_READWRITE, PAGE_SIZE};

    /// A user process with one page holding `bytes` at its start, attached to this thread.
    fn user_page(bytes: &[u8]) -> (Process, host::Attach, *mut u8) {
        let process = Process::new();
        let attach = process.attach();
        let page = process.allocate(PAGE_SIZE, PAGE_READWRITE).unwrap();
        process.write(page, bytes).unwrap();
        (process, attach, page)
    }

    fn request_bytes() -> Request {
        core::array::from_fn(|i| (i as u8).wrapping_mul(37).wrapping_add(11))
    }

    #[test]
    fn copies_the_users_request_and_unsecures_it() {
        let (process, _in, page) = user_page(&request_bytes());
        assert_eq!(
            copy_request(page, PAGE_SIZE, SecureFlags::empty()),
            Ok(request_bytes())
        );
        // The secure was dropped with the copy: the user may free the buffer again.
        assert!(process.free(page, AccessMode::User).is_ok());
        assert!(process.misuses().is_empty());
    }

    #[test]
    fn copies_with_flags_through_the_ex_routine() {
        let (process, _in, page) = user_page(&request_bytes());
        assert_eq!(
            copy_request(page, PAGE_SIZE, SecureFlags::NO_CHANGE),
            Ok(request_bytes())
        );
        assert!(process.misuses().is_empty());
    }

    #[test]
    fn a_buffer_shorter_than_a_request_is_out_of_bounds() {
        let (_process, _in, page) = user_page(&request_bytes());
        let error = copy_request(page, REQUEST_LEN - 1, SecureFlags::empty()).unwrap_err();
        assert_eq!(error_name(error), "Err(OutOfBounds)");
    }

    #[test]
    fn an_inaccessible_buffer_is_refused_by_the_kernel() {
        let (process, _in, page) = user_page(&request_bytes());
        process
            .protect(page, PAGE_SIZE, PAGE_NOACCESS, AccessMode::User)
            .unwrap();
        let error = copy_request(page, PAGE_SIZE, SecureFlags::empty()).unwrap_err();
        assert_eq!(error_name(error), "Err(Refused)");
    }

    #[test]
    fn a_freed_buffer_is_refused_by_the_kernel() {
        let (process, _in, page) = user_page(&request_bytes());
        process.free(page, AccessMode::User).unwrap();
        let error = copy_request(page, PAGE_SIZE, SecureFlags::empty()).unwrap_err();
        assert_eq!(error_name(error), "Err(Refused)");
    }

    #[test]
    fn bad_ranges_are_named_by_their_error() {
        assert_eq!(
            copy_request(core::ptr::null(), 16, SecureFlags::empty()).map_err(error_name),
            Err("Err(NullAddress)")
        );
        assert_eq!(
            copy_request(0x1_0000 as *const u8, 0, SecureFlags::empty()).map_err(error_name),
            Err("Err(ZeroLength)")
        );
    }
}
