//! Reporting what each step returned: a `DbgPrint` line and a value under the driver's own
//! service key, `HKLM\System\CurrentControlSet\Services\mmsecure_sample`, where a test reads it.

use mmsecure::sys::ctypes::c_char;
use mmsecure::sys::ULONG;

use crate::ntoskrnl::{
    DbgPrint, RtlWriteRegistryValue, REG_DWORD, REG_SZ, RTL_REGISTRY_SERVICES, STATUS_SUCCESS,
};

/// The service name the driver must be installed under: values are written below its key.
pub const SERVICE_NAME: &str = "mmsecure_sample";

/// The longest name or text reported, in bytes; longer ones are cut (all of this driver's fit).
const MAX_TEXT: usize = 63;

/// Reports a yes/no fact as a `REG_DWORD` of 1 or 0.
pub fn flag(name: &str, value: bool) {
    let text = if value { "yes" } else { "no" };
    print(name, text);
    let mut data = ULONG::from(value);
    write(name, REG_DWORD, (&mut data as *mut ULONG).cast(), 4);
}

/// Reports a 32-bit number (an NTSTATUS, a tick count) as a `REG_DWORD`, printed in hex.
pub fn number(name: &str, value: u32) {
    let mut text = [0u8; 10];
    print(name, hex(value, &mut text));
    let mut data = value;
    write(name, REG_DWORD, (&mut data as *mut ULONG).cast(), 4);
}

/// Reports an address as a `REG_SZ` of `0x` and sixteen hex digits (`REG_QWORD` values are
/// what Wine's `reg query` cannot print).
pub fn address(name: &str, value: usize) {
    const DIGITS: &[u8; 16] = b"0123456789ABCDEF";
    let mut text = [0u8; 18];
    text[0] = b'0';
    text[1] = b'x';
    for i in 0..16 {
        text[2 + i] = DIGITS[(value >> (60 - 4 * i)) & 0xF];
    }
    // Only ASCII was written.
    outcome(name, core::str::from_utf8(&text).unwrap_or("0x?"));
}

/// `value` as `0x` and eight hex digits.
fn hex(value: u32, out: &mut [u8; 10]) -> &str {
    const DIGITS: &[u8; 16] = b"0123456789ABCDEF";
    out[0] = b'0';
    out[1] = b'x';
    for i in 0..8 {
        out[2 + i] = DIGITS[((value >> (28 - 4 * i)) & 0xF) as usize];
    }
    // Only ASCII was written.
    core::str::from_utf8(out).unwrap_or("0x?")
}

/// Reports an outcome (`"Ok"`, `"Err(NullAddress)"`...) as a `REG_SZ`.
pub fn outcome(name: &str, text: &str) {
    print(name, text);
    let mut wide = Wide::new(text);
    write(
        name,
        REG_SZ,
        wide.as_mut_ptr().cast(),
        wide.byte_len_with_nul(),
    );
}

/// `DbgPrint("mmsecure_sample: NAME: TEXT\n")`.
fn print(name: &str, text: &str) {
    let name = Narrow::new(name);
    let text = Narrow::new(text);
    // SAFETY: the format is a NUL-terminated literal whose two `%s` match the two NUL-terminated
    // byte strings passed, which outlive the call.
    unsafe {
        DbgPrint(
            b"mmsecure_sample: %s: %s\n\0".as_ptr().cast::<c_char>(),
            name.as_ptr(),
            text.as_ptr(),
        );
    }
}

/// Writes one value under the service key; a failure is printed, not fatal: the step's result
/// is still in the debug output.
fn write(name: &str, value_type: ULONG, data: *mut core::ffi::c_void, len: ULONG) {
    let path = Wide::new(SERVICE_NAME);
    let name_wide = Wide::new(name);
    // SAFETY: `path` and `name_wide` are NUL-terminated UTF-16 strings and `data` points to `len`
    // readable bytes (the caller's local), all of which outlive the call. The routine runs at
    // PASSIVE_LEVEL, where DriverEntry and the unload routine run.
    let status = unsafe {
        RtlWriteRegistryValue(
            RTL_REGISTRY_SERVICES,
            path.as_ptr(),
            name_wide.as_ptr(),
            value_type,
            data,
            len,
        )
    };
    if status != STATUS_SUCCESS {
        let name = Narrow::new(name);
        // SAFETY: a NUL-terminated literal format whose `%s` and `%08x` match a NUL-terminated
        // byte string and a 32-bit integer.
        unsafe {
            DbgPrint(
                b"mmsecure_sample: writing %s failed: 0x%08x\n\0"
                    .as_ptr()
                    .cast::<c_char>(),
                name.as_ptr(),
                status,
            );
        }
    }
}

/// An ASCII text as a NUL-terminated byte string on the stack.
struct Narrow {
    bytes: [u8; MAX_TEXT + 1],
}

impl Narrow {
    fn new(text: &str) -> Narrow {
        let mut bytes = [0u8; MAX_TEXT + 1];
        for (to, from) in bytes.iter_mut().zip(text.bytes().take(MAX_TEXT)) {
            *to = from;
        }
        Narrow { bytes }
    }

    fn as_ptr(&self) -> *const c_char {
        self.bytes.as_ptr().cast()
    }
}

/// An ASCII text as a NUL-terminated UTF-16 string on the stack.
struct Wide {
    units: [u16; MAX_TEXT + 1],
    len: usize,
}

impl Wide {
    fn new(text: &str) -> Wide {
        let mut units = [0u16; MAX_TEXT + 1];
        let mut len = 0;
        for (to, from) in units.iter_mut().zip(text.bytes().take(MAX_TEXT)) {
            *to = u16::from(from);
            len += 1;
        }
        Wide { units, len }
    }

    fn as_ptr(&self) -> *const u16 {
        self.units.as_ptr()
    }

    fn as_mut_ptr(&mut self) -> *mut u16 {
        self.units.as_mut_ptr()
    }

    /// The size `REG_SZ` wants: the characters and the terminating NUL, in bytes.
    fn byte_len_with_nul(&self) -> ULONG {
        ((self.len + 1) * 2) as ULONG
    }
}
