//! Fuzz target: libFuzzer's bytes decoded into a sequence of `UserSlice` operations on the host
//! backend (slices made at any offset, length and alignment; reads and writes through their
//! cursor; the user's protection changes, writes and frees; attaching to another process; raising
//! the IRQL; the process's exit), run by the same harness as `tests/proptest_slice.rs`
//! (`mmsecure/tests/slice_scenario/mod.rs`), which predicts every outcome and the bytes read, and
//! checks that no process reference is left behind. A wrong outcome panics, and a model bug check
//! aborts; libFuzzer reports either as a crash with the input.
//!
//! Input layout: each operation is a kind byte and its fields (`Unstructured`), up to
//! [`MAX_OPS`] of them.

#![no_main]

#[path = "../../mmsecure/tests/slice_scenario/mod.rs"]
mod slice_scenario;

use arbitrary::{Result, Unstructured};
use libfuzzer_sys::fuzz_target;
use mmsecure_sys::host::{PAGE_NOACCESS, PAGE_READONLY, PAGE_READWRITE};
use slice_scenario::{Op, PAGES};

/// Operations per input at most.
const MAX_OPS: usize = 64;

/// The alignments a slice asks for: the usual ones, and two that are no power of two.
const ALIGNS: [usize; 6] = [1, 2, 4, 8, 3, 0];

/// The protections the user sets.
const PROTECTIONS: [u32; 3] = [PAGE_READWRITE, PAGE_READONLY, PAGE_NOACCESS];

/// One operation: the kind byte (weighted like the property test's: cursor accesses most, then
/// slices made, then the user's and the context's changes) and its fields.
fn op(u: &mut Unstructured<'_>) -> Result<Op> {
    let kind: u8 = u.arbitrary()?;
    let page = usize::from(u.arbitrary::<u8>()?) % PAGES;
    Ok(match kind % 16 {
        0..=3 => {
            let offset = u.int_in_range(0..=4096u16)?;
            let len = u.int_in_range(0..=4096u16)?.min(4096 - offset);
            Op::Make {
                page,
                offset,
                len,
                align: *u.choose(&ALIGNS)?,
                write: u.arbitrary()?,
            }
        }
        4..=9 => Op::Access {
            n: u.int_in_range(0..=5000u16)?,
            fill: u.arbitrary()?,
        },
        10 => Op::Protect {
            page,
            protect: *u.choose(&PROTECTIONS)?,
        },
        11 => Op::UserWrite {
            page,
            fill: u.arbitrary()?,
        },
        12 => Op::Free { page },
        13 => Op::ToggleOther,
        14 => Op::ToggleIrql,
        _ => {
            if u.ratio(1, 10)? {
                Op::Exit
            } else {
                Op::ToggleIrql
            }
        }
    })
}

fuzz_target!(|data: &[u8]| {
    let mut u = Unstructured::new(data);
    let mut ops = Vec::new();
    while !u.is_empty() && ops.len() < MAX_OPS {
        match op(&mut u) {
            Ok(op) => ops.push(op),
            Err(_) => break,
        }
    }
    if let Err(broken) = slice_scenario::run(&ops) {
        panic!("{broken}");
    }
});
