//! Host backend: the cost of a secure and an unsecure does not grow with the number of secures
//! already standing in the process. (issue #8 benchmarks it properly; this only guards against
//! a scan over all secures creeping into the path.)

use std::time::{Duration, Instant};

use mmsecure_sys::host::{self, Process, PAGE_READWRITE};
use mmsecure_sys::{MmSecureVirtualMemory, MmUnsecureVirtualMemory, HANDLE, SIZE_T};

const PAGE: usize = host::PAGE_SIZE;

fn secure(address: *mut u8) -> HANDLE {
    // SAFETY: the model checks every argument.
    let handle = unsafe { MmSecureVirtualMemory(address.cast(), PAGE as SIZE_T, PAGE_READWRITE) };
    assert!(!handle.is_null());
    handle
}

/// The best of a few rounds of `ROUND` secure + unsecure pairs on one page, while `standing`
/// secures stand on other pages (some on the same allocation, most on others).
fn cost_with(standing: usize) -> Duration {
    const ROUND: usize = 2_000;
    let process = Process::new();
    let _in = process.attach();
    let shared = process.allocate(64 * PAGE, PAGE_READWRITE).unwrap();
    let mut held = Vec::with_capacity(standing);
    for i in 0..standing {
        let address = if i < 32 {
            shared.wrapping_add(i * PAGE)
        } else {
            process.allocate(PAGE, PAGE_READWRITE).unwrap()
        };
        held.push(secure(address));
    }
    let target = shared.wrapping_add(63 * PAGE);
    let best = (0..5)
        .map(|_| {
            let start = Instant::now();
            for _ in 0..ROUND {
                let handle = secure(target);
                // SAFETY: a live handle of this process.
                unsafe { MmUnsecureVirtualMemory(handle) };
            }
            start.elapsed()
        })
        .min()
        .unwrap();
    assert_eq!(process.secure_count(), standing);
    best
}

#[test]
fn secure_and_unsecure_cost_does_not_grow_with_standing_secures() {
    let few = cost_with(10);
    let many = cost_with(20_000);
    eprintln!("2,000 secure + unsecure pairs: {few:?} with 10 standing, {many:?} with 20,000");
    // Linear growth would make `many` about 2,000 times `few`; allow generous noise (shared CI
    // machines, hash table growth, cache misses).
    assert!(
        many < few * 20,
        "10 standing: {few:?}, 20,000 standing: {many:?}"
    );
}
