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
        Error::IrqlTooHigh { .. } => "Err(IrqlTooHigh)",
        Error::Refused => "Err(Refused)",
        Error::Unavailable => "Err(Unavailable)",
        Error::Fault { .. } => "Err(Fault)",
        // `Error` is non-exhaustive: a variant added later still gets a report.
        _ => "Err(other)",
    }
}
