//! The driver itself: its entry point and unload routine, the steps DriverEntry runs and
//! reports (see the crate docs), and the panic handler. Not built for tests.

use core::panic::PanicInfo;

use crate::{guard, report, wine};

use mmsecure::sys::UNICODE_STRING;
use mmsecure::{ProbeMode, SecureFlags, SecureRegion};

use crate::ntoskrnl::{DriverObject, KeBugCheckEx, NTSTATUS, STATUS_SUCCESS};
use crate::request::{
    copy_request, copy_request_scoped, copy_request_unsecured, error_name, REQUEST_LEN,
};
use crate::user_buffer::UserBuffer;

/// The pattern the driver puts in the user buffer and expects back from each copy.
const PATTERN: [u8; REQUEST_LEN] = pattern();

const fn pattern() -> [u8; REQUEST_LEN] {
    let mut bytes = [0u8; REQUEST_LEN];
    let mut i = 0;
    while i < REQUEST_LEN {
        bytes[i] = (i as u8).wrapping_mul(37).wrapping_add(11);
        i += 1;
    }
    bytes
}

/// The driver's entry point, called once by the I/O manager when the service starts.
///
/// # Safety
///
/// Called by the kernel only, at `PASSIVE_LEVEL`, with a valid driver object.
#[no_mangle]
pub unsafe extern "system" fn DriverEntry(
    driver: *mut DriverObject,
    _registry_path: *mut UNICODE_STRING,
) -> NTSTATUS {
    report::flag("DriverEntry", true);
    // SAFETY: the kernel passes a valid driver object that the driver may set up until
    // DriverEntry returns.
    unsafe { (*driver).driver_unload = Some(driver_unload) };

    let under_wine = wine::under_wine();
    report::flag("UnderWine", under_wine);

    refuse_bad_ranges();

    let ex_available = mmsecure::secure_ex_available();
    report::flag("SecureExAvailable", ex_available);

    report::address("HighestUserAddress", mmsecure::highest_user_address());
    process_reference();

    match UserBuffer::allocate(4096) {
        Ok(buffer) => {
            report::outcome("UserBuffer", "Ok");
            buffer.fill(&PATTERN);
            // Under Wine a found Ex routine could only be a raising stub: skip it rather than
            // call it. Wine 8 has none, and this path reaches `Err(Unavailable)`.
            if under_wine && ex_available {
                report::outcome("FlagsSecureCopy", "Skipped(Wine)");
            } else {
                secure_copy("FlagsSecureCopy", &buffer, SecureFlags::NO_CHANGE);
            }
            // Wine's MmSecureVirtualMemory raises: see the crate docs.
            if under_wine {
                report::outcome("SecureCopy", "Skipped(Wine)");
                report::outcome("ScopedCopy", "Skipped(Wine)");
                report::outcome("Pairs", "Skipped(Wine)");
            } else {
                secure_copy("SecureCopy", &buffer, SecureFlags::empty());
                scoped_copy("ScopedCopy", &buffer);
                pairs("Pairs", &buffer);
            }
            guard::copy_from_no_access_page(&buffer);
            guard::call_raising_stub(&buffer);
            // No secure, so it runs under Wine too: a probe, the process reference, guarded
            // copies (issue #20).
            slice_copy("SliceCopy", &buffer);
        }
        Err(status) => report::outcome("UserBuffer", Failed(status).text(&mut [0; 24])),
    }

    match UserBuffer::allocate(8192) {
        Ok(buffer) => guard::partial_copies(&buffer),
        Err(status) => report::outcome("PartialBuffer", Failed(status).text(&mut [0; 24])),
    }

    match (UserBuffer::allocate(65536), UserBuffer::allocate(65536)) {
        (Ok(from), Ok(to)) => guard::time_copies(&from, &to),
        (Err(status), _) | (_, Err(status)) => {
            report::outcome("TimingBuffers", Failed(status).text(&mut [0; 24]))
        }
    }

    report::flag("DriverEntryDone", true);
    STATUS_SUCCESS
}

/// The unload routine: nothing to release (every region and buffer was dropped in DriverEntry);
/// reports that it ran.
///
/// # Safety
///
/// Called by the kernel only, at `PASSIVE_LEVEL`.
unsafe extern "system" fn driver_unload(_driver: *mut DriverObject) {
    report::flag("Unloaded", true);
}

/// Hands mmsecure ranges it must refuse by itself, and reports each error.
fn refuse_bad_ranges() {
    let bad: [(&str, usize, usize); 4] = [
        ("BadNullAddress", 0, 16),
        // A user address, but nothing to secure.
        ("BadZeroLength", 0x1_0000, 0),
        // KUSER_SHARED_DATA's kernel-mode address.
        ("BadKernelAddress", 0xFFFF_F780_0000_0000, 16),
        // Ends past the top of the address space.
        ("BadOverflow", usize::MAX - 7, 16),
    ];
    for (name, address, len) in bad {
        match SecureRegion::new(address as *const u8, len, ProbeMode::ReadOnly) {
            Ok(region) => {
                // Not expected; drop what the kernel secured and say so.
                drop(region);
                report::outcome(name, "Ok");
            }
            Err(error) => report::outcome(name, error_name(error)),
        }
    }
}

/// Takes and drops a reference on the current process, as every `SecureRegion` does
/// (`ObfReferenceObject` when made, `ObfDereferenceObject` when dropped), and reports
/// `ProcessReference: Ok` once both returned. Under Wine, where no secure succeeds, this is how
/// the two imports get called. Their return values (the new counts on Windows) are not
/// reported: Wine 8's versions return nothing.
fn process_reference() {
    // SAFETY: callable at any IRQL; the current process is live while this thread runs in it.
    let process = unsafe { mmsecure::sys::IoGetCurrentProcess() };
    // SAFETY: a live process object, at PASSIVE_LEVEL.
    unsafe { mmsecure::sys::ObfReferenceObject(process.cast()) };
    // SAFETY: the reference taken just above, given up once.
    unsafe { mmsecure::sys::ObfDereferenceObject(process.cast()) };
    report::outcome("ProcessReference", "Ok");
}

/// Runs [`copy_request`] on `buffer` and reports the outcome under `name`.
fn secure_copy(name: &str, buffer: &UserBuffer, flags: SecureFlags) {
    let text = match copy_request(buffer.as_ptr(), buffer.len(), flags) {
        Ok(copy) if copy.to_bytes() == PATTERN => "Ok",
        Ok(_) => "Mismatch",
        Err(error) => error_name(error),
    };
    report::outcome(name, text);
}

/// Runs [`copy_request_scoped`] on `buffer` and reports the outcome under `name`.
fn scoped_copy(name: &str, buffer: &UserBuffer) {
    let text = match copy_request_scoped(buffer.as_ptr(), buffer.len()) {
        Ok(copy) if copy.to_bytes() == PATTERN => "Ok",
        Ok(_) => "Mismatch",
        Err(error) => error_name(error),
    };
    report::outcome(name, text);
}

/// Runs the three measured pairs of [`pairs`](crate::pairs) on `buffer`: `Ok` if each secured.
fn pairs(name: &str, buffer: &UserBuffer) {
    let (user, len) = (buffer.as_ptr(), buffer.len());
    let all = crate::pairs::sample_raw_pair(user, len)
        && crate::pairs::sample_region_pair(user, len)
        && crate::pairs::sample_scoped_pair(user, len);
    report::outcome(name, if all { "Ok" } else { "Failed" });
}

/// Runs [`copy_request_unsecured`] on `buffer` and reports the outcome under `name`.
fn slice_copy(name: &str, buffer: &UserBuffer) {
    let text = match copy_request_unsecured(buffer.as_ptr(), buffer.len()) {
        Ok(copy) if copy.to_bytes() == PATTERN => "Ok",
        Ok(_) => "Mismatch",
        Err(error) => error_name(error),
    };
    report::outcome(name, text);
}

/// A failed NTSTATUS, reported as `Failed(0xC0000017)`.
struct Failed(NTSTATUS);

impl Failed {
    fn text<'a>(&self, out: &'a mut [u8; 24]) -> &'a str {
        const HEX: &[u8; 16] = b"0123456789ABCDEF";
        let prefix = b"Failed(0x";
        out[..prefix.len()].copy_from_slice(prefix);
        let status = self.0 as u32;
        for i in 0..8 {
            out[prefix.len() + i] = HEX[((status >> (28 - 4 * i)) & 0xF) as usize];
        }
        out[prefix.len() + 8] = b')';
        // Only ASCII was written.
        core::str::from_utf8(&out[..prefix.len() + 9]).unwrap_or("Failed")
    }
}

/// A panic stops the system, as any fault in kernel code would: there is no one to unwind to.
#[panic_handler]
fn panic(_info: &PanicInfo) -> ! {
    // SAFETY: KeBugCheckEx may be called at any IRQL and never returns.
    unsafe { KeBugCheckEx(BUGCHECK_RUST_PANIC, 0, 0, 0, 0) }
}

/// The bug check code of a panic: "MSEC" in ASCII, not one of Microsoft's codes.
const BUGCHECK_RUST_PANIC: u32 = 0x4D53_4543;
