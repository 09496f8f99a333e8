//! `Reader` and `Writer`: front to back, each byte once, the checks of `read`/`write`, and errors
//! that say where the cursor was.

use mmsecure::bytemuck::{AnyBitPattern, NoUninit};
use mmsecure::host::{raise_irql, Process, PAGE_READWRITE, PAGE_SIZE, STATUS_IN_PAGE_ERROR};
use mmsecure::{CursorError, Error, ProbeMode, SecureRegion, UserPtr};

/// A user process with one page, this thread attached.
fn page() -> (Process, *mut u8, mmsecure::host::Attach) {
    let process = Process::new();
    let attach = process.attach();
    let page = process.allocate(2 * PAGE_SIZE, PAGE_READWRITE).unwrap();
    (process, page, attach)
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, AnyBitPattern, NoUninit)]
#[bytemuck(crate = "mmsecure::bytemuck")]
#[repr(C)]
struct Header {
    kind: u32,
    flags: u32,
    len: u64,
}

#[test]
fn a_reader_reads_consecutive_fields_and_counts_down() {
    let (process, page, _in) = page();
    let mut bytes = Vec::new();
    bytes.extend_from_slice(&9u32.to_ne_bytes());
    bytes.extend_from_slice(&1u32.to_ne_bytes());
    bytes.extend_from_slice(&5u64.to_ne_bytes());
    bytes.extend_from_slice(b"hello");
    process.write(page, &bytes).unwrap();

    let region = SecureRegion::new(page, 32, ProbeMode::ReadOnly).unwrap();
    let mut reader = region.reader();
    let header: Header = reader.read().unwrap();
    assert_eq!(
        header,
        Header {
            kind: 9,
            flags: 1,
            len: 5
        }
    );
    assert_eq!((reader.offset(), reader.len()), (16, 16));
    let mut payload = [0u8; 5];
    reader.read_slice(&mut payload).unwrap();
    assert_eq!(&payload, b"hello");
    reader.skip(reader.len()).unwrap();
    assert!(reader.is_empty());
    assert_eq!(
        reader.read::<u8>().unwrap_err().error(),
        Error::OutOfBounds {
            offset: 32,
            len: 1,
            region_len: 32
        }
    );
    assert!(process.double_fetches().is_empty());
}

#[test]
fn errors_that_touch_nothing_leave_the_cursor_and_name_its_offset() {
    let (_process, page, _in) = page();
    let region = SecureRegion::new(page, 10, ProbeMode::ReadOnly).unwrap();
    let mut reader = region.reader();
    reader.skip(4).unwrap();
    let err = reader.read::<u64>().unwrap_err();
    assert_eq!(err.offset(), 4);
    assert_eq!(reader.offset(), 4);
    assert_eq!(
        Error::from(err),
        Error::OutOfBounds {
            offset: 4,
            len: 8,
            region_len: 10
        }
    );
    // At DISPATCH_LEVEL the read is refused before user memory is touched.
    let raised = raise_irql(2);
    let err = reader.read::<u32>().unwrap_err();
    drop(raised);
    assert_eq!(err.error(), Error::IrqlTooHigh { irql: 2, max: 1 });
    assert_eq!(reader.offset(), 4);
    assert_eq!(reader.read::<u32>().map_err(|e| e.offset()), Ok(0));
}

#[test]
fn a_reader_refuses_another_process_context() {
    let (_process, page, in_app) = page();
    let region = SecureRegion::new(page, 16, ProbeMode::ReadOnly).unwrap();
    drop(in_app);
    let other = Process::new();
    let _in_other = other.attach();
    let mut reader = region.reader();
    let err: CursorError = reader.read::<u32>().unwrap_err();
    assert_eq!((err.offset(), err.error()), (0, Error::WrongProcess));
    assert_eq!(reader.offset(), 0);
}

#[test]
fn a_fault_consumes_the_bytes_of_the_failed_read() {
    let (process, page, _in) = page();
    let region = SecureRegion::new(page, 2 * PAGE_SIZE, ProbeMode::ReadOnly).unwrap();
    process.inject_fault(page.wrapping_add(PAGE_SIZE), 1, STATUS_IN_PAGE_ERROR);
    let mut reader = region.reader();
    reader.skip(PAGE_SIZE - 4).unwrap();
    let err = reader.read::<u64>().unwrap_err();
    assert_eq!(err.offset(), PAGE_SIZE - 4);
    assert_eq!(
        err.error(),
        Error::Fault {
            code: STATUS_IN_PAGE_ERROR
        }
    );
    assert_eq!(err.to_ntstatus(), STATUS_IN_PAGE_ERROR);
    // Its first 4 bytes were read: the cursor moved past all 8, so none is read again.
    assert_eq!(reader.offset(), PAGE_SIZE + 4);
    process.clear_faults();
    let _: u32 = reader.read().unwrap();
    assert!(process.double_fetches().is_empty());
}

#[test]
fn clone_reader_is_the_explicit_second_read_and_the_model_reports_it() {
    let (process, page, _in) = page();
    process.write(page, &42u64.to_ne_bytes()).unwrap();
    let region = SecureRegion::new(page, 8, ProbeMode::ReadOnly).unwrap();
    let mut reader = region.reader();
    let mut again = reader.clone_reader();
    assert_eq!(reader.read::<u64>().unwrap(), 42);
    assert_eq!(reader.offset(), 8);
    assert_eq!(again.offset(), 0);
    assert_eq!(again.read::<u64>().unwrap(), 42);
    let found = process.double_fetches();
    assert_eq!(found.len(), 1);
    assert_eq!((found[0].address, found[0].len), (page as usize, 8));
}

#[test]
fn a_writer_writes_consecutive_fields_and_checks_like_write() {
    let (process, page, _in) = page();
    let region = SecureRegion::new(page, 20, ProbeMode::ReadWrite).unwrap();
    let mut writer = region.writer();
    writer
        .write(&Header {
            kind: 1,
            flags: 2,
            len: 3,
        })
        .unwrap();
    writer.write_slice(b"done").unwrap();
    assert!(writer.is_empty());
    let err = writer.write_slice(b"x").unwrap_err();
    assert_eq!(err.offset(), 20);
    let mut seen = [0u8; 20];
    process.read(page, &mut seen).unwrap();
    assert_eq!(&seen[..4], &1u32.to_ne_bytes());
    assert_eq!(&seen[16..], b"done");

    let read_only = SecureRegion::new(page, 20, ProbeMode::ReadOnly).unwrap();
    let mut writer = read_only.writer();
    assert_eq!(writer.write(&1u8).unwrap_err().error(), Error::NotWritable);
    assert_eq!(writer.offset(), 0);
}

#[test]
fn constructors_take_any_raw_pointer_without_a_cast() {
    let (_process, page, _in) = page();
    let as_void: *mut core::ffi::c_void = page.cast();
    let as_const: *const u32 = page.cast();
    let a = SecureRegion::new(as_void, 8, ProbeMode::ReadWrite).unwrap();
    let b = SecureRegion::new(as_const, 8, ProbeMode::ReadOnly).unwrap();
    let c = SecureRegion::new(UserPtr::new(page as usize), 8, ProbeMode::ReadOnly).unwrap();
    assert_eq!(a.address(), b.address());
    assert_eq!(b.address(), c.address());
    assert_eq!(
        SecureRegion::new(UserPtr::NULL, 8, ProbeMode::ReadOnly).unwrap_err(),
        Error::NullAddress
    );
}

#[test]
fn one_call_copies_probe_and_copy_once_without_a_secure() {
    let (process, page, _in) = page();
    process.write(page, &0xABCD_u16.to_ne_bytes()).unwrap();
    assert_eq!(mmsecure::read_user::<u16>(page), Ok(0xABCD));
    mmsecure::write_user(page.wrapping_add(2), &0x1234_u16).unwrap();
    let mut both = [0u8; 4];
    mmsecure::read_user_slice(page, &mut both).unwrap();
    assert_eq!(&both[2..], &0x1234_u16.to_ne_bytes());
    assert_eq!(process.secure_count(), 0);
    // Zero bytes: valid, as ProbeForRead takes them, and nothing is touched (issue #20).
    assert_eq!(mmsecure::read_user::<()>(page), Ok(()));
    assert_eq!(mmsecure::read_user_slice(UserPtr::NULL, &mut []), Ok(()));
    // Memory that is gone is the guarded copy's fault, not a refused secure (issue #20).
    process
        .free(page, mmsecure::host::AccessMode::User)
        .unwrap();
    assert!(matches!(
        mmsecure::read_user::<u16>(page),
        Err(Error::Fault { .. })
    ));
    assert_eq!(
        mmsecure::read_user::<u32>(0xFFFF_8000_0000_0000_usize as *const u8),
        Err(Error::NotUserRange)
    );
    assert!(process.double_fetches().is_empty());
}

#[cfg(feature = "alloc")]
#[test]
fn read_all_appends_the_rest_and_moves_to_the_end() {
    let (process, page, _in) = page();
    process.write(page, b"..rest").unwrap();
    let region = SecureRegion::new(page, 6, ProbeMode::ReadOnly).unwrap();
    let mut reader = region.reader();
    reader.skip(2).unwrap();
    let mut out = b"got:".to_vec();
    reader.read_all(&mut out).unwrap();
    assert_eq!(out, b"got:rest");
    assert!(reader.is_empty());
    reader.read_all(&mut out).unwrap();
    assert_eq!(out.len(), 8);
}

#[test]
fn read_raw_fills_uninitialized_bytes_and_moves_on() {
    let (process, page, _in) = page();
    process.write(page, b"abcdefgh").unwrap();
    let region = SecureRegion::new(page, 8, ProbeMode::ReadOnly).unwrap();
    let mut reader = region.reader();
    let mut out = [core::mem::MaybeUninit::<u8>::uninit(); 5];
    reader.read_raw(&mut out).unwrap();
    // SAFETY: `read_raw` returned Ok: every byte was written.
    let bytes = out.map(|b| unsafe { b.assume_init() });
    assert_eq!(&bytes, b"abcde");
    assert_eq!(reader.offset(), 5);
    let err = reader.read_raw(&mut out).unwrap_err();
    assert_eq!(
        (err.offset(), err.error()),
        (
            5,
            Error::OutOfBounds {
                offset: 5,
                len: 5,
                region_len: 8
            }
        )
    );
    assert!(process.double_fetches().is_empty());
}
