//! Property test of `UserSlice` on the host backend (issue #20), by the harness in
//! `slice_scenario/mod.rs`, which states the invariant: every outcome of a random sequence of
//! slices, reads, writes, user protection changes, frees, attaches, IRQL changes and exits is
//! predicted, and no case leaves a process reference behind.

mod slice_scenario;

use mmsecure::host::{PAGE_NOACCESS, PAGE_READONLY, PAGE_READWRITE};
use proptest::prelude::*;
use slice_scenario::{Op, PAGES};

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        4 => (0..PAGES, 0..=4096u16, 0..=4096u16, prop_oneof![Just(1usize), Just(2), Just(4), Just(8), Just(3), Just(0)], any::<bool>())
            .prop_map(|(page, offset, len, align, write)| {
                let len = len.min(4096 - offset);
                Op::Make { page, offset, len, align, write }
            }),
        6 => (prop_oneof![0..=16u16, 0..=5000u16], any::<u8>()).prop_map(|(n, fill)| Op::Access { n, fill }),
        1 => (0..PAGES, prop_oneof![Just(PAGE_READWRITE), Just(PAGE_READONLY), Just(PAGE_NOACCESS)])
            .prop_map(|(page, protect)| Op::Protect { page, protect }),
        1 => (0..PAGES, any::<u8>()).prop_map(|(page, fill)| Op::UserWrite { page, fill }),
        1 => (0..PAGES).prop_map(|page| Op::Free { page }),
        1 => Just(Op::ToggleOther),
        1 => Just(Op::ToggleIrql),
        1 => prop_oneof![9 => Just(Op::ToggleIrql), 1 => Just(Op::Exit)],
    ]
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 256, ..ProptestConfig::default() })]

    #[test]
    fn every_slice_outcome_is_predicted(ops in proptest::collection::vec(op(), 1..40)) {
        slice_scenario::run(&ops).map_err(TestCaseError::fail)?;
    }
}
