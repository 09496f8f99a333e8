//! A fault during a copy from or to a secured region is `Error::Fault` with its code, and the
//! region stays usable (host model: faults injected with `Process::inject_fault`).

use mmsecure::{Error, ProbeMode, SecureRegion};
use mmsecure_sys::host::{
    Process, PAGE_READWRITE, PAGE_SIZE, STATUS_ACCESS_VIOLATION, STATUS_IN_PAGE_ERROR,
};

const IN_PAGE_ERROR: mmsecure::NTSTATUS = STATUS_IN_PAGE_ERROR;

#[test]
fn read_of_a_faulting_page_is_a_fault_with_the_code() {
    let process = Process::new();
    let _in = process.attach();
    let buffer = process.allocate(2 * PAGE_SIZE, PAGE_READWRITE).unwrap();
    process.write(buffer, &[0x11; 2 * PAGE_SIZE]).unwrap();
    let region = SecureRegion::new(buffer, 2 * PAGE_SIZE, ProbeMode::ReadOnly).unwrap();
    process.inject_fault(
        buffer.wrapping_add(PAGE_SIZE),
        PAGE_SIZE,
        STATUS_IN_PAGE_ERROR,
    );

    let mut out = [0u8; 64];
    assert_eq!(
        region.read_slice(PAGE_SIZE - 32, &mut out),
        Err(Error::Fault {
            code: IN_PAGE_ERROR
        })
    );
    // Partly written: the bytes before the faulting page only.
    assert!(out[..32].iter().all(|b| *b == 0x11));
    assert!(out[32..].iter().all(|b| *b == 0));
    assert_eq!(
        region.read::<u64>(PAGE_SIZE),
        Err(Error::Fault {
            code: IN_PAGE_ERROR
        })
    );
    // The first page still reads.
    assert_eq!(region.read::<u64>(0), Ok(0x1111_1111_1111_1111));
}

#[test]
fn write_to_a_faulting_page_is_a_fault_with_the_code() {
    let process = Process::new();
    let _in = process.attach();
    let buffer = process.allocate(PAGE_SIZE, PAGE_READWRITE).unwrap();
    let region = SecureRegion::new(buffer, PAGE_SIZE, ProbeMode::ReadWrite).unwrap();
    process.inject_fault(buffer, 1, STATUS_ACCESS_VIOLATION);

    let fault = Error::Fault {
        code: STATUS_ACCESS_VIOLATION,
    };
    assert_eq!(region.write_slice(8, b"reply"), Err(fault));
    assert_eq!(region.write(0, &7u32), Err(fault));
    assert_eq!(fault.to_string(), "the copy raised exception 0xC0000005");
}

#[test]
fn the_region_is_usable_after_the_faults_are_cleared() {
    let process = Process::new();
    let _in = process.attach();
    let buffer = process.allocate(PAGE_SIZE, PAGE_READWRITE).unwrap();
    let region = SecureRegion::new(buffer, PAGE_SIZE, ProbeMode::ReadWrite).unwrap();
    process.inject_fault(buffer, PAGE_SIZE, STATUS_IN_PAGE_ERROR);
    assert!(matches!(
        region.write_slice(0, b"x"),
        Err(Error::Fault { .. })
    ));

    process.clear_faults();
    region.write_slice(0, b"after").unwrap();
    let mut out = [0u8; 5];
    region.read_slice(0, &mut out).unwrap();
    assert_eq!(&out, b"after");
    drop(region);
    // The secure was released normally.
    assert_eq!(process.secure_count(), 0);
}
