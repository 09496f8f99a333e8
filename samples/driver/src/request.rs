//! The code path a driver author writes around a user buffer: secure it, read a `#[repr(C)]`
//! header and the payload out of it with a reader (each byte once), drop the secure, and work on
//! the copy only.

use mmsecure::bytemuck::{AnyBitPattern, NoUninit};
use mmsecure::{Error, ProbeMode, SecureFlags, SecureRegion, UserSlice};

/// The request's header, as the user program lays it out: derived through mmsecure's re-export
/// of bytemuck (the driver depends on mmsecure alone), built with rustc 1.63.
#[derive(Clone, Copy, Debug, PartialEq, Eq, AnyBitPattern, NoUninit)]
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
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
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

/// [`copy_request`] without flags, under [`SecureRegion::scope`]: the secure lasts the call, and on
/// the caller's own thread (an IOCTL's dispatch) takes no reference on its process.
///
/// # Errors
///
/// As [`copy_request`].
pub fn copy_request_scoped(user: *const u8, len: usize) -> Result<Request, Error> {
    SecureRegion::scope(user, len, ProbeMode::ReadOnly, |region| {
        // The region's own reads here (not a reader, as `copy_request` has): both forms are
        // inlined once each, and the disassembly check sees every call of the secured path.
        let header: Header = region.read(0)?;
        let mut payload = [0u8; PAYLOAD_LEN];
        region.read_slice(HEADER_LEN, &mut payload)?;
        Ok(Request { header, payload })
    })?
}

/// Copies the request as [`copy_request`] does, with no secure: a probe and guarded copies
/// through a [`UserSlice`]'s reader (issue #20). This is what a `METHOD_NEITHER` handler that
/// answers before it returns needs: the copy is taken at once, so a secure would add nothing
/// (a free or re-protect mid-copy is a caught fault either way). Secure (`copy_request`) only a
/// buffer the driver keeps using.
pub fn copy_request_unsecured(user: *const u8, len: usize) -> Result<Request, Error> {
    let mut reader = UserSlice::aligned(user, len, 4)?.reader();
    let header: Header = reader.read()?;
    let mut payload = [0u8; PAYLOAD_LEN];
    reader.read_slice(&mut payload)?;
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
        Error::Misaligned { .. } => "Err(Misaligned)",
        Error::BadAlignment(_) => "Err(BadAlignment)",
        Error::Unterminated => "Err(Unterminated)",
        Error::BadUnicodeString => "Err(BadUnicodeString)",
        Error::StringTooLong(_) => "Err(StringTooLong)",
        // `Error` is non-exhaustive: a variant added later still gets a report.
        _ => "Err(other)",
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use mmsecure::host::{self, AccessMode, Process, PAGE_NOACCESS, PAGE_READWRITE, PAGE_SIZE};

    /// A user process with one page holding `bytes` at its start, attached to this thread.
    fn user_page(bytes: &[u8]) -> (Process, host::Attach, *mut u8) {
        let process = Process::new();
        let attach = process.attach();
        let page = process.allocate(PAGE_SIZE, PAGE_READWRITE).unwrap();
        process.write(page, bytes).unwrap();
        (process, attach, page)
    }

    /// The bytes of a request, as the user program writes them.
    fn request_bytes() -> [u8; REQUEST_LEN] {
        let mut bytes = [0u8; REQUEST_LEN];
        for (i, byte) in bytes.iter_mut().enumerate() {
            *byte = (i as u8).wrapping_mul(37).wrapping_add(11);
        }
        bytes
    }

    #[test]
    fn copies_the_users_request_and_unsecures_it() {
        let (process, _in, page) = user_page(&request_bytes());
        let copy = copy_request(page, PAGE_SIZE, SecureFlags::empty()).unwrap();
        assert_eq!(copy.to_bytes(), request_bytes());
        // The secure was dropped with the copy: the user may free the buffer again.
        assert!(process.free(page, AccessMode::User).is_ok());
        assert!(process.misuses().is_empty());
    }

    #[test]
    fn copies_the_request_through_a_slice_without_a_secure() {
        let (process, _in, page) = user_page(&request_bytes());
        let copy = copy_request_unsecured(page, PAGE_SIZE).unwrap();
        assert_eq!(copy.to_bytes(), request_bytes());
        assert_eq!(process.secure_count(), 0);
        assert!(process.double_fetches().is_empty());
        let error = copy_request_unsecured(page, REQUEST_LEN - 1).unwrap_err();
        assert_eq!(error_name(error), "Err(OutOfBounds)");
        let error = copy_request_unsecured(page.wrapping_add(2), 64).unwrap_err();
        assert_eq!(error_name(error), "Err(Misaligned)");
        process.free(page, AccessMode::User).unwrap();
        let error = copy_request_unsecured(page, PAGE_SIZE).unwrap_err();
        assert_eq!(error_name(error), "Err(Fault)");
    }

    #[test]
    fn copies_the_request_in_a_scope_and_unsecures_it() {
        let (process, _in, page) = user_page(&request_bytes());
        let copy = copy_request_scoped(page, PAGE_SIZE).unwrap();
        assert_eq!(copy.to_bytes(), request_bytes());
        assert_eq!((process.secure_count(), process.driver_references()), (0, 0));
        assert!(process.misuses().is_empty());
        let error = copy_request_scoped(page, REQUEST_LEN - 1).unwrap_err();
        assert_eq!(error_name(error), "Err(OutOfBounds)");
        // On a thread of the process, as an IOCTL arrives.
        let page = page as usize;
        let copied = process.run_thread(move || {
            copy_request_scoped(page as *const u8, PAGE_SIZE).map(|copy| copy.to_bytes())
        });
        assert_eq!(copied, Ok(request_bytes()));
        assert!(process.misuses().is_empty());
    }

    #[test]
    fn copies_with_flags_through_the_ex_routine() {
        let (process, _in, page) = user_page(&request_bytes());
        let copy = copy_request(page, PAGE_SIZE, SecureFlags::NO_CHANGE).unwrap();
        assert_eq!(copy.to_bytes(), request_bytes());
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
            copy_request(core::ptr::null::<u8>(), 16, SecureFlags::empty()).map_err(error_name),
            Err("Err(NullAddress)")
        );
        assert_eq!(
            copy_request(0x1_0000 as *const u8, 0, SecureFlags::empty()).map_err(error_name),
            Err("Err(ZeroLength)")
        );
    }
}
