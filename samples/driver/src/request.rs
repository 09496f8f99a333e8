//! The code path a driver author writes around a user buffer: secure it, read a `#[repr(C)]`
//! header and the payload out of it with a reader (each byte once), drop the secure, and work on
//! the copy only.

use mmsecure::bytemuck::{AnyBitPattern, NoUninit};
use mmsecure::{Error, ProbeMode, SecureFlags, SecureRegion};

/// The request's header, as the user program lays it out: derived through mmsecure's re-export
/// of bytemuck (the driver depends on mmsecure alone), built with rustc 1.63.
#[derive(Clone, Copy, PartialEq, Eq, AnyBitPattern, NoUninit)]
#[bytemuck(crate = "mmsecure::bytemuck")]
#[repr(C)]
pub struct Header {
    /// Four bytes that name the request.
    pub tag: [u8; 4],
    /// What the request asks for.
    pub kind: u32,
    /// Options.
    pub flags: u32,
    /// How many payload bytes follow, as the user claims: the driver checks its copy.
    pub payload_len: u32,
}

/// Bytes of the header.
pub const HEADER_LEN: usize = core::mem::size_of::<Header>();

/// Bytes of the payload the sample reads after the header.
pub const PAYLOAD_LEN: usize = 48;

/// How many bytes of the user's buffer make a request.
pub const REQUEST_LEN: usize = HEADER_LEN + PAYLOAD_LEN;

/// A request, copied out of user memory.
#[derive(Clone, Copy, PartialEq, Eq)]
pub struct Request {
    /// The header, read first.
    pub header: Header,
    /// The payload, read after it.
    pub payload: [u8; PAYLOAD_LEN],
}

impl Request {
    /// The request's bytes as they were in the user's buffer.
    pub fn to_bytes(&self) -> [u8; REQUEST_LEN] {
        let mut bytes = [0u8; REQUEST_LEN];
        bytes[..HEADER_LEN].copy_from_slice(mmsecure::bytemuck::bytes_of(&self.header));
        bytes[HEADER_LEN..].copy_from_slice(&self.payload);
        bytes
    }
}

/// Copies the request at the start of the user buffer `user .. user + len`: the header, then the
/// payload, through one reader, so that no byte is read twice.
///
/// Empty `flags` secure with `MmSecureVirtualMemory`; any flag needs `MmSecureVirtualMemoryEx`,
/// which mmsecure looks up at run time ([`Error::Unavailable`] where Windows lacks it).
///
/// In a real driver this runs in a `METHOD_NEITHER` device-control handler, in the context of the
/// process that sent the request, with `user` (the IRP's `PVOID`, taken without a cast) and `len`
/// from the IRP. Securing keeps the buffer from being freed or made inaccessible during the copy;
/// the user can still change its bytes, so the driver validates the copy, never the buffer.
pub fn copy_request(user: *const u8, len: usize, flags: SecureFlags) -> Result<Request, Error> {
    let region = SecureRegion::with_flags(user, len, ProbeMode::ReadOnly, flags)?;
    let mut reader = region.reader();
    // A cursor's error says where it was; `?` keeps the `Error` (`From<CursorError>`).
    let header: Header = reader.read()?;
    let mut payload = [0u8; PAYLOAD_LEN];
    reader.read_slice(&mut payload)?;
    // Unsecure as soon as the copy is taken: the secure blocks the user's own memory management.
    drop(region);
    Ok(Request { header, payload })
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
        Error::NoMemory => "Err(NoMemory)",
        // `Error` is non-exhaustive: a variant added later still gets a report.
        _ => "Err(other)",
    }
}
