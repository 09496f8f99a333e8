//! Property test of `UserSlice` on the host backend (issue #20): random sequences of slices made
//! (any alignment, offset, length), reads and writes through their reader and writer, the user's
//! protection changes, writes and frees, attaching to another process, raising the IRQL to
//! `DISPATCH_LEVEL`, and the process's exit.
//!
//! # The invariant
//!
//! Every outcome is predicted by a model of the test's own (the pages' protections and bytes,
//! the context, the cursor): each probe error, each `OutOfBounds` (the cursor stays), each
//! `IrqlTooHigh` and `WrongProcess` (nothing touched, the cursor stays), each fault
//! (`STATUS_ACCESS_VIOLATION` from a page without the access, freed, or gone with its process;
//! the cursor moves past it), and the bytes a read returns are the bytes last written there.
//! No case leaves a process reference behind: once the slices are gone the model counts none.

use mmsecure::host::{
    raise_irql, AccessMode, Attach, Irql, Process, PAGE_NOACCESS, PAGE_READONLY, PAGE_READWRITE,
    PAGE_SIZE,
};
use mmsecure::status::STATUS_ACCESS_VIOLATION;
use mmsecure::sys::DISPATCH_LEVEL;
use mmsecure::{Error, Reader, SliceHold, UserSlice, Writer};
use proptest::prelude::*;

const PAGES: usize = 3;

#[derive(Clone, Debug)]
enum Op {
    /// A slice of `len` bytes at `offset` into page `page`, aligned to `align`; a reader or a
    /// writer of it.
    Make {
        page: usize,
        offset: u16,
        len: u16,
        align: usize,
        write: bool,
    },
    /// `n` bytes through the cursor.
    Access { n: u16, fill: u8 },
    /// The user's `VirtualProtect` of a page.
    Protect { page: usize, protect: u32 },
    /// The user's write of a page's first bytes.
    UserWrite { page: usize, fill: u8 },
    /// The user frees a page.
    Free { page: usize },
    /// Attach to the other process, or detach from it.
    ToggleOther,
    /// Raise to `DISPATCH_LEVEL`, or lower again.
    ToggleIrql,
    /// The process exits.
    Exit,
}

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

/// A page as the test predicts it.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Page {
    Mapped(u32),
    Gone,
}

enum Cursor {
    Read(Reader<'static, SliceHold>),
    Write(Writer<'static, SliceHold>),
}

/// The predicted cursor: its page and offset there, length, position, and whether its slice
/// belongs to the other process.
struct Predicted {
    page: usize,
    start: usize,
    len: usize,
    pos: usize,
    other: bool,
}

fn run(ops: &[Op]) -> Result<(), TestCaseError> {
    let app = Process::new();
    let other = Process::new();
    let in_app = app.attach();
    let pages: Vec<*mut u8> = (0..PAGES)
        .map(|_| app.allocate(PAGE_SIZE, PAGE_READWRITE).unwrap())
        .collect();
    let mut state = [Page::Mapped(PAGE_READWRITE); PAGES];
    let mut bytes = vec![[0u8; 4096]; PAGES];
    let mut in_other: Option<Attach> = None;
    let mut high: Option<Irql> = None;
    let mut cursor: Option<(Cursor, Predicted)> = None;
    let mut exited = false;

    for (step, op) in ops.iter().enumerate() {
        match *op {
            Op::Make {
                page,
                offset,
                len,
                align,
                write,
            } => {
                let address = pages[page].wrapping_add(usize::from(offset));
                let len = usize::from(len);
                let expected = if !align.is_power_of_two() {
                    Err(Error::BadAlignment(align))
                } else if len != 0 && address as usize % align != 0 {
                    Err(Error::Misaligned { align })
                } else if high.is_some() {
                    Err(Error::IrqlTooHigh { irql: 2, max: 1 })
                } else {
                    Ok(())
                };
                cursor = None;
                let made = UserSlice::aligned(address, len, align);
                prop_assert_eq!(
                    made.as_ref().map(|_| ()).map_err(|e| *e),
                    expected,
                    "step {}",
                    step
                );
                if let Ok(slice) = made {
                    let predicted = Predicted {
                        page,
                        start: usize::from(offset),
                        len,
                        pos: 0,
                        other: in_other.is_some(),
                    };
                    let made = if write {
                        Cursor::Write(slice.writer())
                    } else {
                        Cursor::Read(slice.reader())
                    };
                    cursor = Some((made, predicted));
                }
            }
            Op::Access { n, fill } => {
                let (made, p) = match cursor.as_mut() {
                    Some(c) => c,
                    None => continue,
                };
                let n = usize::from(n);
                let in_own = p.other == in_other.is_some();
                let (write, page_state) = (matches!(made, Cursor::Write(_)), state[p.page]);
                let expected: Result<(), Error> = if n > p.len - p.pos {
                    Err(Error::OutOfBounds {
                        offset: p.pos,
                        len: n,
                        region_len: p.len,
                    })
                } else if high.is_some() {
                    Err(Error::IrqlTooHigh { irql: 2, max: 1 })
                } else if !in_own {
                    Err(Error::WrongProcess)
                } else if n == 0 {
                    Ok(())
                } else if p.other {
                    Err(Error::Fault {
                        code: STATUS_ACCESS_VIOLATION,
                    }) // nothing mapped there
                } else {
                    match page_state {
                        Page::Mapped(PAGE_READWRITE) => Ok(()),
                        Page::Mapped(PAGE_READONLY) if !write => Ok(()),
                        _ => Err(Error::Fault {
                            code: STATUS_ACCESS_VIOLATION,
                        }),
                    }
                };
                let at = p.start + p.pos;
                let got = match made {
                    Cursor::Read(reader) => {
                        let mut out = vec![0u8; n];
                        let got = reader.read_slice(&mut out).map_err(|e| e.error());
                        if got.is_ok() && n > 0 {
                            prop_assert_eq!(
                                &out[..],
                                &bytes[p.page][at..at + n],
                                "step {}: bytes",
                                step
                            );
                        }
                        prop_assert_eq!(
                            reader.offset(),
                            p.pos
                                + if matches!(expected, Ok(()) | Err(Error::Fault { .. })) {
                                    n
                                } else {
                                    0
                                }
                        );
                        got
                    }
                    Cursor::Write(writer) => {
                        let data = vec![fill; n];
                        let got = writer.write_slice(&data).map_err(|e| e.error());
                        if got.is_ok() {
                            bytes[p.page][at..at + n].fill(fill);
                        }
                        prop_assert_eq!(
                            writer.offset(),
                            p.pos
                                + if matches!(expected, Ok(()) | Err(Error::Fault { .. })) {
                                    n
                                } else {
                                    0
                                }
                        );
                        got
                    }
                };
                prop_assert_eq!(got, expected, "step {}: {:?}", step, op);
                if matches!(expected, Ok(()) | Err(Error::Fault { .. })) {
                    p.pos += n;
                }
            }
            Op::Protect { page, protect } => {
                if let Page::Mapped(_) = state[page] {
                    prop_assert!(app
                        .protect(pages[page], PAGE_SIZE, protect, AccessMode::User)
                        .is_ok());
                    state[page] = Page::Mapped(protect);
                }
            }
            Op::UserWrite { page, fill } => {
                if state[page] != Page::Gone {
                    // The user writes whatever the protection: the model's own write.
                    if app.write(pages[page], &[fill; 8]).is_ok() {
                        bytes[page][..8].fill(fill);
                    }
                }
            }
            Op::Free { page } => {
                if state[page] != Page::Gone {
                    prop_assert!(app.free(pages[page], AccessMode::User).is_ok());
                    state[page] = Page::Gone;
                }
            }
            Op::ToggleOther => {
                if in_other.take().is_none() {
                    in_other = Some(other.attach());
                }
            }
            Op::ToggleIrql => {
                if high.take().is_none() {
                    high = Some(raise_irql(DISPATCH_LEVEL as u8));
                }
            }
            Op::Exit => {
                if !exited {
                    app.exit();
                    exited = true;
                    state = [Page::Gone; PAGES];
                }
            }
        }
    }
    drop(high);
    drop(cursor);
    drop(in_other);
    drop(in_app);
    prop_assert_eq!(app.driver_references(), 0);
    prop_assert_eq!(other.driver_references(), 0);
    Ok(())
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 256, ..ProptestConfig::default() })]

    #[test]
    fn every_slice_outcome_is_predicted(ops in proptest::collection::vec(op(), 1..40)) {
        run(&ops)?;
    }
}
