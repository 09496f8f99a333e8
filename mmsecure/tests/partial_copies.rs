//! The partial-copy contract (issue #23), on the host model: when a copy faults at byte `k`,
//! the destination holds exactly the first `k` bytes of the source and is unchanged from `k` on,
//! whichever side faults, for every `k` (not only multiples of 16, which a block copy would
//! favour), through every copy of the safe API. The sample driver checks the same on a real x64
//! CPU under Wine (`cargo xtask wine`: `PartialReadPrefix`, `PartialWritePrefix`).

use mmsecure::{Error, ProbeMode, SecureRegion};
use mmsecure_sys::host::{
    AccessMode, Process, PAGE_NOACCESS, PAGE_READWRITE, PAGE_SIZE, STATUS_ACCESS_VIOLATION,
    STATUS_IN_PAGE_ERROR,
};

const LEN: usize = 40;
const OLD: u8 = 0xEE;

/// The byte the source holds at `i`: no two neighbours alike, so a shifted copy shows.
fn pattern(i: usize) -> u8 {
    (i as u8).wrapping_mul(7).wrapping_add(1)
}

/// Two pages of a fresh process filled with `pattern`, attached on this thread.
fn two_pages() -> (Process, mmsecure_sys::host::Attach, *mut u8) {
    let process = Process::new();
    let attach = process.attach();
    let buffer = process.allocate(2 * PAGE_SIZE, PAGE_READWRITE).unwrap();
    let bytes: Vec<u8> = (0..2 * PAGE_SIZE).map(pattern).collect();
    process.write(buffer, &bytes).unwrap();
    (process, attach, buffer)
}

/// Asserts that `dst` holds the source bytes from `start` for its first `k` bytes and `OLD`
/// after them.
fn assert_prefix(dst: &[u8], start: usize, k: usize) {
    for (i, byte) in dst.iter().enumerate() {
        let want = if i < k { pattern(start + i) } else { OLD };
        assert_eq!(*byte, want, "byte {i} of a copy that faulted at {k}");
    }
}

#[test]
fn a_faulting_read_leaves_out_an_exact_prefix_through_every_read() {
    for k in 0..LEN {
        let (process, _in, buffer) = two_pages();
        let start = PAGE_SIZE - k;
        let region = SecureRegion::new(buffer, 2 * PAGE_SIZE, ProbeMode::ReadOnly).unwrap();
        process.inject_fault(buffer.wrapping_add(PAGE_SIZE), 1, STATUS_IN_PAGE_ERROR);
        let fault = Err(Error::Fault {
            code: STATUS_IN_PAGE_ERROR,
        });

        let mut out = [OLD; LEN];
        assert_eq!(region.read_slice(start, &mut out), fault);
        assert_prefix(&out, start, k);

        drop(region);

        let mut out = [OLD; LEN];
        let region = SecureRegion::new(buffer.wrapping_add(start), LEN, ProbeMode::ReadOnly);
        let got = region.unwrap().reader().read_slice(&mut out);
        assert_eq!(got.map_err(|e| e.error()), fault);
        assert_prefix(&out, start, k);

        let mut out = [OLD; LEN];
        assert_eq!(
            mmsecure::read_user_slice(buffer.wrapping_add(start), &mut out),
            fault
        );
        assert_prefix(&out, start, k);
    }
}

#[test]
fn a_read_running_into_a_no_access_page_leaves_an_exact_prefix() {
    for k in [0, 1, 15, 16, 17, 31, 39] {
        let (process, _in, buffer) = two_pages();
        let second = buffer.wrapping_add(PAGE_SIZE);
        process
            .protect(second, PAGE_SIZE, PAGE_NOACCESS, AccessMode::User)
            .unwrap();
        let start = PAGE_SIZE - k;
        let mut out = [OLD; LEN];
        // SAFETY: user memory of the current process (the fault is caught); `out` is ours.
        let status = unsafe {
            mmsecure_sys::copy_guarded(out.as_mut_ptr(), buffer.wrapping_add(start), LEN)
        };
        assert_eq!(status, STATUS_ACCESS_VIOLATION);
        assert_prefix(&out, start, k);
    }
}

#[test]
fn a_faulting_write_leaves_the_user_range_an_exact_prefix_through_every_write() {
    let data: Vec<u8> = (0..LEN).map(|i| 0x80 | i as u8).collect();
    for k in 0..LEN {
        for how in 0..3 {
            let (process, _in, buffer) = two_pages();
            let start = PAGE_SIZE - k;
            process.inject_fault(buffer.wrapping_add(PAGE_SIZE), 1, STATUS_ACCESS_VIOLATION);
            let fault = Err(Error::Fault {
                code: STATUS_ACCESS_VIOLATION,
            });
            let got = match how {
                0 => SecureRegion::new(buffer, 2 * PAGE_SIZE, ProbeMode::ReadWrite)
                    .unwrap()
                    .write_slice(start, &data),
                1 => SecureRegion::new(buffer.wrapping_add(start), LEN, ProbeMode::ReadWrite)
                    .unwrap()
                    .writer()
                    .write_slice(&data)
                    .map_err(|e| e.error()),
                _ => mmsecure::write_user_slice(buffer.wrapping_add(start), &data),
            };
            assert_eq!(got, fault, "copy {how}, fault at {k}");
            process.clear_faults();
            let mut seen = [0u8; LEN];
            process.read(buffer.wrapping_add(start), &mut seen).unwrap();
            for (i, byte) in seen.iter().enumerate() {
                let want = if i < k { data[i] } else { pattern(start + i) };
                assert_eq!(*byte, want, "copy {how}: byte {i}, fault at {k}");
            }
        }
    }
}
