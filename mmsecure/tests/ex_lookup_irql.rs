//! The first flagged secure looks `MmSecureVirtualMemoryEx` up with `MmGetSystemRoutineAddress`,
//! whose contract is `PASSIVE_LEVEL`. Above it the crate must not call the kernel until the
//! routine is found; the found address is then cached for good. The cache is global to the
//! binary, so this lives in a binary of its own, as one test.

use mmsecure::{Error, ProbeMode, SecureFlags, SecureRegion};
use mmsecure_sys::host::{self, Process, PAGE_READWRITE};
use mmsecure_sys::APC_LEVEL;

#[test]
fn a_flagged_secure_above_passive_level_never_reaches_the_routine_lookup() {
    let process = Process::new();
    let _in = process.attach();
    let buffer = process.allocate(host::PAGE_SIZE, PAGE_READWRITE).unwrap();
    let flagged =
        || SecureRegion::with_flags(buffer, 64, ProbeMode::ReadOnly, SecureFlags::NO_CHANGE);

    {
        // The model stops the binary if MmGetSystemRoutineAddress runs above PASSIVE_LEVEL.
        let _apc = host::raise_irql(APC_LEVEL);
        assert_eq!(
            flagged().unwrap_err(),
            Error::IrqlTooHigh { irql: 1, max: 0 }
        );
        assert!(
            !mmsecure::secure_ex_available(),
            "unknown yet, not looked up"
        );
        // Empty flags need no look-up.
        drop(
            SecureRegion::with_flags(buffer, 64, ProbeMode::ReadOnly, SecureFlags::empty())
                .unwrap(),
        );
    }
    // From DriverEntry, at PASSIVE_LEVEL: found and cached.
    assert!(mmsecure::secure_ex_available());
    let _apc = host::raise_irql(APC_LEVEL);
    drop(flagged().unwrap());
    assert!(mmsecure::secure_ex_available());
    assert_eq!(process.secure_count(), 0);
    assert!(process.misuses().is_empty());
}
