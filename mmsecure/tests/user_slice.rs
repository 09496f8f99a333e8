//! `UserSlice` (issue #20): probe checks, guarded copies with no secure, the process rule held by
//! a process reference (EPROCESS reuse, attach, exit), the shared cursor's new methods, and the
//! double-fetch detector seeing a slice's life as one request.

use mmsecure::host::{
    raise_irql, AccessMode, Process, PAGE_NOACCESS, PAGE_READONLY, PAGE_READWRITE,
};
use mmsecure::status::{STATUS_ACCESS_VIOLATION, STATUS_IN_PAGE_ERROR};
use mmsecure::sys::DISPATCH_LEVEL;
use mmsecure::{highest_user_address, Error, UserPtr, UserSlice};

fn app() -> (Process, *mut u8, mmsecure::host::Attach) {
    let process = Process::new();
    let attach = process.attach();
    let buffer = process.allocate(8192, PAGE_READWRITE).unwrap();
    (process, buffer, attach)
}

#[test]
fn probe_errors_come_before_anything_is_touched() {
    let (process, page, _in) = app();
    assert_eq!(
        UserSlice::new(UserPtr::NULL, 1).unwrap_err(),
        Error::NullAddress
    );
    assert_eq!(
        UserSlice::new(UserPtr::new(usize::MAX), 2).unwrap_err(),
        Error::Overflow
    );
    let last = highest_user_address();
    assert!(UserSlice::new(UserPtr::new(last), 1).is_ok());
    assert_eq!(
        UserSlice::new(UserPtr::new(last), 2).unwrap_err(),
        Error::NotUserRange
    );
    assert_eq!(
        UserSlice::aligned(page.wrapping_add(1), 4, 4).unwrap_err(),
        Error::Misaligned { align: 4 }
    );
    assert_eq!(
        UserSlice::aligned(page, 4, 6).unwrap_err(),
        Error::BadAlignment(6)
    );
    // No reference is left behind by a refused probe.
    assert_eq!(process.driver_references(), 0);
}

#[test]
fn a_zero_length_slice_is_valid_anywhere_and_touches_nothing() {
    let (process, _page, _in) = app();
    for address in [0, 1, usize::MAX] {
        let slice = UserSlice::aligned(UserPtr::new(address), 0, 8).unwrap();
        let mut reader = slice.reader();
        reader.read_slice(&mut []).unwrap();
        assert!(reader.is_empty());
    }
    assert!(process.double_fetches().is_empty());
}

#[test]
fn copies_need_no_secure_and_a_freed_page_is_a_fault() {
    let (process, page, _in) = app();
    process.write(page, b"abcd").unwrap();
    let mut reader = UserSlice::new(page, 8).unwrap().reader();
    assert_eq!(process.secure_count(), 0);
    // The user may free the memory: nothing stops it, and the copy's guard catches it.
    process.free(page, AccessMode::User).unwrap();
    let err = reader.read::<u32>().unwrap_err();
    assert_eq!(
        err.error(),
        Error::Fault {
            code: STATUS_ACCESS_VIOLATION
        }
    );
    assert_eq!(
        reader.offset(),
        4,
        "a fault consumes the bytes of the failed read"
    );
}

#[test]
fn an_injected_in_page_error_and_no_access_are_faults_with_their_codes() {
    let (process, page, _in) = app();
    process.inject_fault(page, 1, STATUS_IN_PAGE_ERROR);
    let mut out = [0u8; 4];
    let err = UserSlice::new(page, 4)
        .unwrap()
        .reader()
        .read_slice(&mut out);
    assert_eq!(
        err.unwrap_err().error(),
        Error::Fault {
            code: STATUS_IN_PAGE_ERROR
        }
    );
    let second = page.wrapping_add(4096);
    process
        .protect(second, 4096, PAGE_NOACCESS, AccessMode::User)
        .unwrap();
    let err = UserSlice::new(second, 4).unwrap().writer().write(&1u32);
    assert_eq!(
        err.unwrap_err().error(),
        Error::Fault {
            code: STATUS_ACCESS_VIOLATION
        }
    );
}

#[test]
fn every_copy_checks_the_irql() {
    let (_process, page, _in) = app();
    let mut reader = UserSlice::new(page, 8).unwrap().reader();
    {
        let _high = raise_irql(DISPATCH_LEVEL);
        let err = reader.read::<u32>().unwrap_err();
        assert!(matches!(
            err.error(),
            Error::IrqlTooHigh { irql: 2, max: 1 }
        ));
        assert!(matches!(
            UserSlice::new(page, 8),
            Err(Error::IrqlTooHigh { .. })
        ));
        assert!(matches!(
            mmsecure::read_user::<u32>(page),
            Err(Error::IrqlTooHigh { .. })
        ));
    }
    assert_eq!(
        reader.offset(),
        0,
        "a refused read touches nothing and stays"
    );
    reader.read::<u32>().unwrap();
}

/// `ObfReferenceObject` bug checks above `DISPATCH_LEVEL`: a slice's clone, or the writer of
/// `reader_writer`, made there takes no reference (before the fix, the model stopped the binary
/// with bug check 0xA naming `ObfReferenceObject`) and can never copy; the original goes on.
#[test]
fn a_cursor_cloned_above_dispatch_level_takes_no_reference_and_copies_nothing() {
    let (process, page, _in) = app();
    process.write(page, &7u32.to_ne_bytes()).unwrap();
    let mut reader = UserSlice::new(page, 8).unwrap().reader();
    let both = UserSlice::new(page, 8).unwrap();
    let (mut clone, (mut second, mut writer)) = {
        let _high = raise_irql(DISPATCH_LEVEL + 1);
        (reader.clone_reader(), both.reader_writer())
    };
    assert_eq!(
        process.driver_references(),
        2,
        "the reader's and the second slice's reader's, no more"
    );
    assert_eq!(
        clone.read::<u32>().unwrap_err().error(),
        Error::WrongProcess
    );
    assert_eq!(clone.offset(), 0);
    assert_eq!(
        writer.write(&1u32).unwrap_err().error(),
        Error::WrongProcess
    );
    assert_eq!(reader.read::<u32>().unwrap(), 7);
    assert_eq!(second.read::<u32>().unwrap(), 7);
    let mut again = clone.clone_reader();
    assert_eq!(
        again.read::<u32>().unwrap_err().error(),
        Error::WrongProcess
    );
    drop((clone, again, reader, second, writer));
    assert_eq!(process.driver_references(), 0);
}

#[test]
fn an_attached_thread_cannot_reach_the_slice_through_another_process() {
    let (app, page, in_app) = app();
    let other = Process::new();
    // The same address is mapped in the other process too, with other bytes.
    app.write(page, b"mine").unwrap();
    let (mut reader, mut writer) = UserSlice::new(page, 4).unwrap().reader_writer();
    drop(in_app);
    let in_other = other.attach();
    assert_eq!(
        reader.read::<u32>().unwrap_err().error(),
        Error::WrongProcess
    );
    assert_eq!(
        writer.write(&0u32).unwrap_err().error(),
        Error::WrongProcess
    );
    drop(in_other);
    let _back = app.attach();
    assert_eq!(&reader.read::<[u8; 4]>().unwrap(), b"mine");
}

#[test]
fn the_slice_holds_the_process_object_so_its_eprocess_is_never_reused() {
    let old;
    let reader;
    {
        let process = Process::new();
        let _in = process.attach();
        let page = process.allocate(4096, PAGE_READWRITE).unwrap();
        let slice = UserSlice::new(page, 16).unwrap();
        assert_eq!(process.driver_references(), 1);
        reader = slice.reader();
        assert_eq!(
            process.driver_references(),
            1,
            "the reader took the slice's over"
        );
        let clone = reader.clone_reader();
        assert_eq!(process.driver_references(), 2, "each cursor holds its own");
        drop(clone);
        old = process.eprocess();
        process.exit();
    } // every Process handle is gone: only the reader's reference keeps the object
    let newcomers: Vec<Process> = (0..32).map(|_| Process::new()).collect();
    for newcomer in &newcomers {
        assert_ne!(newcomer.eprocess(), old, "a referenced EPROCESS was reused");
        let _in = newcomer.attach();
        let mut reader = reader.clone_reader();
        assert_eq!(
            reader.read::<u64>().unwrap_err().error(),
            Error::WrongProcess
        );
    }
    drop(reader);
}

#[test]
fn after_exit_a_slice_reads_nothing() {
    let (process, page, in_process) = app();
    process.write(page, b"secret!!").unwrap();
    let mut reader = UserSlice::new(page, 16).unwrap().reader();
    process.exit();
    // Still attached to the exited process: its memory is gone, the copy faults.
    assert!(matches!(
        reader.read::<u64>().unwrap_err().error(),
        Error::Fault { .. }
    ));
    drop(in_process);
    let other = Process::new();
    let _in_other = other.attach();
    assert_eq!(
        reader.read::<u64>().unwrap_err().error(),
        Error::WrongProcess
    );
    drop(reader);
    assert_eq!(process.driver_references(), 0);
}

#[test]
fn a_read_only_page_is_readable_and_its_write_faults() {
    let (process, page, _in) = app();
    let ro = process.allocate(4096, PAGE_READONLY).unwrap();
    assert_eq!(mmsecure::read_user::<u32>(ro), Ok(0));
    assert_eq!(
        mmsecure::write_user(ro, &1u32),
        Err(Error::Fault {
            code: STATUS_ACCESS_VIOLATION
        })
    );
    mmsecure::write_user(page, &1u32).unwrap();
}

#[test]
fn read_cstr_and_read_wstr_stop_at_the_nul_and_read_each_unit_once() {
    let (process, page, _in) = app();
    process.write(page, b"ab\0cdef").unwrap();
    let mut reader = UserSlice::new(page, 7).unwrap().reader();
    let mut buf = [0u8; 8];
    assert_eq!(reader.read_cstr(&mut buf).unwrap(), b"ab");
    assert_eq!(reader.offset(), 3);
    // "cdef" runs to the end of the slice without a NUL.
    let err = reader.read_cstr(&mut buf).unwrap_err();
    assert_eq!((err.offset(), err.error()), (3, Error::Unterminated));
    assert!(reader.is_empty());
    drop(reader); // its request ends: the next slice's reads are not a second fetch in it
                  // Bounded by the buffer too.
    let mut reader = UserSlice::new(page.wrapping_add(3), 4).unwrap().reader();
    let err = reader.read_cstr(&mut buf[..2]).unwrap_err();
    assert_eq!(err.error(), Error::Unterminated);
    assert_eq!(reader.offset(), 2);
    drop(reader);

    let wide: Vec<u8> = [0x48u16, 0x49, 0, 0x4A]
        .iter()
        .flat_map(|u| u.to_ne_bytes())
        .collect();
    process.write(page.wrapping_add(101), &wide).unwrap(); // unaligned on purpose
    let mut reader = UserSlice::new(page.wrapping_add(101), 8).unwrap().reader();
    let mut wbuf = [0u16; 4];
    assert_eq!(reader.read_wstr(&mut wbuf).unwrap(), &[0x48, 0x49]);
    assert_eq!(reader.offset(), 6);
    assert!(process.double_fetches().is_empty(), "each unit read once");
}

#[test]
fn read_into_reads_a_counted_array_and_write_truncated_reports_what_fit() {
    let (process, page, _in) = app();
    let entries: Vec<u8> = [1u32, 2, 3].iter().flat_map(|v| v.to_ne_bytes()).collect();
    process.write(page, &entries).unwrap();
    let mut reader = UserSlice::new(page, 12).unwrap().reader();
    let mut out = [0u32; 3];
    reader.read_into(&mut out).unwrap();
    assert_eq!(out, [1, 2, 3]);
    let err = reader.read_into(&mut out[..1]).unwrap_err();
    assert!(matches!(
        err.error(),
        Error::OutOfBounds {
            offset: 12,
            len: 4,
            region_len: 12
        }
    ));

    let mut writer = UserSlice::new(page, 3).unwrap().writer();
    assert_eq!(writer.write_truncated(&0x4443_4241_u32.to_le()).unwrap(), 3);
    assert_eq!(writer.write_truncated(&0u32).unwrap(), 0);
    let mut seen = [0u8; 4];
    process.read(page, &mut seen).unwrap();
    assert_eq!(&seen, b"ABC\0"); // the fourth byte is the entry's, untouched
}

#[test]
fn one_reader_over_a_slice_never_double_fetches() {
    let (process, page, _in) = app();
    let mut reader = UserSlice::new(page, 64).unwrap().reader();
    let _len: u32 = reader.read().unwrap();
    let mut rest = [0u8; 60];
    reader.read_slice(&mut rest).unwrap();
    assert!(process.double_fetches().is_empty());
}

#[test]
fn a_slice_read_twice_is_a_double_fetch() {
    let (process, page, _in) = app();
    let mut reader = UserSlice::new(page, 16).unwrap().reader();
    let mut again = reader.clone_reader();
    let _checked: u32 = reader.read().unwrap();
    let _used: u32 = again.read().unwrap();
    let found = process.double_fetches();
    assert_eq!(found.len(), 1);
    assert_eq!((found[0].address, found[0].len), (page as usize, 4));
    drop((reader, again));
    // The request ended with the last cursor: a new slice is a new request.
    let _: u32 = UserSlice::new(page, 4).unwrap().reader().read().unwrap();
    assert_eq!(process.double_fetch_count(), 1);
}

#[test]
fn two_slices_over_one_header_are_caught_by_a_request_scope() {
    let (process, page, _in) = app();
    let read_header = || -> u32 { UserSlice::new(page, 4).unwrap().reader().read().unwrap() };
    read_header();
    read_header();
    assert!(
        process.double_fetches().is_empty(),
        "each slice is its own request"
    );
    let request = process.begin_request();
    read_header();
    read_header();
    drop(request);
    assert_eq!(process.double_fetches().len(), 1);
}

#[test]
fn a_region_reader_can_outlive_its_last_use_before_the_region_drops() {
    // A slice's reader gives up a reference when dropped; a region's has no drop code, so its
    // borrow still ends at its last use, as before the cursors were shared.
    let (_process, page, _in) = app();
    let region = mmsecure::SecureRegion::new(page, 8, mmsecure::ProbeMode::ReadOnly).unwrap();
    let mut reader = region.reader();
    let _: u32 = reader.read().unwrap();
    drop(region);
}

/// Without a secure, nothing vouches that an address is the model's: before the fix, the host's
/// guarded copy took any address outside the simulated processes for the driver's own memory, so
/// `write_user` overwrote the test binary's heap and `read_user` of an unmapped address crashed
/// the binary. On Windows an address in user space that the current process has not mapped
/// faults; the model now says the same.
#[test]
fn a_host_address_no_process_maps_faults_as_an_unmapped_user_address() {
    let (_process, _page, in_process) = app();
    let fault = Error::Fault {
        code: STATUS_ACCESS_VIOLATION,
    };
    let boxed = Box::new(0x1111_u64);
    let address = UserPtr::new(&*boxed as *const u64 as usize);
    assert_eq!(mmsecure::write_user(address, &0xdead_beef_u64), Err(fault));
    assert_eq!(*boxed, 0x1111, "the driver's own heap was not written");
    assert_eq!(mmsecure::read_user::<u64>(address), Err(fault));
    assert_eq!(
        mmsecure::read_user::<u64>(UserPtr::new(0x10000)),
        Err(fault)
    );
    let slice = UserSlice::new(address, 8).unwrap();
    assert_eq!(slice.writer().write(&1u64).unwrap_err().error(), fault);
    assert_eq!(*boxed, 0x1111);
    drop(in_process);
    // In no process (System's context) nothing user-side is mapped at all.
    let mut reader = UserSlice::new(address, 8).unwrap().reader();
    assert_eq!(reader.read::<u64>().unwrap_err().error(), fault);
}
