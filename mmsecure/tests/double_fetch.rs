//! The host model's double-fetch detector, seen from the safe crate: a request is one region's
//! life by default, or an explicit scope across regions; readers never trigger it; strict mode
//! fails the test at the first one.

use mmsecure::host::{Process, PAGE_READWRITE};
use mmsecure::{ProbeMode, SecureRegion, UserPtr};

fn app() -> (Process, *mut u8, mmsecure::host::Attach) {
    let process = Process::new();
    let attach = process.attach();
    let buffer = process.allocate(4096, PAGE_READWRITE).unwrap();
    (process, buffer, attach)
}

#[test]
fn two_reads_at_offset_zero_of_one_region_are_reported_with_both_reads() {
    let (process, buffer, _in) = app();
    let region = SecureRegion::new(buffer, 64, ProbeMode::ReadOnly).unwrap();
    let mut len = [0u8; 4];
    let mut header = [0u8; 16];
    region.read_slice(0, &mut len).unwrap(); // check the length...
    region.read_slice(0, &mut header).unwrap(); // ...and read it again with the rest
    let found = process.double_fetches();
    assert_eq!(found.len(), 1);
    let finding = found[0];
    assert_eq!((finding.address, finding.len), (buffer as usize, 4));
    assert_eq!(
        (finding.first.address, finding.first.len),
        (buffer as usize, 4)
    );
    assert_eq!(
        (finding.second.address, finding.second.len),
        (buffer as usize, 16)
    );
    assert!(finding.first.serial < finding.second.serial);
    assert!(finding.to_string().contains("double fetch of 4 bytes"));
}

#[test]
fn a_reader_over_the_whole_region_never_double_fetches() {
    let (process, buffer, _in) = app();
    let region = SecureRegion::new(buffer, 64, ProbeMode::ReadOnly).unwrap();
    let mut reader = region.reader();
    let _len: u32 = reader.read().unwrap();
    let mut rest = [0u8; 12];
    reader.read_slice(&mut rest).unwrap();
    reader.skip(16).unwrap();
    let mut tail = [0u8; 32];
    reader.read_slice(&mut tail).unwrap();
    assert!(reader.is_empty());
    assert!(process.double_fetches().is_empty());
}

#[test]
fn disjoint_reads_and_writes_are_not_double_fetches() {
    let (process, buffer, _in) = app();
    let region = SecureRegion::new(buffer, 64, ProbeMode::ReadWrite).unwrap();
    let _: u64 = region.read(0).unwrap();
    let _: u64 = region.read(8).unwrap();
    region.write_slice(0, &[1; 16]).unwrap(); // writes are not fetches
    assert!(process.double_fetches().is_empty());
}

#[test]
fn by_default_a_request_ends_with_its_region_and_a_scope_spans_regions() {
    let (process, buffer, _in) = app();
    let read_header_twice = || {
        for _ in 0..2 {
            let region = SecureRegion::new(buffer, 16, ProbeMode::ReadOnly).unwrap();
            let _: [u8; 16] = region.read(0).unwrap();
        }
    };
    read_header_twice();
    assert!(process.double_fetches().is_empty());

    let request = process.begin_request();
    read_header_twice();
    drop(request);
    let found = process.double_fetches();
    assert_eq!(found.len(), 1);
    assert_eq!(found[0].len, 16);

    // The scope is over: regions are requests of their own again.
    read_header_twice();
    assert_eq!(process.double_fetch_count(), 1);
}

#[test]
fn one_call_copies_are_requests_of_their_own() {
    let (process, buffer, _in) = app();
    let _: u32 = mmsecure::read_user(buffer).unwrap();
    let _: u32 = mmsecure::read_user(buffer).unwrap();
    assert!(process.double_fetches().is_empty());
    let request = process.begin_request();
    let _: u32 = mmsecure::read_user(buffer).unwrap();
    let _: u32 = mmsecure::read_user(buffer).unwrap();
    drop(request);
    assert_eq!(process.double_fetches().len(), 1);
}

#[test]
fn two_threads_each_reading_a_shared_buffer_once_are_not_reported() {
    let (process, buffer, in_app) = app();
    drop(in_app);
    let address = UserPtr::from(buffer);
    let barrier = std::sync::Barrier::new(2);
    std::thread::scope(|scope| {
        for _ in 0..2 {
            let (process, barrier) = (&process, &barrier);
            scope.spawn(move || {
                let _in = process.attach();
                let region = SecureRegion::new(address, 8, ProbeMode::ReadOnly).unwrap();
                barrier.wait(); // both regions stand before either reads
                let _: u64 = region.read(0).unwrap();
                barrier.wait();
            });
        }
    });
    assert!(process.double_fetches().is_empty());
}

#[test]
fn a_pended_region_read_again_on_a_worker_is_the_same_request() {
    let (process, buffer, in_app) = app();
    let region = SecureRegion::new(buffer, 8, ProbeMode::ReadOnly).unwrap();
    let _: u64 = region.read(0).unwrap();
    let raw = region.into_raw();
    drop(in_app);
    let worker = process.clone();
    std::thread::spawn(move || {
        let _in = worker.attach();
        let region = SecureRegion::from_raw(raw).unwrap();
        let _: u64 = region.read(0).unwrap(); // re-read on completion: same secure
    })
    .join()
    .unwrap();
    assert_eq!(process.double_fetches().len(), 1);
}

#[test]
fn strict_mode_fails_the_test_at_the_first_double_fetch() {
    let (process, buffer, _in) = app();
    process.set_strict(true);
    let region = SecureRegion::new(buffer, 8, ProbeMode::ReadOnly).unwrap();
    let _: u64 = region.read(0).unwrap();
    let second = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        let _: u64 = region.read(0).unwrap();
    }));
    let message = second.unwrap_err();
    let message = message
        .downcast_ref::<String>()
        .expect("a formatted panic message");
    assert!(
        message.contains("strict mode: double fetch of 8 bytes"),
        "{message}"
    );
    // The region is still usable and drops cleanly.
    drop(region);
    assert!(process.misuses().is_empty());
}

#[test]
fn detection_can_be_switched_off_for_a_process() {
    let (process, buffer, _in) = app();
    process.set_double_fetch_detection(false);
    let region = SecureRegion::new(buffer, 8, ProbeMode::ReadOnly).unwrap();
    let _: u64 = region.read(0).unwrap();
    let _: u64 = region.read(0).unwrap();
    assert_eq!(process.double_fetch_count(), 0);
}
