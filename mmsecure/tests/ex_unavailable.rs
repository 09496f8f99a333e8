//! A Windows older than 10 1809 has no `MmSecureVirtualMemoryEx`. The model's Windows build is
//! global to the test binary, so this behaviour lives in a binary of its own, as one test.

use mmsecure::{Error, ProbeMode, SecureFlags, SecureRegion};
use mmsecure_sys::host::{self, Process, PAGE_READWRITE};

#[test]
fn flags_need_windows_10_1809_and_the_plain_routine_works_everywhere() {
    host::set_windows_build(17134); // Windows 10 1803
    let process = Process::new();
    let _in = process.attach();
    let buffer = process.allocate(host::PAGE_SIZE, PAGE_READWRITE).unwrap();

    assert!(!mmsecure::secure_ex_available());
    assert_eq!(
        SecureRegion::with_flags(buffer, 64, ProbeMode::ReadOnly, SecureFlags::NO_CHANGE)
            .unwrap_err(),
        Error::Unavailable
    );
    // Empty flags use MmSecureVirtualMemory, which every Windows has.
    let plain =
        SecureRegion::with_flags(buffer, 64, ProbeMode::ReadOnly, SecureFlags::empty()).unwrap();
    drop(plain);

    // A missing routine is not cached: the same driver on 1809 finds it.
    host::set_windows_build(17763);
    assert!(mmsecure::secure_ex_available());
    let flagged =
        SecureRegion::with_flags(buffer, 64, ProbeMode::ReadOnly, SecureFlags::NO_CHANGE).unwrap();
    drop(flagged);
    assert!(process.misuses().is_empty());
}
